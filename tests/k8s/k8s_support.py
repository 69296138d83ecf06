"""Helpers shared by the Kubernetes tests."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.3) -> object:
    """Poll until condition() is truthy; its value, or a failed test naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"within {timeout:.0f} s: {what}")
