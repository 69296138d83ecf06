"""What a feed run did: :class:`FeedSummary` (the report) and :class:`FeedTotals` (its running totals).

The totals are kept per batch sent (numpy counts of faults, trades and shares
per venue and per injected scenario, first/last event time) and filled into the
summary at the end of a run; :meth:`FeedSummary.format` prints it, :meth:`FeedSummary.to_dict` gives
the JSON form (``darkpool feed --json``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from darkpool.contracts import load_venues
from darkpool.market import dark_share, is_dark
from feed.generator import FAULT_LABELS, EncodedBatch
from feed.scenarios import ScenarioWindow


def registry_dark_share(shares_by_venue: Mapping[str, int]) -> float | None:
    """The dark share (darkpool.market) of the shares printed on venues of the active registry;
    injected unknown venues are left out. None when no registry venue traded."""
    venues = load_venues()
    known = {mpid: shares for mpid, shares in shares_by_venue.items() if mpid in venues}
    dark = sum(shares for mpid, shares in known.items() if is_dark(venues[mpid].venue_type))
    return dark_share(dark, sum(known.values()))


@dataclass
class FeedSummary:
    """What a feed run did. ``faults`` maps fault label -> records sent with it; ``scenarios`` lists the
    injected scenarios (:func:`scenario_rows`: index, name, symbol, venue, window, trades and shares sent)."""

    topic: str
    bootstrap: str
    mode: str = "replay"
    seed: int | None = None
    sent: int = 0
    acked: int = 0
    failed: int = 0
    unconfirmed: int = 0
    elapsed_seconds: float = 0.0
    valid_trades: int = 0
    share_volume: int = 0
    dark_share: float | None = None
    by_venue: dict[str, dict[str, int]] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    scenarios: list[dict[str, Any]] = field(default_factory=list)
    first_event_time_ms: int | None = None
    last_event_time_ms: int | None = None
    first_error: str | None = None
    tape_out: str | None = None
    interrupted: bool = False

    @property
    def rate(self) -> float:
        """Records sent per second of wall-clock time."""
        return self.sent / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rate"] = round(self.rate, 1)
        return data

    def format(self) -> str:
        """A human-readable multi-line summary."""
        lines = [
            f"feed summary ({self.mode} -> {self.topic} at {self.bootstrap}"
            + (f", seed {self.seed}" if self.seed is not None else "") + ")",
            f"  sent {self.sent:,}  acknowledged {self.acked:,}  failed {self.failed:,}"
            + (f"  unconfirmed {self.unconfirmed:,}" if self.unconfirmed else "")
            + f"  in {self.elapsed_seconds:.2f} s ({self.rate:,.0f} records/s)"
            + ("  (interrupted)" if self.interrupted else ""),
            f"  valid trades {self.valid_trades:,}  shares {self.share_volume:,}"
            + (f"  dark share {self.dark_share:.1%}" if self.dark_share is not None else ""),
        ]
        if self.by_venue:
            lines.append("  by venue (trades / shares):")
            venues = load_venues()
            ranked = sorted(self.by_venue.items(), key=lambda item: -item[1]["shares"])
            for mpid, stats in ranked:
                kind = venues[mpid].venue_type if mpid in venues else "?"
                lines.append(f"    {mpid:<6} {kind:<8} {stats['trades']:>12,} {stats['shares']:>16,}")
        injected = {k: v for k, v in self.faults.items() if v}
        lines.append("  injected faults: " + (", ".join(f"{k} {v:,}" for k, v in sorted(injected.items()))
                                              if injected else "none"))
        if self.scenarios:
            lines.append("  scenarios (trades / shares added):")
            for row in self.scenarios:
                where = f"{row['symbol']}" + (f" on {row['venue']}" if row["venue"] else "")
                lines.append(f"    {row['index']:>2} {row['name']:<16} {where:<16} {row['start']} .. {row['end']}"
                             f" {row['trades']:>10,} {row['shares']:>14,}")
        if self.first_error:
            lines.append(f"  first delivery error: {self.first_error}")
        if self.tape_out:
            lines.append(f"  tape written to {self.tape_out}")
        return "\n".join(lines)


def scenario_rows(windows: Iterable[ScenarioWindow], trades: np.ndarray, shares: np.ndarray) -> list[dict[str, Any]]:
    """The summary's scenario list: each resolved window (index, name, symbol, venue, start and end
    event time, spec) with the trades and shares it added (``trades[i]``, ``shares[i]``)."""
    rows = []
    for window in windows:
        i = window.index
        rows.append({**window.to_dict(), "trades": int(trades[i]) if i < len(trades) else 0,
                     "shares": int(shares[i]) if i < len(shares) else 0})
    return rows


def merge_scenario_rows(parts: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The scenario lists of several shards' summaries as one: each scenario once, its counts summed."""
    merged: dict[int, dict[str, Any]] = {}
    for rows in parts:
        for row in rows:
            into = merged.setdefault(row["index"], {**row, "trades": 0, "shares": 0})
            into["trades"] += row["trades"]
            into["shares"] += row["shares"]
    return [merged[i] for i in sorted(merged)]


