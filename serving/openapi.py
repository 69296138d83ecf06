"""The API's OpenAPI 3.2 document, built from the data contracts so the two cannot drift.

Record schemas come from ``darkpool.schema`` (field lists and pyarrow types)
and ``darkpool.contracts`` (pane timings, venue types; the alert record's
fields, kinds, severities and nullability); parameter constraints
come from ``serving.params`` (the very patterns, enums and bounds the routes
enforce). OpenAPI 3.2, because it is the version that declares the events of
a Server-Sent Events stream (``itemSchema`` of ``text/event-stream``, each
event's JSON data under ``contentSchema``). Served at ``/api/v1/openapi.json``;
the tests validate live responses against it and fuzz the server with it
(tests/serving/test_api_contract.py).
"""

from __future__ import annotations

from typing import Any

from darkpool.contracts import (
    ALERT_FIELDS,
    ALERT_KINDS,
    ALERT_NULLABLE_FIELDS,
    ALERTS_TOPIC,
    CONTRACT_VERSION,
    DARK_VENUE_TYPES,
    PANE_TIMINGS,
    SEVERITIES,
    VENUE_TYPES,
)
from darkpool.schema import FIELD_KINDS, FIELDS, LIQUIDITY, MARKET, NULLABLE_FIELDS
from serving import params
from serving.records import ALERT_FIELD_KINDS
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


ALERT_ENUMS = {"kind": ALERT_KINDS, "severity": SEVERITIES, "pane_timing": PANE_TIMINGS}


def alert_schema() -> dict[str, Any]:
    """JSON Schema of a darkpool.alerts record, from the contract (fields, kinds, enums, nullability)."""
    properties: dict[str, Any] = {}
    for name in ALERT_FIELDS:
        schema = dict(_TYPE_SCHEMAS[ALERT_FIELD_KINDS[name]])
        if name in ALERT_ENUMS:
            schema["enum"] = list(ALERT_ENUMS[name])
        if name in ALERT_NULLABLE_FIELDS:
            schema["type"] = [schema["type"], "null"]
        properties[name] = schema
    return {
        "type": "object",
        "description": "One live alert: the latest darkpool.alerts record of one (symbol, kind, window), fields "
                       "exactly as in the contract. severity is one of low < medium < high and is never lowered "
                       "(a re-emitted alert replaces the held one only with a higher severity, or the same one "
                       "emitted later); pane_timing/pane_index name the pane that triggered it; venue is null "
                       "when the alert names no venue (dark_share_surge).",
        "properties": properties,
        "required": list(ALERT_FIELDS),
        "additionalProperties": False,
    }


def _obj(properties: dict[str, Any], description: str = "", extra: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": list(properties),
                              "additionalProperties": extra}
    if description:
        schema["description"] = description
    return schema


NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
HEALTH_STATES = ("ok", "degraded")


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
        "AlertRecord": alert_schema(),
        "AlertList": _obj({
            "total": {"type": "integer", "minimum": 0, "description": "alerts matching the filters before "
                      "offset/limit"},
            "offset": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": params.LIMIT_MIN, "maximum": params.LIMIT_MAX},
            "rows": {"type": "array", "items": _ref("AlertRecord")},
        }, "Alerts matching the filters, newest first: emitted_at descending, then window_start descending, then "
           "symbol and kind."),
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
        "ConsumerHealth": _obj({
            "state": {"type": "string", "enum": list(HEALTH_STATES)},
            "reason": {"type": ["string", "null"], "description": "why degraded (null when ok)"},
            "since": {**NULLABLE_TIME, "description": "when the state began (null: the consumer is disabled)"},
        }, "degraded while the broker is unreachable: the server keeps answering from the panes it holds"),
        "Health": _obj({
            "status": {"type": "string", "enum": list(HEALTH_STATES)},
            "reason": {"type": ["string", "null"]},
            "since": NULLABLE_TIME,
        }, "Liveness: 200 whenever the process answers; status says whether the consumer is degraded."),
        "Ready": _obj({
            "ready": {"type": "boolean"},
            "consumer": _obj({"connected": {"type": "boolean"}, "lag": {"type": ["integer", "null"]},
                              "error": {"type": ["string", "null"]}}),
            "rebuild": _obj({"read": {"type": "integer"}, "total": {"type": "integer"}},
                            "records read so far / records in the topics at start"),
            "health": _ref("ConsumerHealth"),
        }, "ready stays true (200) while degraded: a degraded server still serves its last panes"),
        "Status": _obj({
            "last_update": {**NULLABLE_TIME, "description": "newest emitted_at seen"},
            "latest_window_end": {**NULLABLE_TIME, "description": "end of the latest complete window"},
            "current_window_end": {**NULLABLE_TIME, "description": "end of the newest (current) window"},
            "panes_ingested": {"type": "integer", "minimum": 0},
            "symbols": {"type": "integer", "minimum": 0},
            "venues": {"type": "integer", "minimum": 0},
            "windows": {"type": "integer", "minimum": 0},
            "window_period_ms": {"type": ["integer", "null"], "minimum": 1, "description": "the windows' period "
                                 "(smallest gap between two window starts held; null with fewer than two windows): "
                                 "the unit of the timeseries step"},
            "records": {"type": "integer", "minimum": 0, "description": "panes held (latest per key)"},
            "version": {"type": "integer", "minimum": 0, "description": "store snapshot version"},
            "ready": {"type": "boolean"},
            "consumer": _obj({"connected": {"type": "boolean"}, "lag": {"type": ["integer", "null"]}}),
            "stale": {"type": "boolean", "description": "no data, or the newest emitted_at is older than "
                      "STALE_AFTER_SECONDS"},
            "health": _ref("ConsumerHealth"),
            "alerts": _obj({
                "topic": {"type": ["string", "null"], "description": "the alerts topic read (null: ALERTS_TOPIC "
                          "is empty, alerts are not read)"},
                "available": {"type": "boolean", "description": "the topic exists and is read; false while it "
                              "is missing: no alerts yet, not an error (it is looked for again)"},
                "note": {"type": ["string", "null"], "description": "why no alerts are read (null when available)"},
                "stored": {"type": "integer", "minimum": 0, "description": "alerts held (latest per key)"},
                "last_update": {**NULLABLE_TIME, "description": "newest emitted_at of the alerts held"},
            }),
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
        "Error": _obj({"error": _obj({
            "code": {"type": "integer", "minimum": 400, "maximum": 599, "description": "the HTTP status"},
            "message": {"type": "string", "minLength": 1, "description": "what was wrong, for a person"},
        })}, "Every error response (4xx, 5xx) of every path, including 404 for unknown paths and 405."),
        "Heartbeat": _obj({
            "time": {"type": "string", "format": "date-time", "description": "server time"},
            "version": {"type": "integer", "minimum": 0, "description": "store snapshot version"},
        }, "The data of a `heartbeat` event."),
        **{event_schema_name(name): sse_event(name, data) for name, data in STREAM_EVENTS.items()},
        "StreamEvent": {"oneOf": [_ref(event_schema_name(name)) for name in STREAM_EVENTS],
                        "description": "One Server-Sent Event of /api/v1/stream, as a client parses it: its `event` "
                                       "name and its `data` (one line of JSON)."},
    }


# SSE event name -> the schema of its (JSON) data
STREAM_EVENTS = {"liquidity": "LiquidityRecord", "market": "MarketRecord", "alert": "AlertRecord",
                 "heartbeat": "Heartbeat"}


def event_schema_name(event: str) -> str:
    """components.schemas name of one SSE event type (``liquidity`` -> ``LiquidityEvent``)."""
    return f"{event.capitalize()}Event"


def sse_event(event: str, data_schema: str) -> dict[str, Any]:
    """One SSE event type (OpenAPI 3.2 sequential media type item): its name and its JSON data's schema."""
    return {
        "type": "object",
        "description": f"`event: {event}` with `data:` one line of JSON, a {data_schema}.",
        "properties": {
            "event": {"const": event},
            "data": {"type": "string", "contentMediaType": JSON, "contentSchema": _ref(data_schema)},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
        "required": ["event", "data"],
    }




def _examples(*values: Any) -> dict[str, Any]:
    """Parameter examples (a fuzzer's examples phase sends them: symbols and venues of the demo and the tests)."""
    return {f"sample{i + 1}": {"value": v} for i, v in enumerate(values)}


def _query(name: str, schema: dict[str, Any], description: str, examples: tuple[Any, ...] = ()) -> dict[str, Any]:
    param = {"name": name, "in": "query", "required": False, "schema": schema, "description": description}
    if examples:
        param["examples"] = _examples(*examples)
    return param


def _path(name: str, schema: dict[str, Any], description: str, examples: tuple[Any, ...] = ()) -> dict[str, Any]:
    param = {"name": name, "in": "path", "required": True, "schema": schema, "description": description}
    if examples:
        param["examples"] = _examples(*examples)
    return param


SYMBOL_SCHEMA = {"type": "string", "pattern": params.anchored(params.SYMBOL_PATTERN)}
VENUE_SCHEMA = {"type": "string", "pattern": params.anchored(params.VENUE_PATTERN)}
TIME_SCHEMA = {"type": "string", "format": "date-time"}
SYMBOL_Q = _query("symbol", SYMBOL_SCHEMA, "only this symbol (case-insensitive); 404 if unknown", ("AAPL",))
VENUE_Q = _query("venue", VENUE_SCHEMA, "only this venue MPID (case-insensitive); 404 if unknown", ("UBSA",))
WINDOW_Q = _query("window", {"type": "string", "enum": list(params.WINDOW_CHOICES), "default": "latest"},
                  "latest complete window, or the current (still-updating) one")

# headers on every response (serving.SECURITY_HEADERS): declared, so a fuzzer checks they are there
COMMON_HEADERS = {
    "X-Content-Type-Options": {"required": True, "schema": {"type": "string", "const": "nosniff"}},
    "Content-Security-Policy": {"required": True, "schema": {"type": "string", "pattern": "^default-src 'self'"}},
}
REASONS = {400: "a parameter breaks its schema (empty, wrong type, out of range, not in the enum, not matching "
                "the pattern), is given twice, or is not one this endpoint takes",
           404: "unknown symbol or venue, or no such record",
           503: "not ready / too many clients"}


def _ok(schema_name: str, description: str, media: str = JSON) -> dict[str, Any]:
    return {"description": description, "headers": _header_refs(), "content": {media: {"schema": _ref(schema_name)}}}


def _err(description: str) -> dict[str, Any]:
    return _ok("Error", description)


def _header_refs(*extra: str) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in (*COMMON_HEADERS, *extra)}


def _get(summary: str, ok: dict[str, Any], parameters: list[dict[str, Any]] | None = None,
         errors: tuple[int, ...] = (400,), description: str = "") -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok}
    for code in errors:
        responses[str(code)] = _err(REASONS[code])
    op: dict[str, Any] = {"summary": summary, "parameters": parameters or [], "responses": responses}
    if description:
        op["description"] = description
    return {"get": op}


