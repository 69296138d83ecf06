"""The one trade-file reader (darkpool.tradefile): every time unit, side alias and bad-row kind, and one
file of each format through both readers of the product -- the feed's replay and the pipeline's
DirectRunner file backfill -- with identical outcomes."""

from __future__ import annotations

import gzip
import threading
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkpool.contracts import DEADLETTER_REASONS, TRADE_FIELDS, format_event_time, load_venues, parse_event_time
from darkpool.errors import DarkpoolError
from darkpool.tradefile import (
    BUY_SIDES,
    EARLIEST_TIME_MS,
    EPOCH_UNITS,
    LATEST_TIME_MS,
    SELL_SIDES,
    UNKNOWN_SIDES,
    BadRow,
    RowError,
    Trade,
    detect_format,
    open_trade_file,
    read_rows,
    side_of,
    time_to_ms,
)
from feed.replay import file_batches, read_trades
from pipeline.main import metric_totals, run
from pipeline.transforms.read import ReadTradesFile

MS = parse_event_time("2024-03-01T14:30:00.123Z")
SEED_HEADER = "timestamp,symbol,price,quantity,venue,side,is_spoof,algo_fingerprint,order_type,order_id"


def outcomes(path: Path, fmt: str | None = None) -> list[Trade | RowError]:
    return list(read_rows(path, fmt))


def one(text: str, tmp_path: Path, header: str = "timestamp,symbol,price,quantity,venue,side") -> Trade | RowError:
    """The outcome of a one-row CSV."""
    path = tmp_path / f"{uuid.uuid4().hex}.csv"
    path.write_text(f"{header}\n{text}\n")
    (row,) = outcomes(path)
    return row


def reason(value) -> str:
    """time_to_ms(value)'s BadRow reason."""
    with pytest.raises(BadRow) as bad:
        time_to_ms(value)
    return bad.value.reason


# --- time ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "2024-03-01T14:30:00.123Z", "2024-03-01T14:30:00.123z", "2024-03-01T14:30:00.123+00:00",
    "2024-03-01T09:30:00.123-05:00", "2024-03-01T20:00:00.123+05:30", "2024-03-01 14:30:00.123",
    "2024-03-01T14:30:00.123", "2024-03-01 14:30:00.123Z", "  2024-03-01T14:30:00.123Z ",
    "2024-03-01T14:30:00.123456", "2024-03-01T14:30:00.1229", "20240301T143000.123Z",
])
def test_iso_8601_variants(text: str) -> None:
    assert time_to_ms(text) == MS


def test_iso_dates_and_sub_millisecond_rounding() -> None:
    assert time_to_ms("2024-03-01") == parse_event_time("2024-03-01T00:00:00Z")
    assert time_to_ms("2024-03-01T14:30:00.1234999Z"[:26] + "Z") == MS  # .123499 -> .123
    assert time_to_ms("2024-03-01T14:30:00.123500Z") == MS + 1  # halves round up
    assert time_to_ms("2024-03-01T14:30:00.999999Z") == parse_event_time("2024-03-01T14:30:01Z")


@pytest.mark.parametrize("value", [
    MS / 1000, MS // 1000 * 1000 // 1000, str(MS / 1000), MS, str(MS), float(MS), MS * 1000, str(MS * 1000),
    MS * 1_000_000, str(MS * 1_000_000), f"{MS * 1000}.0",
])
def test_epoch_seconds_millis_micros_nanos(value) -> None:
    expected = MS // 1000 * 1000 if value == MS // 1000 * 1000 // 1000 else MS
    assert time_to_ms(value) == expected


