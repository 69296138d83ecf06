"""The API's OpenAPI 3.1 document, built from the data contracts so the two cannot drift.

Record schemas come from ``darkpool.schema`` (field lists and pyarrow types)
and ``darkpool.contracts`` (pane timings, venue types); parameter constraints
come from ``serving.params``. Served at ``/api/v1/openapi.json``; the tests
validate live responses against it.
"""

from __future__ import annotations

from typing import Any

from darkpool.contracts import CONTRACT_VERSION, DARK_VENUE_TYPES, PANE_TIMINGS, VENUE_TYPES
from darkpool.schema import FIELD_KINDS, FIELDS, LIQUIDITY, MARKET, NULLABLE_FIELDS
from serving import params
from serving.shapes import TIMESERIES_POINT_FIELDS

JSON = "application/json"

_TYPE_SCHEMAS: dict[str, dict[str, Any]] = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "str": {"type": "string"},
    "time": {"type": "string", "format": "date-time"},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def field_schema(kind: str, name: str) -> dict[str, Any]:
    """JSON Schema of one record field from its contract type (nullable ratios/prices allow null)."""
    schema = dict(_TYPE_SCHEMAS[FIELD_KINDS[kind][name]])
    if name == "pane_timing":
        schema["enum"] = list(PANE_TIMINGS)
    if name in NULLABLE_FIELDS:
        schema["type"] = [schema["type"], "null"]
    return schema


def record_schema(kind: str, description: str, fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    fields = fields or FIELDS[kind]
    return {
        "type": "object",
        "description": description,
        "properties": {name: field_schema(kind, name) for name in fields},
        "required": list(fields),
        "additionalProperties": False,
    }


def _obj(properties: dict[str, Any], description: str = "", extra: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": list(properties),
                              "additionalProperties": extra}
    if description:
        schema["description"] = description
    return schema


NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}


