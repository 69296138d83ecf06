"""Pure market-structure math: the definitions of DESIGN.md as plain functions.

Nothing here knows about Beam. The CombineFns in :mod:`pipeline.combiners` only
add numbers up; every derived figure (VWAP, block test, dark share, HHI, top
venue) and every event-time rule (which windows hold a trade, when a trade is
too late) is computed by a function below, so each is unit-tested on its own.

Times are epoch milliseconds (int) throughout.
"""

from __future__ import annotations

from collections.abc import Mapping

from darkpool.contracts import BLOCK_MIN_NOTIONAL, BLOCK_MIN_SHARES, DARK_VENUE_TYPES

HHI_SCALE = 10_000.0  # HHI on the 0-10,000 scale (shares in percent, squared)


def notional(price: float, quantity: int) -> float:
    """Traded value of one print: price x quantity."""
    return price * quantity


def is_block(price: float, quantity: int) -> bool:
    """A block trade is >= 10,000 shares or >= $200,000 notional (DESIGN.md)."""
    return quantity >= BLOCK_MIN_SHARES or price * quantity >= BLOCK_MIN_NOTIONAL


def vwap(total_notional: float, total_quantity: int) -> float | None:
    """Volume-weighted average price = notional / quantity; None when nothing traded."""
    if total_quantity <= 0:
        return None
    return total_notional / total_quantity


def average_trade_size(total_quantity: int, trade_count: int) -> float | None:
    """Mean print size in shares; None for an empty window."""
    if trade_count <= 0:
        return None
    return total_quantity / trade_count


def is_dark(venue_type: str | None) -> bool:
    """Dark = ATS and single-dealer platforms (SDP); exchanges are lit."""
    return venue_type in DARK_VENUE_TYPES


def dark_share(dark_quantity: int, total_quantity: int) -> float | None:
    """Fraction (0-1) of the share volume printed on dark venues; None when nothing traded."""
    if total_quantity <= 0:
        return None
    return dark_quantity / total_quantity


def hhi(quantities: Mapping[str, int]) -> float | None:
    """Herfindahl-Hirschman index of venue share of volume, 0-10,000.

    ``quantities`` maps venue -> share quantity. 10,000 means one venue printed
    everything; with n equal venues it is 10,000 / n. None when nothing traded.
    """
    total = sum(quantities.values())
    if total <= 0:
        return None
    return HHI_SCALE * sum((q / total) ** 2 for q in quantities.values())


def top_venue(quantities: Mapping[str, int]) -> tuple[str | None, float | None]:
    """The venue with the largest share quantity and its share (0-1).

    Ties go to the alphabetically first MPID so the answer does not depend on
    the order the venues were seen in. (None, None) when nothing traded.
    """
    total = sum(quantities.values())
    if total <= 0:
        return None, None
    venue = min(quantities, key=lambda mpid: (-quantities[mpid], mpid))
    return venue, quantities[venue] / total


# --- event time ------------------------------------------------------------------
def period_start(event_ms: int, period_ms: int) -> int:
    """Start of the one-period slot (e.g. the minute) holding ``event_ms``."""
    return event_ms - event_ms % period_ms


def sliding_window_starts(event_ms: int, size_ms: int, period_ms: int) -> list[int]:
    """Starts of every sliding window [start, start + size) that contains ``event_ms``.

    Windows are aligned to the period (Beam's SlidingWindows with offset 0), so a
    trade lands in exactly size / period windows when size is a multiple of period.
    """
    last = period_start(event_ms, period_ms)
    starts = []
    start = last
    while start > event_ms - size_ms:
        starts.append(start)
        start -= period_ms
    return sorted(starts)


def is_too_late(event_ms: int, watermark_ms: int | None, period_ms: int, allowed_lateness_ms: int) -> bool:
    """Whether a trade arrives too late to count anywhere (the pipeline's too-late rule).

    The earliest window holding a trade ends at the end of the trade's period
    slot. Once the watermark has reached that end plus the allowed lateness, the
    runner would drop the trade from that window; the pipeline then drops it from
    *all* its windows, counts it and dead-letters it with reason ``too_late``.
    So every trade is either in all of its size/period windows or in none, and
    in = aggregated + dead-lettered + too late holds exactly.

    The boundary (``>=``) is the strictest of the runners' rules (Java's
    ``maxTimestamp + lateness < watermark`` drops at exactly end + lateness), so
    no runner ever drops a trade this function lets through.
    ``watermark_ms`` None means nothing was seen yet: never too late.
    """
    if watermark_ms is None:
        return False
    return watermark_ms >= period_start(event_ms, period_ms) + period_ms + allowed_lateness_ms
