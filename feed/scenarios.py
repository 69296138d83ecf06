"""Named scenarios of unusual dark activity that the feed can inject (``darkpool feed --scenario``).

Three kinds, one per alert detector of the pipeline (darkpool.alerts, docs/feed.md "Scenarios"):

- ``dark_share_surge``: the symbol's volume on dark venues (ATS / SDP, ``contracts.DARK_VENUE_TYPES``)
  is topped up to ``share`` (default 90 %) of its volume, spread evenly over the registry's dark venues
  (so its venue concentration does not rise) in prints below both block limits (so no venue's block
  count rises): a dark-share surge only;
- ``block_cluster``: ``blocks`` (default 8) block prints (>= ``contracts.BLOCK_MIN_SHARES`` shares) on
  one venue in each one-minute period of the scenario (default one minute), together
  :data:`CLUSTER_VOLUME_SHARE` (30 %) of the symbol's volume in a pipeline window (5 minutes) at the rate
  the feed printed it so far (at least 10,000 shares each): far above the block quantity any one venue
  prints. Balancing prints on the venues of the other kind (lit for a dark cluster venue), below the
  block limits and in the symbol's own venue mix, keep the symbol's dark share where it was, so the
  cluster moves neither the dark share nor (the venue holds about a fifth of the volume) the top venue's
  share far enough for the other detectors;
- ``venue_takeover``: one venue's volume is topped up to ``share`` (default 80 %) of the symbol's volume,
  in prints below the block limits: a venue-concentration jump (on a dark venue it lifts the dark share
  too, inevitably).

A scenario adds trades; it never changes or removes the ones the tape would have had. Its window starts
at the first whole minute (the pipeline's default period) at or after its start, an event time or an
offset from the feed's first print, and lasts its duration rounded up to whole minutes, so a block
cluster's prints share one period window and alerts line up with the scenario's minutes.

This module holds the scenario description, its command-line form and the pure, vectorised math;
:class:`feed.generator.ScenarioInjector` turns scenarios into trades batch by batch.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from darkpool.contracts import (
    ALERT_BLOCK_CLUSTER,
    ALERT_DARK_SHARE_SURGE,
    ALERT_VENUE_CONCENTRATION,
    BLOCK_MIN_NOTIONAL,
    BLOCK_MIN_SHARES,
    format_event_time,
    parse_event_time,
)
from darkpool.errors import DarkpoolError

DARK_SHARE_SURGE = "dark_share_surge"
BLOCK_CLUSTER = "block_cluster"
VENUE_TAKEOVER = "venue_takeover"
SCENARIO_KINDS = (DARK_SHARE_SURGE, BLOCK_CLUSTER, VENUE_TAKEOVER)
# the alert kind (darkpool.contracts) each scenario is made to trigger
EXPECTED_ALERT = {DARK_SHARE_SURGE: ALERT_DARK_SHARE_SURGE, BLOCK_CLUSTER: ALERT_BLOCK_CLUSTER,
                  VENUE_TAKEOVER: ALERT_VENUE_CONCENTRATION}

ALIGN_MS = 60_000  # scenario windows start and end on whole minutes (the pipeline's default period)
DEFAULT_OFFSET_SECONDS = 120.0  # a scenario without a start begins this long after the feed's first print
DEFAULT_DURATION_SECONDS = {DARK_SHARE_SURGE: 180.0, BLOCK_CLUSTER: 60.0, VENUE_TAKEOVER: 180.0}
DEFAULT_SHARE = {DARK_SHARE_SURGE: 0.90, VENUE_TAKEOVER: 0.80}
DEFAULT_BLOCKS = 8  # block prints per one-minute period of a block cluster
CLUSTER_VOLUME_SHARE = 0.30  # a block cluster minute's blocks: this share of the symbol's volume in ...
SIZING_WINDOW_SECONDS = 300.0  # ... a window of this length (the pipeline's default window)
SIZING_MIN_SECONDS = 30.0  # the symbol's rate needs this much of its tape seen before the cluster, else:
FALLBACK_BLOCK_SHARES = 20_000  # the mean block size when the rate is not known yet
BLOCK_SIZE_SPREAD = 0.25  # block sizes are drawn within +-25 % of their mean (at least BLOCK_MIN_SHARES)
MAX_SCENARIOS = 99  # a scenario's trade ids are numbered in its own range (feed.generator.SCENARIO_SEQ_BASE)
DEFAULT_RANDOM_HORIZON_SECONDS = 1800.0  # --random-scenarios in an open-ended live run: within 30 minutes
NO_SCENARIO = -1  # TradeBatch.scenario of a trade no scenario made

_OPTION_KEYS = {"for": "duration_seconds", "share": "share", "blocks": "blocks", "block_shares": "block_shares"}
_KIND_OPTIONS = {DARK_SHARE_SURGE: {"for", "share"}, BLOCK_CLUSTER: {"for", "blocks", "block_shares"},
                 VENUE_TAKEOVER: {"for", "share"}}
_DURATION = re.compile(r"^((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(ms|s|m|min|h)?$")
_UNIT_SECONDS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Scenario:
    """One scenario to inject.

    ``name`` is its kind (:data:`SCENARIO_KINDS`); ``venue`` the venue of a block cluster or a venue
    takeover (None: the feed picks one, see :func:`default_venue`; a surge takes none). It starts at
    ``start_ms`` (an event time, epoch ms) or ``offset_seconds`` after the feed's first print (neither:
    :data:`DEFAULT_OFFSET_SECONDS`) and lasts ``duration_seconds`` (None: the kind's default). ``share``
    is the target share (surge: of dark venues, takeover: of the venue; None: the kind's default),
    ``blocks`` (per minute) and ``block_shares`` (their mean size; None: sized from the symbol's rate,
    see :func:`cluster_block_mean`) shape a block cluster.
    """

    name: str
    symbol: str
    venue: str | None = None
    start_ms: int | None = None
    offset_seconds: float | None = None
    duration_seconds: float | None = None
    share: float | None = None
    blocks: int = DEFAULT_BLOCKS
    block_shares: int | None = None

    @property
    def duration(self) -> float:
        """The duration in seconds (the kind's default when not given)."""
        return DEFAULT_DURATION_SECONDS[self.name] if self.duration_seconds is None else self.duration_seconds

    @property
    def target_share(self) -> float:
        """The target share of a surge or a takeover."""
        return DEFAULT_SHARE.get(self.name, 0.0) if self.share is None else self.share

    @property
    def alert_kind(self) -> str:
        """The alert kind (darkpool.contracts) this scenario is made to trigger."""
        return EXPECTED_ALERT[self.name]

    def validate(self) -> None:
        """Raise DarkpoolError naming the scenario for a value out of range (symbols and venues are
        checked against the feed's market by the injector)."""
        where = f"scenario {self.to_spec()}"
        if self.name not in SCENARIO_KINDS:
            raise DarkpoolError(f"unknown scenario kind {self.name!r}", hint=f"choose from {', '.join(SCENARIO_KINDS)}")
        if not self.symbol:
            raise DarkpoolError(f"{where}: no symbol")
        if self.name == DARK_SHARE_SURGE and self.venue is not None:
            raise DarkpoolError(f"{where}: a dark-share surge takes no venue (it spreads over the dark venues)")
        if self.start_ms is not None and self.offset_seconds is not None:
            raise DarkpoolError(f"{where}: give a start time or an offset, not both")
        if self.offset_seconds is not None and not (math.isfinite(self.offset_seconds) and self.offset_seconds >= 0):
            raise DarkpoolError(f"{where}: the offset must be >= 0 seconds, got {self.offset_seconds}")
        if not (math.isfinite(self.duration) and self.duration > 0):
            raise DarkpoolError(f"{where}: the duration must be > 0 seconds, got {self.duration}")
        if self.name != BLOCK_CLUSTER and not 0.0 < self.target_share < 1.0:
            raise DarkpoolError(f"{where}: share must be above 0 and below 1, got {self.target_share}")
        if self.blocks < 1:
            raise DarkpoolError(f"{where}: blocks must be >= 1, got {self.blocks}")
        if self.block_shares is not None and self.block_shares < BLOCK_MIN_SHARES:
            raise DarkpoolError(f"{where}: block_shares must be >= {BLOCK_MIN_SHARES:,} (a block), "
                                f"got {self.block_shares}")

    def to_spec(self) -> str:
        """The command-line form (:func:`parse_scenario` reads it back to an equal Scenario)."""
        text = ":".join(p for p in (self.name, self.symbol, self.venue) if p is not None)
        if self.start_ms is not None:
            text += "@" + format_event_time(self.start_ms)
        elif self.offset_seconds is not None:
            text += f"@+{_number(self.offset_seconds)}s"
        options = []
        if self.duration_seconds is not None:
            options.append(f"for={_number(self.duration_seconds)}s")
        if self.share is not None:
            options.append(f"share={_number(self.share)}")
        if self.blocks != DEFAULT_BLOCKS:
            options.append(f"blocks={self.blocks}")
        if self.block_shares is not None:
            options.append(f"block_shares={self.block_shares}")
        return ",".join([text, *options])


@dataclass(frozen=True)
class ScenarioWindow:
    """A scenario resolved against the feed: its index in the run, what, where, and its event-time window
    ``[start_ms, end_ms)``."""

    index: int
    name: str
    symbol: str
    venue: str | None
    start_ms: int
    end_ms: int
    spec: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "symbol": self.symbol, "venue": self.venue,
                "start": format_event_time(self.start_ms), "end": format_event_time(self.end_ms),
                "start_ms": self.start_ms, "end_ms": self.end_ms, "spec": self.spec}


def _number(value: float) -> str:
    """A number without a needless '.0'."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# --- the command-line form -----------------------------------------------------------
def parse_duration_seconds(text: str) -> float:
    """'90', '90s', '1.5m', '2min', '500ms', '1h' -> seconds (ValueError otherwise)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 3m, 1h)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_scenario(text: str) -> Scenario:
    """``KIND:SYMBOL[:VENUE][@WHEN][,KEY=VALUE...]`` -> Scenario; ValueError with a clear message.

    WHEN is ``+<duration>`` after the feed's first print (``+60s``, ``+2m``, ``+90``) or an ISO-8601
    event time (``2026-12-01T14:35:00Z``); KEY is ``for`` (the duration), ``share`` (surge and
    takeover), ``blocks`` or ``block_shares`` (block cluster).
    """
    head, *options = [part.strip() for part in text.split(",")]
    head, _, when = head.partition("@")
    parts = [p.strip() for p in head.split(":")]
    kind = parts[0]
    if kind not in SCENARIO_KINDS:
        raise ValueError(f"unknown scenario kind {kind!r} (choose from {', '.join(SCENARIO_KINDS)})")
    if len(parts) < 2 or not parts[1]:
        raise ValueError(f"{text!r}: no symbol (the form is KIND:SYMBOL[:VENUE][@WHEN][,KEY=VALUE...])")
    if len(parts) > 3 or (len(parts) == 3 and not parts[2]):
        raise ValueError(f"{text!r}: expected KIND:SYMBOL[:VENUE], got {len(parts)} parts")
    venue = parts[2] if len(parts) == 3 else None
    if venue is not None and kind == DARK_SHARE_SURGE:
        raise ValueError(f"{text!r}: a dark-share surge takes no venue (it spreads over the dark venues)")
    fields: dict[str, Any] = {"name": kind, "symbol": parts[1], "venue": venue}
    if "@" in text.split(",")[0]:
        fields.update(_parse_when(when.strip(), text))
    for option in options:
        key, sep, value = (s.strip() for s in option.partition("="))
        if not sep or key not in _OPTION_KEYS:
            raise ValueError(f"{text!r}: unknown option {option!r} (options: {', '.join(_OPTION_KEYS)})")
        if key not in _KIND_OPTIONS[kind]:
            raise ValueError(f"{text!r}: {key} does not apply to {kind} "
                             f"(it takes {', '.join(sorted(_KIND_OPTIONS[kind]))})")
        fields[_OPTION_KEYS[key]] = _option_value(key, value, text)
    scenario = Scenario(**fields)
    try:
        scenario.validate()
    except DarkpoolError as exc:
        raise ValueError(str(exc).removeprefix(f"scenario {scenario.to_spec()}: ")) from exc
    return scenario


def _parse_when(when: str, text: str) -> dict[str, Any]:
    if not when:
        raise ValueError(f"{text!r}: nothing after '@' (give +60s or an ISO-8601 event time)")
    if when.startswith("+"):
        try:
            return {"offset_seconds": parse_duration_seconds(when[1:])}
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}") from exc
    try:
        return {"start_ms": parse_event_time(when)}
    except ValueError as exc:
        raise ValueError(f"{text!r}: {when!r} is neither +<duration> nor an ISO-8601 event time") from exc


