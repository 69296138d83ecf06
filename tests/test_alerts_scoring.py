"""The alert contract and the detectors' pure scoring (darkpool.alerts, docs/alerts.md): unit and property tests.

The panes are real contract records: built from prints with pipeline.records (the pipeline's own
rollup, which takes every figure from darkpool.market), not typed in by hand.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import replace
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darkpool import alerts
from darkpool.alerts import (
    DEFAULT_SETTINGS,
    AlertCandidate,
    Baseline,
    DetectorSettings,
    alert_record,
    block_cluster_figure,
    detect_block_cluster,
    detect_dark_share_surge,
    detect_venue_concentration,
    noise_scale,
    robust_baseline,
    robust_score,
    severity_for,
    share_pane_scored,
    should_emit,
    window_figures,
)
from darkpool.contracts import (
    ALERT_BLOCK_CLUSTER,
    ALERT_DARK_SHARE_SURGE,
    ALERT_FIELDS,
    ALERT_KINDS,
    ALERT_NULLABLE_FIELDS,
    ALERT_SCHEMA,
    ALERT_VENUE_CONCENTRATION,
    ALERTS_TOPIC,
    BLOCK_MIN_SHARES,
    PANE_TIMINGS,
    PARQUET_TABLES,
    SEVERITIES,
    alert_key,
    format_event_time,
    parse_event_time,
    severity_rank,
)
from pipeline.records import VenueStats, liquidity_values, market_values, window_fields

VENUE_TYPES = {"UBSA": "ATS", "MSPL": "ATS", "JPMX": "ATS", "NSDQ": "EXCHANGE", "NYSE": "EXCHANGE"}
DARK, LIT = "UBSA", "NSDQ"
T0 = 1_780_000_020_000 - 1_780_000_020_000 % 60_000  # a whole minute
PERIOD_MS, WINDOW_MS = 60_000, 300_000
SYMBOL = "ACME"
N = DEFAULT_SETTINGS.baseline_windows

# --- panes built from prints --------------------------------------------------------------------


def _window(index: int) -> dict:
    start = T0 + index * PERIOD_MS
    return window_fields(start, start + WINDOW_MS)


def _pane_fields(timing: str = "EARLY", index: int = 0) -> dict:
    return {"pane_timing": timing, "pane_index": index, "emitted_at": format_event_time(T0)}


def _stats(prints: list[tuple[str, float, int]]) -> dict[str, VenueStats]:
    by_venue: dict[str, VenueStats] = {}
    for venue, price, quantity in prints:
        by_venue.setdefault(venue, VenueStats()).add(price, quantity, None)
    return by_venue


def _split(venue: str, quantity: int, prints: int = 10, price: float = 20.0) -> list[tuple[str, float, int]]:
    """``quantity`` shares on ``venue`` as ``prints`` prints (the last takes the remainder)."""
    if quantity <= 0:
        return []
    size = max(1, quantity // prints)
    sizes = [size] * (min(prints, quantity) - 1)
    return [(venue, price, q) for q in [*sizes, quantity - sum(sizes)]]


def market_pane(index: int, quantities: dict[str, int], timing: str = "EARLY", pane_index: int = 0) -> dict:
    """The darkpool.market record of window ``index`` with these venue quantities (10 small prints each)."""
    prints = [p for venue, q in quantities.items() for p in _split(venue, q)]
    return {**_window(index), **market_values(SYMBOL, _stats(prints), VENUE_TYPES), **_pane_fields(timing, pane_index)}


def liquidity_panes(index: int, prints: list[tuple[str, float, int]], pane_index: int = 0) -> list[dict]:
    """The darkpool.liquidity records of window ``index``, one per venue of ``prints``."""
    return [{**_window(index), **liquidity_values(SYMBOL, venue, stats, VENUE_TYPES),
             **_pane_fields("EARLY", pane_index)} for venue, stats in sorted(_stats(prints).items())]


def dark_share_pane(index: int, dark_points: int, total: int = 100_000) -> dict:
    """A market pane whose dark share is exactly dark_points / total."""
    return market_pane(index, {DARK: dark_points, LIT: total - dark_points})


def normal_prints(seed: int) -> list[tuple[str, float, int]]:
    """Ordinary trading: small prints on five venues, and one block on a venue every other window."""
    prints = [p for venue in VENUE_TYPES for p in _split(venue, 20_000 + 1_000 * ((seed + len(venue)) % 5))]
    if seed % 2:
        prints.append(("JPMX", 20.0, BLOCK_MIN_SHARES + 500 * (seed % 3)))
    return prints


# --- the contract ------------------------------------------------------------------------------------


def test_alert_contract_fields_kinds_severities_and_key() -> None:
    assert ALERTS_TOPIC == "darkpool.alerts"
    assert ALERT_KINDS == ("dark_share_surge", "block_cluster", "venue_concentration")
    assert ALERT_FIELDS == tuple(ALERT_SCHEMA.names) == (
        "window_start", "window_end", "symbol", "kind", "venue", "observed", "baseline", "baseline_spread",
        "baseline_windows", "score", "severity", "pane_timing", "pane_index", "emitted_at")
    assert PARQUET_TABLES["alerts"] is ALERT_SCHEMA
    assert [severity_rank(s) for s in SEVERITIES] == [0, 1, 2]
    assert severity_rank("low") < severity_rank("medium") < severity_rank("high")
    with pytest.raises(ValueError, match="unknown severity 'critical'"):
        severity_rank("critical")
    start = format_event_time(T0)
    assert alert_key("ACME", ALERT_BLOCK_CLUSTER, start) == f"ACME|block_cluster|{start}"


# --- robust statistics ------------------------------------------------------------------------------


def test_robust_baseline_is_median_and_scaled_mad_ignoring_missing_values() -> None:
    baseline = robust_baseline([1.0, None, 2.0, math.nan, 3.0, math.inf, 4.0, 100.0])
    assert baseline == Baseline(median=3.0, spread=alerts.MAD_SCALE * 1.0, windows=5)
    assert robust_baseline([]) is None
    assert robust_baseline([None, math.nan]) is None
    assert robust_baseline([0.25] * 7) == Baseline(median=0.25, spread=0.0, windows=7)


def test_one_outlier_does_not_hide_the_next() -> None:
    history = [0.40, 0.41, 0.39] * 19 + [0.95, 0.40, 0.41]  # one earlier surge inside the baseline
    baseline = robust_baseline(history)
    assert baseline is not None
    assert baseline.median == pytest.approx(0.40)
    assert robust_score(0.95, baseline, 0.01) > 9  # the same surge again still scores high


def test_score_above_a_constant_baseline_is_the_rise_over_the_floor() -> None:
    constant = robust_baseline([0.5] * 30)
    assert constant is not None
    assert robust_score(0.5, constant, 0.01) == 0.0
    assert robust_score(0.58, constant, 0.01) == pytest.approx(8.0)
    assert robust_score(0.42, constant, 0.01) == pytest.approx(-8.0)
    spread = robust_baseline([0.4, 0.5, 0.6] * 10)
    assert spread is not None
    assert robust_score(0.6, spread, 0.01) == pytest.approx(0.1 / (alerts.MAD_SCALE * 0.1))
    with pytest.raises(ValueError, match="floor must be > 0"):
        robust_score(1.0, constant, 0.0)


# exact binary fractions (k / 1024) so that scaling by a power of two is exact
_values = st.integers(min_value=0, max_value=10**7).map(lambda k: k / 1024)


@given(series=st.lists(_values, min_size=1, max_size=80), value=_values,
       floor=st.integers(min_value=1, max_value=10**4).map(lambda k: k / 1024),
       power=st.integers(min_value=-30, max_value=30))
def test_score_is_exactly_scale_invariant_for_powers_of_two(series, value, floor, power) -> None:
    c = 2.0 ** power
    baseline, scaled = robust_baseline(series), robust_baseline([c * v for v in series])
    assert baseline is not None and scaled is not None
    assert robust_score(c * value, scaled, c * floor) == robust_score(value, baseline, floor)


@given(series=st.lists(st.floats(min_value=0, max_value=1e4), min_size=1, max_size=80),
       value=st.floats(min_value=0, max_value=1e4), floor=st.floats(min_value=0.01, max_value=100),
       c=st.floats(min_value=1e-3, max_value=1e3))
def test_score_is_scale_invariant_to_rounding(series, value, floor, c) -> None:
    baseline, scaled = robust_baseline(series), robust_baseline([c * v for v in series])
    assert baseline is not None and scaled is not None
    assert math.isclose(robust_score(c * value, scaled, c * floor), robust_score(value, baseline, floor),
                        rel_tol=1e-9, abs_tol=1e-6)


def test_severity_for_each_threshold_counts_and_below_is_none() -> None:
    thresholds = (4.0, 6.0, 9.0)
    assert severity_for(3.999, thresholds) is None
    assert severity_for(4.0, thresholds) == "low"
    assert severity_for(5.9, thresholds) == "low"
    assert severity_for(6.0, thresholds) == "medium"
    assert severity_for(9.0, thresholds) == "high"
    assert severity_for(1e9, thresholds) == "high"
    assert severity_for(-20.0, thresholds) is None
    assert severity_for(math.nan, thresholds) is None


@given(a=st.floats(allow_nan=False), b=st.floats(allow_nan=False))
def test_severity_never_falls_as_the_score_rises(a, b) -> None:
    low, high = sorted((a, b))
    ranks = [-1 if s is None else severity_rank(s) for s in (severity_for(x, (4, 6, 9)) for x in (low, high))]
    assert ranks[0] <= ranks[1]


# --- settings ------------------------------------------------------------------------------------------


def test_default_settings_are_valid_and_documented_values() -> None:
    s = DetectorSettings()
    assert (s.baseline_windows, s.block_min_blocks) == (60, 5)
    assert (s.surge_thresholds, s.block_thresholds, s.concentration_thresholds) == (
        (6.0, 9.0, 13.5), (9.0, 12.0, 18.0), (4.0, 6.0, 9.0))  # docs/alerts.md's tables
    assert 1 <= s.min_baseline_windows <= s.baseline_windows


@pytest.mark.parametrize(("change", "message"), [
    ({"baseline_windows": 0}, "baseline_windows must be"),
    ({"min_baseline_windows": 0}, "min_baseline_windows must be"),
    ({"min_baseline_windows": 61}, "min_baseline_windows must be"),
    ({"baseline_windows": 5.5}, "baseline_windows must be"),
    ({"min_window_quantity": -1}, "min_window_quantity must be"),
    ({"min_window_trades": -1}, "min_window_trades must be"),
    ({"block_min_blocks": 0}, "block_min_blocks must be"),
    ({"min_pane_fraction": 1.5}, "min_pane_fraction must be"),
    ({"min_pane_fraction": -0.1}, "min_pane_fraction must be"),
    ({"surge_thresholds": (4.0, 6.0)}, "surge_thresholds: expected 3 scores"),
    ({"surge_thresholds": (6.0, 4.0, 9.0)}, "surge_thresholds: the scores must rise strictly"),
    ({"block_thresholds": (4.0, 4.0, 9.0)}, "block_thresholds: the scores must rise strictly"),
    ({"concentration_thresholds": (0.0, 6.0, 9.0)}, "concentration_thresholds: every score must be"),
    ({"surge_thresholds": (4.0, 6.0, math.inf)}, "surge_thresholds: every score must be"),
    ({"surge_spread_floor": 0.0}, "surge_spread_floor must be"),
    ({"block_spread_floor": -1.0}, "block_spread_floor must be"),
    ({"concentration_spread_floor": math.nan}, "concentration_spread_floor must be"),
    ({"surge_min_increase": -0.1}, "surge_min_increase must be"),
    ({"concentration_min_increase": 1.5}, "concentration_min_increase must be"),
    ({"concentration_min_share": 0.0}, "concentration_min_share must be"),
    ({"concentration_min_share": 1.1}, "concentration_min_share must be"),
])
def test_invalid_settings_raise_a_clear_value_error(change, message) -> None:
    with pytest.raises(ValueError, match=message):
        DetectorSettings(**change)
    with pytest.raises(ValueError, match=message):
        replace(DEFAULT_SETTINGS, **change)


# --- dark-share surge -----------------------------------------------------------------------------------


def _noisy_history(center: int, step: int, windows: int = N) -> list[float | None]:
    """Dark shares center-step, center, center+step (in 1/100,000) repeating, as the market panes give them."""
    return [dark_share_pane(i, center + step * ((i % 3) - 1))["dark_share"] for i in range(windows)]


@pytest.mark.parametrize(("step", "dark_points", "severity"), [
    (4_000, 80_000, "low"),  # spread 0.0593: (0.80 - 0.40) / 0.0593 = 6.7
    (4_000, 99_000, "medium"),  # 9.9
    (1_000, 52_000, "low"),  # spread 0.0148: 8.1
    (1_000, 55_000, "medium"),  # 10.1
    (1_000, 62_000, "high"),  # 14.8
])
def test_a_clear_surge_alerts_with_its_severity(step, dark_points, severity) -> None:
    history = _noisy_history(40_000, step)
    pane = dark_share_pane(N, dark_points)
    candidate = detect_dark_share_surge(pane, history)
    assert candidate is not None
    baseline = robust_baseline(history)
    assert candidate == AlertCandidate(
        window_start=pane["window_start"], window_end=pane["window_end"], symbol=SYMBOL, kind=ALERT_DARK_SHARE_SURGE,
        venue=None, observed=dark_points / 100_000, baseline=baseline.median, baseline_spread=baseline.spread,
        baseline_windows=N, score=robust_score(dark_points / 100_000, baseline, 0.01), severity=severity)


def test_surge_needs_the_minimum_increase_history_and_volume() -> None:
    flat = [0.40] * N
    # score (0.49 - 0.40) / 0.01 = 9 (medium), but only nine points above the median: a tiny spread does not alert
    assert detect_dark_share_surge(dark_share_pane(N, 49_000), flat) is None
    assert detect_dark_share_surge(dark_share_pane(N, 51_000), flat).severity == "medium"  # 11
    assert detect_dark_share_surge(dark_share_pane(N, 54_000), flat).severity == "high"  # 14
    # too little history (None windows do not count)
    short = [0.40] * (DEFAULT_SETTINGS.min_baseline_windows - 1) + [None] * 5
    assert detect_dark_share_surge(dark_share_pane(N, 90_000), short) is None
    # an illiquid window: too few shares, or too few prints
    thin = dark_share_pane(N, 900, total=1_000)
    assert thin["dark_share"] == 0.9 and detect_dark_share_surge(thin, flat) is None
    few = market_pane(N, {DARK: 90_000, LIT: 10_000}) | {"trade_count": 3}
    assert detect_dark_share_surge(few, flat) is None
    # nothing traded: no dark share
    empty = market_pane(N, {})
    assert empty["dark_share"] is None and detect_dark_share_surge(empty, flat, replace(
        DEFAULT_SETTINGS, min_window_quantity=0, min_window_trades=0)) is None


def test_only_the_last_baseline_windows_form_the_baseline() -> None:
    recent = _noisy_history(40_000, 1_000)
    older = [0.90] * 500  # a long-gone regime
    pane = dark_share_pane(N, 55_000)
    assert detect_dark_share_surge(pane, older + recent) == detect_dark_share_surge(pane, recent)
    assert detect_dark_share_surge(pane, deque(older + recent)) == detect_dark_share_surge(pane, recent)


_dark_points = st.integers(min_value=0, max_value=100_000)


@settings(max_examples=60, deadline=None)
@given(points=_dark_points, windows=st.integers(min_value=1, max_value=90))
def test_a_constant_series_never_alerts(points, windows) -> None:
    """Each window of a constant dark share, scored against the ones before it: no alert of any kind."""
    panes = [dark_share_pane(i, points) for i in range(windows)]
    prints = [p for p in normal_prints(0) if p[0] != "JPMX"] + [("JPMX", 20.0, 12_000)] * 6  # 6 blocks every window
    history: dict[str, list[float | None]] = {kind: [] for kind in ALERT_KINDS}
    for i, pane in enumerate(panes):
        liquidity = liquidity_panes(i, prints)
        assert detect_dark_share_surge(pane, history[ALERT_DARK_SHARE_SURGE]) is None
        assert detect_venue_concentration(pane, history[ALERT_VENUE_CONCENTRATION]) is None
        assert detect_block_cluster(liquidity, history[ALERT_BLOCK_CLUSTER]) is None
        for kind, figure in window_figures(pane, liquidity).items():
            history[kind].append(figure)


@settings(max_examples=60, deadline=None)
@given(history=st.lists(st.one_of(st.none(), _dark_points.map(lambda k: k / 100_000)), min_size=0, max_size=90),
       first=_dark_points, second=_dark_points)
def test_the_baseline_is_the_history_alone_never_the_window_being_scored(history, first, second) -> None:
    """The baseline fields are robust_baseline(history[-N:]) whatever the scored value; the pane never enters it."""
    expected = robust_baseline(history[-N:])
    results = [detect_dark_share_surge(dark_share_pane(N, points), history) for points in (first, second)]
    for candidate in results:
        if candidate is not None:
            assert (candidate.baseline, candidate.baseline_spread, candidate.baseline_windows) == (
                expected.median, expected.spread, expected.windows)
    if all(results):
        assert (results[0].baseline, results[0].baseline_spread) == (results[1].baseline, results[1].baseline_spread)


def test_the_caller_must_not_put_the_scored_window_in_its_history() -> None:
    """The detector takes history as given: with the window's own value inside, that value is part of it."""
    history = _noisy_history(40_000, 1_000, windows=12)
    pane = dark_share_pane(12, 99_000)
    clean = detect_dark_share_surge(pane, history)
    polluted = detect_dark_share_surge(pane, [*history, pane["dark_share"]])
    assert clean.baseline_windows == 12 and polluted.baseline_windows == 13
    assert clean == detect_dark_share_surge(pane, list(history))  # and the history is not modified


