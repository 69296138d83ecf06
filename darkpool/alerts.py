"""Live alerts on unusual dark activity: the detectors' scoring and the emission rule, as pure functions.

The pipeline's alert step (and any test or offline tool) calls these with plain mappings; nothing here
knows about Beam, Kafka or DuckDB (docs/alerts.md). The pieces, in the order a caller uses them:

1. :func:`window_figures`: the three figures of one (symbol, window) that the baselines are made of
   (dark share, the largest block quantity on one venue, the top venue's share). The caller keeps, per
   symbol, the figures of the earlier windows (each window's latest value, oldest first) as the history.
2. The detectors, one per alert kind, each given the window's pane(s) being scored and that history
   (which must **not** include the window being scored: the signature keeps them apart):

   - :func:`detect_dark_share_surge` (market pane): the dark share far above the symbol's baseline;
   - :func:`detect_block_cluster` (the window's per-venue liquidity panes): at least
     ``block_min_blocks`` block prints on one venue, with a block quantity far above the baseline
     (:func:`detect_venue_blocks`: the same on each venue's figures, for a caller that keeps only those);
   - :func:`detect_venue_concentration` (market pane): the top venue's share far above the baseline.

   Each returns an :class:`AlertCandidate` (with its severity) or None.
3. :func:`should_emit`: the emission rule. Per (symbol, kind, window) the first candidate is sent at
   once (an EARLY pane included), and a later one only when its severity is higher than the one sent;
   a lower or equal one is never sent, so an alert already sent is never lowered.
4. :func:`alert_record`: a candidate plus the triggering pane's timing and index and the send time ->
   the darkpool.alerts record (``contracts.ALERT_FIELDS``), keyed by ``contracts.alert_key``.

Scores are robust z-scores: (value - median) / spread, where the median and the spread (the MAD x
1.4826) come from :func:`robust_baseline` over the last ``baseline_windows`` windows (missing values
skipped), and the spread used is never below the detector's floor, in the figure's own units. So a
constant history scores 0 for a value equal to it (no alert) and (value - constant) / floor above it;
every detector also needs a minimum absolute increase or count, and a minimum window volume, so a tiny
spread or an illiquid window does not alert. Only rises alert: a negative score has no severity.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from darkpool.contracts import (
    ALERT_BLOCK_CLUSTER,
    ALERT_DARK_SHARE_SURGE,
    ALERT_FIELDS,
    ALERT_VENUE_CONCENTRATION,
    BLOCK_MIN_SHARES,
    PANE_TIMINGS,
    SEVERITIES,
    format_event_time,
    severity_rank,
)

MAD_SCALE = 1.4826  # MAD x this estimates the standard deviation of normally distributed values

Thresholds = tuple[float, float, float]
"""The score at which each severity of ``contracts.SEVERITIES`` (low, medium, high) starts."""


@dataclass(frozen=True)
class DetectorSettings:
    """Every threshold and baseline length of the detectors (each becomes a pipeline flag).

    Shares and increases of shares are fractions (0-1) like the records' ``dark_share`` and
    ``top_venue_share``: 0.10 is ten percentage points. Block quantities are in shares. Invalid
    values raise ValueError naming the setting. The default thresholds are the ones measured in docs/alerts.md
    "Measured quality" (bench/bench_alerts_quality.py: false alerts per symbol-hour and recall).
    """

    # the baseline: the last `baseline_windows` earlier windows of the symbol; no alert before
    # `min_baseline_windows` of them have a value
    baseline_windows: int = 60
    min_baseline_windows: int = 10
    # the window being scored must have traded at least this much (its pane so far), or nothing alerts
    min_window_quantity: int = 10_000
    min_window_trades: int = 20
    # a share figure (dark share, top venue share) is scored only once its pane holds at least this
    # fraction of the baseline windows' median prints: an EARLY pane of a window's first seconds is
    # noise (quantity-weighted shares of a few hundred heavy-tailed prints), even divided by noise_scale
    min_pane_fraction: float = 0.25
    # dark-share surge: robust z per severity, the spread's floor, and the least rise above the median
    surge_thresholds: Thresholds = (6.0, 9.0, 13.5)
    surge_spread_floor: float = 0.01
    surge_min_increase: float = 0.10
    # block cluster: at least `block_min_blocks` block prints on one venue, scored on that venue's block
    # quantity against the baseline of the largest block quantity on one venue (floor: one smallest block)
    block_min_blocks: int = 5
    block_thresholds: Thresholds = (9.0, 12.0, 18.0)
    block_spread_floor: float = float(BLOCK_MIN_SHARES)
    # venue concentration: robust z of the top venue's share, its floor, the least share the top venue
    # must hold and the least rise above the median
    concentration_thresholds: Thresholds = (4.0, 6.0, 9.0)
    concentration_spread_floor: float = 0.01
    concentration_min_share: float = 0.5
    concentration_min_increase: float = 0.15

    def __post_init__(self) -> None:
        for name in ("surge_thresholds", "block_thresholds", "concentration_thresholds"):
            if isinstance(getattr(self, name), list):  # e.g. from a flag's nargs=3: kept hashable
                object.__setattr__(self, name, tuple(getattr(self, name)))
        problem = settings_problem(self)
        if problem is not None:
            raise ValueError(problem)


def settings_problem(settings: DetectorSettings) -> str | None:
    """What is wrong with the settings, in one sentence, or None (DetectorSettings raises it as ValueError)."""
    if not _is_int(settings.baseline_windows) or settings.baseline_windows < 1:
        return f"baseline_windows must be a whole number >= 1, got {settings.baseline_windows!r}"
    if (not _is_int(settings.min_baseline_windows)
            or not 1 <= settings.min_baseline_windows <= settings.baseline_windows):
        return (f"min_baseline_windows must be a whole number from 1 to baseline_windows "
                f"({settings.baseline_windows}), got {settings.min_baseline_windows!r}")
    for name in ("min_window_quantity", "min_window_trades"):
        value = getattr(settings, name)
        if not _is_int(value) or value < 0:
            return f"{name} must be a whole number >= 0, got {value!r}"
    if not _is_int(settings.block_min_blocks) or settings.block_min_blocks < 1:
        return f"block_min_blocks must be a whole number >= 1, got {settings.block_min_blocks!r}"
    for name in ("surge_thresholds", "block_thresholds", "concentration_thresholds"):
        problem = thresholds_problem(getattr(settings, name))
        if problem is not None:
            return f"{name}: {problem}"
    for name in ("surge_spread_floor", "block_spread_floor", "concentration_spread_floor"):
        value = getattr(settings, name)
        if not _is_number(value) or not value > 0:
            return f"{name} must be a finite number > 0, got {value!r}"
    for name in ("surge_min_increase", "concentration_min_increase"):
        value = getattr(settings, name)
        if not _is_number(value) or not 0 <= value <= 1:
            return f"{name} must be a share increase from 0 to 1, got {value!r}"
    fraction = settings.min_pane_fraction
    if not _is_number(fraction) or not 0 <= fraction <= 1:
        return f"min_pane_fraction must be a fraction from 0 to 1, got {fraction!r}"
    share = settings.concentration_min_share
    if not _is_number(share) or not 0 < share <= 1:
        return f"concentration_min_share must be a share above 0 and at most 1, got {share!r}"
    return None


def thresholds_problem(thresholds: Sequence[float]) -> str | None:
    """What is wrong with a severity threshold triple (one finite, positive, strictly rising score per severity)."""
    if not isinstance(thresholds, tuple | list) or len(thresholds) != len(SEVERITIES):
        return f"expected {len(SEVERITIES)} scores ({', '.join(SEVERITIES)}), got {thresholds!r}"
    if not all(_is_number(t) and t > 0 for t in thresholds):
        return f"every score must be a finite number > 0, got {thresholds!r}"
    if any(lower >= higher for lower, higher in zip(thresholds, thresholds[1:], strict=False)):
        return f"the scores must rise strictly from {SEVERITIES[0]} to {SEVERITIES[-1]}, got {thresholds!r}"
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


DEFAULT_SETTINGS = DetectorSettings()


# --- robust statistics ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Baseline:
    """The robust summary of a symbol's earlier windows: median, spread (MAD x 1.4826) and the count."""

    median: float
    spread: float  # the scaled MAD, as computed (0 for a constant history); the score floors it
    windows: int  # how many values (windows with a finite figure) formed it


