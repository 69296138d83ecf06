"""Validation of the pipeline's output records as serving receives them.

A record from ``darkpool.liquidity`` / ``darkpool.market`` becomes a
:class:`Pane`: the record projected onto exactly the contract's fields
(:data:`darkpool.schema.FIELDS`) with its times normalised to the contract's
ISO-8601 form, plus the parsed times the store indexes by. Types and
nullability are checked with the mapping of :mod:`darkpool.schema` (derived from
the contract's pyarrow schemas), so whatever the API returns matches its
OpenAPI document. A record from ``darkpool.alerts`` becomes an :class:`Alert`
the same way (fields, kinds and nullability from ``contracts.ALERT_SCHEMA`` /
``ALERT_NULLABLE_FIELDS``; ``kind``, ``severity`` and ``pane_timing`` one of
the contract's values). Anything else raises :class:`InvalidRecord`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import orjson

from darkpool.contracts import (
    ALERT_FIELDS,
    ALERT_KINDS,
    ALERT_NULLABLE_FIELDS,
    ALERT_SCHEMA,
    PANE_TIMINGS,
    SEVERITIES,
    alert_key,
    format_event_time,
    parse_event_time,
    severity_rank,
)
from darkpool.schema import FIELD_KINDS, FIELDS, KIND_FLOAT, KIND_INT, KIND_STR, LIQUIDITY, NULLABLE_FIELDS, kind_of
from darkpool.schema import MARKET as MARKET  # re-exported: serving modules take the table names from here

FINAL_TIMINGS = frozenset({"ON_TIME", "LATE"})
ALERT = "alert"  # the consumer's name of the alerts topic (beside LIQUIDITY and MARKET), the SSE event's name
# alert field name -> kind (int, float, str, time), from the contract's schema
ALERT_FIELD_KINDS: dict[str, str] = {f.name: kind_of(f.type) for f in ALERT_SCHEMA}


class InvalidRecord(ValueError):
    """A record that does not follow the output contract; the message says why."""


@dataclass(frozen=True, slots=True)
class Pane:
    """One validated output record and the values the store orders it by."""

    kind: str
    symbol: str
    venue: str | None  # None for market records
    window_start_ms: int
    window_end_ms: int
    emitted_ms: int
    pane_index: int
    timing: str
    record: dict[str, Any]

    @property
    def is_final(self) -> bool:
        """True for on-time and late panes (the watermark has passed the window end)."""
        return self.timing in FINAL_TIMINGS

    def supersedes(self, other: Pane) -> bool:
        """Whether this pane replaces ``other`` (same key): higher pane index, then newer emission."""
        return (self.pane_index, self.emitted_ms) >= (other.pane_index, other.emitted_ms)


@functools.lru_cache(maxsize=65536)
def _time(text: str) -> tuple[int, str]:
    """ISO-8601 text -> (epoch ms, the contract's canonical text). Cached: windows repeat a lot."""
    ms = parse_event_time(text)
    return ms, format_event_time(ms)


def _check_value(name: str, kind: str, value: Any, nullable: frozenset[str] = NULLABLE_FIELDS) -> Any:
    if value is None:
        if name in nullable:
            return None
        raise InvalidRecord(f"field {name!r} is null")
    if kind == KIND_INT:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise InvalidRecord(f"field {name!r} must be an integer, got {value!r}")
        return value
    if kind == KIND_FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRecord(f"field {name!r} must be a number, got {value!r}")
        return float(value)
    if kind == KIND_STR:
        if not isinstance(value, str):
            raise InvalidRecord(f"field {name!r} must be a string, got {value!r}")
        return value
    if not isinstance(value, str):
        raise InvalidRecord(f"field {name!r} must be an ISO-8601 string, got {value!r}")
    try:
        return _time(value)[1]
    except ValueError as exc:
        raise InvalidRecord(f"field {name!r} is not an ISO-8601 time: {value!r}") from exc


def _checked_record(value: Any, fields: tuple[str, ...], kinds: dict[str, str],
                    nullable: frozenset[str] = NULLABLE_FIELDS) -> dict[str, Any]:
    """A decoded record's fields, each checked against its kind (InvalidRecord for a non-object, a missing
    field or a bad value)."""
    if not isinstance(value, dict):
        raise InvalidRecord(f"record must be a JSON object, got {type(value).__name__}")
    missing = [name for name in fields if name not in value]
    if missing:
        raise InvalidRecord(f"missing field(s): {', '.join(missing)}")
    return {name: _check_value(name, kinds[name], value[name], nullable) for name in fields}


def _window_and_symbol(record: dict[str, Any]) -> tuple[int, int]:
    """(window start ms, window end ms) of a checked record whose window is not empty and symbol is set."""
    start_ms = _time(record["window_start"])[0]
    end_ms = _time(record["window_end"])[0]
    if end_ms <= start_ms:
        raise InvalidRecord(f"window_end {record['window_end']} is not after window_start {record['window_start']}")
    if not record["symbol"]:
        raise InvalidRecord("symbol is empty")
    return start_ms, end_ms


def to_pane(kind: str, value: dict[str, Any]) -> Pane:
    """Validate one decoded record of ``kind`` (liquidity|market) and build its :class:`Pane`."""
    record = _checked_record(value, FIELDS[kind], FIELD_KINDS[kind])
    _one_of(record, "pane_timing", PANE_TIMINGS)
    start_ms, end_ms = _window_and_symbol(record)
    venue = record.get("venue") if kind == LIQUIDITY else None
    if kind == LIQUIDITY and not venue:
        raise InvalidRecord("venue is empty")
    return Pane(
        kind=kind, symbol=record["symbol"], venue=venue,
        window_start_ms=start_ms, window_end_ms=end_ms,
        emitted_ms=_time(record["emitted_at"])[0], pane_index=record["pane_index"],
        timing=record["pane_timing"], record=record,
    )


def decode_pane(kind: str, raw: bytes | None) -> Pane:
    """Decode a Kafka record value (JSON bytes) of ``kind`` into a validated :class:`Pane`."""
    if raw is None:
        raise InvalidRecord("record value is empty (tombstone)")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"value is not JSON: {exc}") from exc
    return to_pane(kind, value)