@settings(max_examples=60, deadline=None)
@given(history=st.lists(_dark_points.map(lambda k: k / 100_000), min_size=10, max_size=90), points=_dark_points)
def test_no_rise_no_alert(history, points) -> None:
    """A dark share at or below the baseline's median (or less than the minimum increase above it) never alerts."""
    baseline = robust_baseline(history[-N:])
    candidate = detect_dark_share_surge(dark_share_pane(N, points), history)
    if points / 100_000 - baseline.median < DEFAULT_SETTINGS.surge_min_increase:
        assert candidate is None
    if candidate is not None:
        assert candidate.score >= DEFAULT_SETTINGS.surge_thresholds[0]


# --- block cluster -------------------------------------------------------------------------------------


def _block_history(windows: int = N) -> list[float | None]:
    return [block_cluster_figure(liquidity_panes(i, normal_prints(i))) for i in range(windows)]


def test_a_block_cluster_on_one_venue_alerts_naming_the_venue() -> None:
    history = _block_history()
    baseline = robust_baseline(history)
    assert 0 < baseline.median < 12_000  # ordinary windows have at most one block
    # six blocks of 12,000 on one venue score (72,000 - 5,000) / 10,000 (the floor) = 6.7: under the low threshold
    small = normal_prints(N) + [("MSPL", 20.0, 12_000)] * 6
    assert detect_block_cluster(liquidity_panes(N, small), history) is None
    prints = normal_prints(N) + [("MSPL", 20.0, 25_000)] * 6
    candidate = detect_block_cluster(liquidity_panes(N, prints), history)
    assert candidate is not None
    assert (candidate.kind, candidate.venue, candidate.observed) == (ALERT_BLOCK_CLUSTER, "MSPL", 150_000.0)
    assert candidate.score == pytest.approx((150_000 - baseline.median) / max(baseline.spread, BLOCK_MIN_SHARES))
    assert candidate.severity == severity_for(candidate.score, DEFAULT_SETTINGS.block_thresholds) == "medium"  # 14.5
    assert candidate.baseline_windows == N