def test_epoch_units_are_told_apart_by_documented_ranges() -> None:
    # each unit's range covers the same instants: its lower bound is EARLIEST_TIME_MS, its upper LATEST_TIME_MS
    assert [(u.name, u.low, u.high) for u in EPOCH_UNITS] == [
        ("seconds", 10**8, 10**11), ("milliseconds", 10**11, 10**14), ("microseconds", 10**14, 10**17),
        ("nanoseconds", 10**17, 10**20)]
    for unit in EPOCH_UNITS:
        assert time_to_ms(unit.low) == EARLIEST_TIME_MS
        assert time_to_ms(str(unit.low)) == EARLIEST_TIME_MS
        assert LATEST_TIME_MS - 1000 <= time_to_ms(unit.high - 1) <= LATEST_TIME_MS
        with pytest.raises(BadRow):
            time_to_ms(unit.low - 1 if unit.name == "seconds" else EPOCH_UNITS[-1].high)
    assert format_event_time(EARLIEST_TIME_MS) == "1973-03-03T09:46:40.000Z"
    assert format_event_time(LATEST_TIME_MS) == "5138-11-16T09:46:40.000Z"
    # nanoseconds are exact (no float rounding) and round to the nearest millisecond
    assert time_to_ms("1709303400123456789") == 1709303400123
    assert time_to_ms(1709303400123500000) == 1709303400124
    assert time_to_ms(1709303400123499) == 1709303400123  # microseconds


@pytest.mark.parametrize("value", [
    10**8 - 1, 10**20, 10**21, "1e21", 0, -1709303400, "-1709303400", 1e300, "nan", "inf", float("nan"),
    "yesterday", "2024-13-01T00:00:00Z", "2024-03-01T25:00:00Z", "1960-01-01T00:00:00Z", "9999-12-31T00:00:00Z",
    "10000-01-01T00:00:00Z", "58886-01-01", True, [1], {"t": 1},
])
def test_unreadable_or_out_of_range_times_are_bad_event_time(value) -> None:
    assert reason(value) == "bad_event_time"


def test_empty_time_is_missing_field() -> None:
    assert reason("") == reason("   ") == reason(None) == "missing_field"