def schemas() -> dict[str, Any]:
    """components.schemas of the document."""
    return {
        "LiquidityRecord": record_schema(LIQUIDITY, "The latest pane of one (window, symbol, venue): a "
                                         "darkpool.liquidity record, fields exactly as in the contract."),
        "MarketRecord": record_schema(MARKET, "The latest pane of one (window, symbol): a darkpool.market record."),
        "TimeseriesPoint": record_schema(LIQUIDITY, "One window of one venue (its latest pane).",
                                         TIMESERIES_POINT_FIELDS),
        "WindowRows": _obj({
            "window_start": NULLABLE_TIME, "window_end": NULLABLE_TIME,
            "complete": {"type": "boolean", "description": "true for the latest complete window, false for the "
                         "current one"},
            "rows": {"type": "array", "items": _ref("LiquidityRecord")},
        }, "One window's liquidity panes, ordered by symbol then venue. window_start/window_end are null (and rows "
           "empty) while there is no such window yet."),
        "MarketList": _obj({
            "window_start": NULLABLE_TIME, "window_end": NULLABLE_TIME,
            "sort": {"type": "string", "enum": list(params.MARKET_SORTS)},
            "order": {"type": "string", "enum": list(params.ORDERS)},
            "total": {"type": "integer", "minimum": 0, "description": "rows in the window before offset/limit"},
            "offset": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": params.LIMIT_MIN, "maximum": params.LIMIT_MAX},
            "rows": {"type": "array", "items": _ref("MarketRecord")},
        }, "Market rollups of one window, ranked (nulls last, ties by symbol)."),
        "Timeseries": _obj({
            "symbol": {"type": "string"},
            "venues": {"type": "object", "additionalProperties": {"type": "array", "items": _ref("TimeseriesPoint")},
                       "description": "venue MPID -> one point per window, oldest first"},
            "market": {"type": "array", "items": _ref("MarketRecord"), "description": "oldest first"},
        }),
        "Venue": _obj({
            "mpid": {"type": "string"}, "name": {"type": "string"}, "operator": {"type": "string"},
            "venue_type": {"type": "string", "enum": list(VENUE_TYPES)},
            "data_center": {"type": "string"}, "latitude": {"type": "number"}, "longitude": {"type": "number"},
            "is_dark": {"type": "boolean", "description": " or ".join(sorted(DARK_VENUE_TYPES))},
        }),
        "VenueList": _obj({"venues": {"type": "array", "items": _ref("Venue")}}),
        "SymbolList": _obj({"symbols": {"type": "array", "items": {"type": "string"}}}),
        "Health": _obj({"status": {"type": "string", "const": "ok"}}),
        "Ready": _obj({
            "ready": {"type": "boolean"},
            "consumer": _obj({"connected": {"type": "boolean"}, "lag": {"type": ["integer", "null"]},
                              "error": {"type": ["string", "null"]}}),
            "rebuild": _obj({"read": {"type": "integer"}, "total": {"type": "integer"}},
                            "records read so far / records in the topics at start"),
        }),
        "Status": _obj({
            "last_update": {**NULLABLE_TIME, "description": "newest emitted_at seen"},
            "latest_window_end": {**NULLABLE_TIME, "description": "end of the latest complete window"},
            "current_window_end": {**NULLABLE_TIME, "description": "end of the newest (current) window"},
            "panes_ingested": {"type": "integer", "minimum": 0},
            "symbols": {"type": "integer", "minimum": 0},
            "venues": {"type": "integer", "minimum": 0},
            "windows": {"type": "integer", "minimum": 0},
            "records": {"type": "integer", "minimum": 0, "description": "panes held (latest per key)"},
            "version": {"type": "integer", "minimum": 0, "description": "store snapshot version"},
            "ready": {"type": "boolean"},
            "consumer": _obj({"connected": {"type": "boolean"}, "lag": {"type": ["integer", "null"]}}),
            "stale": {"type": "boolean", "description": "no data, or the newest emitted_at is older than "
                      "STALE_AFTER_SECONDS"},
        }),
        "HeatmapRecord": _obj({
            "window_start": {"type": "string", "format": "date-time"},
            "window_end": {"type": "string", "format": "date-time"},
            "venue": {"type": "string"}, "symbol": {"type": "string"},
            "total_trade_value": {"type": "number"}, "total_quantity": {"type": "integer"},
            "num_trades": {"type": "integer"}, "avg_price": {"type": ["number", "null"]},
            "latitude": {"type": ["number", "null"]}, "longitude": {"type": ["number", "null"]},
        }, "The seed project's heat-map record."),
        "HeatmapList": {"type": "array", "items": _ref("HeatmapRecord")},
        "Error": _obj({"error": _obj({"code": {"type": "integer"}, "message": {"type": "string"}})}),
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


SYMBOL_SCHEMA = {"type": "string", "pattern": params.SYMBOL_RE.pattern}
VENUE_SCHEMA = {"type": "string", "pattern": params.VENUE_RE.pattern}
SYMBOL_Q = _query("symbol", SYMBOL_SCHEMA, "only this symbol (case-insensitive); 404 if unknown")
VENUE_Q = _query("venue", VENUE_SCHEMA, "only this venue MPID (case-insensitive); 404 if unknown")
WINDOW_Q = _query("window", {"type": "string", "enum": list(params.WINDOW_CHOICES), "default": "latest"},
                  "latest complete window, or the current (still-updating) one")


def _ok(schema_name: str, description: str, media: str = JSON) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": _ref(schema_name)}}}


def _err(description: str) -> dict[str, Any]:
    return _ok("Error", description)


def _get(summary: str, ok: dict[str, Any], parameters: list[dict[str, Any]] | None = None,
         errors: tuple[int, ...] = (400,), description: str = "") -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok}
    reasons = {400: "invalid or unknown parameter", 404: "unknown symbol or venue, or no such record",
               503: "not ready / too many clients"}
    for code in errors:
        responses[str(code)] = _err(reasons[code])
    op: dict[str, Any] = {"summary": summary, "parameters": parameters or [], "responses": responses}
    if description:
        op["description"] = description
    return {"get": op}