@dataclass(frozen=True, slots=True)
class Alert:
    """One validated darkpool.alerts record and the values the alert store orders it by."""

    key: str  # contracts.alert_key(symbol, kind, window_start)
    symbol: str
    kind: str  # one of contracts.ALERT_KINDS
    severity: str
    rank: int  # contracts.severity_rank(severity)
    window_start_ms: int
    window_end_ms: int
    emitted_ms: int
    record: dict[str, Any]

    def supersedes(self, other: Alert) -> bool:
        """Whether this alert replaces ``other`` (same key): a higher severity, or the same one emitted later.

        A lower severity never replaces a higher one, whenever it was emitted."""
        return (self.rank, self.emitted_ms) > (other.rank, other.emitted_ms)


def _one_of(record: dict[str, Any], name: str, allowed: tuple[str, ...]) -> None:
    if record[name] not in allowed:
        raise InvalidRecord(f"{name} must be one of {', '.join(allowed)}, got {record[name]!r}")


def to_alert(value: dict[str, Any]) -> Alert:
    """Validate one decoded darkpool.alerts record and build its :class:`Alert`."""
    record = _checked_record(value, ALERT_FIELDS, ALERT_FIELD_KINDS, ALERT_NULLABLE_FIELDS)
    _one_of(record, "kind", ALERT_KINDS)
    _one_of(record, "severity", SEVERITIES)
    _one_of(record, "pane_timing", PANE_TIMINGS)
    start_ms, end_ms = _window_and_symbol(record)
    if record["venue"] == "":
        raise InvalidRecord("venue is empty (null when the alert names no venue)")
    return Alert(
        key=alert_key(record["symbol"], record["kind"], record["window_start"]), symbol=record["symbol"],
        kind=record["kind"], severity=record["severity"], rank=severity_rank(record["severity"]),
        window_start_ms=start_ms, window_end_ms=end_ms, emitted_ms=_time(record["emitted_at"])[0], record=record,
    )


def decode_alert(raw: bytes | None) -> Alert:
    """Decode a darkpool.alerts record value (JSON bytes) into a validated :class:`Alert`."""
    if raw is None:
        raise InvalidRecord("record value is empty (tombstone)")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"value is not JSON: {exc}") from exc
    return to_alert(value)