def test_the_microsecond_timestamp_that_crashed_the_backfill_reads_correctly(tmp_path: Path) -> None:
    # 1795615203120000 us is 2026-11-25T14:00:03.120Z; read as ms it would be in the year 58868
    row = one("1795615203120000,MSFT,400,300,MSPL,S", tmp_path)
    assert isinstance(row, Trade) and format_event_time(row.event_ms) == "2026-11-25T14:00:03.120Z"


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", ["UTC", None])
def test_parquet_timestamp_columns_in_every_unit(tmp_path: Path, unit: str, tz: str | None) -> None:
    per_unit = {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    values = [MS * per_unit // 1000, None, -10 * per_unit]  # the second: null; the third: 1969
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"Event_Time": pa.array(values, pa.timestamp(unit, tz=tz)), "symbol": ["A"] * 3,
                             "venue": ["UBSA"] * 3, "price": [1.0] * 3, "quantity": [1] * 3}), path)
    good, null, early = outcomes(path)
    assert good.event_ms == (MS // 1000 * 1000 if unit == "s" else MS) and good.line == 1
    assert (null.reason, null.line) == ("missing_field", 2)
    assert (early.reason, early.line) == ("bad_event_time", 3)


def test_parquet_epoch_and_text_time_columns(tmp_path: Path) -> None:
    for column in (pa.array([MS * 1000, MS // 1000], pa.int64()), pa.array([str(MS), "2024-03-01T14:30:00Z"])):
        path = tmp_path / "e.parquet"
        pq.write_table(pa.table({"timestamp": column, "symbol": ["A", "A"], "venue": ["UBSA"] * 2,
                                 "price": [1.0, 2.0], "quantity": [1, 2]}), path)
        assert [r.event_ms for r in outcomes(path)] == [MS, MS // 1000 * 1000]


def test_the_contract_format_reads_back_over_the_readable_range() -> None:
    for ms in (EARLIEST_TIME_MS, MS, MS + 999, LATEST_TIME_MS, 1795615203120):
        assert time_to_ms(format_event_time(ms)) == ms


# --- sides ---------------------------------------------------------------------------------------------------
def test_every_side_alias(tmp_path: Path) -> None:
    assert {"B", "BUY", "BOT", "BOUGHT"} <= BUY_SIDES and {"S", "SELL", "SLD", "SOLD", "SS", "SHORT"} <= SELL_SIDES
    assert {"", "U", "UNKNOWN", "NULL", "NONE", "N/A", "NA", "X"} <= UNKNOWN_SIDES
    for aliases, side in ((BUY_SIDES, "B"), (SELL_SIDES, "S"), (UNKNOWN_SIDES, None)):
        for alias in aliases:
            for written in (alias, alias.lower(), f" {alias.title()} "):
                assert side_of(written) == side, written
                row = one(f"2024-03-01T14:30:00Z,AAPL,1.5,1,UBSA,{written}", tmp_path)
                assert isinstance(row, Trade) and row.side == side, written
    assert side_of(None) is None
    assert one("2024-03-01T14:30:00Z,AAPL,1.5,1,UBSA", tmp_path, "timestamp,symbol,price,quantity,venue").side is None


@pytest.mark.parametrize("side", ["MAYBE", "BUYS", "long", "1", "+"])
def test_other_sides_are_bad_side(tmp_path: Path, side: str) -> None:
    row = one(f"2024-03-01T14:30:00Z,AAPL,1.5,1,UBSA,{side}", tmp_path)
    assert isinstance(row, RowError) and row.reason == "bad_side" and row.line == 2


def test_non_text_json_side_is_bad_side(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"timestamp": 1709303400, "symbol": "A", "venue": "UBSA", "price": 1, "quantity": 1, "side": 1}\n'
                    '{"timestamp": 1709303400, "symbol": "A", "venue": "UBSA", "price": 1, "quantity": 1, '
                    '"side": null}\n')
    bad, good = outcomes(path)
    assert bad.reason == "bad_side" and good.side is None


# --- prices, quantities, texts, ids ---------------------------------------------------------------------------
@pytest.mark.parametrize(("price", "quantity", "expected"), [
    ("abc", "100", "bad_type"), ("nan", "100", "bad_type"), ("inf", "100", "bad_type"), ("1,5", "100", "bad_csv_row"),
    ("0", "100", "non_positive_price"), ("-1.5", "100", "non_positive_price"),
    ("1.5", "1.5", "bad_type"), ("1.5", "ten", "bad_type"), ("1.5", "0", "non_positive_quantity"),
    ("1.5", "-5", "non_positive_quantity"), ("1.5", "", "missing_field"), ("", "100", "missing_field"),
    ("abc", "-5", "bad_type"),  # the parse step's order: the price's type before the quantity's sign
    ("-1", "-5", "non_positive_quantity"),  # ... and the quantity's sign before the price's
])
def test_price_and_quantity_rules(tmp_path: Path, price: str, quantity: str, expected: str) -> None:
    row = one(f"2024-03-01T14:30:00Z,AAPL,{price},{quantity},UBSA,B", tmp_path)
    assert isinstance(row, RowError) and row.reason == expected, row


def test_numbers_in_every_spelling(tmp_path: Path) -> None:
    row = one("2024-03-01T14:30:00Z,AAPL,189,100.0,UBSA,B", tmp_path)
    assert (row.price, row.quantity) == (189.0, 100) and type(row.price) is float and type(row.quantity) is int
    path = tmp_path / "n.jsonl"
    path.write_text('{"timestamp": 1709303400, "symbol": "A", "venue": "UBSA", "price": "2.5", "quantity": "300"}\n'
                    '{"timestamp": 1709303400, "symbol": "A", "venue": "UBSA", "price": 2, "quantity": 3e2}\n'
                    '{"timestamp": 1709303400, "symbol": "A", "venue": "UBSA", "price": true, "quantity": 1}\n'
                    '{"timestamp": 1709303400, "symbol": "A", "venue": "UBSA", "price": 1, "quantity": false}\n'
                    '{"timestamp": 1709303400, "symbol": 7, "venue": "UBSA", "price": 1, "quantity": 1}\n')
    first, second, bool_price, bool_quantity, number_symbol = outcomes(path)
    assert (first.price, first.quantity, second.price, second.quantity) == (2.5, 300, 2.0, 300)
    assert bool_price.reason == bool_quantity.reason == number_symbol.reason == "bad_type"


def test_empty_required_values_are_missing_field(tmp_path: Path) -> None:
    for text in (",AAPL,1,1,UBSA,B", "2024-03-01T14:30:00Z, ,1,1,UBSA,B", "2024-03-01T14:30:00Z,AAPL,1,1,,B"):
        row = one(text, tmp_path)
        assert isinstance(row, RowError) and row.reason == "missing_field", text
    path = tmp_path / "m.jsonl"
    path.write_text('{"timestamp": 1709303400, "symbol": null, "venue": "UBSA", "price": 1, "quantity": 1}\n'
                    '{"timestamp": 1709303400, "venue": "UBSA", "price": 1, "quantity": 1}\n')
    null, absent = outcomes(path)
    assert (null.reason, absent.reason) == ("missing_field", "missing_field")
    assert "symbol" in null.detail and "symbol" in absent.detail


def test_trade_ids_are_optional_and_kept(tmp_path: Path) -> None:
    header = "timestamp,symbol,price,quantity,venue,side,trade_id"
    assert one("2024-03-01T14:30:00Z,AAPL,1,1,UBSA,B, X-7 ", tmp_path, header).trade_id == "X-7"
    assert one("2024-03-01T14:30:00Z,AAPL,1,1,UBSA,B,", tmp_path, header).trade_id is None
    path = tmp_path / "i.jsonl"
    path.write_text('{"timestamp": 1709303400, "symbol": "A", "venue": "UBSA", "price": 1, "quantity": 1, '
                    '"trade_id": 123}\n')
    (row,) = outcomes(path)
    assert row.trade_id == "123"
    assert row.contract("generated")["trade_id"] == "123"
    assert row._replace(trade_id=None).contract("generated")["trade_id"] == "generated"


def test_venues_are_not_checked_by_the_reader(tmp_path: Path) -> None:
    row = one("2024-03-01T14:30:00Z,AAPL,1,1,NOT-A-VENUE,B", tmp_path)
    assert isinstance(row, Trade) and row.venue == "NOT-A-VENUE"


def test_contract_fields(tmp_path: Path) -> None:
    row = one("2024-03-01 14:30:00.123,AAPL,189.5,100,UBSA,BUY", tmp_path)
    contract = row.contract("seed.csv:2")
    assert tuple(contract) == TRADE_FIELDS
    assert contract == {"trade_id": "seed.csv:2", "event_time": "2024-03-01T14:30:00.123Z", "symbol": "AAPL",
                        "venue": "UBSA", "price": 189.5, "quantity": 100, "side": "B"}


# --- files, columns, lines ------------------------------------------------------------------------------------
def test_seed_project_full_layout(tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_text(f"{SEED_HEADER}\n"
                    "2024-03-01 14:30:00.123,AAPL,179.66,100,DARK1,BUY,0,a1b2,LIMIT,O-1\n"
                    "2024-03-01 14:30:01.500,MSFT,415.10,25,DARK2,SELL,1,ffee,MARKET,O-2\n"
                    "2024-03-01 14:30:02.000,NVDA,822.40,300,LIT,BUY,0,,IOC,O-3\n")
    rows = outcomes(path)
    assert [(r.line, r.symbol, r.venue, r.side, r.quantity, format_event_time(r.event_ms)) for r in rows] == [
        (2, "AAPL", "DARK1", "B", 100, "2024-03-01T14:30:00.123Z"),
        (3, "MSFT", "DARK2", "S", 25, "2024-03-01T14:30:01.500Z"),
        (4, "NVDA", "LIT", "B", 300, "2024-03-01T14:30:02.000Z")]
    assert all(r.trade_id is None for r in rows)  # order_id is an extra column, not a trade id


def test_column_names_are_case_insensitive_and_trimmed(tmp_path: Path) -> None:
    row = one("2024-03-01T14:30:00Z, AAPL, 1.5, 2, UBSA, b, x", tmp_path,
              " TimeStamp , SYMBOL,Price,QUANTITY , Venue,Side,Other")
    assert (row.symbol, row.venue, row.price, row.quantity, row.side) == ("AAPL", "UBSA", 1.5, 2, "B")
    both = one("2024-03-01T14:30:00Z,1709303400,A,1,1,UBSA", tmp_path,
               "event_time,timestamp,symbol,price,quantity,venue")
    assert both.event_ms == parse_event_time("2024-03-01T14:30:00Z")  # event_time wins over timestamp


def test_file_problems_are_darkpool_errors_before_any_row(tmp_path: Path) -> None:
    (tmp_path / "cols.csv").write_text("time,symbol,price\n1,AAPL,2\n")
    with pytest.raises(DarkpoolError, match=r"missing column\(s\) timestamp \(or event_time\), venue, quantity"):
        open_trade_file(tmp_path / "cols.csv")
    (tmp_path / "twice.csv").write_text("timestamp,symbol,SYMBOL,price,quantity,venue\n")
    with pytest.raises(DarkpoolError, match="same column"):
        open_trade_file(tmp_path / "twice.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DarkpoolError, match="empty"):
        open_trade_file(tmp_path / "empty.csv")
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(DarkpoolError, match="not readable as Parquet"):
        open_trade_file(tmp_path / "broken.parquet")
    pq.write_table(pa.table({"timestamp": [1], "symbol": ["A"]}), tmp_path / "cols.parquet")
    with pytest.raises(DarkpoolError, match=r"missing column\(s\) venue, price, quantity"):
        open_trade_file(tmp_path / "cols.parquet")
    with pytest.raises(DarkpoolError, match="no such file"):
        open_trade_file(tmp_path / "absent.csv")
    with pytest.raises(DarkpoolError, match="cannot tell the format"):
        detect_format(tmp_path / "trades.txt")
    with pytest.raises(DarkpoolError, match="unknown file format"):
        detect_format(tmp_path / "trades.csv", "xml")
    assert [detect_format(Path(f"t{s}")) for s in (".csv", ".CSV", ".csv.gz", ".jsonl", ".ndjson", ".json",
                                                     ".jsonl.gz", ".parquet", ".pq")] == [
        "csv", "csv", "csv", "jsonl", "jsonl", "jsonl", "jsonl", "parquet", "parquet"]
    assert detect_format(Path("t.txt"), "jsonl") == "jsonl"


def test_csv_line_numbers_quoting_blank_rows_bom_and_gzip(tmp_path: Path) -> None:
    text = ("\ufefftimestamp,symbol,price,quantity,venue,side\n"          # line 1 (with a BOM)
            "2024-03-01T14:30:00Z,AAPL,1,1,UBSA,B\n"                     # 2
            "\n"                                                         # 3: blank, skipped
            ",,,,,\n"                                                    # 4: all empty, skipped
            '2024-03-01T14:30:01Z,"multi\nline",1,1,UBSA,B\n'            # 5-6: one row, from line 5
            "2024-03-01T14:30:02Z,AAPL,1,1,UBSA\n"                       # 7: 5 fields
            "2024-03-01T14:30:03Z,AAPL,1,1,UBSA,B,extra\n"               # 8: 7 fields
            "2024-03-01T14:30:04Z,AAPL,-1,1,UBSA,B\n")                   # 9
    for path in (tmp_path / "lines.csv", tmp_path / "lines.csv.gz"):
        if path.suffix == ".gz":
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
        rows = outcomes(path)
        assert [(r.line, r.reason if isinstance(r, RowError) else "ok") for r in rows] == [
            (2, "ok"), (5, "ok"), (7, "bad_csv_row"), (8, "bad_csv_row"), (9, "non_positive_price")]
        assert rows[1].symbol == "multi\nline"
        assert rows[2].raw == b"2024-03-01T14:30:02Z,AAPL,1,1,UBSA" and "5 fields, the header has 6" in rows[2].detail
        assert str(rows[4]) == "line 9: non_positive_price: price '-1' must be > 0"
        assert rows[4].where == f"{path.name}:9" and rows[4].file == path.name


def test_csv_bytes_that_are_not_utf8_are_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"timestamp,symbol,price,quantity,venue\n2024-03-01T14:30:00Z,CAF\xc9,1,1,UBSA\n"
                     b"2024-03-01T14:30:00Z,AAPL,1,1,UBSA\n")
    bad, good = outcomes(path)
    assert bad.reason == "bad_type" and "UTF-8" in bad.detail and bad.raw == b"2024-03-01T14:30:00Z,CAF\xc9,1,1,UBSA"
    assert good.symbol == "AAPL"


def test_jsonl_rows_and_their_errors(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"Event_Time": "2024-03-01T14:30:00.123Z", "Symbol": "AAPL", "VENUE": "UBSA", "price": 1.5, '
                    '"quantity": 10, "side": "sold", "extra": [1, 2]}\n'
                    "\n"
                    "{not json\n"
                    "[1, 2]\n"
                    '{"symbol": "AAPL"}\n'
                    '{"timestamp": 1709303400123000, "symbol": "AAPL", "venue": "UBSA", "price": 1.5, '
                    '"quantity": 10}\n')
    rows = outcomes(path)
    assert [(r.line, r.reason if isinstance(r, RowError) else "ok") for r in rows] == [
        (1, "ok"), (3, "bad_json"), (4, "not_an_object"), (5, "missing_field"), (6, "ok")]
    assert rows[0] == Trade(1, MS, "AAPL", "UBSA", 1.5, 10, "S", None)
    assert rows[4].event_ms == MS and rows[1].raw == b"{not json"
    assert "timestamp (or event_time), venue, price, quantity" in rows[3].detail


def test_parquet_rows_and_their_errors(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({
        "timestamp": pa.array([MS * 1000] * 4, pa.timestamp("us", tz="UTC")), "SYMBOL": ["A", "B", "C", None],
        "venue": ["UBSA"] * 4, "price": [1.5, None, 2.0, 1.0], "quantity": [10, 10, -1, 1],
        "side": ["BUY", "S", None, "B"], "trade_id": ["X1", None, "X3", "X4"]}), path)
    rows = outcomes(path)
    assert rows[0] == Trade(1, MS, "A", "UBSA", 1.5, 10, "B", "X1")
    assert [(r.line, r.reason) for r in rows[1:]] == [(2, "missing_field"), (3, "non_positive_quantity"),
                                                       (4, "missing_field")]
    assert orjson.loads(rows[2].raw)["quantity"] == -1


def test_reasons_are_dead_letter_reasons(tmp_path: Path) -> None:
    assert "bad_csv_row" in DEADLETTER_REASONS
    path = tmp_path / "all.csv"
    path.write_text("timestamp,symbol,price,quantity,venue,side\n"
                    "x,A,1,1,UBSA,B\n2024-03-01T14:30:00Z,A,y,1,UBSA,B\n2024-03-01T14:30:00Z,A,1,0,UBSA,B\n"
                    "2024-03-01T14:30:00Z,A,0,1,UBSA,B\n2024-03-01T14:30:00Z,A,1,1,UBSA,Q\n"
                    "2024-03-01T14:30:00Z,,1,1,UBSA,B\n2024-03-01T14:30:00Z\n")
    assert {r.reason for r in outcomes(path)} <= set(DEADLETTER_REASONS)


# --- one file, both paths -------------------------------------------------------------------------------------
_collected: dict[str, list] = defaultdict(list)
_lock = threading.Lock()


class _Collect(beam.DoFn):
    """Append every element to an in-process list (the DirectRunner runs in this process)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def process(self, element):
        with _lock:
            _collected[self._token].append(element)


def pipeline_read(path: Path) -> tuple[list, list[dict]]:
    """The pipeline's read step on the DirectRunner: (SourceRecords, dead letters)."""
    token = uuid.uuid4().hex
    with beam.Pipeline() as pipeline:
        read = pipeline | "Read" >> ReadTradesFile(path)
        _ = read["records"] | "CollectRecords" >> beam.ParDo(_Collect(f"{token}/records"))
        _ = read["deadletter"] | "CollectDead" >> beam.ParDo(_Collect(f"{token}/dead"))
    with _lock:
        return _collected.pop(f"{token}/records", []), _collected.pop(f"{token}/dead", [])


def write_both_paths_file(kind: str, folder: Path) -> Path:
    """One file of ``kind`` with good rows (every time unit, side aliases, a known and unknown venues, a trade
    before 2000) and bad rows of every kind the format can have."""
    if kind == "csv":
        path = folder / "seed.csv"
        lines = [
            SEED_HEADER,
            "2026-11-25 14:00:01.250,AAPL,189.5,100,UBSA,BUY,0,fp1,LIMIT,1",
            "2026-11-25T14:00:02Z,AAPL,189.6,200,XNAS,SELL,1,fp2,MARKET,2",
            "1795615203120000,MSFT,400,300,MSPL,S,0,fp3,LIMIT,3",              # epoch microseconds
            "1795615204,MSFT,400.25,10,CDRG,b,0,fp4,LIMIT,4",                  # epoch seconds
            "1795615205500,NVDA,900,50000,DARK1,,0,fp5,LIMIT,5",               # epoch ms, unknown venue, no side
            "1795615206000000000,NVDA,900,1,LIT,SOLD,0,fp6,LIMIT,6",           # epoch ns, unknown venue
            "1999-12-31T23:59:59Z,NVDA,900,1,UBSA,B,0,fp7,LIMIT,7",            # readable, but absurd for the pipeline
            "1795615207120000000000,MSFT,400,300,MSPL,S,0,x,LIMIT,8",          # out of every unit's range
            "2026-11-25T14:00:08Z,MSFT,abc,300,MSPL,S,0,x,LIMIT,9",
            "2026-11-25T14:00:09Z,MSFT,400,0,MSPL,S,0,x,LIMIT,10",
            "2026-11-25T14:00:10Z,MSFT,-4,3,MSPL,S,0,x,LIMIT,11",
            "2026-11-25T14:00:11Z,MSFT,400,3,MSPL,MAYBE,0,x,LIMIT,12",
            "2026-11-25T14:00:12Z,,400,3,MSPL,B,0,x,LIMIT,13",
            "2026-11-25T14:00:13Z,MSFT,400,3",
            "2026-11-25T14:00:14Z,MSFT,400,2.5,MSPL,S,0,x,LIMIT,14",
        ]
        path.write_text("\n".join(lines) + "\n")
    elif kind == "jsonl":
        path = folder / "trades.jsonl"
        rows: list[object] = [
            {"trade_id": "J-1", "event_time": "2026-11-25T14:00:01.250Z", "symbol": "AAPL", "venue": "UBSA",
             "price": 189.5, "quantity": 100, "side": "B"},
            {"Timestamp": 1795615202, "symbol": "AAPL", "venue": "XNAS", "price": "189.6", "quantity": "200",
             "side": "SELL"},
            {"timestamp": 1795615203120000000, "symbol": "MSFT", "venue": "DARK2", "price": 400, "quantity": 3e2,
             "side": None, "trade_id": 99},
            {"event_time": 1795615204500, "symbol": "MSFT", "venue": "MSPL", "price": 400.25, "quantity": 10},
            "{broken",
            [1, 2],
            {"symbol": "AAPL", "venue": "UBSA", "price": 1, "quantity": 1},
            {"event_time": "2026-11-25T14:00:05Z", "symbol": "AAPL", "venue": "UBSA", "price": 1, "quantity": 1,
             "side": "LONG"},
            {"event_time": "2026-11-25T14:00:06Z", "symbol": "AAPL", "venue": "UBSA", "price": True, "quantity": 1},
            {"event_time": "tomorrow", "symbol": "AAPL", "venue": "UBSA", "price": 1, "quantity": 1},
            '{"event_time": 17956152071200000000000, "symbol": "AAPL", "venue": "UBSA", "price": 1, "quantity": 1}',
        ]
        path.write_bytes(b"\n".join(r.encode() if isinstance(r, str) else orjson.dumps(r) for r in rows) + b"\n")
    else:
        path = folder / "trades.parquet"
        base = parse_event_time("2026-11-25T14:00:00Z") * 1000
        times = [base + 1_250_000, base + 2_000_000, base + 3_000_001, None, base + 5_000_000,
                 -1_000_000, base + 7_000_000, base + 8_000_000]
        pq.write_table(pa.table({
            "event_time": pa.array(times, pa.timestamp("us", tz="UTC")),
            "symbol": ["AAPL", "AAPL", "MSFT", "MSFT", "MSFT", "NVDA", "NVDA", "NVDA"],
            "venue": ["UBSA", "LIT", "MSPL", "MSPL", "MSPL", "UBSA", "UBSA", "UBSA"],
            "price": [189.5, 189.6, 400.0, 400.0, None, 900.0, 900.0, 900.0],
            "quantity": [100, 200, 300, 1, 1, 1, -1, 1],
            "side": ["BUY", "S", None, "B", "B", "B", "B", "?"],
            "order_type": ["LIMIT"] * 8,
        }), path, row_group_size=3)
    return path


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_one_file_through_the_feed_and_the_pipeline_gives_identical_outcomes(tmp_path: Path, kind: str) -> None:
    path = write_both_paths_file(kind, tmp_path)
    # the feed's reader
    feed = read_trades(path, skip_bad_rows=True)
    feed_records = [r for batch in file_batches(feed) for r in batch.records()]
    feed_rejected = [(e.line, e.reason) for e in feed.rejected]
    assert feed_rejected and len(feed_records) >= 3
    # the pipeline's read step
    records, dead = pipeline_read(path)
    records.sort(key=lambda r: r.offset)
    lines = [r.offset for r in records]
    assert sorted((d["source_offset"], d["reason"]) for d in dead) == feed_rejected
    assert {d["source_topic"] for d in dead} == {f"file:{path.name}"}
    assert all(d["detail"].startswith(f"{path.name}:{d['source_offset']}: ") for d in dead)
    # the same accepted trades, field by field, in file order
    assert len(records) == len(feed_records)
    for line, feed_record, record in zip(lines, feed_records, records, strict=True):
        mine, theirs = orjson.loads(feed_record.value), orjson.loads(record.value)
        assert tuple(mine) == tuple(theirs) == TRADE_FIELDS
        given = next(r for r in outcomes(path) if r.line == line).trade_id
        if given is None:  # generated: the feed's <prefix><n>, the pipeline's <file>:<line>
            assert theirs.pop("trade_id") == f"{path.name}:{line}"
            assert mine.pop("trade_id").startswith("R-")
        assert mine == theirs
        assert (feed_record.key, feed_record.timestamp_ms) == (record.key.decode(), record.timestamp)
        assert record.topic == f"file:{path.name}" and record.partition == 0

    # the whole backfill: the read step's dead letters plus the parse step's (unknown venues, trades before
    # 2000: what the pipeline also does with the feed's records on Kafka), and counters that add up
    out = tmp_path / "out"
    result = run(["--source", "file", "--input", str(path), "--output", str(out)])
    letters = [orjson.loads(line) for f in (out / "deadletter").rglob("*.jsonl")
               for line in f.read_bytes().splitlines()]
    venues = load_venues()
    parse_rejects = []
    for line, record in zip(lines, feed_records, strict=True):
        trade = orjson.loads(record.value)
        if trade["venue"] not in venues:
            parse_rejects.append((line, "unknown_venue"))
        elif parse_event_time(trade["event_time"]) < parse_event_time("2000-01-01T00:00:00Z"):
            parse_rejects.append((line, "absurd_event_time"))
    assert sorted((d["source_offset"], d["reason"]) for d in letters) == sorted(feed_rejected + parse_rejects)
    counters = metric_totals(result)
    rows = len(feed_records) + len(feed_rejected)
    assert counters["records_in"] == rows
    assert counters["trades_valid"] == len(feed_records) - len(parse_rejects)
    assert {k: v for k, v in counters.items() if k.startswith("deadletter_") and v} == {
        f"deadletter_{r}": n for r, n in Counter(r for _, r in feed_rejected + parse_rejects).items()}
    assert counters["records_in"] == counters["trades_valid"] + sum(
        v for k, v in counters.items() if k.startswith("deadletter_"))
