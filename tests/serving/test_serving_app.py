"""create_app builds the app and starts nothing; the consumer starts where the server starts."""

from __future__ import annotations

import socket
import threading

from serving import create_app, start_consumer
from serving.commands import server_app

CONSUMER_THREAD = "darkpool-pane-consumer"


def unused_bootstrap() -> str:
    """A loopback address where nothing listens (the consumer only has to exist, not connect)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def consumer_threads() -> set[threading.Thread]:
    """The live consumer threads (other tests' session apps may own some: compare before and after)."""
    return {t for t in threading.enumerate() if t.name == CONSUMER_THREAD}


def test_create_app_starts_no_thread() -> None:
    before = set(threading.enumerate())
    app = create_app({"BOOTSTRAP_SERVERS": unused_bootstrap()})
    assert app.extensions["darkpool"].consumer is not None, "the consumer is built..."
    assert set(threading.enumerate()) - before == set(), "...but create_app starts no thread"
    assert app.test_client().get("/api/v1/ready").status_code == 503
    app.extensions["darkpool"].close()


def test_start_consumer_starts_one_thread_and_close_stops_it() -> None:
    others = consumer_threads()
    app = create_app({"BOOTSTRAP_SERVERS": unused_bootstrap()})
    assert consumer_threads() == others
    start_consumer(app)
    start_consumer(app)  # twice is harmless
    assert len(consumer_threads() - others) == 1
    app.extensions["darkpool"].close()
    assert consumer_threads() == others


def test_the_server_factory_starts_the_consumer() -> None:
    others = consumer_threads()
    app = server_app({"BOOTSTRAP_SERVERS": unused_bootstrap()})
    try:
        assert len(consumer_threads() - others) == 1
    finally:
        app.extensions["darkpool"].close()
    assert consumer_threads() == others


def test_a_disabled_consumer_is_neither_built_nor_started() -> None:
    others = consumer_threads()
    app = server_app({"BOOTSTRAP_SERVERS": unused_bootstrap(), "CONSUMER_ENABLED": False})
    assert app.extensions["darkpool"].consumer is None and consumer_threads() == others
