"""The in-memory store of the pipeline's latest panes, read through immutable snapshots.

One writer (the Kafka consumer thread) applies batches of :class:`Pane`; many
readers (request threads) read ``store.snapshot``, an immutable
:class:`Snapshot` that is swapped atomically after each batch. A reader never
takes a lock and never sees half a batch.

Copy-on-write keeps a batch cheap: only the windows and the symbols a batch
touches are copied; everything else is shared with the previous snapshot.

Per key (window, symbol[, venue]) the store keeps the latest pane (highest
``pane_index``, then newest ``emitted_at``) — panes accumulate, so the latest
one is the window's full current value. History is bounded twice: windows that
ended more than ``retention_ms`` before the newest window's end are dropped, and
the oldest windows go first when the number of stored panes exceeds
``max_records``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from serving.records import LIQUIDITY, Pane


@dataclass(frozen=True, slots=True)
class Window:
    """One window's latest panes: ``liquidity[symbol][venue]`` and ``market[symbol]``."""

    start_ms: int
    end_ms: int
    start: str
    end: str
    liquidity: Mapping[str, Mapping[str, Pane]]
    market: Mapping[str, Pane]
    count: int

    def liquidity_rows(self, symbol: str | None = None, venue: str | None = None) -> list[dict[str, Any]]:
        """Liquidity records of this window, optionally filtered, ordered by symbol then venue."""
        symbols = [symbol] if symbol is not None else sorted(self.liquidity)
        rows: list[dict[str, Any]] = []
        for sym in symbols:
            venues = self.liquidity.get(sym)
            if not venues:
                continue
            if venue is not None:
                pane = venues.get(venue)
                if pane is not None:
                    rows.append(pane.record)
                continue
            rows.extend(venues[v].record for v in sorted(venues))
        return rows


@dataclass
class Snapshot:
    """An immutable view of the store at one version (treat every field as read-only)."""

    version: int = 0
    windows: Mapping[int, Window] = field(default_factory=dict)
    order: tuple[int, ...] = ()  # window starts, oldest first
    newest_end_ms: int | None = None
    final_end_ms: int | None = None  # newest window end of an ON_TIME/LATE pane
    last_update_ms: int | None = None  # newest emitted_at
    panes_ingested: int = 0
    record_count: int = 0
    evicted_windows: int = 0
    cache: dict[Any, Any] = field(default_factory=dict)  # per-version memo (serialized responses...)

    # -- windows ---------------------------------------------------------
    def current_window(self) -> Window | None:
        """The newest window (still updating)."""
        return self.windows[self.order[-1]] if self.order else None

    def latest_complete_window(self) -> Window | None:
        """The newest window whose end is at or before the newest on-time/late pane's window end,
        or, before any such pane, the newest window older than the current one."""
        if not self.order:
            return None
        if self.final_end_ms is not None:
            for start in reversed(self.order):
                window = self.windows[start]
                if window.end_ms <= self.final_end_ms:
                    return window
        return self.windows[self.order[-2]] if len(self.order) > 1 else None

    def windows_between(self, since_ms: int | None, until_ms: int | None, step_ms: int | None = None) -> list[Window]:
        """Windows with start >= since and end <= until (either bound optional), oldest first; with a step,
        only the windows whose start is a whole multiple of it (epoch ms)."""
        out = []
        for start in self.order:
            if step_ms is not None and start % step_ms:
                continue
            window = self.windows[start]
            if since_ms is not None and window.start_ms < since_ms:
                continue
            if until_ms is not None and window.end_ms > until_ms:
                continue
            out.append(window)
        return out

    def period_ms(self) -> int | None:
        """The windows' period: the smallest gap between two window starts held (None with fewer than two)."""
        key = ("period",)
        if key not in self.cache:
            gaps = [b - a for a, b in zip(self.order, self.order[1:], strict=False) if b > a]
            self.cache[key] = min(gaps) if gaps else None
        return self.cache[key]

    # -- derived sets (memoised per snapshot) ------------------------------
    def symbols(self) -> frozenset[str]:
        """Every symbol with a pane in the retained history."""
        key = ("symbols",)
        cached = self.cache.get(key)
        if cached is None:
            found: set[str] = set()
            for window in self.windows.values():
                found.update(window.liquidity)
                found.update(window.market)
            cached = self.cache[key] = frozenset(found)
        return cached

    def venues(self) -> frozenset[str]:
        """Every venue with a pane in the retained history."""
        key = ("venues",)
        cached = self.cache.get(key)
        if cached is None:
            found: set[str] = set()
            for window in self.windows.values():
                for venues in window.liquidity.values():
                    found.update(venues)
            cached = self.cache[key] = frozenset(found)
        return cached


