"""Per-record cost of the pipeline's Python steps, and the two shapes side by side on the DirectRunner.

Not a test: prints figures. The end-to-end Flink throughput benchmark is a
separate script; this one shows where the Python worker's time per trade goes
(the pipeline's bottleneck, see docs/pipeline.md "Performance notes") and how
much the two-stage shape saves, without needing the Java stack:

1. microseconds per record of each Python step (best of several repeats):
   decoding KafkaIO's metadata Row vs a plain key/value pair, JSON parsing,
   validation, batching, the too-late filter, a trade batch through its coder
   (what a shuffle costs it), the per-bundle pre-aggregation;
2. the same tape through the whole pipeline in a bounded backfill on the
   DirectRunner (FnApiRunner), simple vs two-stage shape: trades/s and ratio.

Usage: .venv/bin/python bench/bench_pipeline_stages.py [--trades N]
"""

import argparse
import os
import random
import tempfile
import time
import timeit
import typing
from pathlib import Path

import numpy as np
import orjson
from apache_beam import coders
from apache_beam.coders import RowCoder
from apache_beam.typehints.native_type_compatibility import convert_to_beam_type
from apache_beam.typehints.schemas import named_tuple_to_schema

from darkpool.contracts import format_event_time, load_venues
from pipeline.codec import TRADE_BATCH, decode_record_batch, encode_record_batch
from pipeline.main import run
from pipeline.records import SourceRecord
from pipeline.transforms.aggregate import PreAggregateFn
from pipeline.transforms.lateness import FilterTooLateFn, ParseAndFilterPartitionBatchFn
from pipeline.transforms.parse import ParseAndBatchFn, parse_trade

DAY_MS = 86_400_000


# The schema of KafkaIO's ``with_metadata`` rows (Java ByteArrayKafkaRecord). This module has
# no ``from __future__ import annotations`` and uses typing.Optional on purpose: Beam's schema
# inference cannot read string annotations or ``X | None`` (it silently falls back to pickling).
class KafkaHeader(typing.NamedTuple):
    key: str
    value: bytes


class KafkaMetadataRow(typing.NamedTuple):
    topic: str
    partition: np.int32
    offset: np.int64
    timestamp: np.int64
    key: typing.Optional[bytes]  # noqa: UP045
    value: typing.Optional[bytes]  # noqa: UP045
    headers: typing.Optional[typing.List[KafkaHeader]]  # noqa: UP006, UP045
    timestampTypeId: np.int32  # noqa: N815 - the Java field name
    timestampTypeName: str  # noqa: N815


class _State:
    """A stand-in for the DoFn's keyed state cell (a plain value holder), for timing the filter alone."""

    def __init__(self) -> None:
        self.value = None

    def read(self):
        return self.value

    def write(self, value) -> None:
        self.value = value


def make_values(n: int, seed: int = 1) -> list[tuple[int, bytes]]:
    """A live-like tape: 50 symbols, every registry venue, ~50k trades/s of event time."""
    rng = random.Random(seed)
    venues = sorted(load_venues())
    symbols = [f"SYM{i}" for i in range(50)]
    start = 1_795_615_200_000
    values = []
    for i in range(n):
        ts = start + i // 50
        values.append((ts, orjson.dumps({
            "trade_id": f"T-{i:09d}", "event_time": format_event_time(ts), "symbol": rng.choice(symbols),
            "venue": rng.choice(venues), "price": round(rng.uniform(10, 500), 2),
            "quantity": rng.choice([100, 100, 200, 300, 500, 1_000, 2_500, 12_000]),
            "side": rng.choice(["B", "S", None])})))
    return values


def best_us(fn, n: int, repeat: int = 5) -> float:
    return min(timeit.repeat(fn, number=1, repeat=repeat)) / n * 1e6


