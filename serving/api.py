"""The versioned REST API: /api/v1/... (documented in serving/openapi.py, served at /api/v1/openapi.json).

Every read takes one immutable store snapshot and answers from it alone, so a
response is always consistent. Serialized bodies are memoised per snapshot
version: under load, repeated requests between two consumer batches cost one
dictionary lookup.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, current_app, request

from darkpool.contracts import format_event_time, load_venues, severity_rank
from serving import params
from serving.alerts import AlertSnapshot, AlertStore
from serving.consumer import PaneConsumer
from serving.metrics import Metrics
from serving.openapi import openapi_document
from serving.params import ApiError
from serving.shapes import TIMESERIES_POINT_FIELDS
from serving.store import Snapshot, Store, Window
from serving.stream import Hub, event_stream

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@dataclass
class Services:
    """What the routes use, built once per app by create_app (``app.extensions['darkpool']``).

    Building them starts nothing: the server process calls :meth:`start` (``serving.commands.server_app``),
    tests that need the consumer call ``serving.start_consumer(app)``."""

    config: dict[str, Any]
    store: Store
    hub: Hub
    metrics: Metrics
    consumer: PaneConsumer | None
    alert_store: AlertStore

    def start(self) -> None:
        """Start the background Kafka consumer (if the app has one; calling it twice is harmless)."""
        if self.consumer is not None:
            self.consumer.start()

    def close(self) -> None:
        """Stop the consumer and end open streams (tests, worker shutdown)."""
        self.hub.close()
        if self.consumer is not None:
            self.consumer.stop()


def services() -> Services:
    return current_app.extensions["darkpool"]


def json_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="application/json")


def cached(snap: Snapshot | AlertSnapshot, key: tuple, build: Callable[[], Any]) -> Response:
    """The JSON body for ``key`` at this snapshot version (of the pane or the alert store), built and serialized
    once."""
    body = snap.cache.get(key)
    if body is None:
        body = orjson.dumps(build())
        if len(snap.cache) < services().config["RESPONSE_CACHE_SIZE"]:
            snap.cache[key] = body
    return json_response(body)


def known_symbol(snap: Snapshot, symbol: str | None) -> str | None:
    if symbol is not None and symbol not in snap.symbols():
        raise params.not_found(f"unknown symbol {symbol!r}: no panes for it in the retained history")
    return symbol


def known_venue(snap: Snapshot, venue: str | None) -> str | None:
    if venue is not None and venue not in load_venues() and venue not in snap.venues():
        raise params.not_found(f"unknown venue {venue!r}: not in the venue registry (see /api/v1/venues)")
    return venue


def pick_window(snap: Snapshot, which: str) -> Window | None:
    return snap.current_window() if which == "current" else snap.latest_complete_window()


def window_header(window: Window | None) -> dict[str, Any]:
    return {"window_start": window.start if window else None, "window_end": window.end if window else None}


def iso_or_none(ms: int | None) -> str | None:
    return format_event_time(ms) if ms is not None else None


# -- health, readiness, status -----------------------------------------------------
CONSUMER_DISABLED_HEALTH = {"state": "degraded", "reason": "consumer disabled", "since": None}


def consumer_health(svc: Services) -> dict[str, Any]:
    """``{"state": "ok"|"degraded", "reason", "since"}``: degraded while the broker is unreachable."""
    return svc.consumer.health() if svc.consumer else dict(CONSUMER_DISABLED_HEALTH)


@bp.get("/health")
def health() -> Response:
    """Liveness (always 200 while the process answers), and whether the consumer is degraded."""
    params.check_known(request.args, ())
    state = consumer_health(services())
    return json_response(orjson.dumps({"status": state["state"], "reason": state["reason"], "since": state["since"]}))


@bp.get("/ready")
def ready() -> Response:
    """Readiness: 200 once the store has rebuilt from the topics, else 503."""
    params.check_known(request.args, ())
    svc = services()
    status = svc.consumer.status if svc.consumer else None
    is_ready = bool(status and status.ready)
    body = {
        "ready": is_ready,
        "consumer": {"connected": bool(status and status.connected), "lag": status.lag if status else None,
                     "error": status.error if status else "consumer disabled"},
        "rebuild": {"read": status.records_read if status else 0, "total": status.rebuild_total if status else 0},
        "health": consumer_health(svc),
    }
    return json_response(orjson.dumps(body), 200 if is_ready else 503)


@bp.get("/status")
def status() -> Response:
    """Freshness and size of what the server holds."""
    params.check_known(request.args, ())
    svc = services()
    snap = svc.store.snapshot
    cstatus = svc.consumer.status if svc.consumer else None
    latest, current = snap.latest_complete_window(), snap.current_window()
    stale_ms = svc.config["STALE_AFTER_SECONDS"] * 1000
    stale = snap.last_update_ms is None or time.time() * 1000 - snap.last_update_ms > stale_ms
    body = {
        "last_update": iso_or_none(snap.last_update_ms),
        "latest_window_end": latest.end if latest else None,
        "current_window_end": current.end if current else None,
        "panes_ingested": snap.panes_ingested,
        "symbols": len(snap.symbols()),
        "venues": len(snap.venues()),
        "windows": len(snap.order),
        "window_period_ms": snap.period_ms(),
        "records": snap.record_count,
        "version": snap.version,
        "ready": bool(cstatus and cstatus.ready),
        "consumer": {"connected": bool(cstatus and cstatus.connected), "lag": cstatus.lag if cstatus else None},
        "stale": stale,
        "health": consumer_health(svc),
        "alerts": alerts_status(svc),
    }
    return json_response(orjson.dumps(body))


def alerts_status(svc: Services) -> dict[str, Any]:
    """The alerts part of /status: which topic, whether it exists (a missing one means no alerts yet), why not,
    how many alerts are held and the newest emitted_at."""
    snap = svc.alert_store.snapshot
    topic = svc.config.get("ALERTS_TOPIC") or None
    cstatus = svc.consumer.status if svc.consumer else None
    available = bool(topic and cstatus and cstatus.alerts_available)
    if topic is None:
        note = "alerts are not read (ALERTS_TOPIC is empty)"
    elif cstatus is None:
        note = "consumer disabled"
    elif available:
        note = None
    else:
        note = cstatus.alerts_note or f"topic {topic} not looked for yet (the consumer has not reached the broker)"
    return {"topic": topic, "available": available, "note": note, "stored": len(snap.alerts),
            "last_update": iso_or_none(snap.last_update_ms)}


# -- windows -----------------------------------------------------------------------
def window_rows(which: str) -> Response:
    params.check_known(request.args, ("symbol", "venue"))
    snap = services().store.snapshot
    symbol = known_symbol(snap, params.symbol(request.args.get("symbol")))
    venue = known_venue(snap, params.venue(request.args.get("venue")))

    def build() -> dict[str, Any]:
        window = pick_window(snap, which)
        rows = window.liquidity_rows(symbol, venue) if window else []
        return {**window_header(window), "complete": which == "latest", "rows": rows}

    return cached(snap, ("windows", which, symbol, venue), build)


@bp.get("/windows/latest")
def windows_latest() -> Response:
    """Liquidity panes of the latest complete window."""
    return window_rows("latest")


@bp.get("/windows/current")
def windows_current() -> Response:
    """Liquidity panes of the newest, still-updating window."""
    return window_rows("current")


# -- market ------------------------------------------------------------------------
def rank_market(rows: list[dict[str, Any]], sort: str, order: str) -> list[dict[str, Any]]:
    """Market records ordered by ``sort`` (``order`` asc|desc), nulls last, ties by symbol."""
    by_symbol = sorted(rows, key=operator.itemgetter("symbol"))
    present = [r for r in by_symbol if r[sort] is not None]
    nulls = [r for r in by_symbol if r[sort] is None]
    present.sort(key=operator.itemgetter(sort), reverse=(order == "desc"))  # stable: ties stay by symbol
    return present + nulls


@bp.get("/market")
def market() -> Response:
    """Market rollups per symbol for one window, ranked."""
    params.check_known(request.args, ("window", "sort", "order", "limit", "offset"))
    which = params.choice(request.args.get("window"), "window", params.WINDOW_CHOICES, "latest")
    sort = params.choice(request.args.get("sort"), "sort", params.MARKET_SORTS, "dark_share")
    order = params.choice(request.args.get("order"), "order", params.ORDERS, "asc" if sort == "symbol" else "desc")
    limit = params.bounded_int(request.args.get("limit"), "limit", params.LIMIT_MIN, params.LIMIT_MAX,
                               params.LIMIT_DEFAULT)
    offset = params.bounded_int(request.args.get("offset"), "offset", 0, None, 0)
    snap = services().store.snapshot

    def build() -> dict[str, Any]:
        window = pick_window(snap, which)
        rows = [p.record for p in window.market.values()] if window else []
        ranked = rank_market(rows, sort, order)
        return {**window_header(window), "sort": sort, "order": order, "total": len(ranked),
                "offset": offset, "limit": limit, "rows": ranked[offset:offset + limit]}

    return cached(snap, ("market", which, sort, order, limit, offset), build)


@bp.get("/market/<path:raw_symbol>")
def market_symbol(raw_symbol: str) -> Response:
    """One symbol's market rollup in the latest complete (or current) window."""
    params.check_known(request.args, ("window",))
    which = params.choice(request.args.get("window"), "window", params.WINDOW_CHOICES, "latest")
    snap = services().store.snapshot
    symbol = known_symbol(snap, params.path_symbol(raw_symbol))
    window = pick_window(snap, which)
    pane = window.market.get(symbol) if window else None
    if pane is None:
        where = f"window {window.start}..{window.end}" if window else "the store (no windows yet)"
        raise params.not_found(f"no market record for {symbol} in the {which} {where}")
    return cached(snap, ("market_symbol", which, symbol), lambda: pane.record)


