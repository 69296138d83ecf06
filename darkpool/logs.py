"""One logging set-up for every process: structured lines with the service, the job and the record position.

Every process of the product calls :func:`configure` once at start (the CLI for
every ``darkpool`` command, hence the feed, ``darkpool serve`` and the
pipeline's driver ``darkpool run``; the Python worker pool; ``python -m
pipeline.main``). It puts one handler on the root logger, so every module's
``logging.getLogger(__name__)`` and the libraries' loggers (librdkafka through
confluent-kafka, granian) come out in the same format.

Format: one record per line, in one of two encodings chosen by
``DARKPOOL_LOG_FORMAT`` (:class:`darkpool.config.Settings` ``log_format``):

``text`` (default), *logfmt* key=value pairs::

    ts=2026-12-01T17:02:11.532Z level=warning service=serving logger=serving.consumer \
msg="consumer: invalid record skipped" topic=darkpool.liquidity partition=0 offset=17 reason="..."

``json``, one JSON object per line (JSON lines) with the same keys.

Why logfmt by default: a person reads it at a terminal or in ``darkpool stack
status``'s log tails as easily as the old ``asctime level name: message``
lines, and a machine parses it without guessing (Loki's ``logfmt`` stage,
``grep 'offset=17'``, :func:`parse_line`): values with spaces, quotes or
newlines are quoted and escaped, so a traceback stays on its one line and no
record splits across lines. JSON lines is there for log shippers that want
typed fields (Elasticsearch, Vector, ``jq``): partition and offset stay numbers.

Keys, in this order: ``ts`` (UTC, ms), ``level``, ``service`` (feed, serving,
pipeline, worker-pool, cli), ``job`` (the pipeline job's name, where there is
one), ``logger``, ``msg``, then every field given with ``extra=`` (a record's
position: :func:`kafka_position` gives ``topic``/``partition``/``offset``,
:func:`file_position` ``file``/``line``), then ``exc`` (a traceback).
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from darkpool.errors import DarkpoolError

LOG_FORMATS = ("text", "json")
LEVEL_NAMES = {"WARNING": "warning", "CRITICAL": "critical", "ERROR": "error", "INFO": "info", "DEBUG": "debug"}
HEAD_KEYS = ("ts", "level", "service", "job", "logger", "msg")  # always first, in this order (job when set)

# the attributes every LogRecord has: anything else on a record came in through ``extra=`` (or a filter)
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None))) | {
    "message", "asctime", "taskName", "service", "job"}
_BARE_VALUE = re.compile(r'[^\s"=\\]+')
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
_PAIR = re.compile(r'\s*([^\s=]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)')


# -- record positions, for extra= -------------------------------------------------------------------------
def kafka_position(topic: str, partition: int, offset: int) -> dict[str, Any]:
    """The ``extra=`` fields naming a Kafka record: topic, partition, offset."""
    return {"topic": topic, "partition": int(partition), "offset": int(offset)}


def file_position(path: object, line: int) -> dict[str, Any]:
    """The ``extra=`` fields naming a row of a trade file: file, line (1-based, as the reader numbers them)."""
    return {"file": str(path), "line": int(line)}


# -- formatting ---------------------------------------------------------------------------------------------
def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """A log record as ordered fields: ts, level, service, job (if set), logger, msg, extras, exc."""
    fields: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        "level": LEVEL_NAMES.get(record.levelname, record.levelname.lower()),
        "service": getattr(record, "service", None) or "-",
    }
    job = getattr(record, "job", None)
    if job:
        fields["job"] = job
    fields["logger"] = record.name
    fields["msg"] = record.getMessage()
    for key, value in vars(record).items():
        if key not in _STANDARD_ATTRS and not key.startswith("_") and key not in fields:
            fields[key] = value
    if record.exc_info:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    elif record.exc_text:
        fields["exc"] = record.exc_text
    if record.stack_info:
        fields["stack"] = record.stack_info
    return fields


def format_value(value: object) -> str:
    """One logfmt value: bare when it has no space, quote, '=' or backslash; else quoted and escaped."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = value if isinstance(value, str) else str(value)
    if _BARE_VALUE.fullmatch(text):
        return text
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in text) + '"'


def format_keyvalue(fields: Mapping[str, Any]) -> str:
    """Fields as one logfmt line (keys made safe: letters, digits, '_', '.', '-')."""
    return " ".join(f"{_KEY_UNSAFE.sub('_', str(key)) or '_'}={format_value(value)}" for key, value in fields.items())


class KeyValueFormatter(logging.Formatter):
    """``text``: logfmt key=value, one record per line."""

    def format(self, record: logging.LogRecord) -> str:
        return format_keyvalue(record_fields(record))


