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
from darkpool.tradefile import read_rows
from pipeline.main import metric_totals, run
from pipeline.transforms.read import file_record

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
    first_bad_line = len(frame) + 2  # the header is line 1
    assert sorted((d["source_offset"], d["reason"]) for d in dead) == [
        (first_bad_line, "bad_event_time"), (first_bad_line + 1, "non_positive_price"),
        (first_bad_line + 2, "non_positive_quantity"), (first_bad_line + 3, "unknown_venue")]
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
    """Spaces after commas, naive or epoch-second/-ms/-us/-ns times, side aliases, empty side, extra columns."""
    path = tmp_path / "seed.csv"
    path.write_text(
        "timestamp, symbol, price, quantity, venue, side, note\n"
        "2026-11-25 14:00:01, AAPL, 189.5, 100, UBSA, BUY, x\n"
        "2026-11-25 14:00:02.250, AAPL, 189.6, 200, XNAS, , y\n"
        "1795615203, MSFT, 400, 300, MSPL, SELL, z\n"
        "1795615204500, MSFT, 400.25, 10, MSPL, S, z\n"
        "1795615205120000, MSFT, 400.25, 10, MSPL, b, z\n"
        "1795615206120000000, MSFT, 400.25, 10, MSPL, sold, z\n"
    )
    rows = [orjson.loads(file_record(r, "seed.csv").value) for r in read_rows(path)]
    assert [r["event_time"] for r in rows] == [
        "2026-11-25T14:00:01.000Z", "2026-11-25T14:00:02.250Z", "2026-11-25T14:00:03.000Z",
        "2026-11-25T14:00:04.500Z", "2026-11-25T14:00:05.120Z", "2026-11-25T14:00:06.120Z"]
    assert rows[0] == {"trade_id": "seed.csv:2", "event_time": "2026-11-25T14:00:01.000Z", "symbol": "AAPL",
                       "venue": "UBSA", "price": 189.5, "quantity": 100, "side": "B"}
    assert [r["side"] for r in rows] == ["B", None, "S", "S", "B", "S"] and rows[2]["price"] == 400


SEED_LAYOUT = "timestamp,symbol,price,quantity,venue,side,is_spoof,algo_fingerprint,order_type,order_id"


def test_backfill_dead_letters_unreadable_rows_and_never_stops(tmp_path: Path):
    """The seed project's full layout with BUY/SELL, an epoch-microsecond row (once a crash of the whole run:
    "year 58886 is out of range"), and one row of each unreadable kind: each bad row is dead-lettered with its
    reason and line, the good ones are aggregated, and the counters add up."""
    good = [
        "2026-11-25 14:00:01.250,AAPL,189.5,100,UBSA,BUY,0,fp,LIMIT,1",
        "2026-11-25T14:00:02Z,AAPL,189.6,200,XNAS,SELL,1,fp,MARKET,2",
        "1795615203120000,MSFT,400,300,MSPL,SELL,0,fp,LIMIT,3",  # epoch microseconds
    ]
    bad = [
        ("1795615203120000000000,MSFT,400,300,MSPL,S,0,fp,LIMIT,4", "bad_event_time"),
        ("2026-11-25T14:00:04Z,MSFT,abc,300,MSPL,S,0,fp,LIMIT,5", "bad_type"),
        ("2026-11-25T14:00:05Z,MSFT,400,-3,MSPL,S,0,fp,LIMIT,6", "non_positive_quantity"),
        ("2026-11-25T14:00:06Z,MSFT,0,3,MSPL,S,0,fp,LIMIT,7", "non_positive_price"),
        ("2026-11-25T14:00:07Z,MSFT,400,3,MSPL,MAYBE,0,fp,LIMIT,8", "bad_side"),
        ("2026-11-25T14:00:08Z,,400,3,MSPL,B,0,fp,LIMIT,9", "missing_field"),
        ("2026-11-25T14:00:09Z,MSFT,400,3", "bad_csv_row"),
        ("2026-11-25T14:00:10Z,MSFT,400,3,DARK1,BUY,0,fp,LIMIT,10", "unknown_venue"),  # decided by the parse step
    ]
    path = tmp_path / "seed.csv"
    path.write_text("\n".join([SEED_LAYOUT, *good, *(row for row, _ in bad)]) + "\n")
    result = run(["--source", "file", "--input", str(path), "--output", str(tmp_path / "out"), "--shape", "simple"])
    dead = [orjson.loads(line) for f in (tmp_path / "out" / "deadletter").rglob("*.jsonl")
            for line in f.read_bytes().splitlines()]
    assert sorted((d["source_offset"], d["reason"]) for d in dead) == [
        (len(good) + 2 + i, reason) for i, (_, reason) in enumerate(bad)]
    by_line = {d["source_offset"]: d for d in dead}
    assert by_line[len(good) + 2]["raw_value"] == bad[0][0]
    assert by_line[len(good) + 2]["detail"].startswith(f"seed.csv:{len(good) + 2}: ")
    counters = metric_totals(result)
    assert counters["records_in"] == len(good) + len(bad)
    assert counters["trades_valid"] == len(good)
    assert all(counters[f"deadletter_{reason}"] == 1 for _, reason in bad)
    market = read_dataset(tmp_path / "out", "market")
    assert market["trade_count"].sum() == 5 * len(good)  # every good trade in its 5 windows
    msft = market[market["symbol"] == "MSFT"]
    assert set(msft["share_quantity"]) == {300}
