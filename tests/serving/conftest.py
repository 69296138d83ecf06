"""Fixtures of the serving tests: the sample tape in fresh topics on the real broker, and apps reading them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from flask import Flask
from sample_panes import CREATED, Tape, Topics, build_tape, make_topics, produce

from serving import create_app, start_consumer

INVALID_RECORDS = [b"{not json", b'{"symbol": "AAPL"}', b'"a string"']


def app_config(bootstrap: str, topics: Topics, **extra: Any) -> dict[str, Any]:
    return {
        "BOOTSTRAP_SERVERS": bootstrap,
        "LIQUIDITY_TOPIC": topics.liquidity,
        "MARKET_TOPIC": topics.market,
        "ALERTS_TOPIC": topics.alerts,  # a name of its own (created or not), never the real darkpool.alerts
        "SSE_HEARTBEAT_SECONDS": 1.0,
        "LAG_CHECK_SECONDS": 1.0,
        "STALE_AFTER_SECONDS": 1e9,  # the tape is in the past; freshness is tested separately
        **extra,
    }


def wait_caught_up(app: Flask, timeout: float) -> None:
    """Wait until the app's consumer has caught up with its topics (its status says ready)."""
    consumer = app.extensions["darkpool"].consumer
    deadline = time.monotonic() + timeout
    while not consumer.status.ready:
        assert time.monotonic() < deadline, f"store did not catch up within {timeout:.0f} s"
        time.sleep(0.05)


@pytest.fixture(scope="session", autouse=True)
def _delete_test_topics() -> Iterator[None]:
    """Remove the topics the serving tests created, so the test broker does not collect them."""
    yield
    if CREATED:
        from darkpool.config import load_settings

        admin = AdminClient({"bootstrap.servers": load_settings().bootstrap_servers})  # keep it alive until done
        for future in admin.delete_topics(list(CREATED)).values():
            future.result(timeout=30)
        CREATED.clear()


@pytest.fixture(scope="session")
def tape() -> Tape:
    return build_tape()


@pytest.fixture(scope="session")
def loaded_topics(kafka_bootstrap: str, tape: Tape) -> Topics:
    """Session topics holding the whole sample tape (plus a few invalid records); never written again."""
    topics = make_topics(kafka_bootstrap)
    produce(kafka_bootstrap, topics, tape.liquidity, tape.market, raw_liquidity=INVALID_RECORDS)
    return topics


@pytest.fixture
def app_factory(kafka_bootstrap: str) -> Iterator[Callable[..., Flask]]:
    """Builds apps on given topics, starts their consumers, waits until ready, closes them afterwards."""
    apps: list[Flask] = []

    def build(topics: Topics, wait: bool = True, **extra: Any) -> Flask:
        app = create_app(app_config(kafka_bootstrap, topics, **extra))
        start_consumer(app)
        apps.append(app)
        if wait:
            wait_caught_up(app, 60)
        return app

    yield build
    for app in apps:
        app.extensions["darkpool"].close()


@pytest.fixture(scope="session")
def loaded_app(kafka_bootstrap: str, loaded_topics: Topics) -> Iterator[Flask]:
    """One app over the session topics, ready (shared by the read-only tests)."""
    app = create_app(app_config(kafka_bootstrap, loaded_topics))
    start_consumer(app)
    wait_caught_up(app, 60)
    yield app
    app.extensions["darkpool"].close()


@pytest.fixture
def client(loaded_app: Flask):
    return loaded_app.test_client()
