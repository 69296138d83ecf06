"""`darkpool serve`: the serving app under a production WSGI server, granian (default) or gunicorn.

One worker process with threads: the store lives in the process, so more
worker processes would each hold (and rebuild) their own copy. The worker
builds the app after the fork with :func:`server_app`, which is also where the
Kafka consumer starts (``create_app`` starts nothing), so the consumer thread
runs where the requests are answered.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
from typing import Any

from flask import Flask

from darkpool import logs
from darkpool.config import load_settings
from darkpool.errors import DarkpoolError
from serving import config as serving_config
from serving import create_app, start_consumer

log = logging.getLogger(__name__)

SERVERS = ("granian", "gunicorn")
DEFAULT_SERVER = "granian"

# CLI flag -> serving setting (None means a server option, not an app setting)
FLAG_SETTINGS = {
    "bootstrap": "BOOTSTRAP_SERVERS",
    "liquidity_topic": "LIQUIDITY_TOPIC",
    "market_topic": "MARKET_TOPIC",
    "alerts_topic": "ALERTS_TOPIC",
    "retention_hours": "RETENTION_HOURS",
    "max_records": "MAX_RECORDS",
    "max_alerts": "MAX_ALERTS",
    "stale_after": "STALE_AFTER_SECONDS",
    "heartbeat": "SSE_HEARTBEAT_SECONDS",
    "max_stream_clients": "SSE_MAX_CLIENTS",
    "cors_origins": "CORS_ORIGINS",
    "static_dir": "STATIC_DIR",
}


def server_app(config: dict[str, Any] | None = None) -> Flask:
    """The app a server worker runs: built by create_app, then its Kafka consumer started.

    granian loads it as its factory (``serving.commands:server_app``, no arguments: the flag
    overrides arrive as DARKPOOL_* variables); gunicorn's worker calls it with the overrides."""
    logs.configure("serving")  # the worker's set-up (a forked worker has it already; a spawned one does not)
    app = create_app(config)
    start_consumer(app)
    return app


def register(subparsers: argparse._SubParsersAction) -> None:
    settings = load_settings()
    p = subparsers.add_parser(
        "serve", help=f"run the API and dashboard server ({DEFAULT_SERVER} by default, port {settings.serve_port})",
        description="Serve the REST API (/api/v1), the live stream, metrics and the dashboard from the pipeline's "
                    "output topics. Every option can also be set as an environment variable DARKPOOL_<SETTING> "
                    "(shown in brackets); flags win. See docs/serving.md.",
    )
    p.add_argument("--host", default=settings.host, help="address to bind [DARKPOOL_HOST] (default %(default)s)")
    p.add_argument("--port", type=int, default=settings.serve_port,
                   help="port to bind [DARKPOOL_SERVE_PORT] (default %(default)s)")
    p.add_argument("--threads", type=int, default=32,
                   help="request threads of the worker; each open stream holds one (default %(default)s)")
    p.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER,
                   help="production WSGI server: granian (Rust HTTP core, measured faster here) or gunicorn "
                        "(gthread); both run 1 worker process with threads (default %(default)s)")
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    help_of = {name: desc for name, (_, desc) in serving_config.SETTINGS.items()}
    types = {"retention_hours": float, "max_records": int, "max_alerts": int, "stale_after": float,
             "heartbeat": float, "max_stream_clients": int}
    for flag, setting in FLAG_SETTINGS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", type=types.get(flag, str), default=None,
                       help=f"{help_of[setting]} [DARKPOOL_{setting}]")
    p.set_defaults(func=run_serve)


def check_port_free(host: str, port: int) -> None:
    """Fail with a clear message when host:port cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DarkpoolError(f"port {port} on {host} is already in use",
                                    hint="stop what listens there, or pass --port / set DARKPOOL_SERVE_PORT") from exc
            raise DarkpoolError(f"cannot bind {host}:{port}: {exc.strerror}", hint="check --host") from exc


def app_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The app settings given as flags."""
    return {setting: getattr(args, flag) for flag, setting in FLAG_SETTINGS.items()
            if getattr(args, flag) is not None}


def close_app_services(_server: object, worker: object) -> None:
    """gunicorn hook: stop the consumer and end open streams when the worker exits."""
    app = getattr(worker, "wsgi", None)
    services = getattr(app, "extensions", {}).get("darkpool")
    if services is not None:
        services.close()


def run_serve(args: argparse.Namespace) -> int:
    from darkpool.stack.topics import check_reachable

    if not 1 <= args.port <= 65535:
        raise DarkpoolError(f"--port {args.port} is not a TCP port")
    if args.threads < 2:
        raise DarkpoolError("--threads must be at least 2 (streams hold a thread each)")
    overrides = app_overrides(args)
    probe = dict(serving_config.DEFAULTS) | serving_config.from_environ() | overrides
    serving_config.finalize(probe)  # fail fast on bad settings, before starting workers
    check_port_free(args.host, args.port)
    try:
        check_reachable(probe["BOOTSTRAP_SERVERS"], timeout=3.0)
    except DarkpoolError as exc:
        log.warning("%s; serving anyway, the consumer keeps retrying (/api/v1/ready is 503 until it connects)", exc)
    log.info("serving on http://%s:%d (%s, 1 worker process x %d threads), topics %s + %s + alerts %s from %s",
             args.host, args.port, args.server, args.threads, probe["LIQUIDITY_TOPIC"], probe["MARKET_TOPIC"],
             probe["ALERTS_TOPIC"] or "(not read)", probe["BOOTSTRAP_SERVERS"])
    if args.server == "granian":
        run_granian(args, overrides)
    else:
        run_gunicorn(args, overrides)
    return 0


def run_granian(args: argparse.Namespace, overrides: dict[str, Any]) -> None:
    """Granian (WSGI interface): the worker imports this module and calls server_app() itself, so
    the flag overrides travel as DARKPOOL_* environment variables."""
    from granian import Granian
    from granian.constants import Interfaces

    for setting, value in overrides.items():
        os.environ[f"DARKPOOL_{setting}"] = str(value)
    Granian(
        "serving.commands:server_app", factory=True, address=args.host, port=args.port, interface=Interfaces.WSGI,
        workers=1, blocking_threads=args.threads, backpressure=args.threads * 4, log_access=args.access_log,
        workers_kill_timeout=5, respawn_failed_workers=True,
        log_dictconfig=logs.server_dictconfig("_granian", "granian.access"),  # granian's lines in our format
    ).serve()


def run_gunicorn(args: argparse.Namespace, overrides: dict[str, Any]) -> None:
    """gunicorn with one gthread worker; the app is built in the worker after the fork."""
    from gunicorn.app.base import BaseApplication

    options = {
        "bind": f"{args.host}:{args.port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": args.threads,
        "worker_connections": 1000,
        "keepalive": 5,
        "timeout": 60,
        "graceful_timeout": 5,
        "accesslog": "-" if args.access_log else None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "darkpool-serve",
        "logconfig_dict": logs.server_dictconfig("gunicorn.error", "gunicorn.access"),  # in our format
        "worker_exit": close_app_services,
    }

    class ServingApplication(BaseApplication):
        """gunicorn application that builds the Flask app in the worker process."""

        def load_config(self) -> None:
            for key, value in options.items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self):  # noqa: ANN202 - gunicorn's signature
            return server_app(overrides)

    ServingApplication().run()
