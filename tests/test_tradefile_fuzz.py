"""Bad trade files, fuzzed: every bad row is a row error with its reason and file:line, never a crash.

- property tests (hypothesis, derandomized, bounded) of the reader's pure parts: any cells into
  :func:`darkpool.tradefile.build_trade`, any text as a time, any lines as a CSV or JSON-lines
  file: a trade within the contract's limits or a :class:`~darkpool.tradefile.BadRow` /
  :class:`~darkpool.tradefile.RowError` with a reason of contracts.DEADLETTER_REASONS, nothing else;
- a generated corpus per format (CSV, JSON lines, Parquet; a fixed seed): good rows mixed with bad
  ones of every class (wrong field counts, non-UTF-8 cells, fields over the CSV field limit,
  truncated or non-UTF-8 JSON, NaN/Infinity, huge numbers, wrong types, very long strings, empty
  values, deep nesting, duplicated keys, Parquet nulls and NaN), each labelled by construction with
  its reason, through both file paths: the feed's reader (``darkpool feed --from-file``:
  :func:`feed.replay.read_trades`) and the pipeline's backfill (``darkpool run --source file`` on the
  DirectRunner). Both list exactly the bad rows by line and reason, and the counts reconcile.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darkpool import tradefile
from darkpool.contracts import (
    DEADLETTER_REASONS,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_SYMBOL_LENGTH,
    MAX_TRADE_ID_LENGTH,
    format_event_time,
    load_venues,
)
from darkpool.errors import DarkpoolError
from darkpool.tradefile import BadRow, RowError, Trade, build_trade, read_rows, time_to_ms
from feed.replay import read_trades

T0 = 1_795_615_200_000  # 2026-11-25T14:00:00Z
VENUES = sorted(load_venues())
PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=250,
                    suppress_health_check=[HealthCheck.too_slow])
HEADER = ["event_time", "symbol", "venue", "price", "quantity", "side", "trade_id"]


# --- property tests of the pure parts ---------------------------------------------------------
def assert_trade_in_limits(trade: Trade) -> None:
    assert 0 < len(trade.symbol) <= MAX_SYMBOL_LENGTH and trade.venue
    assert 0.0 < trade.price <= MAX_PRICE and 0 < trade.quantity <= MAX_QUANTITY and type(trade.quantity) is int
    assert trade.side in ("B", "S", None)
    assert trade.trade_id is None or len(trade.trade_id) <= MAX_TRADE_ID_LENGTH
    assert tradefile.EARLIEST_TIME_MS <= trade.event_ms <= tradefile.LATEST_TIME_MS
    orjson.dumps(trade.contract("X-1"))  # the contract record encodes (the feed and the backfill send it)


CELLS = (st.none() | st.text(max_size=40) | st.integers(-(2**70), 2**70) | st.floats() | st.booleans()
         | st.binary(max_size=10) | st.datetimes() | st.dates() | st.lists(st.integers(), max_size=2)
         | st.text(min_size=30, max_size=5_000) | st.sampled_from(
             ["2026-11-25T14:00:00Z", "1795615200", "1795615200000", "\u00b2\u00b2\u00b2", "9" * 5_000, "1e400",
              "nan", "-inf", "1_000", " 100 ", "BUY", "sold", "UBSA", "\udcff", "A\udc80B"]))


@PROPERTY
@given(st.tuples(CELLS, CELLS, CELLS, CELLS, CELLS, CELLS, CELLS))
def test_any_cells_are_a_trade_in_the_limits_or_a_bad_row(cells):
    try:
        trade = build_trade(7, *cells)
    except BadRow as bad:
        assert bad.reason in DEADLETTER_REASONS and len(bad.detail) <= tradefile.MAX_DETAIL_CHARS + 30
        return
    assert_trade_in_limits(trade)


ISO_LIKE = r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?(Z|[+-][0-9]{2}:[0-9]{2})?\Z"


@PROPERTY
@given(st.text(max_size=60) | st.from_regex(r"\A[0-9]{1,30}(\.[0-9]{0,12})?\Z") | st.from_regex(ISO_LIKE))
def test_any_text_is_a_time_in_the_readable_range_or_a_bad_row(text):
    try:
        ms = time_to_ms(text)
    except BadRow as bad:
        assert bad.reason in ("bad_event_time", "missing_field")
        return
    assert tradefile.EARLIEST_TIME_MS <= ms <= tradefile.LATEST_TIME_MS


LINES = st.lists(st.binary(max_size=120) | st.text(max_size=120).map(lambda t: t.encode("utf-8", "surrogatepass"))
                 | st.sampled_from([b'"unterminated,AAPL', b"\x00\x00", b",,,,,,", b'{"a":1}', b"[]", b"NaN",
                                    b"2026-11-25T14:00:00Z,AAPL,UBSA,10,100,B,T1"]), max_size=25)


def assert_outcomes(path: Path) -> list:
    outcomes = list(read_rows(path))
    for row in outcomes:
        if type(row) is RowError:
            assert row.reason in DEADLETTER_REASONS and row.file == path.name and row.line >= 1
            assert row.raw is None or type(row.raw) is bytes
        else:
            assert_trade_in_limits(row)
    assert [row.line for row in outcomes] == sorted({row.line for row in outcomes})  # in file order, once each
    return outcomes


@PROPERTY
@given(LINES)
def test_any_lines_as_csv_are_trades_or_row_errors(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("csv") / "fuzz.csv"
    content = b"\n".join([",".join(HEADER).encode(), *lines]) + b"\n"
    path.write_bytes(content)
    assert len(assert_outcomes(path)) <= len(content.splitlines()) - 1  # at most one per line (\r counts)


@PROPERTY
@given(LINES)
def test_any_lines_as_json_lines_are_one_outcome_per_line(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("jsonl") / "fuzz.jsonl"
    lines = [line.replace(b"\n", b" ").replace(b"\r", b" ") for line in lines]
    path.write_bytes(b"\n".join(lines) + b"\n")
    outcomes = assert_outcomes(path)
    assert [row.line for row in outcomes] == [i for i, line in enumerate(lines, start=1) if line.strip()]


def test_a_truncated_or_corrupt_file_is_a_clear_error_after_the_rows_before_it(tmp_path: Path):
    rows = [",".join(HEADER)] + [f"{format_event_time(T0 + i)},AAPL,UBSA,10,100,B,T{i}" for i in range(2_000)]
    whole = gzip.compress(("\n".join(rows) + "\n").encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    read = []
    with pytest.raises(DarkpoolError, match=r"cut.csv.gz: cannot be read past line \d+"):
        for row in read_rows(path):
            read.append(row)
    assert read and all(type(row) is Trade for row in read)

    parquet = tmp_path / "corrupt.parquet"
    table = pa.table({"event_time": [format_event_time(T0 + i) for i in range(100_000)],
                      "symbol": ["AAPL"] * 100_000, "venue": ["UBSA"] * 100_000,
                      "price": [10.0] * 100_000, "quantity": [100] * 100_000})
    pq.write_table(table, parquet, row_group_size=50_000, compression="none")
    data = bytearray(parquet.read_bytes())
    middle = len(data) * 3 // 4  # inside the second row group's pages: the footer still reads
    data[middle:middle + 4_000] = b"\xff" * 4_000
    parquet.write_bytes(bytes(data))
    try:
        outcomes = list(read_rows(parquet))
    except DarkpoolError as error:
        assert "corrupt.parquet" in str(error)
    else:  # pages without checksums may decode as other values: then every row still has an outcome
        assert len(outcomes) == 100_000


# --- the corpus ---------------------------------------------------------------------------------
@dataclass
class FileRow:
    """One line of a generated trade file, and what reading it must give."""

    cells: dict | None  # logical cells (None: a raw line)
    raw: bytes | None = None  # the exact line (CSV / JSON lines), when not made from cells
    reason: str | None = None  # the reader's reason; None: a readable row
    pipeline_reason: str | None = None  # the parse step's reason for a readable row (unknown_venue)
    kind: str = "good"


def good_cells(rng: random.Random, i: int) -> dict:
    return {"event_time": format_event_time(T0 + i * 1_000 + rng.randint(0, 999)),
            "symbol": rng.choice(["AAPL", "MSFT", "NVDA"]), "venue": rng.choice(VENUES),
            "price": round(rng.uniform(1, 900), 2), "quantity": rng.randint(1, 20_000),
            "side": rng.choice(["B", "S", "BUY", "SELL", ""]), "trade_id": f"F-{i:05d}"}


# (cell, bad text, reason) for any format that holds text cells
TEXT_CELL_FAULTS = [
    ("event_time", "not a time", "bad_event_time"), ("event_time", "\u00b2\u00b2\u00b2", "bad_event_time"),
    ("event_time", "9" * 5_000, "bad_event_time"), ("event_time", "1e400", "bad_event_time"),
    ("event_time", "nan", "bad_event_time"), ("event_time", "12", "bad_event_time"),
    ("event_time", "", "missing_field"), ("symbol", "", "missing_field"), ("venue", " ", "missing_field"),
    ("symbol", "A" * (MAX_SYMBOL_LENGTH + 1), "too_long"), ("symbol", "S" * 100_000, "too_long"),
    ("trade_id", "x" * (MAX_TRADE_ID_LENGTH + 1), "too_long"),
    ("price", "abc", "bad_type"), ("price", "nan", "bad_type"), ("price", "inf", "bad_type"),
    ("price", "1e400", "bad_type"), ("price", "-1", "non_positive_price"), ("price", "0", "non_positive_price"),
    ("price", "1e9", "out_of_range"), ("price", "", "missing_field"),
    ("quantity", "1.5", "bad_type"), ("quantity", "9" * 5_000, "bad_type"), ("quantity", "0", "non_positive_quantity"),
    ("quantity", "-7", "non_positive_quantity"), ("quantity", "1" * 30, "out_of_range"),
    ("quantity", "1e30", "out_of_range"), ("quantity", "", "missing_field"),
    ("side", "MAYBE", "bad_side"), ("side", "\u00dfELL", "bad_side"),
]


def corpus(seed: int, n_good: int, n_bad: int, raw_faults: list[tuple[str, bytes, str]]) -> list[FileRow]:
    """Good rows and bad ones (TEXT_CELL_FAULTS, the format's raw_faults, unknown venues), shuffled."""
    rng = random.Random(seed)
    rows: list[FileRow] = [FileRow(good_cells(rng, i)) for i in range(n_good)]
    for j in range(n_bad):
        cells = good_cells(rng, n_good + j)
        roll = j % 10
        if roll < 6:
            cell, text, reason = TEXT_CELL_FAULTS[(j // 10 * 6 + roll) % len(TEXT_CELL_FAULTS)]
            rows.append(FileRow({**cells, cell: text}, reason=reason, kind=f"{cell}:{reason}"))
        elif roll < 9 and raw_faults:
            kind, raw, reason = raw_faults[(j // 10 * 3 + roll - 6) % len(raw_faults)]
            rows.append(FileRow(None, raw=raw, reason=reason, kind=kind))
        else:
            rows.append(FileRow({**cells, "venue": rng.choice(["NOPE", "ubsa", "\u00dcBSA"])},
                                pipeline_reason="unknown_venue", kind="unknown_venue"))
    rng.shuffle(rows)
    return rows


def _csv_line(cells: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(cells)
    return buffer.getvalue().encode("utf-8")


GOOD_CSV = "2026-11-25T14:00:00Z,AAPL,UBSA,10,100,B,T-x"
CSV_FAULTS = [
    ("few_fields", b"2026-11-25T14:00:00Z,AAPL,UBSA,10", "bad_csv_row"),
    ("many_fields", GOOD_CSV.encode() + b",extra,more", "bad_csv_row"),
    ("non_utf8_symbol", b"2026-11-25T14:00:00Z,AA\xffPL,UBSA,10,100,B,T-x", "bad_type"),
    ("non_utf8_venue", b"2026-11-25T14:00:00Z,AAPL,UB\xc3,10,100,B,T-x", "bad_type"),
    ("non_utf8_trade_id", b"2026-11-25T14:00:00Z,AAPL,UBSA,10,100,B,\xfe\xfe", "bad_type"),
    ("over_field_limit", b'2026-11-25T14:00:00Z,"' + b"A" * 200_000 + b'",UBSA,10,100,B,T-x', "bad_csv_row"),
    ("nul_bytes", b"2026-11-25T14:00:00Z,AAPL\x00,UBSA,10,100,B,T-x", None),  # a readable row, the NUL kept
]
JSONL_FAULTS = [
    ("truncated", b'{"event_time":"2026-11-25T14:00:00Z","symbol":"AA', "bad_json"),
    ("random_bytes", b"\xff\xfe\x00garbage", "bad_json"),
    ("nan", b'{"event_time":"2026-11-25T14:00:00Z","symbol":"AAPL","venue":"UBSA","price":NaN,"quantity":1}',
     "bad_json"),
    ("infinity", b'{"event_time":"2026-11-25T14:00:00Z","symbol":"AAPL","venue":"UBSA","price":1e999,"quantity":1}',
     "bad_json"),
    ("non_utf8", b'{"event_time":"2026-11-25T14:00:00Z","symbol":"A\xffA","venue":"UBSA","price":1,"quantity":1}',
     "bad_json"),
    ("lone_surrogate", b'{"event_time":"2026-11-25T14:00:00Z","symbol":"\\ud800","venue":"UBSA","price":1,'
                       b'"quantity":1}', "bad_json"),
    ("deep_nesting", b"[" * 3_000 + b"]" * 3_000, "bad_json"),
    ("not_an_object", b"[1, 2, 3]", "not_an_object"),
    ("scalar", b"42", "not_an_object"),
    ("empty_object", b"{}", "missing_field"),
    ("bool_price", b'{"event_time":"2026-11-25T14:00:00Z","symbol":"AAPL","venue":"UBSA","price":true,"quantity":1}',
     "bad_type"),
    ("list_quantity", b'{"event_time":"2026-11-25T14:00:00Z","symbol":"AAPL","venue":"UBSA","price":1,'
                      b'"quantity":[1]}', "bad_type"),
    ("number_symbol", b'{"event_time":"2026-11-25T14:00:00Z","symbol":42,"venue":"UBSA","price":1,"quantity":1}',
     "bad_type"),
    ("null_time", b'{"event_time":null,"symbol":"AAPL","venue":"UBSA","price":1,"quantity":1}', "missing_field"),
    ("nested_price", b'{"event_time":"2026-11-25T14:00:00Z","symbol":"AAPL","venue":"UBSA","price":'
                     + b"[" * 200 + b"]" * 200 + b',"quantity":1}', "bad_type"),
    ("huge_integer", b'{"event_time":"2026-11-25T14:00:00Z","symbol":"AAPL","venue":"UBSA","price":1,'
                     b'"quantity":100000000000000000000000000}', "out_of_range"),
    ("u64_quantity", b'{"event_time":"2026-11-25T14:00:00Z","symbol":"AAPL","venue":"UBSA","price":1,'
                     b'"quantity":18446744073709551615}', "out_of_range"),
    ("duplicated_key", b'{"event_time":"2026-11-25T14:00:00Z","symbol":"AAPL","venue":"UBSA","price":1,"quantity":1,'
                       b'"quantity":-1}', "non_positive_quantity"),
    ("epoch_number_time", b'{"event_time":17956152000000000000000,"symbol":"AAPL","venue":"UBSA","price":1,'
                          b'"quantity":1}', "bad_event_time"),
    ("bom", b"\xef\xbb\xbf" + GOOD_CSV.encode(), "bad_json"),
]


def write_csv(rows: list[FileRow], path: Path) -> dict[int, FileRow]:
    """The rows as CSV (header line 1, a blank line after every 50th row) -> {line: row}."""
    lines, at = [",".join(HEADER).encode()], {}
    for i, row in enumerate(rows):
        lines.append(row.raw if row.cells is None else _csv_line([str(row.cells[c]) for c in HEADER]))
        at[len(lines)] = row
        if i % 50 == 49:
            lines.append(b"")  # blank lines are skipped, and still count as lines
    path.write_bytes(b"\n".join(lines) + b"\n")
    return at


def write_jsonl(rows: list[FileRow], path: Path) -> dict[int, FileRow]:
    lines, at = [], {}
    for i, row in enumerate(rows):
        lines.append(row.raw if row.cells is None else orjson.dumps(row.cells))
        at[len(lines)] = row
        if i % 50 == 49:
            lines.append(b"   ")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return at


def write_parquet(rows: list[FileRow], path: Path) -> dict[int, FileRow]:
    """Text columns (any cell fits); a row made of raw bytes becomes nulls (missing_field)."""
    columns = {c: [None if r.cells is None else str(r.cells[c]) for r in rows] for c in HEADER}
    pq.write_table(pa.table(columns), path, row_group_size=97)
    return {i: row for i, row in enumerate(rows, start=1)}


PARQUET_FAULTS = [("nulls", b"", "missing_field")]


def expected_reader_errors(at: dict[int, FileRow]) -> list[tuple[int, str]]:
    return sorted((line, row.reason) for line, row in at.items() if row.reason is not None)


FORMATS = {"csv": (write_csv, CSV_FAULTS), "jsonl": (write_jsonl, JSONL_FAULTS),
           "parquet": (write_parquet, PARQUET_FAULTS)}


def make_file(tmp_path: Path, fmt: str, seed: int = 5, n_good: int = 150, n_bad: int = 110):
    writer, faults = FORMATS[fmt]
    rows = corpus(seed, n_good, n_bad, faults)
    path = tmp_path / f"fuzz.{fmt}"
    return path, writer(rows, path)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_the_feed_reader_lists_every_bad_row_by_line_and_reason(tmp_path: Path, fmt: str):
    path, at = make_file(tmp_path, fmt)
    expected = expected_reader_errors(at)
    assert {reason for _, reason in expected} >= {reason for _, _, reason in TEXT_CELL_FAULTS}  # every class
    with pytest.raises(DarkpoolError) as caught:
        read_trades(path)
    assert f"{len(expected)} unreadable row(s)" in str(caught.value)
    first_line, first_reason = expected[0]
    assert f"line {first_line}: {first_reason}: " in str(caught.value)

    trades = read_trades(path, skip_bad_rows=True)
    assert sorted((e.line, e.reason) for e in trades.rejected) == expected
    assert all(e.where == f"{path.name}:{e.line}" for e in trades.rejected)
    assert trades.skipped == len(expected)
    assert len(trades) + trades.skipped == len(at)  # every row: read or listed
    assert all(len(s) <= MAX_SYMBOL_LENGTH for s in trades.symbols)


def _dead_letters(root: Path) -> list[dict]:
    return [orjson.loads(line) for f in sorted((root / "deadletter").rglob("*.jsonl"))
            for line in f.read_bytes().splitlines()]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_the_backfill_dead_letters_every_bad_row_and_reconciles(tmp_path: Path, fmt: str):
    from pipeline.main import metric_totals, run

    path, at = make_file(tmp_path, fmt, seed=6)
    out = tmp_path / "out"
    result = run(["--source", "file", "--input", str(path), "--output", str(out), "--shape", "simple"])
    dead = _dead_letters(out)
    expected = sorted([*expected_reader_errors(at),
                       *((line, row.pipeline_reason) for line, row in at.items() if row.pipeline_reason)])
    assert sorted((d["source_offset"], d["reason"]) for d in dead) == expected
    for letter in dead:
        assert letter["source_topic"] == f"file:{path.name}"
        if at[letter["source_offset"]].reason is not None:  # the reader's: file:line in the detail
            assert letter["detail"].startswith(f"{path.name}:{letter['source_offset']}: ")
            assert len(orjson.dumps(letter)) < 100_000
    counters = metric_totals(result)
    aggregated = counters["trades_valid"]
    assert counters["records_in"] == len(at) == aggregated + len(dead)  # in = aggregated + dead-lettered
    assert aggregated == sum(1 for row in at.values() if row.reason is None and row.pipeline_reason is None)
    assert Counter(d["reason"] for d in dead) == {r: counters[f"deadletter_{r}"] for r in {d["reason"] for d in dead}}
    market = pq.read_table(out / "market").to_pandas()
    latest = market.sort_values("pane_index").groupby(["window_start", "symbol"]).tail(1)
    assert int(latest["trade_count"].sum()) == 5 * aggregated  # every trade in its 5 windows, once


def test_typed_parquet_columns_nan_infinity_huge_and_nulls(tmp_path: Path):
    """A Parquet file with typed columns: NaN / infinite / huge prices, int64 quantities, a timestamp column."""
    n = 12
    times = [dt.datetime(2026, 11, 25, 14, 0, i, tzinfo=dt.UTC) for i in range(n)]
    times[3] = None
    prices = [10.0, float("nan"), float("inf"), 1e300, -2.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, None]
    quantities = [100, 100, 100, 100, 100, 2**63 - 1, 0, 100, 100, 100, 100, 100]
    symbols = ["AAPL"] * n
    symbols[7] = "B" * 1_000
    sides = ["B"] * n
    sides[8] = "?"
    trade_ids = [f"T{i}" for i in range(n)]
    trade_ids[9] = "z" * 500
    table = pa.table({"timestamp": pa.array(times, pa.timestamp("us", tz="UTC")), "symbol": symbols,
                      "venue": ["UBSA"] * n, "price": prices, "quantity": pa.array(quantities, pa.int64()),
                      "side": sides, "trade_id": trade_ids})
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)
    outcomes = list(read_rows(path))
    assert [(row.line, getattr(row, "reason", None)) for row in outcomes] == [
        (1, None), (2, "bad_type"), (3, "bad_type"), (4, "missing_field"), (5, "non_positive_price"),
        (6, "out_of_range"), (7, "non_positive_quantity"), (8, "too_long"), (9, "bad_side"), (10, "too_long"),
        (11, None), (12, "missing_field")]
    for row in outcomes:
        if type(row) is RowError:
            json.loads(row.raw)  # the raw row, as JSON