class FeedTotals:
    """Running totals of what was sent, for the summary: updated per batch with numpy, then :meth:`fill`."""

    def __init__(self) -> None:
        self.faults = np.zeros(len(FAULT_LABELS), dtype=np.int64)
        self.venue_trades: dict[str, int] = {}
        self.venue_shares: dict[str, int] = {}
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.scenarios: tuple[ScenarioWindow, ...] = ()
        self.scenario_trades = np.zeros(0, dtype=np.int64)
        self.scenario_shares = np.zeros(0, dtype=np.int64)

    def add(self, batch: EncodedBatch) -> None:
        if batch.scenarios:
            self._add_scenarios(batch)
        if not len(batch):
            return
        self.faults += np.bincount(batch.faults, minlength=len(FAULT_LABELS))
        names = batch.venue_names
        valid_venues = batch.venue[batch.valid]
        trades = np.bincount(valid_venues, minlength=len(names))
        shares = np.bincount(valid_venues, weights=batch.qty[batch.valid], minlength=len(names))
        for i in np.flatnonzero(trades).tolist():
            name = names[i]
            self.venue_trades[name] = self.venue_trades.get(name, 0) + int(trades[i])
            self.venue_shares[name] = self.venue_shares.get(name, 0) + int(shares[i])
        lo, hi = min(batch.timestamps), max(batch.timestamps)
        self.first_ts = lo if self.first_ts is None else min(self.first_ts, lo)
        self.last_ts = hi if self.last_ts is None else max(self.last_ts, hi)

    def _add_scenarios(self, batch: EncodedBatch) -> None:
        """Count the valid records each scenario made (the run's windows come with every batch)."""
        self.scenarios = batch.scenarios
        n = len(batch.scenarios)
        if len(self.scenario_trades) < n:
            self.scenario_trades = np.pad(self.scenario_trades, (0, n - len(self.scenario_trades)))
            self.scenario_shares = np.pad(self.scenario_shares, (0, n - len(self.scenario_shares)))
        if batch.scenario is None or not len(batch):
            return
        made = (batch.scenario >= 0) & batch.valid
        if made.any():
            index = batch.scenario[made].astype(np.int64)
            self.scenario_trades += np.bincount(index, minlength=n)[:n]
            self.scenario_shares += np.bincount(index, weights=batch.qty[made], minlength=n)[:n].astype(np.int64)

    def fill(self, summary: FeedSummary) -> None:
        summary.by_venue = {m: {"trades": self.venue_trades[m], "shares": self.venue_shares[m]}
                            for m in self.venue_trades}
        summary.valid_trades = sum(self.venue_trades.values())
        summary.share_volume = sum(self.venue_shares.values())
        summary.dark_share = registry_dark_share(self.venue_shares)
        summary.faults = {label: int(n) for label, n in zip(FAULT_LABELS, self.faults.tolist(), strict=True)
                          if label is not None}
        summary.first_event_time_ms, summary.last_event_time_ms = self.first_ts, self.last_ts
        summary.scenarios = scenario_rows(self.scenarios, self.scenario_trades, self.scenario_shares)