# -- time series -------------------------------------------------------------------
@bp.get("/symbols/<path:raw_symbol>/timeseries")
def timeseries(raw_symbol: str) -> Response:
    """One point per window (its latest pane) per venue, and the market rollups, oldest first."""
    params.check_known(request.args, ("venue", "since", "until", "step"))
    snap = services().store.snapshot
    symbol = known_symbol(snap, params.path_symbol(raw_symbol))
    venue = known_venue(snap, params.venue(request.args.get("venue")))
    since = params.timestamp(request.args.get("since"), "since")
    until = params.timestamp(request.args.get("until"), "until")  # since after until: an empty range
    step = params.bounded_int(request.args.get("step"), "step", params.STEP_MIN_SECONDS, params.STEP_MAX_SECONDS, 0)
    step_ms = step * 1000 or None

    def build() -> dict[str, Any]:
        venues: dict[str, list[dict[str, Any]]] = {}
        market_rows: list[dict[str, Any]] = []
        for window in snap.windows_between(since, until, step_ms):
            for rec in window.liquidity_rows(symbol, venue):
                venues.setdefault(rec["venue"], []).append({f: rec[f] for f in TIMESERIES_POINT_FIELDS})
            pane = window.market.get(symbol)
            if pane is not None:
                market_rows.append(pane.record)
        return {"symbol": symbol, "venues": dict(sorted(venues.items())), "market": market_rows}

    return cached(snap, ("timeseries", symbol, venue, since, until, step_ms), build)


