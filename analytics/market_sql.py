"""The market-structure definitions of darkpool.market as DuckDB SQL expressions, written once.

The report's queries (analytics.tables, analytics.finra) build their columns
with these functions instead of spelling the formulas out, and
tests/test_market_rules.py runs the same expressions on the cases it feeds to
darkpool.market and to the dashboard's JavaScript, requiring equal results
(docs/market-rules.md).

Each function takes SQL expressions (column names, or aggregates) and returns
an SQL expression. The ratios are NULL unless their denominator is positive,
like darkpool.market's None. The concentration aggregates (:func:`hhi`,
:func:`top_venue`, :func:`top_venue_share`, :func:`venue_count`) run over rows
holding one venue each (``venue``, its share quantity ``q``), e.g. a CTE that
sums the quantity per venue; over no rows or zero quantity they are NULL (the
count is 0).
"""

from __future__ import annotations

from darkpool.contracts import DARK_VENUE_TYPES
from darkpool.market import HHI_SCALE

DARK_TYPES_SQL = ", ".join(f"'{t}'" for t in sorted(DARK_VENUE_TYPES))


def ratio(numerator: str, denominator: str) -> str:
    """``numerator / denominator`` as DOUBLE, NULL unless the denominator is positive."""
    return f"(CASE WHEN ({denominator}) > 0 THEN ({numerator})::DOUBLE / ({denominator}) END)"


def vwap(notional: str, quantity: str) -> str:
    """Volume-weighted average price = notional / quantity (NULL when nothing traded)."""
    return ratio(notional, quantity)


def average_trade_size(quantity: str, trades: str) -> str:
    """Shares per trade (NULL without trades)."""
    return ratio(quantity, trades)


def dark_share(dark_quantity: str, quantity: str) -> str:
    """Dark share of the volume, 0-1 (NULL when nothing traded)."""
    return ratio(dark_quantity, quantity)


def is_dark(venue_type: str) -> str:
    """Whether a venue type is dark (ATS or SDP); NULL or any other type is lit (false)."""
    return f"coalesce(({venue_type}) IN ({DARK_TYPES_SQL}), false)"


def hhi(q: str = "q") -> str:
    """Aggregate: HHI (0-10,000) of the venues' quantities ``q``; NULL when they add up to nothing."""
    return (f"(CASE WHEN sum({q}) > 0 THEN {HHI_SCALE:g} * sum(({q})::DOUBLE * ({q})) "
            f"/ (sum({q})::DOUBLE * sum({q})) END)")


def top_venue(venue: str = "venue", q: str = "q") -> str:
    """Aggregate: the venue with the largest quantity, ties to the alphabetically first; NULL when nothing traded."""
    return f"(CASE WHEN sum({q}) > 0 THEN first({venue} ORDER BY {q} DESC, {venue} ASC) END)"


def top_venue_share(q: str = "q") -> str:
    """Aggregate: the top venue's share (0-1) of the quantity; NULL when nothing traded."""
    return ratio(f"max({q})", f"sum({q})")


def venue_count(q: str = "q") -> str:
    """Aggregate: how many venues printed a positive quantity."""
    return f"count(*) FILTER (WHERE ({q}) > 0)"