class _WindowDraft:
    """A window being changed by one batch: copies made on first touch only."""

    def __init__(self, base: Window | None, pane: Pane) -> None:
        self.start_ms, self.end_ms = pane.window_start_ms, pane.window_end_ms
        self.start, self.end = pane.record["window_start"], pane.record["window_end"]
        self.liquidity: dict[str, Mapping[str, Pane]] = dict(base.liquidity) if base else {}
        self.market: dict[str, Pane] = dict(base.market) if base else {}
        self.count = base.count if base else 0
        self._copied: set[str] = set()

    def put(self, pane: Pane) -> bool:
        """Store ``pane`` unless the stored pane for its key is newer; True when stored."""
        if pane.kind == LIQUIDITY:
            venues = self.liquidity.get(pane.symbol)
            current = venues.get(pane.venue) if venues else None
            if current is not None and not pane.supersedes(current):
                return False
            if pane.symbol not in self._copied:
                venues = dict(venues) if venues else {}
                self.liquidity[pane.symbol] = venues
                self._copied.add(pane.symbol)
            venues[pane.venue] = pane  # type: ignore[index]
        else:
            current = self.market.get(pane.symbol)
            if current is not None and not pane.supersedes(current):
                return False
            self.market[pane.symbol] = pane
        if current is None:
            self.count += 1
        return True

    def freeze(self) -> Window:
        return Window(self.start_ms, self.end_ms, self.start, self.end, self.liquidity, self.market, self.count)


@dataclass(frozen=True)
class BatchResult:
    """What one :meth:`Store.apply` did."""

    applied: list[Pane]
    superseded: int
    expired: int
    evicted_windows: int


class Store:
    """Latest panes per key with bounded history; one writer, lock-free readers."""

    def __init__(self, retention_ms: int, max_records: int) -> None:
        if retention_ms <= 0 or max_records <= 0:
            raise ValueError("retention_ms and max_records must be positive")
        self.retention_ms = retention_ms
        self.max_records = max_records
        self._write_lock = threading.Lock()
        self._snapshot = Snapshot()

    @property
    def snapshot(self) -> Snapshot:
        """The current immutable snapshot (an atomic reference read)."""
        return self._snapshot

    def apply(self, panes: Iterable[Pane]) -> BatchResult:
        """Apply a batch of panes and publish one new snapshot; returns what changed."""
        panes = list(panes)
        with self._write_lock:
            old = self._snapshot
            if not panes:
                return BatchResult([], 0, 0, 0)
            newest_end = max([p.window_end_ms for p in panes] + ([old.newest_end_ms] if old.newest_end_ms else []))
            cutoff = newest_end - self.retention_ms
            drafts: dict[int, _WindowDraft] = {}
            applied: list[Pane] = []
            superseded = expired = 0
            final_end, last_update = old.final_end_ms, old.last_update_ms
            for pane in panes:
                if pane.window_end_ms <= cutoff:
                    expired += 1
                    continue
                draft = drafts.get(pane.window_start_ms)
                if draft is None:
                    draft = drafts[pane.window_start_ms] = _WindowDraft(old.windows.get(pane.window_start_ms), pane)
                if not draft.put(pane):
                    superseded += 1
                    continue
                applied.append(pane)
                if pane.is_final and (final_end is None or pane.window_end_ms > final_end):
                    final_end = pane.window_end_ms
                if last_update is None or pane.emitted_ms > last_update:
                    last_update = pane.emitted_ms
            windows = dict(old.windows)
            for start, draft in drafts.items():
                windows[start] = draft.freeze()
            evicted = self._evict(windows, cutoff)
            order = tuple(sorted(windows))
            self._snapshot = Snapshot(
                version=old.version + 1, windows=windows, order=order, newest_end_ms=newest_end,
                final_end_ms=final_end, last_update_ms=last_update,
                panes_ingested=old.panes_ingested + len(applied),
                record_count=sum(w.count for w in windows.values()),
                evicted_windows=old.evicted_windows + evicted,
            )
            return BatchResult(applied, superseded, expired, evicted)

    def _evict(self, windows: dict[int, Window], cutoff: int) -> int:
        """Drop windows past retention, then the oldest while over the record cap (keeps the newest)."""
        evicted = 0
        for start in [s for s, w in windows.items() if w.end_ms <= cutoff]:
            del windows[start]
            evicted += 1
        total = sum(w.count for w in windows.values())
        if total > self.max_records:
            for start in sorted(windows)[:-1]:
                total -= windows.pop(start).count
                evicted += 1
                if total <= self.max_records:
                    break
        return evicted
