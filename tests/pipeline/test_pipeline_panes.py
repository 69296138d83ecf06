"""TestStream tests (streaming DirectRunner) pinning the exact panes of the windowed aggregation.

Defaults of the product: sliding 5 min windows every 1 min, allowed lateness
10 min, accumulating panes, early firing after 2 s of processing time. Both
shapes (simple and two-stage) must give the same panes. Each test runs the whole
LiquidityAnalytics transform (parse -> too-late filter -> windows -> combine ->
format) on Kafka-like records. A pane is written (window start HH:MM, timing,
index, trade_count, share_quantity) of the AAPL market record unless said otherwise.
"""

from __future__ import annotations

import random

import pandas as pd
import pytest
from apache_beam.testing.test_stream import TestStream as BeamTestStream  # not collected by pytest
from pipeline_testkit import MINUTE, SECOND, T0, final_panes, panes, recompute, record, run_analytics

from darkpool.contracts import TRADES_TOPIC, format_event_time, parse_event_time
from pipeline.options import PipelineConfig

SHAPES = ("simple", "two-stage")


def config(shape: str, **overrides) -> PipelineConfig:
    return PipelineConfig(shape=shape, early_firing_seconds=2, **overrides)


def early_stream() -> BeamTestStream:
    return (
        BeamTestStream()
        .advance_watermark_to(T0 / 1000)
        .add_elements([record(0, T0 + 30 * SECOND)])
        .advance_processing_time(3)
        .add_elements([record(1, T0 + 45 * SECOND, venue="MSPL", quantity=200, price=11.0)])
        .advance_processing_time(3)
        .add_elements([record(2, T0 + 5 * MINUTE + 10 * SECOND)])
        .advance_watermark_to((T0 + 5 * MINUTE + 10 * SECOND) / 1000)
        .advance_watermark_to_infinity()
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_early_panes_as_processing_time_advances_then_on_time_pane(shape):
    out, _ = run_analytics(early_stream(), config(shape))
    expected = []
    for start in ("13:56", "13:57", "13:58", "13:59", "14:00"):  # the 5 windows holding 14:00:30 and 14:00:45
        expected += [(start, "EARLY", 0, 1, 100), (start, "EARLY", 1, 2, 300), (start, "ON_TIME", 2, 2, 300)]
    for start in ("14:01", "14:02", "14:03", "14:04", "14:05"):  # the 5 windows holding 14:05:10
        expected.append((start, "ON_TIME", 0, 1, 100))
    assert panes(out["market"]) == sorted(expected)
    # per venue: UBSA printed first (early pane 0), MSPL joined later (its own first pane is index 0)
    assert panes(out["liquidity"], venue="UBSA") == sorted(
        [(s, t, i, 1, 100) for s in ("13:56", "13:57", "13:58", "13:59", "14:00")
         for t, i in (("EARLY", 0), ("ON_TIME", 1))]
        + [(s, "ON_TIME", 0, 1, 100) for s in ("14:01", "14:02", "14:03", "14:04", "14:05")])
    assert panes(out["liquidity"], venue="MSPL") == sorted(
        [(s, "EARLY", 0, 1, 200) for s in ("13:56", "13:57", "13:58", "13:59", "14:00")]
        + [(s, "ON_TIME", 1, 1, 200) for s in ("13:56", "13:57", "13:58", "13:59", "14:00")])
    assert out["deadletter"] == []


def late_stream() -> BeamTestStream:
    return (
        BeamTestStream()
        .advance_watermark_to(T0 / 1000)
        .add_elements([record(0, T0 + 30 * SECOND), record(1, T0 + 3 * MINUTE)])
        .advance_watermark_to((T0 + 3 * MINUTE) / 1000)
        # 14:00:20 after the watermark reached 14:03: late for the windows ending 14:01-14:03
        .add_elements([record(2, T0 + 20 * SECOND, quantity=50)])
        .add_elements([record(3, T0 + 12 * MINUTE)])
        .advance_watermark_to((T0 + 12 * MINUTE) / 1000)
        # 14:00:50 at watermark 14:12: its first window ended 14:01, + 10 min lateness = 14:11 -> too late
        .add_elements([record(4, T0 + 50 * SECOND, quantity=7)])
        # 14:02:30: first window ends 14:03 + 10 min = 14:13 > 14:12 -> late, counted in all 5 windows
        .add_elements([record(5, T0 + 2 * MINUTE + 30 * SECOND, quantity=3)])
        .advance_watermark_to_infinity()
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_late_panes_within_lateness_and_too_late_dropped_and_counted(shape):
    out, _ = run_analytics(late_stream(), config(shape))
    assert panes(out["market"]) == [
        ("13:56", "LATE", 1, 2, 150), ("13:56", "ON_TIME", 0, 1, 100),
        ("13:57", "LATE", 1, 2, 150), ("13:57", "ON_TIME", 0, 1, 100),
        ("13:58", "LATE", 1, 2, 150), ("13:58", "LATE", 2, 3, 153), ("13:58", "ON_TIME", 0, 1, 100),
        ("13:59", "LATE", 1, 4, 253), ("13:59", "ON_TIME", 0, 3, 250),
        ("14:00", "LATE", 1, 4, 253), ("14:00", "ON_TIME", 0, 3, 250),
        ("14:01", "LATE", 1, 2, 103), ("14:01", "ON_TIME", 0, 1, 100),
        ("14:02", "LATE", 1, 2, 103), ("14:02", "ON_TIME", 0, 1, 100),
        ("14:03", "ON_TIME", 0, 1, 100),
        ("14:08", "ON_TIME", 0, 1, 100), ("14:09", "ON_TIME", 0, 1, 100), ("14:10", "ON_TIME", 0, 1, 100),
        ("14:11", "ON_TIME", 0, 1, 100), ("14:12", "ON_TIME", 0, 1, 100),
    ]
    # the too-late trade is dead-lettered (and counted), with its source position
    [dead] = out["deadletter"]
    assert (dead["reason"], dead["source_topic"], dead["source_partition"], dead["source_offset"]) == (
        "too_late", TRADES_TOPIC, 0, 4)
    assert '"quantity":7' in dead["raw_value"]
    # in = aggregated + dead-lettered: 5 of the 6 records reach the final panes, each in 5 windows
    finals = final_panes(out["market"], ("symbol", "window_start"))
    assert sum(r["trade_count"] for r in finals.values()) == 5 * 5


def test_too_late_is_per_partition_watermark():
    """The watermark is tracked per source partition: the same old trade is late on one, fine on another."""
    stream = (
        BeamTestStream()
        .advance_watermark_to(T0 / 1000)
        .add_elements([record(0, T0 + 30 * SECOND, partition=0), record(0, T0 + 20 * MINUTE, partition=1)])
        .add_elements([record(1, T0 + 40 * SECOND, partition=0), record(1, T0 + 40 * SECOND, partition=1)])
        .advance_watermark_to_infinity()
    )
    out, _ = run_analytics(stream, config("simple"))
    assert [(d["reason"], d["source_partition"], d["source_offset"]) for d in out["deadletter"]] == [
        ("too_late", 1, 1)]


def test_out_of_order_inside_a_window_is_not_late():
    stream = (
        BeamTestStream()
        .advance_watermark_to(T0 / 1000)
        .add_elements([record(0, T0 + 50 * SECOND, price=11.0), record(1, T0 + 10 * SECOND, price=9.0)])
        .add_elements([record(2, T0 + 5 * SECOND, price=10.0, quantity=300, side="S")])
        .advance_watermark_to((T0 + 6 * MINUTE) / 1000)
        .advance_watermark_to_infinity()
    )
    out, _ = run_analytics(stream, config("simple"))
    assert {p[1] for p in panes(out["market"])} == {"ON_TIME"}
    [pane] = [r for r in out["liquidity"] if r["window_start"].startswith("2026-11-25T14:00")]
    assert (pane["trade_count"], pane["share_quantity"], pane["min_price"], pane["max_price"]) == (3, 500, 9.0, 11.0)
    assert pane["vwap"] == pytest.approx((100 * 11 + 100 * 9 + 300 * 10) / 500, rel=1e-12)
    assert (pane["buy_quantity"], pane["sell_quantity"]) == (200, 300)
    assert out["deadletter"] == []


def tape(n: int = 240, seed: int = 7) -> pd.DataFrame:
    """A deterministic multi-symbol, multi-venue tape over 12 minutes, slightly out of order."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append({
            "offset": i,
            "event_ms": T0 + i * 3 * SECOND - rng.randint(0, 20) * SECOND,
            "symbol": rng.choice(["AAPL", "MSFT", "NVDA"]),
            "venue": rng.choice(["UBSA", "MSPL", "JPMX", "XNAS", "CDRG", "XNYS"]),
            "price": round(rng.uniform(90, 110), 2),
            "quantity": rng.choice([100, 200, 500, 2500, 12_000]),
            "side": rng.choice(["B", "S", None]),
        })
    return pd.DataFrame(rows)


def stream_of(frame: pd.DataFrame, chunk: int = 20) -> BeamTestStream:
    stream = BeamTestStream().advance_watermark_to(T0 / 1000 - 60)
    for start in range(0, len(frame), chunk):
        part = frame.iloc[start:start + chunk]
        stream = stream.add_elements([
            record(int(r.offset), int(r.event_ms), r.symbol, r.venue, int(r.quantity), float(r.price), r.side)
            for r in part.itertuples()
        ])
        stream = stream.advance_processing_time(1)
        stream = stream.advance_watermark_to(part["event_ms"].max() / 1000)
    return stream.advance_watermark_to_infinity()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("window_minutes,period_minutes", [(5, 1), (4, 2)])
def test_several_symbols_and_venues_final_panes_match_recomputation(shape, window_minutes, period_minutes):
    frame = tape()
    cfg = config(shape, window_minutes=window_minutes, period_minutes=period_minutes)
    out, _ = run_analytics(stream_of(frame), cfg)
    assert out["deadletter"] == []  # out of order by at most 20 s: late at worst, never too late
    size, period = window_minutes * MINUTE, period_minutes * MINUTE
    liquidity, market = recompute(frame, size, period)
    finals = final_panes(out["liquidity"], ("symbol", "venue", "window_start"))
    assert len(finals) == len(liquidity)
    for row in liquidity.itertuples():
        got = finals[(row.symbol, row.venue, format_event_time(int(row.window_start)))]
        assert parse_event_time(got["window_end"]) - parse_event_time(got["window_start"]) == size
        assert (got["trade_count"], got["share_quantity"], got["block_count"], got["block_quantity"],
                got["buy_quantity"], got["sell_quantity"]) == (
            row.trade_count, row.share_quantity, row.block_count, row.block_quantity,
            row.buy_quantity, row.sell_quantity)
        assert got["notional"] == pytest.approx(row.notional, rel=1e-9)
        assert got["vwap"] == pytest.approx(row.vwap, rel=1e-9)
        assert (got["min_price"], got["max_price"]) == (row.min_price, row.max_price)
    market_finals = final_panes(out["market"], ("symbol", "window_start"))
    assert len(market_finals) == len(market)
    for row in market.itertuples():
        got = market_finals[(row.symbol, format_event_time(int(row.window_start)))]
        assert (got["trade_count"], got["share_quantity"], got["dark_quantity"], got["venue_count"]) == (
            row.trade_count, row.share_quantity, row.dark_quantity, row.venue_count)
        assert got["dark_share"] == pytest.approx(row.dark_share, rel=1e-9)
        assert got["hhi"] == pytest.approx(row.hhi, rel=1e-9)
    # each trade lands in exactly size/period windows
    per_symbol = frame.groupby("symbol").size()
    for symbol, count in per_symbol.items():
        total = sum(r["trade_count"] for k, r in market_finals.items() if k[0] == symbol)
        assert total == count * (window_minutes // period_minutes)


def without_emitted_at(records: list[dict]) -> list[str]:
    return sorted(repr(sorted((k, v) for k, v in r.items() if k != "emitted_at")) for r in records)


@pytest.mark.parametrize("accumulation", ["accumulating", "discarding"])
@pytest.mark.parametrize("make_stream", [early_stream, late_stream], ids=["early", "late"])
def test_both_shapes_emit_identical_records(make_stream, accumulation):
    """The fast shape is held to the reference: every liquidity, market and dead-letter record the same."""
    simple, _ = run_analytics(make_stream(), config("simple", accumulation=accumulation))
    fast, _ = run_analytics(make_stream(), config("two-stage", accumulation=accumulation))
    for name in ("liquidity", "market"):
        assert without_emitted_at(fast[name]) == without_emitted_at(simple[name]), name
    assert [d["source_offset"] for d in fast["deadletter"]] == [d["source_offset"] for d in simple["deadletter"]]
    if accumulation == "discarding":  # panes are deltas: they add up to the trades, each counted 5 times
        assert sum(r["trade_count"] for r in fast["market"]) == 5 * (3 if make_stream is early_stream else 5)
