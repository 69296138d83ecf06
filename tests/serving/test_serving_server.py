"""`darkpool serve` as a real process under each WSGI server (granian, gunicorn) on a free port, queried over HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from local_ports import free_port, wait_until_ready
from sample_panes import Topics, liquidity_record, make_topics, produce

DARKPOOL = str(Path(sys.executable).with_name("darkpool"))
COMPARED = ["/api/v1/windows/latest", "/api/v1/windows/current?symbol=NVDA", "/api/v1/market?sort=hhi",
            "/api/v1/market/MSFT", "/api/v1/symbols/AAPL/timeseries", "/api/v1/venues", "/api/v1/symbols",
            "/api/heatmap_data"]


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    wait_until_ready(base, lambda: proc.poll() is None,
                     lambda: f"darkpool serve exited with {proc.returncode}: {proc.stderr.read()}", timeout)


@pytest.fixture(scope="module")
def server_topics(kafka_bootstrap: str, tape) -> Topics:
    """The sample tape in topics of this module's own (the stream test writes to them)."""
    topics = make_topics(kafka_bootstrap)
    produce(kafka_bootstrap, topics, tape.liquidity, tape.market)
    return topics


@pytest.fixture(scope="module", params=["granian", "gunicorn"])
def server(request, kafka_bootstrap: str, server_topics: Topics) -> Iterator[tuple[str, subprocess.Popen]]:
    """`darkpool serve` under each production WSGI server in turn."""
    loaded_topics = server_topics
    port = free_port()
    proc = subprocess.Popen(
        [DARKPOOL, "serve", "--server", request.param, "--host", "127.0.0.1", "--port", str(port),
         "--bootstrap", kafka_bootstrap,
         "--liquidity-topic", loaded_topics.liquidity, "--market-topic", loaded_topics.market,
         "--heartbeat", "1", "--stale-after", "1000000000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def test_same_answers_as_the_app_in_process(server, client) -> None:
    base, _ = server
    for url in COMPARED:
        over_http = requests.get(base + url, timeout=5)
        assert over_http.status_code == 200, url
        assert over_http.json() == client.get(url).get_json(), url
        assert over_http.headers["Content-Security-Policy"].startswith("default-src 'self'")


def test_errors_and_metrics_over_http(server) -> None:
    base, _ = server
    bad = requests.get(f"{base}/api/v1/market?limit=5000", timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == 400
    assert requests.get(f"{base}/api/v1/market/ZZZZ", timeout=5).status_code == 404
    metrics = requests.get(f"{base}/metrics", timeout=5)
    assert metrics.status_code == 200 and "darkpool_serving_ready 1.0" in metrics.text


def test_dashboard_root(server) -> None:
    base, _ = server
    response = requests.get(base + "/", timeout=5)
    assert response.headers["Content-Type"].startswith("text/html")
    if response.status_code == 503:
        assert "has not been built" in response.text
    else:
        assert response.status_code == 200 and "<html" in response.text.lower()


def test_stream_over_http(server, kafka_bootstrap: str, server_topics: Topics) -> None:
    """A re-sent copy of a final pane reaches an HTTP stream client."""
    base, _ = server
    events: list[str] = []
    with requests.get(f"{base}/api/v1/stream?symbol=IBM", stream=True, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        record = liquidity_record(0, "IBM", "XNAS", 2, "LATE")  # same values as the stored LATE pane, newer
        timer = threading.Timer(0.5, produce, (kafka_bootstrap, server_topics, [record], []))
        timer.start()
        deadline = time.monotonic() + 30
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                events.append(line[7:])
            if "liquidity" in events or time.monotonic() > deadline:
                break
        timer.join()
    assert events[0] == "heartbeat" and "liquidity" in events


def stream_clients(base: str) -> float:
    metrics = requests.get(f"{base}/metrics", timeout=5).text
    return float(re.search(r"^darkpool_serving_stream_clients (\S+)$", metrics, re.M).group(1))


def wait_stream_clients(base: str, expected: int, timeout: float = 10) -> float:
    """The stream-client gauge once it equals ``expected`` (a disconnect is noticed at the next write)."""
    deadline = time.monotonic() + timeout
    while (count := stream_clients(base)) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return count


def test_disconnected_stream_client_is_released(server) -> None:
    base, _ = server
    assert wait_stream_clients(base, 0) == 0  # earlier tests' streams are gone
    response = requests.get(f"{base}/api/v1/stream", stream=True, timeout=10)
    assert response.status_code == 200
    lines = response.iter_lines()
    assert next(lines) == b"retry: 3000"
    clients = wait_stream_clients(base, 1)
    assert clients == 1, f"{clients} stream clients counted while a stream is open; it then sent {next(lines)!r}"
    response.close()
    assert wait_stream_clients(base, 0) == 0  # heartbeats every 1 s here


def test_port_in_use_is_a_clear_error(server) -> None:
    base, _ = server
    port = base.rsplit(":", 1)[1]
    result = subprocess.run([DARKPOOL, "serve", "--port", port], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_setting_is_a_clear_error() -> None:
    env = {**os.environ, "DARKPOOL_RETENTION_HOURS": "a day"}
    result = subprocess.run([DARKPOOL, "serve", "--port", str(free_port())], capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 1 and "DARKPOOL_RETENTION_HOURS='a day' is not a valid float" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("server_name", ["granian", "gunicorn"])
def test_sigterm_stops_the_server(kafka_bootstrap: str, loaded_topics: Topics, server_name: str) -> None:
    port = free_port()
    proc = subprocess.Popen([DARKPOOL, "serve", "--server", server_name, "--port", str(port),
                             "--bootstrap", kafka_bootstrap,
                             "--liquidity-topic", loaded_topics.liquidity, "--market-topic", loaded_topics.market],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_ready(f"http://127.0.0.1:{port}", proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    log = proc.stderr.read()
    assert "caught up" in log and "rebuilding the store" in log
