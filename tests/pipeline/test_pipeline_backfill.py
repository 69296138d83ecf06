"""Bounded backfill (DirectRunner, no Java, no broker): a trades file -> Parquet, against pandas."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import duckdb
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pipeline_testkit import MINUTE, SECOND, T0, recompute

from darkpool.contracts import format_event_time, parse_event_time
from pipeline.main import metric_totals, run
from pipeline.transforms.read import read_trade_file

VENUES = ["UBSA", "MSPL", "SGMT", "CDRG", "NITE", "XNYS", "XNAS", "IEXG"]


def make_tape(n: int = 3_000, seed: int = 11) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        rows.append({
            "event_ms": T0 + rng.randint(0, 20 * MINUTE),  # any order: a bounded run has no lateness
            "symbol": rng.choice(["AAPL", "MSFT", "NVDA", "TSLA"]),
            "venue": rng.choice(VENUES),
            "price": round(rng.uniform(50, 450), 2),
            "quantity": rng.choice([1, 37, 100, 100, 200, 500, 1_000, 5_000, 10_000, 25_000]),
            "side": rng.choice(["B", "S", None]),
        })
    return pd.DataFrame(rows)


MALFORMED_CSV_ROWS = [
    ["not-a-time", "AAPL", "10", "100", "UBSA", "B"],   # bad_event_time
    [None, "AAPL", "0", "100", "UBSA", "B"],           # non_positive_price (time filled below)
    [None, "AAPL", "10", "-5", "UBSA", "S"],           # non_positive_quantity
    [None, "AAPL", "10", "100", "NOPE", ""],           # unknown_venue
]


def side_text(side: object) -> str:
    """pandas turns a None side into NaN; the file says '' (unknown)."""
    return side if isinstance(side, str) else ""


def write_seed_csv(frame: pd.DataFrame, path: Path) -> None:
    """The seed project's layout: timestamp, symbol, price, quantity, venue, side (+ an extra column)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "symbol", "price", "quantity", "venue", "side", "exchange_note"])
        for r in frame.itertuples():
            stamp = format_event_time(int(r.event_ms)).replace("T", " ").rstrip("Z")  # naive = UTC
            writer.writerow([stamp, r.symbol, r.price, r.quantity, r.venue, side_text(r.side), "x"])
        for row in MALFORMED_CSV_ROWS:
            writer.writerow([row[0] or format_event_time(T0 + 5 * SECOND), *row[1:], "x"])


def read_dataset(root: Path, table: str) -> pd.DataFrame:
    return duckdb.sql(f"SELECT * FROM read_parquet('{root}/{table}/*/*.parquet', hive_partitioning = true)").df()


def check_against_recomputation(frame: pd.DataFrame, root: Path) -> None:
    liquidity_expected, market_expected = recompute(frame, 5 * MINUTE, MINUTE)
    liquidity = read_dataset(root, "liquidity")
    market = read_dataset(root, "market")
    # a bounded run fires each window once: one ON_TIME pane per key
    assert set(liquidity["pane_timing"]) == {"ON_TIME"} and set(market["pane_timing"]) == {"ON_TIME"}
    assert not liquidity.duplicated(["symbol", "venue", "window_start"]).any()
    liquidity["window_start_ms"] = liquidity["window_start"].map(lambda t: int(t.timestamp() * 1000))
    merged = liquidity_expected.merge(
        liquidity, left_on=["window_start", "symbol", "venue"], right_on=["window_start_ms", "symbol", "venue"],
        suffixes=("_want", ""), how="outer", indicator=True)
    assert set(merged["_merge"]) == {"both"}
    for column in ("trade_count", "share_quantity", "block_count", "block_quantity", "buy_quantity",
                   "sell_quantity", "min_price", "max_price"):
        assert (merged[column] == merged[f"{column}_want"]).all(), column
    for column in ("notional", "vwap"):
        assert ((merged[column] - merged[f"{column}_want"]).abs() <= 1e-9 * merged[f"{column}_want"].abs()).all()
    market["window_start_ms"] = market["window_start"].map(lambda t: int(t.timestamp() * 1000))
    merged = market_expected.merge(market, left_on=["window_start", "symbol"],
                                   right_on=["window_start_ms", "symbol"], suffixes=("_want", ""))
    assert len(merged) == len(market_expected) == len(market)
    for column in ("trade_count", "share_quantity", "dark_quantity", "venue_count"):
        assert (merged[column] == merged[f"{column}_want"]).all(), column
    for column in ("notional", "hhi", "dark_share"):
        assert ((merged[column] - merged[f"{column}_want"]).abs() <= 1e-9 * merged[f"{column}_want"].abs()).all()
    # every trade is in exactly 5 windows
    assert market["trade_count"].sum() == 5 * len(frame)


