"""Live behaviour on the real broker: rebuild after a restart, the SSE stream, readiness, CORS."""

from __future__ import annotations

import threading
import time

import orjson
from sample_panes import build_tape, liquidity_record, make_topics, market_record, produce, venues_of

COMPARED = ["/api/v1/windows/latest", "/api/v1/windows/current", "/api/v1/market?sort=symbol",
            "/api/v1/market/AAPL", "/api/v1/symbols/NVDA/timeseries", "/api/v1/symbols", "/api/heatmap_data"]


def answers(app) -> dict[str, object]:
    client = app.test_client()
    return {url: client.get(url).get_json() for url in COMPARED}


def status_counts(app) -> tuple:
    body = app.test_client().get("/api/v1/status").get_json()
    return body["last_update"], body["latest_window_end"], body["records"], body["symbols"], body["venues"]


def test_restart_rebuilds_the_same_state(kafka_bootstrap, app_factory) -> None:
    topics = make_topics(kafka_bootstrap)
    tape = build_tape()
    produce(kafka_bootstrap, topics, tape.liquidity, tape.market)
    first = app_factory(topics)
    before, counts = answers(first), status_counts(first)
    first.extensions["darkpool"].close()  # the first server goes away
    second = app_factory(topics)
    assert answers(second) == before
    assert status_counts(second) == counts
    assert before["/api/v1/windows/latest"]["rows"], "the comparison must not be vacuous"


def test_empty_topics_are_ready_with_empty_answers(kafka_bootstrap, app_factory) -> None:
    app = app_factory(make_topics(kafka_bootstrap))
    client = app.test_client()
    assert client.get("/api/v1/ready").status_code == 200
    assert client.get("/api/v1/windows/latest").get_json() == {
        "window_start": None, "window_end": None, "complete": True, "rows": []}
    assert client.get("/api/v1/market").get_json()["rows"] == []
    status = client.get("/api/v1/status").get_json()
    assert status["last_update"] is None and status["stale"] is True and status["panes_ingested"] == 0


def test_missing_topics_mean_not_ready(kafka_bootstrap, app_factory) -> None:
    from sample_panes import Topics

    app = app_factory(Topics("test.serving.absent.liq", "test.serving.absent.mkt"), wait=False)
    time.sleep(1.5)
    response = app.test_client().get("/api/v1/ready")
    assert response.status_code == 503
    body = response.get_json()
    assert body["ready"] is False and "not found" in body["consumer"]["error"]


def read_events(response, want: int, timeout: float) -> list[tuple[str, dict]]:
    """Parse SSE events from a streamed test-client response until ``want`` non-heartbeat events or timeout."""
    events: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    buffer = b""
    for chunk in response.response:
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            lines = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
            if b"event" in lines:
                events.append((lines[b"event"].decode(), orjson.loads(lines[b"data"])))
        if sum(1 for name, _ in events if name != "heartbeat") >= want or time.monotonic() > deadline:
            break
    return events


def test_stream_pushes_new_panes(kafka_bootstrap, app_factory) -> None:
    topics = make_topics(kafka_bootstrap)
    tape = build_tape()
    produce(kafka_bootstrap, topics, tape.liquidity, tape.market)
    app = app_factory(topics)
    client = app.test_client()
    response = client.get("/api/v1/stream?symbol=MSFT", buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"

    # a new window W5 opens: one EARLY pane per venue for MSFT and AAPL, and MSFT's market pane
    new_rows = [liquidity_record(4, s, v, 2, "EARLY") for s in ("MSFT", "AAPL") for v in venues_of(4, s)]
    msft_rows = [r for r in new_rows if r["symbol"] == "MSFT"]
    new_market = [market_record(msft_rows, 2, "EARLY")]
    producer = threading.Timer(0.5, produce, (kafka_bootstrap, topics, new_rows, new_market))
    producer.start()
    events = read_events(response, want=len(msft_rows) + 1, timeout=30)
    producer.join()
    response.close()

    assert events[0][0] == "heartbeat"
    pushed = [(name, data) for name, data in events if name != "heartbeat"]
    pushed_venues = sorted(data["venue"] for name, data in pushed if name == "liquidity")
    assert pushed_venues == sorted(r["venue"] for r in msft_rows)
    assert [data for name, data in pushed if name == "market"] == new_market
    assert all(data["symbol"] == "MSFT" for _, data in pushed)  # the symbol filter holds
    # and the store has the pushed panes
    current = client.get("/api/v1/windows/current?symbol=MSFT").get_json()["rows"]
    assert {r["pane_index"] for r in current} == {2}


def test_stream_heartbeats_and_client_limit(kafka_bootstrap, app_factory) -> None:
    app = app_factory(make_topics(kafka_bootstrap), SSE_MAX_CLIENTS=1, SSE_HEARTBEAT_SECONDS=0.3)
    client = app.test_client()
    first = client.get("/api/v1/stream", buffered=False)
    second = client.get("/api/v1/stream")
    assert second.status_code == 503 and "too many stream clients" in second.get_json()["error"]["message"]
    chunks = iter(first.response)
    beats = 0
    t0 = time.monotonic()
    while beats < 3:
        if b"event: heartbeat" in next(chunks):
            beats += 1
    assert time.monotonic() - t0 < 5
    first.close()


def test_cors_when_configured(kafka_bootstrap, app_factory) -> None:
    app = app_factory(make_topics(kafka_bootstrap), CORS_ORIGINS="http://localhost:5173, http://127.0.0.1:5173")
    client = app.test_client()
    allowed = client.get("/api/v1/status", headers={"Origin": "http://localhost:5173"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert allowed.headers["Vary"] == "Origin"
    other = client.get("/api/v1/status", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = client.options("/api/v1/market", headers={"Origin": "http://127.0.0.1:5173",
                                                          "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 200 and "GET" in preflight.headers["Access-Control-Allow-Methods"]


def test_unreachable_broker_means_not_connected_and_not_ready(kafka_bootstrap, app_factory) -> None:
    from sample_panes import Topics

    app = app_factory(Topics("test.serving.x", "test.serving.y"), wait=False, BOOTSTRAP_SERVERS="127.0.0.1:1")
    time.sleep(2.0)
    client = app.test_client()
    ready = client.get("/api/v1/ready")
    assert ready.status_code == 503 and ready.get_json()["consumer"]["connected"] is False
    status = client.get("/api/v1/status").get_json()
    assert status["consumer"]["connected"] is False and status["ready"] is False
    assert client.get("/api/v1/health").status_code == 200  # alive, just not ready


def test_old_data_is_stale(kafka_bootstrap, loaded_topics, app_factory) -> None:
    app = app_factory(loaded_topics, STALE_AFTER_SECONDS=60.0)  # the sample tape is days old
    status = app.test_client().get("/api/v1/status").get_json()
    assert status["stale"] is True and status["last_update"] is not None
