"""Replay from files: the seed project's CSV layout, JSONL, Parquet, and clear errors for bad rows.

The rules themselves (columns, time units, sides, reasons) are the one reader's,
tested in tests/test_tradefile.py; these tests cover what the feed makes of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feed_checks import classify, validation_error

from darkpool.contracts import TRADE_FIELDS, format_event_time, parse_event_time
from darkpool.errors import DarkpoolError
from darkpool.tradefile import detect_format
from feed.generator import FaultConfig
from feed.replay import file_batches, read_trades

SEED_CSV = """timestamp,symbol,price,quantity,venue,side,exchange_code,notes
2024-03-01T14:30:00.120Z,AAPL,179.66,100,UBSA,BUY,D,first
2024-03-01T14:30:00.480Z,MSFT,415.10,25,XNAS,S,Q,
2024-03-01 14:30:01.005,AAPL,179.655,12000,BIDS,,D,block
2024-03-01T09:30:02-05:00,NVDA,822.40,300,CDRG,sell,D,offset
"""
EXPECTED = [
    ("AAPL", "2024-03-01T14:30:00.120Z", "UBSA", 179.66, 100, "B"),
    ("MSFT", "2024-03-01T14:30:00.480Z", "XNAS", 415.10, 25, "S"),
    ("AAPL", "2024-03-01T14:30:01.005Z", "BIDS", 179.655, 12000, None),
    ("NVDA", "2024-03-01T14:30:02.000Z", "CDRG", 822.40, 300, "S"),
]


def records_of(path: Path, **kwargs):
    trades = read_trades(path)
    return [r for batch in file_batches(trades, **kwargs) for r in batch.records()]


def check_expected(records) -> None:
    assert len(records) == len(EXPECTED)
    for record, (symbol, time, venue, price, qty, side) in zip(records, EXPECTED, strict=True):
        trade = orjson.loads(record.value)
        assert tuple(trade) == TRADE_FIELDS
        assert (trade["symbol"], trade["event_time"], trade["venue"], trade["price"], trade["quantity"],
                trade["side"]) == (symbol, time, venue, price, qty, side)
        assert record.key == symbol
        assert record.timestamp_ms == parse_event_time(time)
        assert record.fault is None
        assert validation_error(record.value, record.timestamp_ms) is None


def test_seed_project_csv_layout_extra_columns_ignored(tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_text(SEED_CSV)
    records = records_of(path)
    check_expected(records)
    assert [orjson.loads(r.value)["trade_id"] for r in records] == [f"R-{i:010d}" for i in range(4)]


def test_jsonl_and_parquet_give_the_same_records(tmp_path: Path) -> None:
    rows = [{"event_time": t, "symbol": s, "venue": v, "price": p, "quantity": q, "side": d, "trade_id": f"X{i}"}
            for i, (s, t, v, p, q, d) in enumerate(EXPECTED)]
    jsonl = tmp_path / "trades.jsonl"
    jsonl.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    parquet = tmp_path / "trades.parquet"
    table = pa.table({
        "timestamp": pa.array([parse_event_time(r["event_time"]) for r in rows], pa.timestamp("ms", tz="UTC")),
        "symbol": [r["symbol"] for r in rows], "venue": [r["venue"] for r in rows],
        "price": [r["price"] for r in rows], "quantity": [r["quantity"] for r in rows],
        "side": [r["side"] for r in rows], "trade_id": [r["trade_id"] for r in rows]})
    pq.write_table(table, parquet)
    from_jsonl, from_parquet = records_of(jsonl), records_of(parquet)
    check_expected(from_jsonl)
    assert from_parquet == from_jsonl
    assert [orjson.loads(r.value)["trade_id"] for r in from_jsonl] == ["X0", "X1", "X2", "X3"]


def test_epoch_timestamps_in_seconds_millis_micros_and_nanos(tmp_path: Path) -> None:
    ms = parse_event_time("2024-03-01T14:30:00.120Z")
    path = tmp_path / "epochs.csv"
    path.write_text("timestamp,symbol,price,quantity,venue,side\n"
                    + "".join(f"{stamp},AAPL,1.5,1,UBSA,B\n"
                              for stamp in (ms / 1000, ms, ms * 1000, ms * 1_000_000)))
    assert read_trades(path).ts.tolist() == [ms] * 4


def test_unreadable_rows_are_reported_with_line_numbers_and_reasons(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,symbol,price,quantity,venue,side\n"
                    "2024-03-01T14:30:00Z,AAPL,179.66,100,UBSA,B\n"
                    "2024-03-01T14:30:01Z,AAPL,abc,100,UBSA,B\n"
                    "yesterday,AAPL,179.66,100,UBSA,B\n"
                    "2024-03-01T14:30:03Z,AAPL,179.66,-5,UBSA,B\n"
                    "2024-03-01T14:30:04Z,AAPL,179.66,100,UBSA,MAYBE\n"
                    "2024-03-01T14:30:05Z,AAPL,179.66\n"
                    "1709303400120000000000,AAPL,179.66,100,UBSA,B\n")
    with pytest.raises(DarkpoolError) as error:
        read_trades(path)
    text = str(error.value)
    assert "6 unreadable row(s)" in text
    for line, reason in ((3, "bad_type: price 'abc'"), (4, "bad_event_time: time 'yesterday'"),
                         (5, "non_positive_quantity: quantity '-5' must be > 0"), (6, "bad_side: side 'MAYBE'"),
                         (7, "bad_csv_row: 3 fields"), (8, "bad_event_time: epoch time 1709303400120000000000")):
        assert f"line {line}: {reason}" in text
    assert "--skip-bad-rows" in text
    trades = read_trades(path, skip_bad_rows=True)
    assert len(trades) == 1 and trades.skipped == 6
    assert [(e.line, e.reason) for e in trades.rejected] == [
        (3, "bad_type"), (4, "bad_event_time"), (5, "non_positive_quantity"), (6, "bad_side"), (7, "bad_csv_row"),
        (8, "bad_event_time")]


def test_jsonl_errors_name_the_line_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"timestamp": "2024-03-01T14:30:00Z", "symbol": "AAPL", "price": 1.5, "quantity": 1, '
                    '"venue": "UBSA"}\n{not json\n{"symbol": "AAPL"}\n[1]\n')
    with pytest.raises(DarkpoolError, match=r"line 2: bad_json: not JSON[\s\S]*line 3: missing_field: "
                                            r"missing field\(s\) timestamp[\s\S]*line 4: not_an_object"):
        read_trades(path)


def test_many_bad_rows_show_the_first_ten(tmp_path: Path) -> None:
    path = tmp_path / "many_bad.csv"
    path.write_text("timestamp,symbol,price,quantity,venue\n" + "x,AAPL,1,1,UBSA\n" * 25 + "1709303400,A,1,1,UBSA\n")
    with pytest.raises(DarkpoolError, match=r"25 unreadable row\(s\)[\s\S]*line 11: [\s\S]*and 15 more") as error:
        read_trades(path)
    assert "line 12:" not in str(error.value)
    assert read_trades(path, skip_bad_rows=True).skipped == 25


def test_rows_without_a_trade_id_get_generated_ones(tmp_path: Path) -> None:
    path = tmp_path / "ids.jsonl"
    path.write_text('{"timestamp": 1709303400, "symbol": "AAPL", "price": 1.5, "quantity": 1, "venue": "UBSA",'
                    ' "trade_id": "X-1"}\n'
                    '{"timestamp": 1709303401, "symbol": "AAPL", "price": 1.5, "quantity": 1, "venue": "UBSA"}\n')
    assert [orjson.loads(r.value)["trade_id"] for r in records_of(path)] == ["X-1", "R-0000000001"]


def test_missing_columns_and_unknown_formats_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "cols.csv"
    path.write_text("time,symbol,price\n1,AAPL,2\n")
    with pytest.raises(DarkpoolError, match=r"missing column\(s\) timestamp \(or event_time\), venue, quantity"):
        read_trades(path)
    with pytest.raises(DarkpoolError, match="cannot tell the format"):
        detect_format(tmp_path / "trades.txt")
    with pytest.raises(DarkpoolError, match="no such file"):
        read_trades(tmp_path / "absent.csv")
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(DarkpoolError, match="not readable as Parquet"):
        read_trades(tmp_path / "broken.parquet")


def test_faults_and_time_shift_apply_to_file_replay(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    start = parse_event_time("2024-03-01T14:30:00Z")
    times = start + np.cumsum(rng.integers(1, 200, 20_000))
    lines = ["timestamp,symbol,price,quantity,venue,side"]
    lines += [f"{format_event_time(int(t))},{('AAPL', 'MSFT', 'NVDA')[i % 3]},100.5,{100 + i % 7},UBSA,B"
              for i, t in enumerate(times)]
    path = tmp_path / "many.csv"
    path.write_text("\n".join(lines) + "\n")
    faults = FaultConfig(out_of_order_rate=0.02, late_rate=0.01, malformed_rate=0.02, duplicate_rate=0.01)
    target = 1_900_000_000_000
    records = records_of(path, faults=faults, seed=3, shift_to_ms=target)
    labels = [r.fault for r in records]
    assert classify((r.key, r.timestamp_ms, r.value) for r in records) == labels
    assert {"out_of_order", "late", "duplicate"} <= set(labels)
    in_order = [r.timestamp_ms for r in records if r.fault is None]
    assert in_order[0] == target
    assert records_of(path, faults=faults, seed=3, shift_to_ms=target) == records
    assert len(records_of(path, count=1234)) == 1234