@pytest.mark.parametrize("shape", ["two-stage", "simple"])
def test_backfill_seed_csv_matches_pandas(tmp_path: Path, shape: str):
    frame = make_tape()
    path = tmp_path / "trades.csv"
    write_seed_csv(frame, path)
    result = run(["--source", "file", "--input", str(path), "--output", str(tmp_path / "out"), "--shape", shape])
    check_against_recomputation(frame, tmp_path / "out")
    counters = metric_totals(result)
    assert counters["records_in"] == len(frame) + len(MALFORMED_CSV_ROWS)
    assert counters["trades_valid"] == len(frame)
    dead = [orjson.loads(line) for f in (tmp_path / "out" / "deadletter").rglob("*.jsonl")
            for line in f.read_bytes().splitlines()]
    assert sorted(d["reason"] for d in dead) == sorted(
        ["bad_event_time", "non_positive_price", "non_positive_quantity", "unknown_venue"])
    assert {d["source_topic"] for d in dead} == {"file:trades.csv"}


def test_backfill_jsonl_and_parquet_inputs(tmp_path: Path):
    frame = make_tape(1_500, seed=5)
    jsonl = tmp_path / "trades.jsonl"
    with open(jsonl, "wb") as handle:
        for i, r in enumerate(frame.itertuples()):
            handle.write(orjson.dumps({
                "trade_id": f"T-{i}", "event_time": format_event_time(int(r.event_ms)), "symbol": r.symbol,
                "venue": r.venue, "price": r.price, "quantity": int(r.quantity),
                "side": side_text(r.side) or None}) + b"\n")
        handle.write(b"{broken\n")
    run(["--source", "file", "--input", str(jsonl), "--output", str(tmp_path / "from_jsonl")])
    check_against_recomputation(frame, tmp_path / "from_jsonl")

    table = pa.table({
        "trade_id": [f"T-{i}" for i in range(len(frame))],
        "event_time": pa.array(frame["event_ms"], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "symbol": frame["symbol"], "venue": frame["venue"], "price": frame["price"],
        "quantity": frame["quantity"], "side": [side_text(s) or None for s in frame["side"]],
    })
    parquet = tmp_path / "trades.parquet"
    pq.write_table(table, parquet)
    run(["--source", "file", "--input", str(parquet), "--output", str(tmp_path / "from_parquet")])
    check_against_recomputation(frame, tmp_path / "from_parquet")
    assert parse_event_time(format_event_time(T0)) == T0


def test_seed_csv_variants_are_read_as_contract_records(tmp_path: Path):
    """Spaces after commas, naive or epoch-second/-ms times, empty side, extra columns."""
    path = tmp_path / "seed.csv"
    path.write_text(
        "timestamp, symbol, price, quantity, venue, side, note\n"
        "2026-11-25 14:00:01, AAPL, 189.5, 100, UBSA, B, x\n"
        "2026-11-25 14:00:02.250, AAPL, 189.6, 200, XNAS, , y\n"
        "1795615203, MSFT, 400, 300, MSPL, S, z\n"
        "1795615204500, MSFT, 400.25, 10, MSPL, S, z\n"
    )
    rows = [orjson.loads(r.value) for r in read_trade_file(str(path))]
    assert [r["event_time"] for r in rows] == [
        "2026-11-25T14:00:01.000Z", "2026-11-25T14:00:02.250Z", "2026-11-25T14:00:03.000Z",
        "2026-11-25T14:00:04.500Z"]
    assert rows[0] == {"trade_id": "seed.csv-0", "event_time": "2026-11-25T14:00:01.000Z", "symbol": "AAPL",
                       "venue": "UBSA", "price": 189.5, "quantity": 100, "side": "B"}
    assert rows[1]["side"] is None and rows[2]["price"] == 400
