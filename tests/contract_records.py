"""Contract records for tests: the market rollup of a (window, symbol) from its venues' liquidity records.

Shared by the serving and browser tests, which produce hand-made panes into
the real broker. Every derived figure (dark/lit, dark share, VWAP, HHI, top
venue and its tie-break, venue count) comes from darkpool.market, the one
home of the definitions (docs/market-rules.md); this module only adds up.
"""

from __future__ import annotations

from typing import Any

from darkpool import market
from darkpool.schema import FIELDS, MARKET


def market_rollup(rows: list[dict[str, Any]], pane_timing: str, pane_index: int, emitted_at: str) -> dict[str, Any]:
    """The darkpool.market record of one (window, symbol) from its darkpool.liquidity records."""
    first = rows[0]
    qty = sum(r["share_quantity"] for r in rows)
    notional = sum(r["notional"] for r in rows)
    dark = [r for r in rows if market.is_dark(r["venue_type"])]
    lit = [r for r in rows if not market.is_dark(r["venue_type"])]
    dark_qty = sum(r["share_quantity"] for r in dark)
    quantities = {r["venue"]: r["share_quantity"] for r in rows}
    top, top_share = market.top_venue(quantities)
    record = {
        "window_start": first["window_start"], "window_end": first["window_end"], "symbol": first["symbol"],
        "trade_count": sum(r["trade_count"] for r in rows), "share_quantity": qty, "notional": notional,
        "vwap": market.vwap(notional, qty),
        "dark_quantity": dark_qty, "lit_quantity": sum(r["share_quantity"] for r in lit),
        "dark_notional": sum(r["notional"] for r in dark), "lit_notional": sum(r["notional"] for r in lit),
        "dark_trade_count": sum(r["trade_count"] for r in dark), "lit_trade_count": sum(r["trade_count"] for r in lit),
        "dark_share": market.dark_share(dark_qty, qty),
        "block_count": sum(r["block_count"] for r in rows), "block_quantity": sum(r["block_quantity"] for r in rows),
        "dark_block_count": sum(r["block_count"] for r in dark),
        "hhi": market.hhi(quantities), "venue_count": market.venue_count(quantities),
        "top_venue": top, "top_venue_share": top_share,
        "pane_timing": pane_timing, "pane_index": pane_index, "emitted_at": emitted_at,
    }
    assert tuple(record) == FIELDS[MARKET]
    return record