# -- alerts --------------------------------------------------------------------------
ALERT_PARAMETERS = ("symbol", "kind", "since", "min_severity", "limit", "offset")


@bp.get("/alerts")
def alerts() -> Response:
    """The live alerts held (the latest per symbol, kind and window), filtered, newest first, paged."""
    params.check_known(request.args, ALERT_PARAMETERS)
    symbol = params.symbol(request.args.get("symbol"))
    kind = params.optional_choice(request.args.get("kind"), "kind", params.ALERT_KIND_CHOICES)
    since = params.timestamp(request.args.get("since"), "since")
    min_severity = params.optional_choice(request.args.get("min_severity"), "min_severity", params.SEVERITY_CHOICES)
    limit = params.bounded_int(request.args.get("limit"), "limit", params.LIMIT_MIN, params.LIMIT_MAX,
                               params.LIMIT_DEFAULT)
    offset = params.bounded_int(request.args.get("offset"), "offset", 0, None, 0)
    snap = services().alert_store.snapshot
    min_rank = severity_rank(min_severity) if min_severity is not None else None

    def build() -> dict[str, Any]:
        page = snap.query(symbol, kind, since, min_rank, limit, offset)
        return {"total": page.total, "offset": offset, "limit": limit, "rows": page.rows}

    return cached(snap, ("alerts", symbol, kind, since, min_severity, limit, offset), build)


# -- reference lists ---------------------------------------------------------------
@bp.get("/venues")
def venues() -> Response:
    """The venue registry with matching-engine coordinates."""
    params.check_known(request.args, ())
    body = current_app.extensions.get("darkpool_venues_json")
    if body is None:
        body = orjson.dumps({"venues": [
            {"mpid": v.mpid, "name": v.name, "operator": v.operator, "venue_type": v.venue_type,
             "data_center": v.data_center, "latitude": v.latitude, "longitude": v.longitude, "is_dark": v.is_dark}
            for v in load_venues().values()
        ]})
        current_app.extensions["darkpool_venues_json"] = body
    return json_response(body)


@bp.get("/symbols")
def symbols() -> Response:
    """Symbols with data in the retained history, sorted."""
    params.check_known(request.args, ())
    snap = services().store.snapshot
    return cached(snap, ("symbols_list",), lambda: {"symbols": sorted(snap.symbols())})


# -- live push ---------------------------------------------------------------------
@bp.get("/stream")
def stream() -> Response:
    """Server-Sent Events: ``liquidity`` and ``market`` events carry new panes, ``alert`` events new or raised
    alerts; ``heartbeat`` every ~10 s."""
    params.check_known(request.args, ("symbol",))
    symbol = params.symbol(request.args.get("symbol"))
    svc = services()
    if request.method == "HEAD":  # the headers only: no subscription (its body would never be read)
        body: Iterator[bytes] | tuple[()] = ()
    else:
        sub = svc.hub.subscribe(symbol)
        if sub is None:
            raise ApiError(503, f"too many stream clients (limit {svc.hub.max_clients}); retry later")
        store = svc.store
        body = event_stream(svc.hub, sub, svc.config["SSE_HEARTBEAT_SECONDS"], lambda: store.snapshot.version)
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


@bp.get("/openapi.json")
def openapi() -> Response:
    """This API's OpenAPI 3.2 document."""
    params.check_known(request.args, ())
    body = current_app.extensions.get("darkpool_openapi_json")
    if body is None:
        body = current_app.extensions["darkpool_openapi_json"] = orjson.dumps(openapi_document())
    return json_response(body)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
