"""Event-time rules of the pipeline: the period slot of a trade, and when a trade is too late.

Pure functions, unit-tested on their own (tests/pipeline/test_pipeline_finance.py);
the market-structure math (VWAP, blocks, dark share, HHI, top venue) lives in
:mod:`darkpool.market`. Times are epoch milliseconds (int) throughout.
"""

from __future__ import annotations


def period_start(event_ms: int, period_ms: int) -> int:
    """Start of the one-period slot (e.g. the minute) holding ``event_ms``."""
    return event_ms - event_ms % period_ms


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
