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


_FORKING_SERVER = """
import os, signal, socket, sys, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
if os.fork() == 0:  # a child that keeps the listening socket and takes 1.5 s to finish after SIGTERM
    signal.signal(signal.SIGTERM, lambda *_: (time.sleep(1.5), os._exit(0)))
else:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
while True:
    server.accept()[0].close()
"""


def test_stop_waits_for_the_group_and_its_port_so_a_start_right_after_binds_it(tmp_path: Path) -> None:
    """Like the worker pool: its leader exits at once on SIGTERM, a child still listens for a while."""
    from local_ports import free_port

    from darkpool.stack.process import group_members, port_open

    port = free_port()
    settings = load_settings(state_dir=tmp_path / "state")
    service = Service(name="forking", port=port, settings=settings, start_timeout=20,
                      command=lambda: [sys.executable, "-c", _FORKING_SERVER, str(port)],
                      ready=lambda: port_open("127.0.0.1", port))
    first = service.start().pid
    try:
        assert len(group_members(first)) == 2
        assert service.stop()
        assert not group_members(first) and not port_open("127.0.0.1", port)
        second = service.start().pid  # back to back: the port is free again
        assert second != first
    finally:
        service.stop()