def test_block_cluster_needs_enough_blocks_on_one_venue() -> None:
    history = _block_history()
    spread_over_venues = normal_prints(N) + [(v, 20.0, 15_000) for v in ("MSPL", "UBSA", "JPMX", "NYSE")]
    assert detect_block_cluster(liquidity_panes(N, spread_over_venues), history) is None
    four = normal_prints(N) + [("MSPL", 20.0, 30_000)] * 4  # one short of block_min_blocks
    assert detect_block_cluster(liquidity_panes(N, four), history) is None
    assert detect_block_cluster(liquidity_panes(N, four), history, replace(DEFAULT_SETTINGS, block_min_blocks=4))
    # blocks by notional count too: 6 prints of 1,000 shares at $250 = $250,000 each
    by_notional = normal_prints(N) + [("UBSA", 250.0, 1_000)] * 6
    assert detect_block_cluster(liquidity_panes(N, by_notional), [0.0] * N) is None  # 6,000 shares: score 0.6
    assert detect_block_cluster(liquidity_panes(N, by_notional), [0.0] * N,
                                replace(DEFAULT_SETTINGS, block_spread_floor=500.0)).venue == "UBSA"  # score 12


def test_block_cluster_picks_the_largest_cluster_and_uses_each_venues_latest_pane() -> None:
    history = [0.0] * N
    prints = normal_prints(N) + [("MSPL", 20.0, 20_000)] * 5 + [("UBSA", 20.0, 40_000)] * 5  # scores 10 and 20
    candidate = detect_block_cluster(liquidity_panes(N, prints), history)
    assert (candidate.venue, candidate.observed, candidate.severity) == ("UBSA", 200_000.0, "high")
    earlier = liquidity_panes(N, normal_prints(N), pane_index=0)
    later = liquidity_panes(N, prints, pane_index=1)
    assert detect_block_cluster([*later, *earlier], history) == candidate  # a venue's older pane is ignored
    with pytest.raises(ValueError, match="several windows or symbols"):
        detect_block_cluster([*liquidity_panes(N, prints), *liquidity_panes(N + 1, prints)], history)
    assert detect_block_cluster([], history) is None
    assert block_cluster_figure([]) == 0.0


