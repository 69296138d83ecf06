"""A managed service restarts when the code it loaded changed after it started (real processes)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from darkpool.config import load_settings
from darkpool.errors import DarkpoolError
from darkpool.stack.process import Service, pid_alive
from pipeline.commands import check_beam_services_current


def sleeper_service(settings, name: str, code: Path) -> Service:
    """A long-running real process named ``name`` whose 'code' is the jar-like file ``code``."""
    return Service(name=name, port=0, settings=settings, owns_port=False, settle_seconds=0.5,
                   command=lambda: [sys.executable, "-c", "import time; time.sleep(120)"],
                   ready=lambda: True, code_files=lambda: [code], start_timeout=20)


def old_jar(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"v1")
    old = time.time() - 60
    os.utime(path, (old, old))
    return path


@pytest.fixture
def sleeper(tmp_path: Path):
    settings = load_settings(state_dir=tmp_path / "state")
    settings.state_dir.mkdir(parents=True)
    code = old_jar(tmp_path / "service.jar")
    service = sleeper_service(settings, "sleeper", code)
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


def test_run_refuses_a_beam_service_older_than_its_jars(tmp_path: Path) -> None:
    """`darkpool run` checks the running expansion service against the jars in .cache/jvm/beam."""
    settings = load_settings(home=tmp_path, state_dir=tmp_path / "state")
    settings.state_dir.mkdir(parents=True)
    jar = old_jar(settings.jvm_lib_dir / "beam" / "darkpool-transforms-1.0.0.jar")
    service = sleeper_service(settings, "beam-expansion-service", jar)  # the pid file the check reads
    try:
        service.start()
        check_beam_services_current(settings)  # current: no error
        time.sleep(0.05)
        jar.write_bytes(b"v2")  # `make setup` rebuilt the project's transforms
        with pytest.raises(DarkpoolError, match="beam-expansion-service runs older code than .*darkpool-transforms"):
            check_beam_services_current(settings)
    finally:
        service.stop()