class JsonFormatter(logging.Formatter):
    """``json``: one JSON object per line (numbers stay numbers; NaN/Infinity and anything else not JSON are
    written as their str)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {key: _json_safe(value) for key, value in record_fields(record).items()}
        return json.dumps(fields, default=str, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def formatter(fmt: str) -> logging.Formatter:
    """The formatter of a ``DARKPOOL_LOG_FORMAT`` value."""
    fmt = (fmt or "text").strip().lower()
    if fmt == "text":
        return KeyValueFormatter()
    if fmt == "json":
        return JsonFormatter()
    raise DarkpoolError(f"DARKPOOL_LOG_FORMAT={fmt!r} is not a log format",
                        hint=f"use one of: {', '.join(LOG_FORMATS)}")


# -- parsing (tests, tools) ---------------------------------------------------------------------------------
def parse_keyvalue(line: str) -> dict[str, str]:
    """A logfmt line back into its fields (values as strings); ValueError when it is not one."""
    line = line.rstrip("\n")
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(line):
        match = _PAIR.match(line, pos)
        if match is None:
            if line[pos:].strip():
                raise ValueError(f"not a key=value line at column {pos}: {line!r}")
            break
        key, raw = match.group(1), match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", lambda m: _UNESCAPES.get(m.group(1), m.group(1)), raw[1:-1])
        fields[key] = raw
        pos = match.end()
    if not fields or "ts" not in fields or "level" not in fields or "msg" not in fields:
        raise ValueError(f"not a darkpool log line: {line!r}")
    return fields


def parse_line(line: str) -> dict[str, Any]:
    """One log line of either format (a JSON object or logfmt) into its fields; ValueError otherwise."""
    text = line.strip()
    if text.startswith("{"):
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON log line: {line!r}") from exc
        if not isinstance(fields, dict) or not {"ts", "level", "msg"} <= fields.keys():
            raise ValueError(f"not a darkpool log line: {line!r}")
        return fields
    return parse_keyvalue(text)


# -- the set-up ---------------------------------------------------------------------------------------------
# the service a `darkpool COMMAND` process is, for the ``service`` field; other commands are ``cli``
COMMAND_SERVICES = {"feed": "feed", "serve": "serving", "run": "pipeline", "demo": "demo"}


def command_context(command: str, job: object = None) -> dict[str, Any]:
    """:func:`configure`'s keyword arguments for a ``darkpool COMMAND`` process: its service, the job it names
    (``darkpool run --job-name``, ``darkpool jobs resume NAME``), and ``command`` for the plain CLI commands."""
    service = COMMAND_SERVICES.get(command, "cli")
    context: dict[str, Any] = {"service": service, "job": job if isinstance(job, str) and job else None}
    if service == "cli":
        context["command"] = command
    return context


# ----------------------------------------------------------------------------------------------
class ContextFilter(logging.Filter):
    """Stamps every record with the process's service, job and static fields (a record's own win)."""

    def __init__(self, service: str, job: str | None = None, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.service, self.job = service, job
        self.fields = dict(fields or {})

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "service", None):
            record.service = self.service
        if not getattr(record, "job", None) and self.job:
            record.job = self.job
        for key, value in self.fields.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class _Handler(logging.StreamHandler):
    """The one root handler :func:`configure` installs (recognised and replaced on a second call).

    Without a stream it writes to whatever ``sys.stderr`` is at each record (a test's capture, a
    redirected stderr), never to a stale one."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def configure(service: str, *, job: str | None = None, level: int = logging.INFO, fmt: str | None = None,
              stream: IO[str] | None = None, **fields: Any) -> logging.Handler:
    """Send every log record of this process to ``stream`` (stderr) as structured lines.

    ``service`` and ``job`` (and any ``fields``) are stamped on every record;
    ``fmt`` is ``text`` or ``json`` (default: ``DARKPOOL_LOG_FORMAT``). Replaces
    the root logger's stream handlers (an earlier call's, ``logging.basicConfig``'s;
    a second call reconfigures), so it is the one set-up of the process.
    Returns the handler.
    """
    if fmt is None:
        from darkpool.config import load_settings

        fmt = load_settings().log_format
    handler = _Handler(stream)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(ContextFilter(service, job, fields))
    root = logging.getLogger()
    for old in list(root.handlers):
        # ours from an earlier call, and logging.basicConfig's plain ones; others (pytest's capture) stay
        if isinstance(old, _Handler) or type(old) in (logging.StreamHandler, logging.FileHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def set_job(job: str | None) -> None:
    """Name the job on the records from now on (when it is known only after :func:`configure`)."""
    for handler in logging.getLogger().handlers:
        for flt in handler.filters:
            if isinstance(flt, ContextFilter):
                flt.job = job


def current_handler() -> logging.Handler:
    """The root handler :func:`configure` installed (a ``logging.config.dictConfig`` handler factory: ``"()":
    "darkpool.logs.current_handler"``); a stderr one for service ``-`` when none is installed."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _Handler):
            return handler
    handler = _Handler()
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(ContextFilter("-"))
    return handler


def server_dictconfig(*loggers: str, level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` mapping for servers that configure logging themselves in each process
    (granian's ``log_dictconfig``, gunicorn's ``logconfig_dict``): the root keeps :func:`configure`'s handler
    and ``loggers`` (the server's own, which it gives handlers and formats of their own) propagate to it."""
    return {"version": 1, "disable_existing_loggers": False,
            "handlers": {"darkpool": {"()": "darkpool.logs.current_handler"}},
            "root": {"handlers": ["darkpool"], "level": level},
            "loggers": {name: {"handlers": [], "level": level, "propagate": True} for name in loggers}}