def paths() -> dict[str, Any]:
    """paths of the document."""
    window_desc = ("The latest complete window is the newest window whose end is at or before the newest "
                   "ON_TIME/LATE pane's window end (before any such pane: the newest window older than the "
                   "current one). The current window is the newest window.")
    return {
        "/api/v1/health": _get("Liveness", _ok("Health", "the process answers")),
        "/api/v1/ready": {"get": {
            "summary": "Readiness: the store has rebuilt from the topics",
            "parameters": [],
            "responses": {"200": _ok("Ready", "ready"), "503": _ok("Ready", "still rebuilding or no broker"),
                          "400": _err("unknown parameter")},
        }},
        "/api/v1/status": _get("Freshness and size of the served data", _ok("Status", "status")),
        "/api/v1/windows/latest": _get("Liquidity panes of the latest complete window",
                                       _ok("WindowRows", "rows (complete: true)"), [SYMBOL_Q, VENUE_Q],
                                       (400, 404), window_desc),
        "/api/v1/windows/current": _get("Liquidity panes of the current (still-updating) window",
                                        _ok("WindowRows", "rows (complete: false)"), [SYMBOL_Q, VENUE_Q],
                                        (400, 404), window_desc),
        "/api/v1/market": _get("Market rollups per symbol, ranked", _ok("MarketList", "ranked rows"), [
            WINDOW_Q,
            _query("sort", {"type": "string", "enum": list(params.MARKET_SORTS), "default": "dark_share"},
                   "rank by this field"),
            _query("order", {"type": "string", "enum": list(params.ORDERS)},
                   "desc by default (asc when sort=symbol)"),
            _query("limit", {"type": "integer", "minimum": params.LIMIT_MIN, "maximum": params.LIMIT_MAX,
                             "default": params.LIMIT_DEFAULT}, "page size"),
            _query("offset", {"type": "integer", "minimum": 0, "default": 0}, "rows to skip"),
        ]),
        "/api/v1/market/{symbol}": _get("One symbol's market rollup", _ok("MarketRecord", "the record"), [
            _path("symbol", SYMBOL_SCHEMA, "ticker (case-insensitive)"), WINDOW_Q,
        ], (400, 404)),
        "/api/v1/symbols/{symbol}/timeseries": _get(
            "A symbol's liquidity per venue over time, and its market rollups", _ok("Timeseries", "series"), [
                _path("symbol", SYMBOL_SCHEMA, "ticker (case-insensitive)"), VENUE_Q,
                _query("since", {"type": "string", "format": "date-time"}, "only windows starting at or after"),
                _query("until", {"type": "string", "format": "date-time"}, "only windows ending at or before"),
            ], (400, 404), "One point per window (its latest pane), oldest first, within the retained history."),
        "/api/v1/venues": _get("The venue registry", _ok("VenueList", "venues")),
        "/api/v1/symbols": _get("Symbols with data", _ok("SymbolList", "sorted symbols")),
        "/api/v1/stream": {"get": {
            "summary": "Live panes (Server-Sent Events)",
            "description": "Events: `liquidity` (data: a LiquidityRecord), `market` (data: a MarketRecord), "
                           "`heartbeat` (data: {time, version}) about every SSE_HEARTBEAT_SECONDS and once at "
                           "connect. Only panes that change the store are pushed, from the moment the store is "
                           "ready. A client too far behind is disconnected (EventSource reconnects).",
            "parameters": [_query("symbol", SYMBOL_SCHEMA, "only this symbol's panes")],
            "responses": {"200": {"description": "event stream",
                                  "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                          "400": _err("invalid parameter"), "503": _err("too many stream clients")},
        }},
        "/api/v1/openapi.json": {"get": {"summary": "This document", "parameters": [],
                                         "responses": {"200": {"description": "OpenAPI 3.1 document",
                                                               "content": {JSON: {"schema": {"type": "object"}}}}}}},
        "/api/heatmap_data": _get("Legacy: the seed project's heat-map records", _ok("HeatmapList", "records"),
                                  [WINDOW_Q]),
        "/metrics": {"get": {"summary": "Prometheus metrics", "parameters": [],
                             "responses": {"200": {"description": "Prometheus text exposition",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    }


def openapi_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Dark Pool Liquidity Dashboard API",
            "version": f"1.{CONTRACT_VERSION}",
            "description": "Rolling event-time liquidity analytics per symbol and venue, read from the pipeline's "
                           "darkpool.liquidity and darkpool.market topics. Times are ISO-8601 UTC strings. "
                           "Errors are JSON {\"error\": {\"code\", \"message\"}}; unknown query parameters are "
                           "rejected with 400.",
        },
        "servers": [{"url": "/"}],
        "paths": paths(),
        "components": {"schemas": schemas()},
    }
