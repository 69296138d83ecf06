"""The hand-made analytics dataset follows the market rules (docs/market-rules.md)."""

from __future__ import annotations

from analytics_handmade import LIQUIDITY_ROWS, MARKET_ROWS

from darkpool import market

FIGURES = ("hhi", "top_venue", "top_venue_share", "venue_count", "dark_share")


def test_hand_made_market_rows_follow_the_rules() -> None:
    """The hand-written market rows agree with darkpool.market over their final liquidity rows."""
    final: dict[tuple, dict] = {}
    for r in LIQUIDITY_ROWS:
        key = (r["window_start"], r["symbol"], r["venue"])
        order = (r["pane_index"], r["emitted_at"])
        if key not in final or order > (final[key]["pane_index"], final[key]["emitted_at"]):
            final[key] = r
    latest: dict[tuple, dict] = {}
    for r in MARKET_ROWS:
        key = (r["window_start"], r["symbol"])
        if key not in latest or r["pane_index"] > latest[key]["pane_index"]:
            latest[key] = r
    assert len(latest) == 5
    for (ws, symbol), row in latest.items():
        venues = {v: r["share_quantity"] for (w, s, v), r in final.items() if (w, s) == (ws, symbol)}
        dark = sum(q for v, q in venues.items() if market.is_dark(final[(ws, symbol, v)]["venue_type"]))
        top, top_share = market.top_venue(venues)
        expected = {"hhi": market.hhi(venues), "top_venue": top, "top_venue_share": top_share,
                    "venue_count": market.venue_count(venues),
                    "dark_share": market.dark_share(dark, sum(venues.values()))}
        got = {f: row[f] for f in FIGURES}
        assert got.keys() == expected.keys()
        for f in FIGURES:
            assert got[f] == expected[f] or abs(got[f] - expected[f]) < 1e-9, (symbol, ws, f, got[f], expected[f])
