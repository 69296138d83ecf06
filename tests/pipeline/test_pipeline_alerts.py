"""TestStream tests (streaming DirectRunner) pinning the live alerts of the pipeline (DetectAlerts).

The whole LiquidityAnalytics transform runs with ``--alerts`` over Kafka-like
records. One-minute tumbling windows (``--window-minutes 1 --period-minutes 1``)
put each injected event in exactly one window; the detectors' thresholds are
the defaults except a smaller baseline (10 windows, 5 needed) and other spread
floors (dark share 1/30 instead of 0.01, block quantity 500 shares instead of
10,000), so the scores below are easy to compute by hand against the default
thresholds (low / medium / high: surge 6 / 9 / 13.5, blocks 9 / 12 / 18,
concentration 4 / 6 / 9).

Every minute of the tape is the same ordinary trading: 4 prints of 9,000 shares
on XNAS, 3 on ARCX (lit) and 3 on UBSA (dark) at $10: 90,000 shares, dark share
0.30, top venue XNAS at 0.40, no block. The baselines are constant, so a score
is (value - baseline) / floor. Injected:

- minute 20, a dark-share surge, in two parts with an early firing after each:
  5 more dark prints (dark share 72,000 / 135,000 = 0.533: score 7.0, low),
  then 15 more (207,000 / 270,000 = 0.767: score 14.0, high), spread over UBSA
  and MSPL so no venue's share rises far (top venue at most 0.433);
- minute 22, the same 15 dark prints arriving late (after its ON_TIME pane,
  inside the allowed lateness): 162,000 / 225,000 = 0.72, score 12.6, medium;
- minute 25, a block cluster: 7 blocks by notional (1,000 shares at $200 =
  $200,000) on UBSA: block quantity 7,000 against a baseline of 0 with a floor
  of 500: score 14, medium (dark share 34/97 = 0.35 and the top venue share
  barely move);
- minute 27, a venue takeover: 18 prints of 9,000 on BATS (lit): BATS holds
  162,000 / 252,000 = 0.643 (+0.243 over the baseline's 0.40, floor 0.01:
  score 24.3, high), while the dark share falls (no surge).
"""

from __future__ import annotations

import random

import pytest
from apache_beam.testing.test_stream import TestStream as BeamTestStream  # not collected by pytest
from pipeline_testkit import MINUTE, SECOND, T0, record, run_analytics

from darkpool.alerts import DetectorSettings
from darkpool.contracts import (
    ALERT_BLOCK_CLUSTER,
    ALERT_DARK_SHARE_SURGE,
    ALERT_FIELDS,
    ALERT_VENUE_CONCENTRATION,
    format_event_time,
    severity_rank,
)
from pipeline.options import PipelineConfig

SETTINGS = DetectorSettings(baseline_windows=10, min_baseline_windows=5, min_window_quantity=1_000,
                            min_window_trades=5, surge_spread_floor=1 / 30, block_spread_floor=500.0)
MINUTES = 30
SURGE, LATE_SURGE, BLOCKS, TAKEOVER = 20, 22, 25, 27


def config(shape: str = "two-stage") -> PipelineConfig:
    return PipelineConfig(shape=shape, window_minutes=1.0, period_minutes=1.0, early_firing_seconds=2,
                          alerts=True, detector_settings=SETTINGS)


class Tape:
    """Trades of the tape, each with a unique offset (trade id)."""

    def __init__(self) -> None:
        self.offset = 0

    def trade(self, minute: int, second: float, venue: str, quantity: int = 9_000, price: float = 10.0):
        self.offset += 1
        return record(self.offset, T0 + minute * MINUTE + int(second * SECOND), venue=venue, quantity=quantity,
                      price=price)

    def ordinary(self, minute: int) -> list:
        venues = ["XNAS"] * 4 + ["ARCX"] * 3 + ["UBSA"] * 3
        return [self.trade(minute, 1 + 5 * i, venue) for i, venue in enumerate(venues)]

    def dark(self, minute: int, count: int, first: int = 0) -> list:
        return [self.trade(minute, 50 + 0.1 * i, ("UBSA", "MSPL")[(first + i) % 2]) for i in range(count)]


def tape_stream(shuffle_seed: int | None = None, early: bool = True) -> BeamTestStream:
    """The tape described in the module docstring; ``shuffle_seed``: each minute's trades in a shuffled order;
    ``early``: the surge minute in two parts with an early firing after each (else all of it at once)."""
    tape = Tape()
    stream = BeamTestStream().advance_watermark_to(T0 / 1000)
    for minute in range(MINUTES):
        trades = tape.ordinary(minute)
        if minute == BLOCKS:
            trades += [tape.trade(minute, 52 + 0.5 * i, "UBSA", quantity=1_000, price=200.0) for i in range(7)]
        if minute == TAKEOVER:
            trades += [tape.trade(minute, 52 + 0.2 * i, "BATS") for i in range(18)]
        if minute == SURGE and not early:
            trades += tape.dark(minute, 20)
        if shuffle_seed is not None:
            random.Random(shuffle_seed * 100 + minute).shuffle(trades)
        stream = stream.add_elements(trades)
        if minute == SURGE and early:
            stream = (stream.advance_processing_time(3).add_elements(tape.dark(minute, 5))
                      .advance_processing_time(3).add_elements(tape.dark(minute, 15, first=5))
                      .advance_processing_time(3))
        stream = stream.advance_watermark_to((T0 + (minute + 1) * MINUTE) / 1000)
        if minute == LATE_SURGE + 2:  # the watermark is at minute 25: minute 22 closed, within lateness
            stream = stream.add_elements(tape.dark(LATE_SURGE, 15))
    return stream.advance_watermark_to_infinity()


