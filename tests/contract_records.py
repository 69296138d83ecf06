"""Contract records for tests: the market rollup of a (window, symbol) from its venues' liquidity records.

Shared by the serving and browser tests, which produce hand-made panes into
the real broker. The rollup follows DESIGN.md: dark = ATS + SDP, dark share
by quantity, HHI of venue share of volume (0-10,000), top venue.
"""

from __future__ import annotations

from typing import Any

from darkpool.contracts import DARK_VENUE_TYPES, MARKET_FIELDS


def market_rollup(rows: list[dict[str, Any]], pane_timing: str, pane_index: int, emitted_at: str) -> dict[str, Any]:
    """The darkpool.market record of one (window, symbol) from its darkpool.liquidity records."""
    first = rows[0]
    qty = sum(r["share_quantity"] for r in rows)
    notional = sum(r["notional"] for r in rows)
    dark = [r for r in rows if r["venue_type"] in DARK_VENUE_TYPES]
    lit = [r for r in rows if r["venue_type"] not in DARK_VENUE_TYPES]
    shares = {r["venue"]: r["share_quantity"] / qty for r in rows}
    top = max(shares, key=lambda v: (shares[v], v))
    record = {
        "window_start": first["window_start"], "window_end": first["window_end"], "symbol": first["symbol"],
        "trade_count": sum(r["trade_count"] for r in rows), "share_quantity": qty, "notional": notional,
        "vwap": notional / qty,
        "dark_quantity": sum(r["share_quantity"] for r in dark), "lit_quantity": sum(r["share_quantity"] for r in lit),
        "dark_notional": sum(r["notional"] for r in dark), "lit_notional": sum(r["notional"] for r in lit),
        "dark_trade_count": sum(r["trade_count"] for r in dark), "lit_trade_count": sum(r["trade_count"] for r in lit),
        "dark_share": sum(r["share_quantity"] for r in dark) / qty,
        "block_count": sum(r["block_count"] for r in rows), "block_quantity": sum(r["block_quantity"] for r in rows),
        "dark_block_count": sum(r["block_count"] for r in dark),
        "hhi": sum((100 * s) ** 2 for s in shares.values()), "venue_count": len(rows),
        "top_venue": top, "top_venue_share": shares[top],
        "pane_timing": pane_timing, "pane_index": pane_index, "emitted_at": emitted_at,
    }
    assert tuple(record) == MARKET_FIELDS
    return record