STREAM_DESCRIPTION = (
    "Events (each declared under `itemSchema`, its data under components.schemas): `liquidity` (data: a "
    "LiquidityRecord), `market` (data: a MarketRecord), `alert` (data: an AlertRecord: a new alert, or one "
    "re-emitted with a higher severity; a client keeps one per (symbol, kind, window_start)), `heartbeat` (data: "
    "{time, version}) once at connect and about every SSE_HEARTBEAT_SECONDS. The stream opens with `retry: 3000` "
    "(no data). Only panes and alerts that change the stores are pushed, from the moment the store is ready; "
    "`symbol` filters alerts too. A client too far behind is disconnected "
    "(EventSource reconnects). HEAD answers the headers without opening a stream."
)


def paths() -> dict[str, Any]:
    """paths of the document."""
    window_desc = ("The latest complete window is the newest window whose end is at or before the newest "
                   "ON_TIME/LATE pane's window end (before any such pane: the newest window older than the "
                   "current one). The current window is the newest window.")
    return {
        "/api/v1/health": _get("Liveness, and whether the consumer is degraded",
                               _ok("Health", "the process answers (ok or degraded)")),
        "/api/v1/ready": {"get": {
            "summary": "Readiness: the store has rebuilt from the topics",
            "parameters": [],
            "responses": {"200": _ok("Ready", "ready"), "503": _ok("Ready", "still rebuilding or no broker"),
                          "400": _err(REASONS[400])},
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
                             "default": params.LIMIT_DEFAULT}, "page size", (20,)),
            _query("offset", {"type": "integer", "minimum": 0, "default": 0}, "rows to skip"),
        ]),
        "/api/v1/market/{symbol}": _get("One symbol's market rollup", _ok("MarketRecord", "the record"), [
            _path("symbol", SYMBOL_SCHEMA, "ticker (case-insensitive)", ("AAPL",)), WINDOW_Q,
        ], (400, 404)),
        "/api/v1/symbols/{symbol}/timeseries": _get(
            "A symbol's liquidity per venue over time, and its market rollups", _ok("Timeseries", "series"), [
                _path("symbol", SYMBOL_SCHEMA, "ticker (case-insensitive)", ("AAPL",)), VENUE_Q,
                _query("since", TIME_SCHEMA, "only windows starting at or after this time",
                       ("2026-11-25T14:30:00Z",)),
                _query("until", TIME_SCHEMA, "only windows ending at or before this time (an empty range, "
                                             "since after until, answers no points)"),
                _query("step", {"type": "integer", "minimum": params.STEP_MIN_SECONDS,
                                "maximum": params.STEP_MAX_SECONDS},
                       "only windows whose start is a whole multiple of this many seconds since the epoch (one "
                       "window per step: a long range in fewer points); every window when left out", (600,)),
            ], (400, 404), "One point per window (its latest pane), oldest first, within the retained history."),
        "/api/v1/alerts": _get("Live alerts, newest first", _ok("AlertList", "alerts, newest first"), [
            _query("symbol", SYMBOL_SCHEMA, "only this symbol's alerts (case-insensitive); a symbol without "
                                            "alerts answers no rows (no 404)", ("AAPL",)),
            _query("kind", {"type": "string", "enum": list(params.ALERT_KIND_CHOICES)}, "only this kind of alert"),
            _query("since", TIME_SCHEMA, "only alerts emitted (or re-emitted) at or after "
                                         "this time: their emitted_at", ("2026-11-25T14:30:00Z",)),
            _query("min_severity", {"type": "string", "enum": list(params.SEVERITY_CHOICES)},
                   "only alerts of this severity or higher (" + " < ".join(params.SEVERITY_CHOICES) + ")"),
            _query("limit", {"type": "integer", "minimum": params.LIMIT_MIN, "maximum": params.LIMIT_MAX,
                             "default": params.LIMIT_DEFAULT}, "page size", (20,)),
            _query("offset", {"type": "integer", "minimum": 0, "default": 0}, "alerts to skip"),
        ], (400,), f"The alerts of the {ALERTS_TOPIC} topic held by the server (the latest per symbol, kind and "
                   "window_start, within the retained history), newest first: emitted_at descending, then "
                   "window_start descending, then symbol and kind. A missing alerts topic answers no rows "
                   "(/api/v1/status says why)."),
        "/api/v1/venues": _get("The venue registry", _ok("VenueList", "venues")),
        "/api/v1/symbols": _get("Symbols with data", _ok("SymbolList", "sorted symbols")),
        "/api/v1/stream": {"get": {
            "summary": "Live panes and alerts (Server-Sent Events)",
            "description": STREAM_DESCRIPTION,
            "parameters": [_query("symbol", SYMBOL_SCHEMA, "only this symbol's panes and alerts", ("AAPL",))],
            "responses": {"200": {"description": "event stream",
                                  "headers": {**_header_refs(), "Cache-Control": {
                                      "required": True, "schema": {"type": "string", "const": "no-cache"}}},
                                  "content": {"text/event-stream": {"itemSchema": _ref("StreamEvent")}}},
                          "400": _err(REASONS[400]), "503": _err("too many stream clients")},
        }},
        "/api/v1/openapi.json": _get("This document", {"description": "OpenAPI 3.2 document",
                                                       "headers": _header_refs(),
                                                       "content": {JSON: {"schema": {"type": "object"}}}}),
        "/api/heatmap_data": _get("Legacy: the seed project's heat-map records", _ok("HeatmapList", "records"),
                                  [WINDOW_Q]),
        "/metrics": _get("Prometheus metrics", {"description": "Prometheus text exposition", "headers": _header_refs(),
                                                "content": {"text/plain": {"schema": {"type": "string"}}}}),
    }


