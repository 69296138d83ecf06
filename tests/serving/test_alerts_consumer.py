"""Serving's consumer and the alerts topic, on the real test broker.

A deployment made before the alerts existed has no alerts topic: serving must start, become ready on the
panes, say in /status that there are no alerts yet, and start reading alerts once the topic is created
(``darkpool topics``), pushing them as ``alert`` events and counting them on /metrics. An alerts topic that
exists at start is read before the store is ready, like the pane topics; a lower re-emission never lowers a
held alert, and an invalid alert record is skipped and counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from sample_panes import (
    alert_record,
    build_tape,
    create_alerts_topic,
    make_topics,
    produce,
    sample_alerts,
    window_start,
)
from test_alerts_api import read_events

from darkpool.contracts import ALERT_KINDS, SEVERITIES, alert_key

SURGE, BLOCKS, CONCENTRATION = ALERT_KINDS
LOW, MEDIUM, HIGH = SEVERITIES


def metric_samples(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.1)


def alerts(app: Flask, query: str = "") -> dict:
    response = app.test_client().get(f"/api/v1/alerts{query}")
    assert response.status_code == 200
    return response.get_json()


def test_a_missing_alerts_topic_means_no_alerts_yet_until_it_is_created(kafka_bootstrap, app_factory) -> None:
    topics = make_topics(kafka_bootstrap)  # the alerts topic is named but not created
    tape = build_tape()
    produce(kafka_bootstrap, topics, tape.liquidity, tape.market)
    app = app_factory(topics)  # ready on the panes alone
    client = app.test_client()
    assert client.get("/api/v1/ready").status_code == 200
    time.sleep(2.5)  # the consumer asks for the topic again every LAG_CHECK_SECONDS (1 s here)
    status = client.get("/api/v1/status").get_json()
    assert status["ready"] is True and status["health"]["state"] == "ok"
    assert status["alerts"]["available"] is False and status["alerts"]["stored"] == 0
    assert f"topic {topics.alerts} not found: no alerts yet" in status["alerts"]["note"]
    assert alerts(app) == {"total": 0, "offset": 0, "limit": 100, "rows": []}
    assert metric_samples(app)[("darkpool_serving_alerts_topic_present", ())] == 0
    # asking for it did not create it (the broker auto-creates topics; serving's metadata requests must not)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    assert topics.alerts not in admin.list_topics(timeout=10).topics

    stream = client.get("/api/v1/stream", buffered=False)
    create_alerts_topic(kafka_bootstrap, topics)
    produce(kafka_bootstrap, topics, [], [], alerts=sample_alerts())
    wait_for(lambda: [r["severity"] for r in alerts(app, "?symbol=AAPL")["rows"]] == [HIGH]
             and alerts(app)["total"] == 3, 30, "the alerts of the new topic")
    pushed: list[tuple[str, dict]] = []
    reader = threading.Thread(target=lambda: pushed.extend(read_events(stream, "never", timeout_events=8)))
    reader.start()
    reader.join(10)
    stream.close()

    body = alerts(app)
    assert [(r["symbol"], r["kind"], r["severity"]) for r in body["rows"]] == [  # newest emitted_at first
        ("NVDA", CONCENTRATION, LOW), ("MSFT", BLOCKS, MEDIUM), ("AAPL", SURGE, HIGH)]  # AAPL's raised from low
    status = client.get("/api/v1/status").get_json()["alerts"]
    assert (status["available"], status["note"], status["stored"]) == (True, None, 3)
    alert_events = [data for name, data in pushed if name == "alert"]
    assert {(a["symbol"], a["kind"]) for a in alert_events} == {("AAPL", SURGE), ("NVDA", CONCENTRATION),
                                                                ("MSFT", BLOCKS)}
    assert [a["severity"] for a in alert_events if a["symbol"] == "AAPL"] == [LOW, HIGH]  # in emission order
    samples = metric_samples(app)
    received = {(dict(labels)["kind"], dict(labels)["severity"]): value for (name, labels), value in samples.items()
                if name == "darkpool_serving_alerts_total"}
    assert received == {(k, s): float((k, s) in {(SURGE, LOW), (SURGE, HIGH), (BLOCKS, MEDIUM),
                                                 (CONCENTRATION, LOW)}) for k in ALERT_KINDS for s in SEVERITIES}
    assert samples[("darkpool_serving_alerts_stored", ())] == 3
    assert samples[("darkpool_serving_alerts_topic_present", ())] == 1

    # a later, lower re-emission of the raised alert: consumed, counted, and never lowers it
    lower = alert_record(1, "AAPL", SURGE, MEDIUM, window_start(1) + 200_000, 2, "LATE")
    produce(kafka_bootstrap, topics, [], [], alerts=[lower])
    wait_for(lambda: metric_samples(app).get(("darkpool_serving_alert_updates_total",
                                              (("outcome", "superseded"),))) == 1, 20, "the lower re-emission")
    assert [r["severity"] for r in alerts(app, "?symbol=AAPL")["rows"]] == [HIGH]


def test_an_alerts_topic_at_start_is_read_before_ready(kafka_bootstrap, app_factory) -> None:
    topics = make_topics(kafka_bootstrap, alerts=True)
    tape = build_tape()
    produce(kafka_bootstrap, topics, tape.liquidity, tape.market, alerts=sample_alerts())
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topics.alerts, b"{not json", key=b"AAPL|dark_share_surge|bad")
    producer.produce(topics.alerts, orjson.dumps({**sample_alerts()[0], "severity": "critical"}),
                     key=alert_key("AAPL", SURGE, "bad"))
    assert producer.flush(30) == 0
    for _ in range(2):  # a restarted server rebuilds the same alerts
        app = app_factory(topics)
        body = alerts(app, "?min_severity=medium")
        assert [(r["symbol"], r["kind"], r["severity"]) for r in body["rows"]] == [("MSFT", BLOCKS, MEDIUM),
                                                                                  ("AAPL", SURGE, HIGH)]
        status = app.test_client().get("/api/v1/status").get_json()
        assert status["alerts"] == {"topic": topics.alerts, "available": True, "note": None, "stored": 3,
                                    "last_update": max(a["emitted_at"] for a in sample_alerts())}
        assert status["consumer"]["lag"] == 0  # the alerts partitions count in the lag too
        samples = metric_samples(app)
        assert samples[("darkpool_serving_invalid_records_total", (("kind", "alert"),))] == 2
        assert samples[("darkpool_serving_alert_updates_total", (("outcome", "stored"),))] == 4  # low, then high
