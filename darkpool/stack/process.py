"""Local services as plain background processes: start, wait until ready, stop, status.

Each service has a pid file and a log file under the state folder. Starting
checks the port first (a taken port is reported with who to blame and how to
fix it), waits until the service answers, and reports the log's tail when the
process dies during start. Stopping sends SIGTERM to the process group, then
SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from darkpool.config import Settings
from darkpool.errors import DarkpoolError

log = logging.getLogger(__name__)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux; 32768-60999 when unknown)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def port_bindable(host: str, port: int) -> bool:
    """True when a listening socket could bind host:port now (SO_REUSEADDR, like the servers we start).

    A port can be free of listeners and still taken: an outgoing connection the kernel gave that local
    port (only inside :func:`ephemeral_port_range`) blocks a server from binding it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when a GET on url answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback only)
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid`` (Linux /proc)."""
    members = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text(encoding="ascii", errors="replace").rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[0] != "Z" and fields[2] == str(pgid):
            members.append(int(stat_file.parent.name))
    return members


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def java_executable() -> str:
    """The `java` to use: $JAVA_HOME/bin/java, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and Path(java_home, "bin", "java").exists():
        return str(Path(java_home, "bin", "java"))
    java = shutil.which("java")
    if not java:
        raise DarkpoolError("Java is not installed (no `java` on PATH and no JAVA_HOME).",
                            hint="install a Java 17 runtime, e.g. `apt-get install -y openjdk-17-jre-headless`")
    return java


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        content = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in content[-lines:])


@dataclass
class ServiceStatus:
    name: str
    port: int
    pid: int | None
    running: bool
    answering: bool
    detail: str = ""
    log_file: Path | None = None


@dataclass
class Service:
    """A local background process with a pid file, a log file and a readiness probe.

    ``command`` builds the argv (called at start, so it may prepare config
    files); ``ready`` returns True once the service answers. ``code_files``
    lists the files the process loads at start (its jars): when one is newer
    than the running process, the process runs stale code and ``start``
    restarts it.
    """

    name: str
    port: int
    settings: Settings
    command: Callable[[], Sequence[str]]
    ready: Callable[[], bool]
    description: str = ""
    env: Callable[[], dict[str, str]] = field(default=lambda: {})
    start_timeout: float = 120.0
    stop_timeout: float = 30.0
    extra_ports: Sequence[int] = ()
    owns_port: bool = True  # False for a process reached through another's port (the TaskManager)
    settle_seconds: float = 0.0  # for a process without a port: how long it must stay up to count as started
    code_files: Callable[[], Iterable[Path]] = field(default=lambda: ())

    @property
    def pid_file(self) -> Path:
        return self.settings.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.settings.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def status(self) -> ServiceStatus:
        pid = self.pid()
        if pid:
            answering = self.ready()
            detail = ""
        else:
            answering = self.owns_port and port_open(self.settings.host, self.port)
            detail = "port answers but not started by darkpool" if answering else ""
        return ServiceStatus(self.name, self.port, pid, pid is not None, answering and pid is not None,
                             detail, self.log_file)

    def stale_code(self) -> Path | None:
        """The newest of ``code_files`` when it changed after the running process started, else None."""
        if self.pid() is None:
            return None
        try:
            started = self.pid_file.stat().st_mtime  # written right after the process was spawned
        except OSError:
            return None
        newest: tuple[float, Path] | None = None
        for path in self.code_files():
            with contextlib.suppress(OSError):  # a jar may vanish while `make setup` recopies them
                modified = path.stat().st_mtime
                if modified > started and (newest is None or modified > newest[0]):
                    newest = (modified, path)
        return newest[1] if newest is not None else None

    def start(self) -> ServiceStatus:
        """Start the process unless it already runs current code; wait until it answers."""
        pid = self.pid()
        stale = self.stale_code()
        if stale is not None:
            log.warning("restarting %s (pid %d): %s changed after it started", self.name, pid, stale)
            self.stop()
            pid = None
        if pid is not None:
            log.info("%s already running (pid %d)", self.name, pid)
            self._wait_ready(pid)
            return self.status()
        for port in ((self.port,) if self.owns_port else ()) + tuple(self.extra_ports):
            if port_open(self.settings.host, port):
                raise DarkpoolError(
                    f"cannot start {self.name}: port {self.settings.host}:{port} is already in use "
                    "by another process",
                    hint=f"stop whatever listens there (`ss -ltnp | grep :{port}`) or choose another port "
                         "with the DARKPOOL_*_PORT environment variables")
            if not port_bindable(self.settings.host, port):
                low, high = ephemeral_port_range()
                cause = (f"an outgoing connection holds it (it lies in the kernel's ephemeral range {low}-{high}, "
                         "so any client can be given it)" if low <= port <= high else "another socket holds it")
                raise DarkpoolError(
                    f"cannot start {self.name}: port {self.settings.host}:{port} cannot be bound: {cause}",
                    hint=f"see who holds it (`ss -tanp | grep :{port}`) or choose a port below {low} "
                         "with the DARKPOOL_*_PORT environment variables")
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        argv = list(self.command())
        env = {**os.environ, **self.env()}
        log.info("starting %s: log %s", self.name, self.log_file)
        log.debug("%s argv: %s", self.name, " ".join(argv))
        with open(self.log_file, "ab") as log_out:
            log_out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            log_out.flush()
            process = subprocess.Popen(argv, stdout=log_out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, cwd=self.settings.state_dir, start_new_session=True)
        self.pid_file.write_text(str(process.pid))
        self._wait_ready(process.pid, process)
        log.info("%s is up on port %d (pid %d)", self.name, self.port, process.pid)
        return self.status()

    def _wait_ready(self, pid: int, process: subprocess.Popen | None = None) -> None:
        started = time.monotonic()
        deadline = started + self.start_timeout
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None or not pid_alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise DarkpoolError(
                    f"{self.name} exited during start-up; last lines of its log {self.log_file}:\n"
                    f"{log_tail(self.log_file)}",
                    hint=f"read the whole log: {self.log_file}")
            if self.ready() and time.monotonic() - started >= self.settle_seconds:
                return
            time.sleep(0.5)
        raise DarkpoolError(
            f"{self.name} (pid {pid}) did not become ready within {self.start_timeout:.0f} s; "
            f"last lines of {self.log_file}:\n{log_tail(self.log_file)}",
            hint=f"`darkpool stack status`, and the log {self.log_file}")

    def stop(self) -> bool:
        """Stop the process group; True when something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        log.info("stopping %s (pid %d)", self.name, pid)
        self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
        # the group's other processes (the worker pool's SDK workers, a shell's children) and the port
        # must be gone too, so that a start right after this one can bind it
        ports = ((self.port,) if self.owns_port else ()) + tuple(self.extra_ports)
        while time.monotonic() < deadline and (
                group_members(pid) or any(port_open(self.settings.host, port) for port in ports)):
            time.sleep(0.2)
        if pid_alive(pid) or group_members(pid):
            log.warning("%s did not stop within %.0f s, killing it", self.name, self.stop_timeout)
            self._signal(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5.0
            while time.monotonic() < kill_deadline and group_members(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL the service at once (fault-injection tests)."""
        pid = self.pid()
        if pid is not None:
            self._signal(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.1)
            self.pid_file.unlink(missing_ok=True)

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
