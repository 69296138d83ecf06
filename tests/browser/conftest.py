"""Fixtures of the browser tests: the real serving app (`darkpool serve`) on fresh
topics of the real broker, and Debian's Chromium driven by Playwright.

Every request the page makes is recorded, with its console messages and page
errors, so each test can assert that nothing left the machine. Screenshots go
to artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest
from browser_panes import Topics, build_session, make_topics, produce
from local_ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "artifacts"
STATIC_INDEX = REPO_ROOT / "serving" / "static" / "index.html"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
VIEWPORT = {"width": 1440, "height": 1000}


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class ServeProcess:
    """One `darkpool serve` process on its own port, logging to artifacts/browser/."""

    bootstrap: str
    topics: Topics
    port: int = field(default_factory=free_port)
    name: str = "serve"
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return ARTIFACTS / "browser" / f"{self.name}-{self.port}.log"

    def start(self, timeout: float = 90.0) -> ServeProcess:
        """Start the server and wait until /api/v1/ready answers 200 (store rebuilt from the topics)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            str(Path(sys.executable).with_name("darkpool")), "serve", "--port", str(self.port),
            "--bootstrap", self.bootstrap, "--liquidity-topic", self.topics.liquidity,
            "--market-topic", self.topics.market, "--threads", "16",
            *(("--alerts-topic", self.topics.alerts) if self.topics.alerts else ()), *self.extra_args,
        ]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"darkpool serve exited with {self.process.returncode}:\n{self.log_tail()}")
            if http_status(f"{self.url}/api/v1/ready") == 200:
                return self
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"darkpool serve was not ready within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group, gunicorn's graceful stop; SIGKILL if it hangs)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class PageLog:
    """What a page did: every request URL, console errors and uncaught page errors."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def external_requests(self) -> list[str]:
        """Requests to anything but this machine (data: and blob: URLs never leave the page)."""
        out = []
        for url in self.requests:
            parsed = urlparse(url)
            if parsed.scheme in ("data", "blob"):
                continue
            if parsed.hostname not in LOCAL_HOSTS:
                out.append(url)
        return out


@pytest.fixture(scope="session", autouse=True)
def dashboard_built() -> None:
    """The browser tests need the Vite build (make setup runs it)."""
    if not STATIC_INDEX.is_file():
        pytest.fail(f"{STATIC_INDEX} is missing: build the dashboard first (make setup, "
                    "or cd dashboard && npm ci && npm run build)")


@pytest.fixture(scope="session")
def session_topics(kafka_bootstrap: str) -> Topics:
    """Fresh topics holding 20 complete windows + the current one for six symbols, emitted now."""
    topics = make_topics(kafka_bootstrap)
    liquidity, market = build_session(int(time.time() * 1000))
    produce(kafka_bootstrap, topics, liquidity, market)
    return topics


@pytest.fixture(scope="session")
def server(kafka_bootstrap: str, session_topics: Topics) -> Iterator[ServeProcess]:
    """A `darkpool serve` shared by the tests that do not stop it."""
    proc = ServeProcess(kafka_bootstrap, session_topics, name="serve-shared").start()
    yield proc
    proc.stop()


@pytest.fixture
def server_factory(kafka_bootstrap: str) -> Iterator[Callable[..., ServeProcess]]:
    """Start extra servers (a test may stop them); all are stopped afterwards."""
    started: list[ServeProcess] = []

    def start(topics: Topics, **kwargs) -> ServeProcess:
        proc = ServeProcess(kafka_bootstrap, topics, **kwargs).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def browser():
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make setup does)")
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page_and_log(browser):
    """A fresh page (own context) and the log of everything it requests or reports."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    log = PageLog()
    page.on("request", lambda request: log.requests.append(request.url))
    page.on("console", lambda msg: log.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: log.page_errors.append(str(exc)))
    yield page, log
    context.close()

