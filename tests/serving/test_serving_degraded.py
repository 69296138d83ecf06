"""The consumer's degraded state: a broker that does not answer, and one that does.

The broker restart itself (degraded while the real broker is down, ok after, no
pane missing) is tests/pipeline/test_flink_broker_restart.py; here the consumer
meets a loopback port where nothing listens (degraded, with a reason and a
since-time, never ready) and the test broker (ok once it answers), and the
filter that keeps librdkafka's retry lines from flooding the log is checked alone.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from test_serving_app import unused_bootstrap

from serving import create_app, start_consumer
from serving.consumer import RepeatFilter


def wait_state(consumer, state: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while (health := consumer.health())["state"] != state:
        assert time.monotonic() < deadline, f"still {health} after {timeout:.0f} s"
        time.sleep(0.1)
    return health


def test_an_unreachable_broker_means_degraded_with_a_reason_and_a_since_time() -> None:
    before = dt.datetime.now(dt.UTC)
    app = create_app({"BOOTSTRAP_SERVERS": unused_bootstrap(), "LAG_CHECK_SECONDS": 1.0})
    consumer = app.extensions["darkpool"].consumer
    try:
        initial = consumer.health()["reason"]
        start_consumer(app)
        # the consumer itself finds the broker missing: its reason moves on from the initial one (the
        # metadata request times out after 5 s)
        deadline = time.monotonic() + 20
        while (health := consumer.health())["reason"] == initial:
            assert time.monotonic() < deadline, f"the consumer never noticed the missing broker: {health}"
            time.sleep(0.2)
        assert health["state"] == "degraded", health
        assert health["reason"].startswith(("Kafka error", "broker unreachable", "no answer from the broker")), health
        assert consumer.status.error, consumer.status
        since = dt.datetime.fromisoformat(health["since"].replace("Z", "+00:00"))
        assert before - dt.timedelta(seconds=1) <= since <= dt.datetime.now(dt.UTC)
        assert consumer.status.ready is False and consumer.status.connected is False
        assert consumer.status.outages == 0, "never connected: not an outage"
    finally:
        app.extensions["darkpool"].close()


def test_a_broker_that_answers_means_ok(kafka_bootstrap: str, app_factory) -> None:
    from sample_panes import make_topics

    app = app_factory(make_topics(kafka_bootstrap))
    consumer = app.extensions["darkpool"].consumer
    health = wait_state(consumer, "ok", 30)
    assert health["reason"] is None and health["since"], health
    assert consumer.status.outages == 0 and consumer.status.degraded_total_s == 0.0


def _record(text: str) -> logging.LogRecord:
    return logging.LogRecord("serving.rdkafka", logging.ERROR, __file__, 1, text, (), None)


def test_repeated_library_lines_pass_once_per_interval_and_say_how_many_went() -> None:
    flt = RepeatFilter(interval=0.3)
    refused = "FAIL: Connect to ipv4#127.0.0.1:19092 failed: Connection refused"
    assert flt.filter(_record(refused))
    assert not any(flt.filter(_record(refused)) for _ in range(5))
    assert flt.filter(_record("another line")), "a different line is not held back"
    time.sleep(0.35)
    again = _record(refused)
    assert flt.filter(again)
    assert again.getMessage().startswith(refused) and "(5 identical line(s)" in again.getMessage()
