"""GET /api/v1/alerts, the alerts in /status, /metrics and the OpenAPI document, and `alert` events on the
stream, through the Flask test client (no broker: the app is built without a consumer and its real alert store
is fed the way the consumer feeds it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import orjson
import pytest
from flask import Flask
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from prometheus_client.parser import text_string_to_metric_families
from test_alerts_store import BASE_MS, BLOCKS, CONCENTRATION, HIGH, LOW, MEDIUM, SURGE, alert

from darkpool.contracts import ALERT_FIELDS, ALERT_KINDS, ALERTS_TOPIC, SEVERITIES, format_event_time
from darkpool.errors import DarkpoolError
from serving import create_app


@pytest.fixture
def app() -> Iterator[Flask]:
    app = create_app({"CONSUMER_ENABLED": False, "SSE_HEARTBEAT_SECONDS": 0.2})
    store = app.extensions["darkpool"].alert_store
    store.apply([
        alert(0, symbol="AAPL", severity=LOW, emitted_s=100),
        alert(0, symbol="AAPL", kind=BLOCKS, severity=HIGH, emitted_s=110, venue="JPMX"),
        alert(1, symbol="MSFT", kind=CONCENTRATION, severity=MEDIUM, emitted_s=60, venue="XNAS"),
        alert(2, symbol="NVDA", severity=MEDIUM, emitted_s=5),
    ])
    store.apply([alert(0, symbol="AAPL", severity=MEDIUM, emitted_s=130, pane_index=1)])  # raised
    store.apply([alert(0, symbol="AAPL", severity=LOW, emitted_s=200, pane_index=2)])  # lower: ignored
    yield app
    app.extensions["darkpool"].close()


@pytest.fixture
def spec(app: Flask) -> dict:
    return app.test_client().get("/api/v1/openapi.json").get_json()


def validator(spec: dict, schema: dict) -> Draft202012Validator:
    return Draft202012Validator({**schema, "components": spec["components"]})


def alerts_response_schema(spec: dict, status: int) -> dict:
    return spec["paths"]["/api/v1/alerts"]["get"]["responses"][str(status)]["content"]["application/json"]["schema"]


def at(seconds: int) -> str:
    return format_event_time(BASE_MS + 1000 * seconds)


def test_alerts_newest_first_with_the_raised_severity(app: Flask, spec: dict) -> None:
    response = app.test_client().get("/api/v1/alerts")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    validator(spec, alerts_response_schema(spec, 200)).validate(body)
    assert (body["total"], body["offset"], body["limit"]) == (4, 0, 100)
    assert [(r["symbol"], r["kind"], r["severity"], r["emitted_at"]) for r in body["rows"]] == [
        ("AAPL", SURGE, MEDIUM, at(130)),  # raised from low; the later low re-emission did not lower it
        ("NVDA", SURGE, MEDIUM, at(120 + 5)),  # window 2 opened 120 s after window 0
        ("MSFT", CONCENTRATION, MEDIUM, at(60 + 60)),
        ("AAPL", BLOCKS, HIGH, at(110)),
    ]
    assert all(tuple(r) == ALERT_FIELDS for r in body["rows"])


@pytest.mark.parametrize("query, expected", [
    ("symbol=aapl", [("AAPL", SURGE), ("AAPL", BLOCKS)]),
    ("symbol=IBM", []),
    ("kind=block_cluster", [("AAPL", BLOCKS)]),
    ("min_severity=high", [("AAPL", BLOCKS)]),
    ("min_severity=medium&kind=dark_share_surge", [("AAPL", SURGE), ("NVDA", SURGE)]),
    ("min_severity=low", [("AAPL", SURGE), ("NVDA", SURGE), ("MSFT", CONCENTRATION), ("AAPL", BLOCKS)]),
    (f"since={at(125)}", [("AAPL", SURGE), ("NVDA", SURGE)]),  # emitted at or after
    (f"since={at(126).replace('Z', '+01:00')}", [("AAPL", SURGE), ("NVDA", SURGE), ("MSFT", CONCENTRATION),
                                                 ("AAPL", BLOCKS)]),  # an hour earlier in UTC
    (f"since={at(131)}", []),
    ("limit=2", [("AAPL", SURGE), ("NVDA", SURGE)]),
    ("limit=2&offset=2", [("MSFT", CONCENTRATION), ("AAPL", BLOCKS)]),
    ("offset=4", []),
])
def test_alert_filters_and_pages(app: Flask, spec: dict, query: str, expected: list[tuple[str, str]]) -> None:
    response = app.test_client().get(f"/api/v1/alerts?{query.replace('+', '%2B')}")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    validator(spec, alerts_response_schema(spec, 200)).validate(body)
    assert [(r["symbol"], r["kind"]) for r in body["rows"]] == expected
    if "limit" in query or "offset" in query:
        assert body["total"] == 4


@pytest.mark.parametrize("query, message", [
    ("kind=surge", "kind must be one of dark_share_surge, block_cluster, venue_concentration"),
    ("kind=", "kind is empty"),
    ("min_severity=critical", "min_severity must be one of low, medium, high"),
    ("min_severity=HIGH", "min_severity must be one of"),
    ("since=yesterday", "since must be an RFC 3339 date-time"),
    ("since=2026-11-25T14:30:00", "since must be an RFC 3339 date-time"),
    ("symbol=1BAD", "symbol must be a ticker symbol"),
    ("limit=0", "limit must be between 1 and 1000"),
    ("offset=-1", "offset must be at least 0"),
    ("venue=UBSA", "unknown query parameter(s): venue"),
    ("kind=block_cluster&kind=dark_share_surge", "given more than once: kind"),
])
def test_bad_parameters_answer_400_with_the_declared_error(app: Flask, spec: dict, query: str, message: str) -> None:
    response = app.test_client().get(f"/api/v1/alerts?{query}")
    assert response.status_code == 400
    body = response.get_json()
    validator(spec, alerts_response_schema(spec, 400)).validate(body)
    assert body["error"]["code"] == 400 and message in body["error"]["message"]


def test_a_new_alert_batch_is_seen_by_the_next_request(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/api/v1/alerts?symbol=IBM").get_json()["rows"] == []
    app.extensions["darkpool"].alert_store.apply([alert(3, symbol="IBM", severity=HIGH, emitted_s=1)])
    assert [r["severity"] for r in client.get("/api/v1/alerts?symbol=IBM").get_json()["rows"]] == [HIGH]


def test_status_says_how_many_alerts_and_why_none_are_read(app: Flask, spec: dict) -> None:
    body = app.test_client().get("/api/v1/status").get_json()
    validator(spec, spec["paths"]["/api/v1/status"]["get"]["responses"]["200"]["content"]["application/json"]
              ["schema"]).validate(body)
    assert body["alerts"] == {"topic": ALERTS_TOPIC, "available": False, "note": "consumer disabled", "stored": 4,
                              "last_update": at(130)}
    off = create_app({"CONSUMER_ENABLED": False, "ALERTS_TOPIC": ""})
    assert off.test_client().get("/api/v1/status").get_json()["alerts"] == {
        "topic": None, "available": False, "note": "alerts are not read (ALERTS_TOPIC is empty)", "stored": 0,
        "last_update": None}


def test_metrics_have_every_kind_and_severity_from_the_start() -> None:
    app = create_app({"CONSUMER_ENABLED": False})
    families = {f.name: f for f in text_string_to_metric_families(app.test_client().get("/metrics")
                                                                   .get_data(as_text=True))}
    received = {(s.labels["kind"], s.labels["severity"]): s.value for s in families["darkpool_serving_alerts"].samples
                if s.name == "darkpool_serving_alerts_total"}
    assert received == {(k, s): 0.0 for k in ALERT_KINDS for s in SEVERITIES}
    assert families["darkpool_serving_alerts_stored"].samples[0].value == 0
    assert families["darkpool_serving_alerts_topic_present"].samples[0].value == 0


def test_the_document_declares_the_alert_record_the_list_and_the_event(spec: dict) -> None:
    schemas = spec["components"]["schemas"]
    for name in ("AlertRecord", "AlertList", "AlertEvent"):
        validator_for(schemas[name], default=Draft202012Validator).check_schema(schemas[name])
    record = schemas["AlertRecord"]
    assert record["required"] == list(ALERT_FIELDS) and record["additionalProperties"] is False
    assert record["properties"]["kind"]["enum"] == list(ALERT_KINDS)
    assert record["properties"]["severity"]["enum"] == list(SEVERITIES)
    assert record["properties"]["venue"]["type"] == ["string", "null"]
    assert record["properties"]["window_start"] == {"type": "string", "format": "date-time"}
    assert {"$ref": "#/components/schemas/AlertEvent"} in schemas["StreamEvent"]["oneOf"]
    data = schemas["AlertEvent"]["properties"]["data"]
    assert schemas["AlertEvent"]["properties"]["event"] == {"const": "alert"}
    assert data["contentSchema"] == {"$ref": "#/components/schemas/AlertRecord"}
    operation = spec["paths"]["/api/v1/alerts"]["get"]
    assert [p["name"] for p in operation["parameters"]] == ["symbol", "kind", "since", "min_severity", "limit",
                                                            "offset"]
    assert set(operation["responses"]) == {"200", "400"}


def read_events(response, want: str, timeout_events: int = 50) -> list[tuple[str, dict]]:
    """SSE events (name, JSON data) of a streamed test-client response, up to the first ``want`` event."""
    events: list[tuple[str, dict]] = []
    buffer = b""
    for chunk in response.response:
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            lines = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
            if b"event" in lines:
                events.append((lines[b"event"].decode(), orjson.loads(lines[b"data"])))
        if any(name == want for name, _ in events) or len(events) > timeout_events:
            break
    return events


def test_the_stream_carries_alert_events_that_match_the_document(app: Flask, spec: dict) -> None:
    services = app.extensions["darkpool"]
    client = app.test_client()
    response = client.get("/api/v1/stream?symbol=NVDA", buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    raised = services.alert_store.apply([alert(2, symbol="NVDA", severity=HIGH, emitted_s=9, pane_index=1),
                                         alert(2, symbol="MSFT", severity=HIGH, emitted_s=9)])
    assert len(raised.applied) == 2
    # as the consumer does after a batch, once ready; after the first heartbeat, so the client is subscribed
    timer = threading.Timer(0.3, services.hub.publish_alerts, (raised.applied,))
    timer.start()
    events = read_events(response, "alert")
    timer.join()
    response.close()
    pushed = [data for name, data in events if name == "alert"]
    assert pushed == [raised.applied[0].record]  # the symbol filter holds for alerts too
    validator(spec, {"$ref": "#/components/schemas/AlertRecord"}).validate(pushed[0])
    assert pushed[0]["severity"] == HIGH and pushed[0]["symbol"] == "NVDA"


def test_the_alerts_topic_must_not_be_a_pane_topic() -> None:
    with pytest.raises(DarkpoolError, match="one topic for two kinds of record"):
        create_app({"CONSUMER_ENABLED": False, "ALERTS_TOPIC": "darkpool.market"})
