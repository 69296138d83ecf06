"""The Flink REST client tells a busy JobManager (timeout: asked again) from a stopped one (refused)."""

from __future__ import annotations

import socket
import time

import pytest

from darkpool.config import load_settings
from darkpool.errors import DarkpoolError
from darkpool.stack import flink


def test_a_listener_that_never_answers_is_asked_again_then_reported_as_busy() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        settings = load_settings(flink_rest_port=server.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(flink.RestTimeout, match="did not answer within 0.3 s"):
            flink.rest_get(settings, "/overview", timeout=0.3, attempts=3)
        assert time.monotonic() - started >= 0.9  # three attempts of 0.3 s


def test_a_closed_port_is_reported_at_once_as_not_running() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(flink_rest_port=port)
    with pytest.raises(DarkpoolError, match="does not answer") as caught:
        flink.rest_get(settings, "/overview", timeout=5, attempts=3)
    assert not isinstance(caught.value, flink.RestTimeout)
    assert "darkpool stack up" in caught.value.hint