def step_costs(values: list[tuple[int, bytes]]) -> list[tuple[str, float]]:
    n = len(values)
    venues = frozenset(load_venues())
    rows = [KafkaMetadataRow("darkpool.trades", np.int32(i % 4), np.int64(i), np.int64(ts), b"SYM", v, [],
                             np.int32(0), "CreateTime") for i, (ts, v) in enumerate(values)]
    row_coder = RowCoder(named_tuple_to_schema(KafkaMetadataRow))
    encoded_rows = [row_coder.encode(r) for r in rows]
    records = [SourceRecord("darkpool.trades", i % 4, i, ts, b"SYM", v) for i, (ts, v) in enumerate(values)]
    # what the default (darkpool) reader hands Python: per partition, batches of at most 4,096 records
    by_partition: dict[int, list] = {}
    for record in records:
        by_partition.setdefault(record.partition, []).append(record)
    record_batches = [(partition, encode_record_batch(part[i:i + 4096]))
                      for partition, part in by_partition.items() for i in range(0, len(part), 4096)]
    batch_fn = ParseAndFilterPartitionBatchFn("darkpool.trades", venues, DAY_MS, 60_000, 600_000)
    batch_fn.setup()

    def parse_and_filter_batches():
        states = {}
        out = [out for partition, batch in record_batches
               for out in batch_fn.process((partition, batch), states.setdefault(partition, _State()))]
        batch_fn.finish_bundle()  # the parse counters
        return out

    parse_fn = ParseAndBatchFn(venues, DAY_MS)
    parse_fn.setup()

    def parse_bundle():
        parse_fn.start_bundle()
        out = []
        for record in records:
            out.extend(parse_fn.process(record))
        out.extend(parse_fn.finish_bundle())
        return out

    batches = [b.value for b in parse_bundle()]
    filter_fn = FilterTooLateFn(60_000, 600_000)
    filter_fn.setup()
    pre = PreAggregateFn(60_000)

    def filter_all():
        states = {}
        return [kept for key, trades in batches
                for kept in filter_fn.process((key, trades), states.setdefault(key, _State()))]

    kept = filter_all()
    batch_coder = coders.registry.get_coder(convert_to_beam_type(TRADE_BATCH))

    def pre_aggregate_bundle():
        pre.start_bundle()
        for batch in kept:
            pre.process(batch)
        return list(pre.finish_bundle())

    partials = len(pre_aggregate_bundle())
    return [
        ("decode KafkaIO metadata Row (with_metadata)",
         best_us(lambda: [row_coder.decode(e) for e in encoded_rows], n)),
        ("decode the darkpool reader's record batches (default)",
         best_us(lambda: [r for _, b in record_batches for r in decode_record_batch(b)], n)),
        ("orjson.loads alone", best_us(lambda: [orjson.loads(v) for _, v in values], n)),
        ("parse_trade (JSON + validation + event time)",
         best_us(lambda: [parse_trade(v, ts, 0, venues, DAY_MS) for ts, v in values], n)),
        ("ParseAndBatchFn per record (incl. parse_trade)", best_us(parse_bundle, n)),
        ("FilterTooLateFn per trade", best_us(filter_all, n)),
        ("trade batches through their coder (the shuffle before FilterTooLate)",
         best_us(lambda: [batch_coder.decode(batch_coder.encode(batch)) for batch in batches], n)),
        ("ParseAndFilterPartitionBatchFn per record (default reader: decode + parse + too-late rule)",
         best_us(parse_and_filter_batches, n)),
        ("PreAggregateFn per trade (one bundle)", best_us(pre_aggregate_bundle, n)),
        (f"-> elements after pre-aggregation: {partials} for {n} trades", n / max(partials, 1)),
    ]


def backfill_rate(values: list[tuple[int, bytes]], shape: str, folder: Path) -> float:
    path = folder / "tape.jsonl"
    if not path.exists():
        path.write_bytes(b"\n".join(v for _, v in values) + b"\n")
    start = time.perf_counter()
    run(["--source", "file", "--input", str(path), "--output", str(folder / shape), "--shape", shape,
         "--runner=DirectRunner"])
    return len(values) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=30_000, help="trades in the tape (default 30,000)")
    args = parser.parse_args()
    values = make_values(args.trades)
    print(f"pipeline Python steps, {args.trades:,} trades, best of 5 (us per record); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for label, value in step_costs(values):
        unit = "x fewer" if label.startswith("->") else "us"
        print(f"  {label:58s} {value:8.2f} {unit}")
    with tempfile.TemporaryDirectory() as tmp:
        simple = backfill_rate(values, "simple", Path(tmp))
        two_stage = backfill_rate(values, "two-stage", Path(tmp))
    print("bounded backfill on the DirectRunner (FnApiRunner, one process), whole pipeline incl. Parquet:")
    print(f"  simple shape     {simple:10,.0f} trades/s")
    print(f"  two-stage shape  {two_stage:10,.0f} trades/s")
    print(f"  ratio two-stage / simple: {two_stage / simple:.1f}x")


if __name__ == "__main__":
    main()
