"""Parquet sink tests: atomic files, explicit schema, Hive partitioning, readable by DuckDB and pandas."""

from __future__ import annotations

import threading
from pathlib import Path

import apache_beam as beam
import duckdb
import pandas as pd
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as BeamTestStream  # not collected by pytest
from apache_beam.transforms.window import TimestampedValue
from pipeline_testkit import MINUTE, SECOND, Collect, pop_collected, record

from darkpool.contracts import LIQUIDITY_FIELDS, LIQUIDITY_SCHEMA, MARKET_SCHEMA, parse_event_time
from pipeline.options import PipelineConfig
from pipeline.transforms.analytics import LiquidityAnalytics
from pipeline.transforms.sinks import WriteParquet, write_parquet_atomically


def liquidity_row(i: int) -> dict:
    row = {field: None for field in LIQUIDITY_FIELDS}
    row.update({
        "window_start": "2026-11-25T14:00:00.000Z", "window_end": "2026-11-25T14:05:00.000Z",
        "symbol": f"S{i % 50}", "venue": "UBSA", "venue_type": "ATS", "trade_count": i, "share_quantity": 100 * i,
        "notional": 1000.5 * i, "vwap": 10.005, "min_price": 10.0, "max_price": 10.01, "avg_trade_size": 100.0,
        "block_count": 0, "block_quantity": 0, "buy_quantity": 50 * i, "sell_quantity": 50 * i,
        "pane_timing": "EARLY", "pane_index": i % 7, "emitted_at": "2026-11-25T14:01:02.345Z",
    })
    return row


def test_atomic_write_schema_and_readers(tmp_path: Path):
    rows = [liquidity_row(i) for i in range(1, 101)]
    path = write_parquet_atomically(rows, LIQUIDITY_SCHEMA, tmp_path / "liquidity" / "date=2026-11-25")
    assert path.name.startswith("part-") and path.suffix == ".parquet"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    assert pq.read_schema(path).remove_metadata() == LIQUIDITY_SCHEMA
    frame = pd.read_parquet(tmp_path / "liquidity")  # pandas/pyarrow dataset with Hive partitioning
    assert len(frame) == 100 and set(frame["date"].astype(str)) == {"2026-11-25"}
    assert frame["window_start"].iloc[0] == pd.Timestamp("2026-11-25T14:00:00Z")
    count, total = duckdb.sql(
        f"SELECT count(*), sum(share_quantity) FROM read_parquet('{tmp_path}/liquidity/*/*.parquet', "
        "hive_partitioning = true) WHERE date = '2026-11-25'").fetchall()[0]
    assert (count, total) == (100, 100 * sum(range(1, 101)))


def test_readers_never_see_a_half_written_file(tmp_path: Path):
    """Write many large files while another thread keeps listing and reading every visible *.parquet."""
    directory = tmp_path / "liquidity" / "date=2026-11-25"
    directory.mkdir(parents=True)
    rows = [liquidity_row(i) for i in range(20_000)]
    done = threading.Event()
    seen: dict[str, int] = {}
    errors: list[str] = []

    def reader():
        while not done.is_set() or len(seen) < 8:
            for path in directory.glob("*.parquet"):
                if path.name not in seen:
                    try:
                        seen[path.name] = pq.read_metadata(path).num_rows
                    except Exception as exc:  # noqa: BLE001 - any read failure is the test's finding
                        errors.append(f"{path.name}: {exc}")
            if done.is_set() and len(seen) >= 8:
                break

    thread = threading.Thread(target=reader)
    thread.start()
    for _ in range(8):
        write_parquet_atomically(rows, LIQUIDITY_SCHEMA, directory)
    done.set()
    thread.join(timeout=60)
    assert errors == []
    assert len(seen) == 8 and set(seen.values()) == {20_000}


