"""The market-structure definitions, in one place (docs/market-rules.md).

Every part of the product takes these figures from here: the pipeline's
rollups (pipeline.records), serving, analytics and the test helpers. Where
another language computes one of them (the report's DuckDB SQL in
:mod:`analytics.market_sql`, the dashboard's JavaScript in
``dashboard/src/metrics.js``), tests/test_market_rules.py feeds the same cases
to every implementation and requires the same results.

- notional = price x quantity; VWAP = notional / quantity; average trade size =
  quantity / trades;
- dark = a venue of type ATS or SDP (``contracts.DARK_VENUE_TYPES``); exchanges
  (and venues of unknown type) are lit; dark share = dark quantity / quantity (0-1);
- block = a print of >= ``contracts.BLOCK_MIN_SHARES`` shares or >=
  ``contracts.BLOCK_MIN_NOTIONAL`` dollars of notional (either limit reached exactly counts);
- HHI = sum over venues of (100 x the venue's share of the share quantity)^2, 0-10,000;
- top venue = the venue with the largest share quantity; a tie goes to the
  alphabetically first MPID; its share is its quantity / quantity;
- venue count = venues with a positive share quantity.

Empty input: when nothing traded (zero total quantity, or zero trades for the
average trade size), every ratio is None (VWAP, average trade size, dark share,
HHI, top venue share) and the top venue is (None, None).

Pure functions on plain numbers and mappings; nothing here knows about Beam,
DuckDB or Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping

from darkpool.contracts import BLOCK_MIN_NOTIONAL, BLOCK_MIN_SHARES, DARK_VENUE_TYPES

HHI_SCALE = 10_000.0  # HHI on the 0-10,000 scale (shares in percent, squared)


def notional(price: float, quantity: int) -> float:
    """Traded value of one print: price x quantity."""
    return price * quantity


def is_block(price: float, quantity: int) -> bool:
    """A block trade: >= 10,000 shares or >= $200,000 notional (each limit itself counts)."""
    return quantity >= BLOCK_MIN_SHARES or price * quantity >= BLOCK_MIN_NOTIONAL


def vwap(total_notional: float, total_quantity: int) -> float | None:
    """Volume-weighted average price = notional / quantity; None when nothing traded."""
    if total_quantity <= 0:
        return None
    return total_notional / total_quantity


def average_trade_size(total_quantity: int, trade_count: int) -> float | None:
    """Mean print size in shares = quantity / trades; None when there was no trade."""
    if trade_count <= 0:
        return None
    return total_quantity / trade_count


def is_dark(venue_type: str | None) -> bool:
    """Dark = ATS and single-dealer platforms (SDP); exchanges and unknown types are lit."""
    return venue_type in DARK_VENUE_TYPES


def dark_share(dark_quantity: int, total_quantity: int) -> float | None:
    """Fraction (0-1) of the share volume printed on dark venues; None when nothing traded."""
    if total_quantity <= 0:
        return None
    return dark_quantity / total_quantity


def hhi(quantities: Mapping[str, float]) -> float | None:
    """Herfindahl-Hirschman index of the venues' shares of volume, 0-10,000.

    ``quantities`` maps venue -> share quantity. 10,000 means one venue printed
    everything; with n equal venues it is 10,000 / n. Venues with zero quantity
    add nothing. None when nothing traded (no venue, or every quantity zero).
    """
    total = sum(quantities.values())
    if total <= 0:
        return None
    return HHI_SCALE * sum((q / total) ** 2 for q in quantities.values())


def top_venue(quantities: Mapping[str, float]) -> tuple[str | None, float | None]:
    """The venue with the largest share quantity and its share (0-1) of the quantity.

    Ties go to the alphabetically first MPID, so the answer does not depend on
    the order the venues were seen in. (None, None) when nothing traded.
    """
    total = sum(quantities.values())
    if total <= 0:
        return None, None
    venue = min(quantities, key=lambda mpid: (-quantities[mpid], mpid))
    return venue, quantities[venue] / total


def venue_count(quantities: Mapping[str, float]) -> int:
    """How many venues printed something (a positive share quantity)."""
    return sum(1 for q in quantities.values() if q > 0)