def test_block_cluster_with_the_market_pane_checks_the_windows_own_totals() -> None:
    """Given only the cluster venue's pane, the traded-enough check uses the window's market pane totals."""
    history = [0.0] * N
    cluster = [p for p in liquidity_panes(N, normal_prints(N) + [("MSPL", 20.0, 25_000)] * 6)
               if p["venue"] == "MSPL"]
    strict = replace(DEFAULT_SETTINGS, min_window_quantity=200_000)  # more than MSPL's 150,000 + its prints
    window = market_pane(N, {"MSPL": 100_000, "UBSA": 60_000, "NYSE": 60_000})
    assert detect_block_cluster(cluster, history, strict) is None  # the given panes alone are too small
    with_market = detect_block_cluster(cluster, history, strict, market_pane=window)
    assert with_market is not None and with_market.venue == "MSPL"
    quiet = market_pane(N, {"MSPL": 90_000})  # the whole window traded less than the minimum
    assert detect_block_cluster(cluster, history, strict, market_pane=quiet) is None


# --- venue concentration ------------------------------------------------------------------------------


def _even_market(i: int) -> dict:
    return market_pane(i, {v: 20_000 + 2_000 * ((i + j) % 3) for j, v in enumerate(VENUE_TYPES)})


def test_a_venue_suddenly_holding_most_volume_alerts_naming_it() -> None:
    history = [_even_market(i)["top_venue_share"] for i in range(N)]
    takeover = market_pane(N, {"MSPL": 160_000, "UBSA": 10_000, "NSDQ": 20_000, "NYSE": 10_000})
    candidate = detect_venue_concentration(takeover, history)
    assert candidate is not None
    assert (candidate.kind, candidate.venue, candidate.observed) == (ALERT_VENUE_CONCENTRATION, "MSPL", 0.8)
    assert candidate.severity == "high"
    assert candidate.baseline == pytest.approx(robust_baseline(history).median)