def test_streaming_pipeline_writes_one_row_per_pane_partitioned_by_date(tmp_path: Path):
    midnight = parse_event_time("2026-11-26T00:00:00.000Z")
    stream = (
        BeamTestStream()
        .advance_watermark_to((midnight - 10 * MINUTE) / 1000)
        .add_elements([record(0, midnight - 3 * MINUTE), record(1, midnight - 2 * MINUTE, venue="XNAS")])
        .advance_processing_time(3)
        .add_elements([record(2, midnight + 1 * MINUTE + 5 * SECOND, venue="MSPL")])
        .advance_watermark_to((midnight + 1 * MINUTE + 5 * SECOND) / 1000)
        .advance_processing_time(20)
        .advance_watermark_to_infinity()
    )
    config = PipelineConfig(shape="simple", early_firing_seconds=2, output_path=tmp_path, kafka_reader="beam")
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(options=options) as pipeline:
        outputs = pipeline | stream | LiquidityAnalytics.from_config(config)
        for name, schema in (("liquidity", LIQUIDITY_SCHEMA), ("market", MARKET_SCHEMA)):
            _ = outputs[name] | f"Parquet{name}" >> WriteParquet(tmp_path, name, schema, 1_000, 5)
        _ = outputs["market"] | beam.ParDo(Collect(f"parquet-test-{tmp_path}"))
    emitted = pop_collected(f"parquet-test-{tmp_path}")
    dates = sorted(p.name for p in (tmp_path / "market").iterdir())
    assert dates == ["date=2026-11-25", "date=2026-11-26"]
    assert not list(tmp_path.rglob(".*.tmp"))
    frame = duckdb.sql(f"SELECT * FROM read_parquet('{tmp_path}/market/*/*.parquet', hive_partitioning = true)").df()
    assert len(frame) == len(emitted)  # one row per pane, nothing lost or duplicated
    assert set(frame["pane_timing"]) == {r["pane_timing"] for r in emitted} == {"EARLY", "ON_TIME"}
    by_date = frame.groupby(frame["window_start"].dt.strftime("%Y-%m-%d"))["date"].agg(lambda s: set(s.astype(str)))
    for day, partition_dates in by_date.items():
        assert {d[:10] for d in partition_dates} == {day}  # each row sits in its window_start's date partition
    assert pq.read_schema(next((tmp_path / "market").rglob("*.parquet"))).remove_metadata() == MARKET_SCHEMA


def stream_clock() -> float:
    """The streaming DirectRunner's TestStream clock starts at 0 (epoch), not at the wall clock."""
    return 0.0


def run_sink(stream: BeamTestStream, root: Path, batch_rows: int, flush_seconds: float) -> list[int]:
    """Rows through WriteParquet on the streaming DirectRunner -> row counts of the files written."""
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(options=options) as pipeline:
        _ = pipeline | stream | WriteParquet(
            root, "liquidity", LIQUIDITY_SCHEMA, batch_rows, flush_seconds, clock=stream_clock)
    files = sorted((root / "liquidity").rglob("*.parquet"), key=lambda p: p.name)
    return [pq.read_metadata(f).num_rows for f in files]


def rows_at(start: int, n: int) -> list:
    t = parse_event_time("2026-11-25T14:00:00.000Z") / 1000
    return [TimestampedValue(liquidity_row(i), t) for i in range(start, start + n)]


def test_rows_are_flushed_by_size_never_above_batch_rows(tmp_path: Path):
    stream = BeamTestStream()
    for k in range(5):
        stream = stream.add_elements(rows_at(k * 500, 500))
    sizes = run_sink(stream.advance_watermark_to_infinity(), tmp_path, batch_rows=1_000, flush_seconds=3_600)
    assert sum(sizes) == 2_500 and max(sizes) <= 1_000 and len(sizes) == 3


def test_rows_are_flushed_by_processing_time_and_at_the_end(tmp_path: Path):
    stream = (
        BeamTestStream()
        .add_elements(rows_at(0, 100))
        .advance_processing_time(10)   # past the 5 s flush interval: a file of 100 rows
        .add_elements(rows_at(100, 40))
        .advance_watermark_to_infinity()  # the end of the input flushes the rest
    )
    assert sorted(run_sink(stream, tmp_path, batch_rows=1_000, flush_seconds=5)) == [40, 100]
