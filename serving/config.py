"""Serving configuration in one place.

Every setting has a default (below), can be overridden by an environment
variable ``DARKPOOL_<NAME>`` (e.g. ``DARKPOOL_RETENTION_HOURS=6``), then by an
instance file ``serving.cfg`` in the Flask instance folder, then by the mapping
passed to :func:`serving.create_app` (tests) or the ``darkpool serve`` flags.

The Kafka bootstrap default follows the stack's own settings
(``DARKPOOL_HOST`` / ``DARKPOOL_KAFKA_PORT``), so serving points at the local
broker without extra configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from darkpool.config import load_settings
from darkpool.contracts import ALERTS_TOPIC, LIQUIDITY_TOPIC, MARKET_TOPIC, PIPELINE_GROUP_ID, TRADES_TOPIC
from darkpool.errors import DarkpoolError

STATIC_DIR = Path(__file__).resolve().parent / "static"

# name -> (default, description); the description is reused by docs and --help.
SETTINGS: dict[str, tuple[Any, str]] = {
    "BOOTSTRAP_SERVERS": (None, "Kafka bootstrap servers (default: the local stack's broker)"),
    "LIQUIDITY_TOPIC": (LIQUIDITY_TOPIC, "topic of per-(window, symbol, venue) panes"),
    "MARKET_TOPIC": (MARKET_TOPIC, "topic of per-(window, symbol) market panes"),
    "ALERTS_TOPIC": (ALERTS_TOPIC, "topic of the pipeline's live alerts (a missing topic means no alerts yet); "
                                   "empty = alerts not read"),
    "CONSUMER_ENABLED": (True, "build the background Kafka consumer (the server process starts it)"),
    "CONSUMER_BATCH_SIZE": (1000, "records consumed per batch (one store snapshot per batch)"),
    "CONSUMER_POLL_SECONDS": (0.25, "longest wait for a batch; bounds how stale a pane can be"),
    "LAG_CHECK_SECONDS": (5.0, "how often the consumer asks the broker for end offsets (lag); /metrics' lag "
                               "series are cached as long"),
    "PIPELINE_GROUP": (PIPELINE_GROUP_ID, "the pipeline's Kafka consumer group (its --group-id), whose lag "
                                            "/metrics reports; empty = not reported"),
    "TRADES_TOPIC": (TRADES_TOPIC, "the trades topic the pipeline's group reads (its lag is on /metrics)"),
    "RETENTION_HOURS": (24.0, "history kept: windows ending within this many hours of the newest window (panes "
                              "and alerts alike)"),
    "MAX_RECORDS": (300_000, "hard cap on stored liquidity + market panes; oldest windows go first"),
    "MAX_ALERTS": (50_000, "hard cap on stored alerts (RETENTION_HOURS bounds them too); oldest windows go first"),
    "STALE_AFTER_SECONDS": (120.0, "data is 'stale' when the newest emitted_at is older than this"),
    "SSE_HEARTBEAT_SECONDS": (10.0, "interval of 'heartbeat' events on the stream"),
    "SSE_QUEUE_SIZE": (5000, "events buffered per stream client; a client that falls further behind is dropped"),
    "SSE_MAX_CLIENTS": (16, "concurrent stream clients (each holds a server thread)"),
    "CORS_ORIGINS": ("", "comma-separated origins allowed by CORS, or '*'; empty = CORS off"),
    "STATIC_DIR": (str(STATIC_DIR), "folder of the built dashboard (Vite output)"),
    "RESPONSE_CACHE_SIZE": (512, "serialized responses cached per store version"),
}

DEFAULTS: dict[str, Any] = {name: default for name, (default, _) in SETTINGS.items()}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(name: str, raw: str, default: Any) -> Any:
    """Parse an environment string into the type of the setting's default."""
    try:
        if isinstance(default, bool):
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError as exc:
        raise DarkpoolError(
            f"DARKPOOL_{name}={raw!r} is not a valid {type(default).__name__}",
            hint=f"fix or unset the environment variable DARKPOOL_{name}",
        ) from exc
    return raw


def from_environ(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings given as ``DARKPOOL_<NAME>`` environment variables, typed."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, default in DEFAULTS.items():
        raw = environ.get(f"DARKPOOL_{name}")
        if raw is not None:
            values[name] = _convert(name, raw, default)
    return values


def finalize(config: dict[str, Any]) -> None:
    """Fill derived defaults and check ranges; raises DarkpoolError on a bad value."""
    if not config.get("BOOTSTRAP_SERVERS"):
        config["BOOTSTRAP_SERVERS"] = load_settings().bootstrap_servers
    positive = ("CONSUMER_BATCH_SIZE", "CONSUMER_POLL_SECONDS", "LAG_CHECK_SECONDS", "RETENTION_HOURS",
                "MAX_RECORDS", "MAX_ALERTS", "STALE_AFTER_SECONDS", "SSE_HEARTBEAT_SECONDS", "SSE_QUEUE_SIZE",
                "SSE_MAX_CLIENTS", "RESPONSE_CACHE_SIZE")
    for name in positive:
        value = config.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise DarkpoolError(f"serving setting {name}={value!r} must be a positive number",
                                hint=f"set DARKPOOL_{name} or the matching darkpool serve flag")
    for name in ("LIQUIDITY_TOPIC", "MARKET_TOPIC"):
        if not config.get(name):
            raise DarkpoolError(f"serving setting {name} is empty", hint=f"set DARKPOOL_{name}")
    topics = [config[name] for name in ("LIQUIDITY_TOPIC", "MARKET_TOPIC", "ALERTS_TOPIC") if config.get(name)]
    if len(set(topics)) < len(topics):
        raise DarkpoolError(f"serving reads one topic for two kinds of record: {', '.join(topics)}",
                            hint="give LIQUIDITY_TOPIC, MARKET_TOPIC and ALERTS_TOPIC different topics")


def cors_origins(config: Mapping[str, Any]) -> frozenset[str]:
    """The configured CORS origins as a set ('*' means any)."""
    raw = config.get("CORS_ORIGINS") or ""
    if isinstance(raw, list | tuple | set | frozenset):
        return frozenset(str(o).strip() for o in raw if str(o).strip())
    return frozenset(o.strip() for o in str(raw).split(",") if o.strip())
