"""The CLI fails with a clear message and a hint, never a stack trace."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

DARKPOOL = [sys.executable, "-m", "console.cli"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*DARKPOOL, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_every_subcommand_has_help() -> None:
    for command in ("kafka", "flink", "beam", "stack", "topics"):
        result = run_cli(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage: darkpool" in result.stdout


def test_port_in_use_is_reported_with_a_hint(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        result = run_cli("kafka", "start", env={"DARKPOOL_KAFKA_PORT": str(port),
                                                "DARKPOOL_STATE_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert f"port 127.0.0.1:{port} is already in use" in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_broker_is_reported(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    result = run_cli("topics", "--bootstrap", f"127.0.0.1:{closed_port}")
    assert result.returncode == 1
    assert f"no Kafka broker answers at 127.0.0.1:{closed_port}" in result.stderr
    assert "darkpool kafka start" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_java_is_reported(tmp_path: Path) -> None:
    env = {"PATH": str(Path(sys.executable).parent) + ":/nonexistent", "JAVA_HOME": "",
           "DARKPOOL_STATE_DIR": str(tmp_path), "DARKPOOL_KAFKA_PORT": "29192",
           "DARKPOOL_KAFKA_CONTROLLER_PORT": "29193"}
    result = run_cli("kafka", "start", env=env)
    assert result.returncode == 1
    assert "Java is not installed" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_of_a_stopped_stack(tmp_path: Path) -> None:
    result = run_cli("stack", "status", env={"DARKPOOL_STATE_DIR": str(tmp_path),
                                             "DARKPOOL_KAFKA_PORT": "29292", "DARKPOOL_FLINK_REST_PORT": "29281",
                                             "DARKPOOL_JOB_SERVER_PORT": "29299", "DARKPOOL_EXPANSION_PORT": "29297",
                                             "DARKPOOL_WORKER_POOL_PORT": "29200"})
    assert result.returncode == 3
    states = [line.split()[3] for line in result.stdout.splitlines()[1:7]]
    assert states == ["stopped"] * 6
