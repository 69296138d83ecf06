"""The seed project's endpoint, kept so its dashboard and kepler.gl workflow keep working.

GET /api/heatmap_data returns a JSON list of the seed's record shape, one per
(symbol, venue) of a window: window_start, window_end, venue, symbol,
total_trade_value (notional), total_quantity, num_trades, avg_price (VWAP),
latitude, longitude (the venue's matching engine; null for an unknown venue).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, request

from darkpool.contracts import load_venues
from serving import params
from serving.api import cached, pick_window, services

bp = Blueprint("legacy", __name__)


def heatmap_record(rec: dict[str, Any]) -> dict[str, Any]:
    """A liquidity record in the seed's heat-map shape."""
    venue = load_venues().get(rec["venue"])
    return {
        "window_start": rec["window_start"],
        "window_end": rec["window_end"],
        "venue": rec["venue"],
        "symbol": rec["symbol"],
        "total_trade_value": rec["notional"],
        "total_quantity": rec["share_quantity"],
        "num_trades": rec["trade_count"],
        "avg_price": rec["vwap"],
        "latitude": venue.latitude if venue else None,
        "longitude": venue.longitude if venue else None,
    }


@bp.get("/api/heatmap_data")
def heatmap_data() -> Response:
    """The latest complete window (or ``?window=current``) in the seed's record shape."""
    params.check_known(request.args, ("window",))
    which = params.choice(request.args.get("window"), "window", params.WINDOW_CHOICES, "latest")
    snap = services().store.snapshot

    def build() -> list[dict[str, Any]]:
        window = pick_window(snap, which)
        return [heatmap_record(rec) for rec in window.liquidity_rows()] if window else []

    return cached(snap, ("heatmap", which), build)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