def robust_baseline(values: Iterable[float | None]) -> Baseline | None:
    """Median and scaled MAD of the finite values (None, NaN and infinities are skipped); None if none is left."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    median = statistics.median(finite)
    mad = statistics.median([abs(v - median) for v in finite])
    return Baseline(median=median, spread=MAD_SCALE * mad, windows=len(finite))


def robust_score(value: float, baseline: Baseline, floor: float) -> float:
    """(value - median) / max(spread, floor): how many robust standard deviations above its baseline.

    ``floor`` (> 0, in the value's units) keeps a constant or near-constant baseline from dividing by
    zero: a value equal to a constant baseline scores 0, a value above it (value - constant) / floor.
    Scale invariance, precisely: multiplying the history, the value *and the floor* by c > 0 gives the
    same score (exactly when c is a power of two; to rounding otherwise).
    """
    if not floor > 0:
        raise ValueError(f"the spread floor must be > 0, got {floor!r}")
    return (value - baseline.median) / max(baseline.spread, floor)


def severity_for(score: float, thresholds: Sequence[float]) -> str | None:
    """The highest severity whose threshold the score reaches (each threshold itself counts), or None."""
    severity = None
    for name, threshold in zip(SEVERITIES, thresholds, strict=True):
        if score >= threshold:  # False for NaN
            severity = name
    return severity


# --- the detectors ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlertCandidate:
    """What a detector found in one (symbol, kind, window): the alert record without its pane and send time.

    ``window_start`` / ``window_end`` are the panes' own values (the contract's ISO-8601 strings).
    """

    window_start: str
    window_end: str
    symbol: str
    kind: str
    venue: str | None  # the venue the alert names; None for a dark-share surge
    observed: float
    baseline: float  # the baseline's median
    baseline_spread: float  # the baseline's scaled MAD (before the floor)
    baseline_windows: int
    score: float
    severity: str


def block_cluster_figure(liquidity_panes: Iterable[Mapping[str, Any]]) -> float:
    """The largest block quantity (shares) printed on one venue in the window; 0 when no venue printed a block."""
    return float(max((pane["block_quantity"] for pane in _latest_per_venue(liquidity_panes).values()), default=0))


def window_figures(market_pane: Mapping[str, Any],
                   liquidity_panes: Iterable[Mapping[str, Any]]) -> dict[str, float | None]:
    """{alert kind: the window's figure} for the symbol's history (None when the window has none).

    dark_share_surge: the market pane's ``dark_share``; block_cluster: :func:`block_cluster_figure` of
    the window's liquidity panes; venue_concentration: the market pane's ``top_venue_share``.
    """
    return {
        ALERT_DARK_SHARE_SURGE: _figure(market_pane.get("dark_share")),
        ALERT_BLOCK_CLUSTER: block_cluster_figure(liquidity_panes),
        ALERT_VENUE_CONCENTRATION: _figure(market_pane.get("top_venue_share")),
    }


def detect_dark_share_surge(market_pane: Mapping[str, Any], history: Iterable[float | None],
                            settings: DetectorSettings = DEFAULT_SETTINGS,
                            typical_trades: float | None = None) -> AlertCandidate | None:
    """A dark-share surge in one market pane, or None.

    ``history``: the symbol's earlier windows' dark shares, oldest first, without this window;
    ``typical_trades``: the median prints of those windows (the score is divided by
    :func:`noise_scale`, so a pane of a few prints is scored for its noise). Alerts when the window
    traded enough and its pane is large enough (:func:`share_pane_scored`), the baseline has
    ``min_baseline_windows`` values, the dark share is at least ``surge_min_increase`` above the
    baseline's median and its score reaches ``surge_thresholds``.
    """
    if not share_pane_scored(market_pane["trade_count"], market_pane["share_quantity"], typical_trades, settings):
        return None
    observed = _figure(market_pane.get("dark_share"))
    return _candidate(market_pane, ALERT_DARK_SHARE_SURGE, None, observed, history, settings.surge_spread_floor,
                      settings.surge_min_increase, settings.surge_thresholds, settings,
                      noise_scale(market_pane["trade_count"], typical_trades))


def detect_venue_concentration(market_pane: Mapping[str, Any], history: Iterable[float | None],
                               settings: DetectorSettings = DEFAULT_SETTINGS,
                               typical_trades: float | None = None) -> AlertCandidate | None:
    """A venue-concentration jump in one market pane (naming its top venue), or None.

    ``history``: the symbol's earlier windows' top-venue shares, oldest first, without this window;
    ``typical_trades``: as for :func:`detect_dark_share_surge`.
    Alerts when :func:`share_pane_scored`, the baseline has ``min_baseline_windows`` values, the top venue
    holds at least ``concentration_min_share`` of the volume, at least ``concentration_min_increase``
    above the baseline's median, and its score reaches ``concentration_thresholds``.
    """
    if not share_pane_scored(market_pane["trade_count"], market_pane["share_quantity"], typical_trades, settings):
        return None
    observed = _figure(market_pane.get("top_venue_share"))
    if observed is None or observed < settings.concentration_min_share:
        return None
    return _candidate(market_pane, ALERT_VENUE_CONCENTRATION, market_pane.get("top_venue"), observed, history,
                      settings.concentration_spread_floor, settings.concentration_min_increase,
                      settings.concentration_thresholds, settings,
                      noise_scale(market_pane["trade_count"], typical_trades))


def detect_block_cluster(liquidity_panes: Iterable[Mapping[str, Any]], history: Iterable[float | None],
                         settings: DetectorSettings = DEFAULT_SETTINGS,
                         market_pane: Mapping[str, Any] | None = None) -> AlertCandidate | None:
    """A block cluster among one (symbol, window)'s per-venue liquidity panes (naming the venue), or None.

    ``liquidity_panes``: every venue's latest pane of the window (a venue given more than once counts
    with its highest ``pane_index``); all must be of one symbol and window (ValueError otherwise).
    ``history``: the symbol's earlier windows' :func:`block_cluster_figure`, oldest first, without this
    window. The cluster venue is, among the venues with at least ``block_min_blocks`` block prints, the
    one with the largest block quantity (then the most blocks, then the first MPID); its block quantity
    is scored against the baseline and must reach ``block_thresholds``. The window must have traded
    enough: summed over the given venues, or, with ``market_pane`` (the window's market pane), the
    window's own totals (then only the venues that may form a cluster need to be given).
    """
    given = list(liquidity_panes)
    if not given:
        return None
    first = given[0]
    for pane in given:
        if (pane["symbol"], pane["window_start"]) != (first["symbol"], first["window_start"]):
            raise ValueError(f"liquidity panes of several windows or symbols: {first['symbol']} "
                             f"{first['window_start']} and {pane['symbol']} {pane['window_start']}")
    panes = _latest_per_venue(given)
    if market_pane is not None:
        quantity, trades = market_pane["share_quantity"], market_pane["trade_count"]
    else:
        quantity = sum(pane["share_quantity"] for pane in panes.values())
        trades = sum(pane["trade_count"] for pane in panes.values())
    venues = {venue: (pane["block_count"], pane["block_quantity"]) for venue, pane in panes.items()}
    return detect_venue_blocks(first, venues, quantity, trades, history, settings)


def detect_venue_blocks(window: Mapping[str, Any], venues: Mapping[str, tuple[int, float]], quantity: int,
                        trades: int, history: Iterable[float | None],
                        settings: DetectorSettings = DEFAULT_SETTINGS) -> AlertCandidate | None:
    """:func:`detect_block_cluster` on a window's figures: ``venues`` {venue: (block prints, block quantity)}
    (each venue's latest figures; the venues with fewer than ``block_min_blocks`` may be left out),
    ``quantity`` / ``trades`` the window's totals, ``window`` any pane of the (symbol, window) (its
    ``symbol``, ``window_start`` and ``window_end``)."""
    if not _traded_enough(quantity, trades, settings):
        return None
    clusters = [(venue, count, block_quantity) for venue, (count, block_quantity) in venues.items()
                if count >= settings.block_min_blocks]
    if not clusters:
        return None
    venue, _count, block_quantity = min(clusters, key=lambda c: (-c[2], -c[1], c[0]))
    return _candidate(window, ALERT_BLOCK_CLUSTER, venue, float(block_quantity), history,
                      settings.block_spread_floor, 0.0, settings.block_thresholds, settings)


def _candidate(pane: Mapping[str, Any], kind: str, venue: str | None, observed: float | None,
               history: Iterable[float | None], floor: float, min_increase: float, thresholds: Thresholds,
               settings: DetectorSettings, scale: float = 1.0) -> AlertCandidate | None:
    """The shared tail of the detectors: baseline, minimum increase, score (divided by ``scale``, see
    :func:`noise_scale`) and severity."""
    if observed is None:
        return None
    baseline = robust_baseline(list(history)[-settings.baseline_windows:])  # a deque has no slices
    if baseline is None or baseline.windows < settings.min_baseline_windows:
        return None
    if observed - baseline.median < min_increase:
        return None
    score = robust_score(observed, baseline, floor) / scale
    severity = severity_for(score, thresholds)
    if severity is None:
        return None
    return AlertCandidate(
        window_start=pane["window_start"], window_end=pane["window_end"], symbol=pane["symbol"], kind=kind,
        venue=venue, observed=observed, baseline=baseline.median, baseline_spread=baseline.spread,
        baseline_windows=baseline.windows, score=score, severity=severity,
    )


def noise_scale(trades: int, typical_trades: float | None) -> float:
    """How much noisier a share figure of a pane with ``trades`` prints is than the baseline's, whose windows
    had ``typical_trades`` prints (their median): sqrt(typical_trades / trades) when the pane has fewer,
    else 1 (a share measured over n prints wanders like 1/sqrt(n)).

    An early pane holds the first seconds of its window: scored against a baseline of whole windows
    without this, a pane of a few dozen prints would reach any threshold by chance. None (no
    baseline of prints known): 1.
    """
    if typical_trades is None or not typical_trades > 0 or trades >= typical_trades:
        return 1.0
    return math.sqrt(typical_trades / max(trades, 1))


def _traded_enough(quantity: int, trades: int, settings: DetectorSettings) -> bool:
    return quantity >= settings.min_window_quantity and trades >= settings.min_window_trades


def share_pane_scored(trades: int, quantity: int, typical_trades: float | None,
                      settings: DetectorSettings = DEFAULT_SETTINGS) -> bool:
    """Whether a market pane's share figures are scored at all: the window traded enough so far, and the
    pane holds at least ``min_pane_fraction`` of ``typical_trades`` (the baseline windows' median prints;
    None: not known, no such condition)."""
    if not _traded_enough(quantity, trades, settings):
        return False
    return typical_trades is None or trades >= settings.min_pane_fraction * typical_trades


def _figure(value: float | None) -> float | None:
    """A record's ratio as a float, None when it is missing (nothing traded) or not finite."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _latest_per_venue(liquidity_panes: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """venue -> its pane with the highest pane_index (the accumulated value so far)."""
    latest: dict[str, Mapping[str, Any]] = {}
    for pane in liquidity_panes:
        seen = latest.get(pane["venue"])
        if seen is None or pane["pane_index"] >= seen["pane_index"]:
            latest[pane["venue"]] = pane
    return latest


# --- emission --------------------------------------------------------------------------------------
def should_emit(sent_severity: str | None, candidate: AlertCandidate | None) -> bool:
    """The emission rule of one (symbol, kind, window): send a candidate or not.

    ``sent_severity``: the severity already sent for it, None if nothing was. Send when nothing was sent
    and there is a candidate (a detector's candidate always has a severity), or when the candidate's
    severity is higher than the one sent. Never send an equal or lower one: a later pane (a late one
    included) can add an alert or raise it, never lower it.
    """
    if candidate is None:
        return False
    if sent_severity is None:
        return True
    return severity_rank(candidate.severity) > severity_rank(sent_severity)


def alert_record(candidate: AlertCandidate, pane_timing: str, pane_index: int, emitted_at_ms: int) -> dict[str, Any]:
    """The darkpool.alerts record (exactly ``contracts.ALERT_FIELDS``, in order) of a candidate being sent.

    ``pane_timing`` / ``pane_index``: the pane that triggered it (its PaneInfo: EARLY, ON_TIME, LATE or
    UNKNOWN); ``emitted_at_ms``: the send time, epoch ms. Times are the contract's ISO-8601 UTC strings.
    """
    if pane_timing not in PANE_TIMINGS:
        raise ValueError(f"unknown pane timing {pane_timing!r}; expected one of {', '.join(PANE_TIMINGS)}")
    record = {
        "window_start": candidate.window_start, "window_end": candidate.window_end,
        "symbol": candidate.symbol, "kind": candidate.kind, "venue": candidate.venue,
        "observed": candidate.observed, "baseline": candidate.baseline,
        "baseline_spread": candidate.baseline_spread, "baseline_windows": candidate.baseline_windows,
        "score": candidate.score, "severity": candidate.severity,
        "pane_timing": pane_timing, "pane_index": pane_index, "emitted_at": format_event_time(emitted_at_ms),
    }
    assert tuple(record) == ALERT_FIELDS
    return record