def test_concentration_needs_the_minimum_share_and_increase() -> None:
    history = [_even_market(i)["top_venue_share"] for i in range(N)]  # about 0.22
    below_half = market_pane(N, {"MSPL": 45_000, "UBSA": 20_000, "NSDQ": 20_000, "NYSE": 15_000})
    assert below_half["top_venue_share"] == 0.45
    assert detect_venue_concentration(below_half, history) is None
    assert detect_venue_concentration(below_half, history, replace(DEFAULT_SETTINGS, concentration_min_share=0.4))
    usual_monopoly = [0.9] * N  # a symbol that always trades on one venue
    assert detect_venue_concentration(market_pane(N, {"MSPL": 95_000, "NSDQ": 5_000}), usual_monopoly) is None


# --- the emission rule ------------------------------------------------------------------------------------


def _candidate(severity: str) -> AlertCandidate:
    return AlertCandidate(window_start=format_event_time(T0), window_end=format_event_time(T0 + WINDOW_MS),
                          symbol=SYMBOL, kind=ALERT_DARK_SHARE_SURGE, venue=None, observed=0.9, baseline=0.4,
                          baseline_spread=0.02, baseline_windows=N, score=25.0, severity=severity)


def test_emission_rule_first_raise_lower_same() -> None:
    assert should_emit(None, None) is False
    assert should_emit(None, _candidate("low")) is True  # first: at once
    assert should_emit(None, _candidate("high")) is True
    assert should_emit("low", _candidate("medium")) is True  # raised
    assert should_emit("medium", _candidate("medium")) is False  # same: not again
    assert should_emit("high", _candidate("low")) is False  # lower: never
    assert should_emit("high", None) is False
    with pytest.raises(ValueError, match="unknown severity"):
        should_emit("urgent", _candidate("low"))


