"""Free loopback ports for tests' own servers, below the kernel's ephemeral range.

A port the kernel hands out for ``bind(0)`` lies in the ephemeral range (32768-60999), where any
client connection may be given it as its local port between the probe and the server's bind; a port
below the range is only ever taken by a listener. The test stack's fixed ports (tests/conftest.py)
lie in 12000-21000, so these come from 22000-32000.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from darkpool.stack.process import ephemeral_port_range, port_bindable, port_open

_LOW, _HIGH = 22_000, 32_000
_given: set[int] = set()
_draw = random.Random()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on and a server can bind now, never the same twice in one test run."""
    high = min(_HIGH, ephemeral_port_range()[0] - 1)
    for _ in range(1000):
        port = _draw.randrange(_LOW, high)
        if port not in _given and port_bindable(host, port) and not port_open(host, port):
            _given.add(port)
            return port
    raise RuntimeError(f"no free port in {_LOW}-{high}")


def wait_until_ready(base: str, alive: Callable[[], bool], why: Callable[[], str], timeout: float = 60) -> None:
    """Wait until the server at ``base`` answers ``/api/v1/ready`` with 200; fail with ``why()`` when
    ``alive()`` turns false or the timeout passes."""
    import requests  # noqa: PLC0415 (only the serving tests need it)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert alive(), why()
        try:
            if requests.get(f"{base}/api/v1/ready", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base} did not become ready within {timeout:.0f} s: {why()}")