def _option_value(key: str, value: str, text: str) -> float | int:
    try:
        if key == "for":
            return parse_duration_seconds(value)
        if key == "share":
            return float(value)
        return int(value)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {key}={value!r} is not a valid value") from exc


def scenario_argument(text: str) -> Scenario:
    """argparse ``type=`` for ``--scenario``: a usage error (exit status 2) for a malformed spec."""
    try:
        return parse_scenario(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


# --- random scenarios ------------------------------------------------------------------
def random_scenarios(count: int, seed: int, symbols: Sequence[str],
                     venues_for: Callable[[str, str], Sequence[str]], horizon_seconds: float,
                     warmup_seconds: float = DEFAULT_OFFSET_SECONDS) -> tuple[Scenario, ...]:
    """``count`` scenarios drawn reproducibly from ``seed``: kinds in turn from a random order of the
    three (so each kind comes ``count // 3`` or one more times), distinct symbols while there are enough,
    a venue from ``venues_for(kind, symbol)`` for a block cluster or takeover, and a start offset drawn
    so the whole window fits from ``warmup_seconds`` to ``horizon_seconds`` after the feed's first print
    (clamped when the run is shorter)."""
    if count < 0 or count > MAX_SCENARIOS:
        raise DarkpoolError(f"--random-scenarios must be from 0 to {MAX_SCENARIOS}, got {count}")
    if count and not symbols:
        raise DarkpoolError("no symbols to draw scenarios for")
    rng = np.random.default_rng([seed, 0x5CE4])
    order = rng.permutation(len(SCENARIO_KINDS))
    picked = rng.choice(len(symbols), size=count, replace=count > len(symbols))
    scenarios = []
    for i in range(count):
        kind = SCENARIO_KINDS[int(order[i % len(order)])]
        symbol = symbols[int(picked[i])]
        venue = None
        if kind != DARK_SHARE_SURGE:
            choices = list(venues_for(kind, symbol))
            venue = choices[int(rng.integers(len(choices)))] if choices else None
        duration = DEFAULT_DURATION_SECONDS[kind]
        latest = max(0.0, horizon_seconds - duration - ALIGN_MS / 1000)  # room for the snap to a minute
        earliest = min(warmup_seconds, latest)
        offset = float(np.round(rng.uniform(earliest, latest), 3)) if latest > earliest else earliest
        scenarios.append(Scenario(name=kind, symbol=symbol, venue=venue, offset_seconds=offset))
    return tuple(scenarios)


# --- the math (pure, vectorised) -------------------------------------------------------
def align_up(epoch_ms: int, step_ms: int = ALIGN_MS) -> int:
    """The first multiple of ``step_ms`` at or after ``epoch_ms``."""
    return -(-int(epoch_ms) // step_ms) * step_ms


def scenario_window(scenario: Scenario, feed_start_ms: int) -> tuple[int, int]:
    """The scenario's event-time window ``[start, end)`` (epoch ms) in a feed whose first print is at
    ``feed_start_ms``: the start snapped up to a whole minute, the duration rounded up to whole minutes."""
    if scenario.start_ms is not None:
        start = scenario.start_ms
    else:
        offset = DEFAULT_OFFSET_SECONDS if scenario.offset_seconds is None else scenario.offset_seconds
        start = feed_start_ms + int(round(offset * 1000))
    start = align_up(start)
    return start, start + align_up(int(math.ceil(scenario.duration * 1000)))


def resolve_windows(scenarios: Sequence[Scenario], venues: Sequence[str | None],
                    feed_start_ms: int) -> tuple[ScenarioWindow, ...]:
    """Every scenario's :class:`ScenarioWindow` (``venues``: each one's venue as resolved)."""
    windows = []
    for index, (scenario, venue) in enumerate(zip(scenarios, venues, strict=True)):
        start, end = scenario_window(scenario, feed_start_ms)
        spec = replace(scenario, venue=venue).to_spec() if venue != scenario.venue else scenario.to_spec()
        windows.append(ScenarioWindow(index, scenario.name, scenario.symbol, venue, start, end, spec))
    return tuple(windows)


def topup_shares(inside: np.ndarray | int, outside: np.ndarray | int, target: float) -> np.ndarray:
    """Shares to add *inside* (the dark venues, or one venue) so that inside / (inside + outside) reaches
    ``target``: ceil(target / (1 - target) x outside - inside), never negative."""
    exact = target * np.asarray(outside, dtype=float) / (1.0 - target) - np.asarray(inside, dtype=float)
    need = np.ceil(exact - 1e-6)  # 2,700.0000000000005 is 2,700
    return np.maximum(need, 0).astype(np.int64)


def prints_to_fill(sizes: np.ndarray, need: int) -> int:
    """How many leading ``sizes`` it takes for their sum to reach ``need`` (all of them if it is not reached)."""
    if need <= 0:
        return 0
    return int(min(len(sizes), np.searchsorted(np.cumsum(sizes), need, side="left") + 1))


def max_non_block_shares(price: np.ndarray | float) -> np.ndarray:
    """The largest print size below both block limits at ``price`` (a margin for the spread), in round
    lots where there is room for one: fewer than BLOCK_MIN_SHARES shares and BLOCK_MIN_NOTIONAL dollars."""
    limit = np.minimum(BLOCK_MIN_SHARES - 1, np.floor(BLOCK_MIN_NOTIONAL / (np.asarray(price) * 1.001)) - 1)
    limit = np.maximum(limit, 1)
    return np.where(limit >= 100, np.floor(limit / 100) * 100, limit).astype(np.int64)


def block_times(rng: np.random.Generator, start_ms: int, end_ms: int, blocks_per_minute: int) -> np.ndarray:
    """A block cluster's print times: ``blocks_per_minute`` in each whole minute of ``[start_ms, end_ms)``,
    uniform within it, sorted."""
    minutes = np.arange(start_ms, end_ms, ALIGN_MS, dtype=np.int64)
    base = np.repeat(minutes, blocks_per_minute)
    span = np.minimum(ALIGN_MS, end_ms - base)
    return np.sort(base + np.floor(rng.random(len(base)) * span).astype(np.int64))


def cluster_block_mean(shares_seen: int, seconds_seen: float, blocks_per_minute: int) -> int:
    """The mean block size of a cluster sized from the symbol's tape so far: ``shares_seen`` in
    ``seconds_seen`` -> its volume in a SIZING_WINDOW_SECONDS window, CLUSTER_VOLUME_SHARE of it over one
    minute's blocks; FALLBACK_BLOCK_SHARES when less than SIZING_MIN_SECONDS were seen; never below a block."""
    if seconds_seen < SIZING_MIN_SECONDS or shares_seen <= 0:
        return FALLBACK_BLOCK_SHARES
    window_volume = shares_seen / seconds_seen * SIZING_WINDOW_SECONDS
    return max(BLOCK_MIN_SHARES, int(round(CLUSTER_VOLUME_SHARE * window_volume / blocks_per_minute)))


def balancing_shares(cluster_shares: int, class_share: float) -> int:
    """Shares to add on the venues of the other kind so that ``cluster_shares`` added on a venue whose
    kind (dark or lit) holds ``class_share`` of the symbol's volume leave that share unchanged:
    cluster x (1 - share) / share, with the share clamped to [0.2, 0.8] (at most 4x the cluster)."""
    share = min(max(class_share, 0.2), 0.8)
    return int(math.ceil(cluster_shares * (1.0 - share) / share - 1e-6))


def block_sizes(rng: np.random.Generator, count: int, mean_shares: int) -> np.ndarray:
    """``count`` block sizes in round lots within BLOCK_SIZE_SPREAD of ``mean_shares``, at least
    BLOCK_MIN_SHARES (a block by shares, whatever the price)."""
    drawn = mean_shares * (1.0 + BLOCK_SIZE_SPREAD * (2.0 * rng.random(count) - 1.0))
    return np.maximum(np.rint(drawn / 100) * 100, BLOCK_MIN_SHARES).astype(np.int64)