@given(st.lists(st.one_of(st.none(), st.sampled_from(SEVERITIES)), max_size=30))
def test_emitted_severities_rise_strictly_and_end_at_the_highest(severities) -> None:
    sent: str | None = None
    emitted: list[str] = []
    for severity in severities:
        candidate = None if severity is None else _candidate(severity)
        if should_emit(sent, candidate):
            emitted.append(candidate.severity)
            sent = candidate.severity
    ranks = [severity_rank(s) for s in emitted]
    assert ranks == sorted(set(ranks))
    seen = [s for s in severities if s is not None]
    assert sent == (max(seen, key=severity_rank) if seen else None)
    if seen:
        assert emitted[0] == seen[0]  # the first candidate goes out at once


def test_an_early_pane_fires_a_later_pane_raises_once_and_a_weaker_late_pane_is_dropped() -> None:
    """Accumulating panes of one window through detector and emission rule, as the pipeline will run them."""
    history = _noisy_history(40_000, 1_000)
    # scores 10.1 (medium), 12.1 (medium), 20.2 (high), 13.49 (medium)
    panes = [("EARLY", 0, 55_000), ("EARLY", 1, 58_000), ("ON_TIME", 2, 70_000), ("LATE", 3, 60_000)]
    sent: str | None = None
    records = []
    for timing, index, points in panes:
        pane = dark_share_pane(N, points) | {"pane_timing": timing, "pane_index": index}
        candidate = detect_dark_share_surge(pane, history)
        if should_emit(sent, candidate):
            records.append(alert_record(candidate, timing, index, T0 + WINDOW_MS + index))
            sent = candidate.severity
    assert [(r["pane_timing"], r["severity"]) for r in records] == [("EARLY", "medium"), ("ON_TIME", "high")]