def components() -> dict[str, Any]:
    """components of the document: schemas, the common response headers, the 405 response."""
    return {
        "schemas": schemas(),
        "headers": {
            **COMMON_HEADERS,
            "Allow": {"required": True, "description": "the methods the path answers",
                      "schema": {"type": "string", "pattern": "^[A-Z]+(, [A-Z]+)*$"}},
        },
        "responses": {
            "MethodNotAllowed": {
                "description": "A method the path does not declare (every path declares GET and also answers HEAD "
                               "and OPTIONS): 405 with an Allow header and the Error body.",
                "headers": _header_refs("Allow"),
                "content": {JSON: {"schema": _ref("Error")}},
            },
        },
    }


def openapi_document() -> dict[str, Any]:
    """The whole OpenAPI 3.2 document."""
    return {
        "openapi": "3.2.0",
        "info": {
            "title": "Dark Pool Liquidity Dashboard API",
            "version": f"1.{CONTRACT_VERSION}",
            "description": "Rolling event-time liquidity analytics per symbol and venue, and live alerts on "
                           "unusual dark activity, read from the pipeline's darkpool.liquidity, darkpool.market "
                           "and darkpool.alerts topics. Times are RFC 3339 UTC strings. "
                           "Errors are JSON {\"error\": {\"code\", \"message\"}} (components.schemas.Error). "
                           "A parameter that breaks its schema (an empty value such as `venue=` included), one "
                           "given twice, or one an endpoint does not take answers 400. A method a path does not "
                           "declare answers 405 with an Allow header (components.responses.MethodNotAllowed, "
                           "also named by x-undeclared-method); HEAD and OPTIONS are answered for every GET path.",
        },
        "servers": [{"url": "/"}],
        "paths": paths(),
        "components": components(),
        "x-undeclared-method": {"$ref": "#/components/responses/MethodNotAllowed"},
    }
