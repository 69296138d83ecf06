"""Helpers of the image tests: free ports, waiting, stopping servers started inside an image."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from local_ports import free_port  # noqa: F401 (the image tests take it from here)


def wait_until(condition: Callable[[], object], timeout: float, what: str, log: Path | None = None) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except (OSError, ValueError, grpc.RpcError):
            pass
        time.sleep(0.5)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log and log.exists() else ""
    raise AssertionError(f"{what} within {timeout:.0f} s\n{tail}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def session_pids(session: int) -> list[int]:
    """The live processes of a session: a server inside an image may put itself in a process group of
    its own (granian does), but it stays in the session `Container.popen` started."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session and fields[0] != "Z":  # after ") ": state, ppid, pgrp, session
            pids.append(int(entry.name))
    return pids


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop(process: subprocess.Popen) -> None:
    """Stop a server started with Container.popen and everything of its session, waiting for them to go."""
    pids = session_pids(process.pid)
    _signal_all(pids, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(30)
    deadline = time.monotonic() + 10
    while session_pids(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    _signal_all(session_pids(process.pid), signal.SIGKILL)
    if process.poll() is None:
        process.wait(10)


def inspect_archive(archive: Path) -> dict:
    """``skopeo inspect`` of an OCI archive: its manifest (layers) and, under "Config", its config
    (user, labels, entrypoint). skopeo reads and verifies both."""
    def skopeo(*flags: str) -> dict:
        done = subprocess.run(["skopeo", "inspect", *flags, f"oci-archive:{archive}"], capture_output=True,
                              text=True, check=True, timeout=300)
        return json.loads(done.stdout)

    info = skopeo()
    info["Config"] = skopeo("--config").get("config", {})
    return info