# --- the record ------------------------------------------------------------------------------------------


def _to_arrow(record: dict) -> dict:
    times = ("window_start", "window_end", "emitted_at")
    return {k: datetime.fromtimestamp(parse_event_time(v) / 1000, tz=UTC) if k in times else v
            for k, v in record.items()}


@pytest.mark.parametrize("timing", PANE_TIMINGS)
def test_the_record_has_exactly_the_alert_fields_and_fits_the_schema(timing) -> None:
    surge = detect_dark_share_surge(dark_share_pane(N, 60_000), _noisy_history(40_000, 1_000))
    cluster = detect_block_cluster(liquidity_panes(N, normal_prints(N) + [("MSPL", 20.0, 25_000)] * 6),
                                   _block_history())
    emitted_ms = T0 + WINDOW_MS + 1_234
    records = [alert_record(c, timing, 3, emitted_ms) for c in (surge, cluster)]
    for record in records:
        assert tuple(record) == ALERT_FIELDS
        assert record["emitted_at"] == format_event_time(emitted_ms)
        assert parse_event_time(record["window_end"]) - parse_event_time(record["window_start"]) == WINDOW_MS
    table = pa.Table.from_pylist([_to_arrow(r) for r in records], schema=ALERT_SCHEMA)
    assert table.schema == ALERT_SCHEMA
    rows = table.to_pylist()
    assert [r["venue"] for r in rows] == [None, "MSPL"]
    assert {f for r in records for f, v in r.items() if v is None} <= ALERT_NULLABLE_FIELDS
    assert [r["kind"] for r in rows] == [ALERT_DARK_SHARE_SURGE, ALERT_BLOCK_CLUSTER]
    assert rows[1]["emitted_at"] == datetime.fromtimestamp(emitted_ms / 1000, tz=UTC)
    assert rows[0]["pane_timing"] == timing and rows[0]["pane_index"] == 3


