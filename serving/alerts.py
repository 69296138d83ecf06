"""The in-memory store of the pipeline's alerts (``darkpool.alerts``), read through immutable snapshots.

Like the pane store (:mod:`serving.store`): one writer (the Kafka consumer
thread) applies batches of :class:`~serving.records.Alert`, readers take
``store.snapshot`` (an immutable :class:`AlertSnapshot`, swapped atomically
after each batch) and never lock.

Per key ``alert_key(symbol, kind, window_start)`` the store keeps one alert:
an alert replaces the stored one only when its severity is higher, or equal
and emitted later (:meth:`Alert.supersedes`). So a re-emitted alert with a
higher severity replaces the lower one, and nothing ever lowers a severity
already held (a stale re-delivery, a replay after a pipeline restart).

History is bounded like the panes': alerts whose window ended more than
``retention_ms`` before the newest alert window's end are dropped, and the
oldest alerts (by window end, then emission) go first when more than
``max_alerts`` are held.

Reads (:meth:`AlertSnapshot.query`) filter by symbol, kind, ``since`` (on
``emitted_at``: alerts emitted, or re-emitted, at or after it) and a minimum
severity, newest first (``emitted_at`` descending, then window start
descending, then symbol and kind), paged by limit/offset.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from serving.records import Alert


@dataclass(frozen=True)
class AlertPage:
    """One page of a query: the number of matching alerts and the page's records."""

    total: int
    rows: list[dict[str, Any]]


@dataclass
class AlertSnapshot:
    """An immutable view of the alert store at one version (treat every field as read-only)."""

    version: int = 0
    alerts: Mapping[str, Alert] = field(default_factory=dict)  # alert key -> the alert held
    newest_end_ms: int | None = None  # newest alert window end seen (the retention clock)
    last_update_ms: int | None = None  # newest emitted_at held
    alerts_ingested: int = 0
    evicted: int = 0
    cache: dict[Any, Any] = field(default_factory=dict)  # per-version memo (serialized responses...)

    def newest_first(self) -> tuple[Alert, ...]:
        """Every alert held, newest first (memoised per snapshot)."""
        key = ("newest_first",)
        cached = self.cache.get(key)
        if cached is None:
            cached = self.cache[key] = tuple(sorted(self.alerts.values(), key=newest_first_key))
        return cached

    def query(self, symbol: str | None = None, kind: str | None = None, since_ms: int | None = None,
              min_rank: int | None = None, limit: int = 100, offset: int = 0) -> AlertPage:
        """The alerts matching every given filter, newest first, rows ``offset`` to ``offset + limit``."""
        matching = [a for a in self.newest_first() if matches(a, symbol, kind, since_ms, min_rank)]
        return AlertPage(len(matching), [a.record for a in matching[offset:offset + limit]])


def newest_first_key(alert: Alert) -> tuple[int, int, str, str]:
    """Sort key of the newest-first order: emitted_at desc, window start desc, symbol, kind."""
    return (-alert.emitted_ms, -alert.window_start_ms, alert.symbol, alert.kind)


def matches(alert: Alert, symbol: str | None, kind: str | None, since_ms: int | None, min_rank: int | None) -> bool:
    """Whether ``alert`` passes every given filter (None: no filter)."""
    return ((symbol is None or alert.symbol == symbol) and (kind is None or alert.kind == kind)
            and (since_ms is None or alert.emitted_ms >= since_ms) and (min_rank is None or alert.rank >= min_rank))


@dataclass(frozen=True)
class AlertBatchResult:
    """What one :meth:`AlertStore.apply` did: the alerts stored (new or raised), and those it did not keep.

    ``applied`` is every alert that replaced what the store held when it came, in batch order (an alert
    raised twice within one batch is there twice, its lower statement first), except alerts whose key the
    batch's own retention or cap evicted."""

    applied: list[Alert]
    superseded: int  # the store held the same or a higher severity (or the same one emitted later)
    expired: int  # the alert's window is past retention
    evicted: int  # alerts dropped by retention or the cap


class AlertStore:
    """One alert per key, severity never lowered, bounded history; one writer, lock-free readers."""

    def __init__(self, retention_ms: int, max_alerts: int) -> None:
        if retention_ms <= 0 or max_alerts <= 0:
            raise ValueError("retention_ms and max_alerts must be positive")
        self.retention_ms = retention_ms
        self.max_alerts = max_alerts
        self._write_lock = threading.Lock()
        self._snapshot = AlertSnapshot()

    @property
    def snapshot(self) -> AlertSnapshot:
        """The current immutable snapshot (an atomic reference read)."""
        return self._snapshot

    def apply(self, alerts: Iterable[Alert]) -> AlertBatchResult:
        """Apply a batch of alerts and publish one new snapshot; returns what changed."""
        alerts = list(alerts)
        with self._write_lock:
            old = self._snapshot
            if not alerts:
                return AlertBatchResult([], 0, 0, 0)
            newest_end = max([a.window_end_ms for a in alerts] + ([old.newest_end_ms] if old.newest_end_ms else []))
            cutoff = newest_end - self.retention_ms
            held = dict(old.alerts)
            taken: list[Alert] = []
            superseded = expired = 0
            for alert in alerts:
                if alert.window_end_ms <= cutoff:
                    expired += 1
                    continue
                current = held.get(alert.key)
                if current is not None and not alert.supersedes(current):
                    superseded += 1
                    continue
                held[alert.key] = alert
                taken.append(alert)
            evicted = self._evict(held, cutoff)
            applied = [a for a in taken if a.key in held]
            last_update = max((a.emitted_ms for a in held.values()), default=None)
            self._snapshot = AlertSnapshot(
                version=old.version + 1, alerts=held, newest_end_ms=newest_end, last_update_ms=last_update,
                alerts_ingested=old.alerts_ingested + len(applied), evicted=old.evicted + evicted,
            )
            return AlertBatchResult(applied, superseded, expired, evicted)

    def _evict(self, held: dict[str, Alert], cutoff: int) -> int:
        """Drop alerts past retention, then the oldest (window end, then emission) while over the cap."""
        gone = [key for key, a in held.items() if a.window_end_ms <= cutoff]
        over = len(held) - len(gone) - self.max_alerts
        if over > 0:
            kept = (a for a in held.values() if a.window_end_ms > cutoff)
            gone.extend(a.key for a in heapq.nsmallest(over, kept, key=lambda a: (a.window_end_ms, a.emitted_ms,
                                                                                   a.key)))
        for key in gone:
            del held[key]
        return len(gone)
