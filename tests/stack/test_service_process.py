"""A managed service restarts when the code it loaded changed after it started (real processes)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from darkpool.config import load_settings
from darkpool.stack.process import Service, pid_alive


@pytest.fixture
def sleeper(tmp_path: Path):
    """A long-running process whose 'code' is one jar-like file under tmp_path."""
    settings = load_settings(state_dir=tmp_path / "state")
    settings.state_dir.mkdir(parents=True)
    code = tmp_path / "service.jar"
    code.write_bytes(b"v1")
    old = time.time() - 60
    os.utime(code, (old, old))
    service = Service(name="sleeper", port=0, settings=settings, owns_port=False, settle_seconds=0.5,
                      command=lambda: [sys.executable, "-c", "import time; time.sleep(120)"],
                      ready=lambda: True, code_files=lambda: [code], start_timeout=20)
    yield service, code
    service.stop()


def test_running_service_with_current_code_is_kept(sleeper) -> None:
    service, _ = sleeper
    first = service.start().pid
    assert service.stale_code() is None
    assert service.start().pid == first


def test_service_restarts_when_its_code_changed_after_start(sleeper) -> None:
    service, code = sleeper
    first = service.start().pid
    time.sleep(0.05)
    code.write_bytes(b"v2")  # a rebuilt jar: modified after the process started
    assert service.stale_code() == code

    second = service.start().pid
    assert second != first
    assert not pid_alive(first)
    assert service.stale_code() is None


def test_stopped_service_is_never_stale(sleeper) -> None:
    service, code = sleeper
    later = time.time() + 5
    os.utime(code, (later, later))
    assert service.stale_code() is None