def test_the_record_refuses_an_unknown_pane_timing() -> None:
    with pytest.raises(ValueError, match="unknown pane timing 'SOON'"):
        alert_record(_candidate("low"), "SOON", 0, T0)


# --- noise of a partial (early) pane ---------------------------------------------------------------


def test_noise_scale_is_one_for_whole_windows_and_grows_as_one_over_sqrt_prints() -> None:
    assert noise_scale(100, None) == 1.0 and noise_scale(100, 0.0) == 1.0
    assert noise_scale(100, 100.0) == 1.0 and noise_scale(400, 100.0) == 1.0  # never below 1
    assert noise_scale(25, 100.0) == pytest.approx(2.0)
    assert noise_scale(1, 10_000.0) == pytest.approx(100.0)
    assert noise_scale(0, 100.0) == pytest.approx(10.0)  # an empty pane counts as one print


def test_an_early_pane_of_a_few_prints_is_scored_for_its_noise() -> None:
    """The same jump in dark share alerts on a whole window, not on a pane of a hundredth of its prints."""
    history = _noisy_history(40_000, 1_000, windows=N)
    typical = 10_000.0  # the baseline's windows had 10,000 prints each
    whole = {**dark_share_pane(N, 70_000), "trade_count": 10_000}
    full = detect_dark_share_surge(whole, history, typical_trades=typical)
    assert full.severity == "high" and full.score >= DEFAULT_SETTINGS.surge_thresholds[-1]  # 20.2
    early = {**whole, "trade_count": 100}  # x 10: (0.70 - 0.40) / 0.0148 / 10 = 2.0
    assert detect_dark_share_surge(early, history, typical_trades=typical) is None
    quarter = detect_dark_share_surge({**whole, "trade_count": 2_500}, history, typical_trades=typical)
    assert quarter.score == pytest.approx(full.score / 2)  # a quarter of the prints: x 1/2
    assert detect_dark_share_surge(early, history) == detect_dark_share_surge(whole, history)  # no baseline of prints


def test_share_figures_wait_for_a_quarter_of_the_typical_prints() -> None:
    """A pane with less than ``min_pane_fraction`` (0.25) of the baseline windows' median prints is not scored
    for its shares at all (the demo's false EARLY alerts came from panes of 2-15 % of them); 0 leaves only
    ``noise_scale``."""
    assert DEFAULT_SETTINGS.min_pane_fraction == 0.25
    assert not share_pane_scored(2_499, 1_000_000, 10_000.0) and share_pane_scored(2_500, 1_000_000, 10_000.0)
    assert share_pane_scored(20, 10_000, None)  # no baseline of prints known: only the window minimums
    assert not share_pane_scored(19, 10_000, None) and not share_pane_scored(20, 9_999, None)
    history = _noisy_history(40_000, 1_000, windows=N)
    whole = {**dark_share_pane(N, 70_000), "trade_count": 10_000}
    below = {**whole, "trade_count": 2_499}
    assert detect_dark_share_surge(below, history, typical_trades=10_000.0) is None
    loose = replace(DEFAULT_SETTINGS, min_pane_fraction=0.0)
    scored = detect_dark_share_surge(below, history, loose, typical_trades=10_000.0)
    full = detect_dark_share_surge(whole, history, typical_trades=10_000.0)
    assert scored.score == pytest.approx(full.score / math.sqrt(10_000 / 2_499))
    takeover = {**market_pane(N, {"MSPL": 160_000, "UBSA": 10_000, "NSDQ": 20_000, "NYSE": 10_000}),
                "trade_count": 100}
    even = [_even_market(i)["top_venue_share"] for i in range(N)]
    assert detect_venue_concentration(takeover, even, typical_trades=401.0) is None
    assert detect_venue_concentration(takeover, even, typical_trades=400.0) is not None