def window(minute: int) -> str:
    return format_event_time(T0 + minute * MINUTE)


def summary(alerts: list[dict]) -> list[tuple]:
    """(window start HH:MM, kind, venue, severity, pane timing), in send order per key, sorted by key."""
    ordered = sorted(alerts, key=lambda a: (a["window_start"], a["kind"], severity_rank(a["severity"])))
    return [(a["window_start"][11:16], a["kind"], a["venue"], a["severity"], a["pane_timing"]) for a in ordered]


def test_each_injected_event_alerts_once_in_its_window_raised_once_and_late_alerts_late():
    out, _ = run_analytics(tape_stream(), config())
    alerts = out["alerts"]
    assert all(tuple(a) == ALERT_FIELDS for a in alerts)
    assert summary(alerts) == [
        ("14:20", ALERT_DARK_SHARE_SURGE, None, "low", "EARLY"),  # the first early pane crosses: sent at once
        ("14:20", ALERT_DARK_SHARE_SURGE, None, "high", "EARLY"),  # a later pane raises it, once
        ("14:22", ALERT_DARK_SHARE_SURGE, None, "medium", "LATE"),  # a late pane adds one, marked LATE
        ("14:25", ALERT_BLOCK_CLUSTER, "UBSA", "medium", "ON_TIME"),
        ("14:27", ALERT_VENUE_CONCENTRATION, "BATS", "high", "ON_TIME"),
    ]
    by_kind = {(a["window_start"], a["kind"], a["severity"]): a for a in alerts}
    surge = by_kind[(window(SURGE), ALERT_DARK_SHARE_SURGE, "high")]
    assert surge["observed"] == pytest.approx(207_000 / 270_000)
    assert (surge["baseline"], surge["baseline_spread"], surge["baseline_windows"]) == (pytest.approx(0.3), 0.0, 10)
    assert surge["score"] == pytest.approx((207_000 / 270_000 - 0.3) * 30)  # 14.0
    first = by_kind[(window(SURGE), ALERT_DARK_SHARE_SURGE, "low")]
    assert first["observed"] == pytest.approx(72_000 / 135_000) and first["pane_index"] < surge["pane_index"]
    late = by_kind[(window(LATE_SURGE), ALERT_DARK_SHARE_SURGE, "medium")]
    assert late["observed"] == pytest.approx(162_000 / 225_000)
    blocks = by_kind[(window(BLOCKS), ALERT_BLOCK_CLUSTER, "medium")]
    assert (blocks["observed"], blocks["baseline"], blocks["score"]) == (7_000.0, 0.0, pytest.approx(14.0))
    takeover = by_kind[(window(TAKEOVER), ALERT_VENUE_CONCENTRATION, "high")]
    assert takeover["observed"] == pytest.approx(162_000 / 252_000)
    assert takeover["baseline"] == pytest.approx(0.4)
    assert all(a["window_end"] == format_event_time(T0 + (int(a["window_start"][14:16]) + 1) * MINUTE)
               for a in alerts)


@pytest.mark.parametrize("shape", ["two-stage", "simple"])
def test_out_of_order_arrival_does_not_change_the_alerts(shape):
    """Each minute's trades in order and shuffled (in both shapes) give the same alerts, ON_TIME but the late one."""
    results = []
    for seed in (None, 1):
        out, _ = run_analytics(tape_stream(shuffle_seed=seed, early=False), config(shape))
        results.append(sorted((a["window_start"], a["kind"], a["venue"], a["severity"], a["pane_timing"],
                               round(a["observed"], 12), round(a["score"], 9)) for a in out["alerts"]))
    assert results[0] == results[1]
    assert [(r[0][11:16], r[1], r[3]) for r in results[0] if r[4] == "ON_TIME"] == [
        ("14:20", ALERT_DARK_SHARE_SURGE, "high"),
        ("14:25", ALERT_BLOCK_CLUSTER, "medium"),
        ("14:27", ALERT_VENUE_CONCENTRATION, "high"),
    ]
    assert [(r[0][11:16], r[1], r[3], r[4]) for r in results[0] if r[4] != "ON_TIME"] == [
        ("14:22", ALERT_DARK_SHARE_SURGE, "medium", "LATE")]


def test_no_alerts_when_off_and_none_on_ordinary_trading():
    out, _ = run_analytics(tape_stream(), PipelineConfig(window_minutes=1.0, period_minutes=1.0, alerts=False))
    assert "alerts" not in out
    quiet = BeamTestStream().advance_watermark_to(T0 / 1000)
    tape = Tape()
    for minute in range(MINUTES):
        quiet = quiet.add_elements(tape.ordinary(minute)).advance_watermark_to((T0 + (minute + 1) * MINUTE) / 1000)
    out, _ = run_analytics(quiet.advance_watermark_to_infinity(), config())
    assert out["alerts"] == []
    assert len(out["market"]) == MINUTES
