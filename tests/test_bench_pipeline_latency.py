"""The pipeline bench's latency matching (bench/bench_pipeline.py): pure functions, no stack.

An alert names the pane that triggered it (window, pane_index); the bench finds the market pane of that
firing, takes its trade_count n and the symbol's n-th trade of the window in production order, and
measures the alert's arrival against that trade's event time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_pipeline as bench  # noqa: E402

from darkpool.contracts import format_event_time  # noqa: E402

T0 = 1_764_633_600_000  # a whole minute (2025-12-02T00:00:00Z)
WINDOW_MS = 300_000


def market(symbol: str, start: int, index: int, count: int, emitted: int) -> dict:
    return {"symbol": symbol, "window_start": format_event_time(start), "pane_index": index, "trade_count": count,
            "emitted_at": format_event_time(emitted)}


def liquidity(symbol: str, venue: str, start: int, index: int, count: int, emitted: int) -> dict:
    return {**market(symbol, start, index, count, emitted), "venue": venue}


def alert(symbol: str, kind: str, start: int, index: int, emitted: int, venue: str | None = None) -> dict:
    return {"symbol": symbol, "kind": kind, "venue": venue, "window_start": format_event_time(start),
            "window_end": format_event_time(start + WINDOW_MS), "pane_index": index,
            "emitted_at": format_event_time(emitted)}


def test_nth_trade_of_a_window_runs_over_its_minutes_in_order() -> None:
    tape = bench.Tape()
    for ts in (T0 + 10, T0 + 20, T0 + 60_005, T0 + 120_001, T0 + 300_000):
        tape.add("AAPL", "XNAS", ts)
    tape.add("MSFT", "XNAS", T0 + 15)
    assert tape.nth_in_window("AAPL", T0, T0 + WINDOW_MS, 1) == T0 + 10
    assert tape.nth_in_window("AAPL", T0, T0 + WINDOW_MS, 3) == T0 + 60_005
    assert tape.nth_in_window("AAPL", T0, T0 + WINDOW_MS, 4) == T0 + 120_001
    assert tape.nth_in_window("AAPL", T0, T0 + WINDOW_MS, 5) is None  # the 5th is in the next window
    assert tape.nth_in_window("AAPL", T0 + 60_000, T0 + 60_000 + WINDOW_MS, 3) == T0 + 300_000


def test_tape_read_keeps_production_order(tmp_path: Path) -> None:
    path = tmp_path / "tape.jsonl"
    rows = [("AAPL", "XNAS", T0 + 30), ("AAPL", "CDRG", T0 + 29), ("AAPL", "XNAS", T0 + 31)]
    path.write_bytes(b"".join(orjson.dumps({"key": s, "timestamp_ms": ts, "value": orjson.dumps(
        {"symbol": s, "venue": v}).decode(), "fault": None}) + b"\n" for s, v, ts in rows))
    tape = bench.Tape.read(path)
    assert tape.by_symbol[("AAPL", T0)] == [T0 + 30, T0 + 29, T0 + 31]
    assert tape.by_venue[("AAPL", "XNAS", T0)] == [T0 + 30, T0 + 31]


def test_trigger_of_a_market_alert_is_the_market_pane_of_its_index() -> None:
    arrivals = bench.Arrivals()
    arrivals.add("market", T0 + 3_000, market("AAPL", T0, 0, 40, T0 + 2_500))
    arrivals.add("market", T0 + 5_000, market("AAPL", T0, 1, 90, T0 + 4_500))
    record = alert("AAPL", "dark_share_surge", T0, 1, T0 + 4_600)
    assert bench.trigger_pane(record, arrivals) == (90, T0 + 4_500)
    # a pane built after the alert cannot have triggered it
    assert bench.trigger_pane(alert("AAPL", "dark_share_surge", T0, 1, T0 + 4_400), arrivals) is None
    assert bench.trigger_pane(alert("AAPL", "dark_share_surge", T0, 2, T0 + 9_000), arrivals) is None


def test_trigger_of_a_block_cluster_can_be_the_venue_pane_through_its_firing() -> None:
    arrivals = bench.Arrivals()
    # firings at 2.5 s, 4.5 s, 6.5 s; the venue LATS printed in the first and the third (its index 0, 1)
    for index, count, built in ((0, 40, 2_500), (1, 90, 4_500), (2, 130, 6_500)):
        arrivals.add("market", T0 + built + 300, market("AAPL", T0, index, count, T0 + built))
    arrivals.add("liquidity", T0 + 2_800, liquidity("AAPL", "LATS", T0, 0, 3, T0 + 2_500))
    arrivals.add("liquidity", T0 + 6_800, liquidity("AAPL", "LATS", T0, 1, 9, T0 + 6_500))
    # alert after the third firing naming pane_index 1: the venue's pane 1 (firing 3), not the market pane 1
    assert bench.trigger_pane(alert("AAPL", "block_cluster", T0, 1, T0 + 6_600, "LATS"), arrivals) == (130, T0 + 6_500)
    # alert right after the second firing: only the market pane 1 was built by then
    assert bench.trigger_pane(alert("AAPL", "block_cluster", T0, 1, T0 + 4_600, "LATS"), arrivals) == (90, T0 + 4_500)


def test_alert_latency_is_arrival_minus_the_last_counted_trade() -> None:
    tape = bench.Tape()
    for i in range(100):
        tape.add("AAPL", "XNAS", T0 + 20_000 + 10 * i)  # the 90th trade at T0 + 20,890
    arrivals = bench.Arrivals()
    arrivals.add("market", T0 + 22_000, market("AAPL", T0, 1, 90, T0 + 21_800))
    arrivals.add("alerts", T0 + 23_400, alert("AAPL", "dark_share_surge", T0, 1, T0 + 21_900))
    arrivals.add("alerts", T0 + 23_500, alert("AAPL", "venue_concentration", T0, 7, T0 + 21_900))  # no such pane
    result = bench.alert_latency_from(tape, arrivals)
    assert result["measured"] == 1 and result["unmatched"] == 1
    assert result["p50_ms"] == pytest.approx(23_400 - 20_890)
    assert result["to_emitted_p50_ms"] == pytest.approx(21_900 - 20_890)
    assert result["to_topic_p50_ms"] == pytest.approx(23_400 - 21_900)
    assert result["to_pane_p50_ms"] == pytest.approx(21_800 - 20_890)
    assert result["kinds"] == {"dark_share_surge": 1}
    assert bench.alert_latency_from(tape, arrivals, measured_from_ms=T0 + 21_000)["before_warmup"] == 1


def test_pane_latency_is_the_first_pane_covering_the_trade() -> None:
    tape = bench.Tape()
    for ts in (T0 + 100, T0 + 200, T0 + 300):
        tape.add("AAPL", "XNAS", ts)
    arrivals = bench.Arrivals()
    arrivals.add("liquidity", T0 + 2_000, liquidity("AAPL", "XNAS", T0, 0, 2, T0 + 1_900))
    arrivals.add("liquidity", T0 + 4_000, liquidity("AAPL", "XNAS", T0, 1, 3, T0 + 3_900))
    result = bench.latency_from(tape, arrivals)
    assert result["trades"] == 3 and result["measured"] == 3
    assert result["max_ms"] == pytest.approx(4_000 - 300)
    assert result["p50_ms"] == pytest.approx(2_000 - 100)  # latencies 1,900, 1,800, 3,700


def test_scenarios_take_the_kinds_in_turn_after_the_baseline() -> None:
    assert bench.scenario_specs(["AAPL", "NVDA", "TSLA", "AMZN"], 240) == [
        "dark_share_surge:AAPL@+240s", "block_cluster:NVDA@+240s", "venue_takeover:TSLA@+240s",
        "dark_share_surge:AMZN@+240s"]
    assert bench.default_scenario_offset(20, 3) == 240
    assert bench.default_scenario_offset(300, 3) == 300
    from feed.scenarios import parse_scenario

    assert parse_scenario(bench.scenario_specs(["AAPL"], 240)[0]).offset_seconds == 240
