"""The one trade-file reader: CSV, JSON lines or Parquet rows -> contract trades or row errors.

Every path that reads a trade file uses this module: ``darkpool feed
--from-file`` (:mod:`feed.replay`) and the pipeline's file backfill
(:mod:`pipeline.transforms.read`). It streams: :func:`read_rows` yields one
outcome per data row, in file order, so a file of any size is read in constant
memory. Each outcome is either

- a :class:`Trade`: the fields of a ``darkpool.trades`` record
  (:data:`darkpool.contracts.TRADE_FIELDS`), already validated and normalised
  (event time in epoch ms, price a float > 0, quantity an int > 0, side
  ``"B"``/``"S"``/``None``), or
- a :class:`RowError`: the row's dead-letter reason (one of
  :data:`darkpool.contracts.DEADLETTER_REASONS`), a human detail, the file's
  name and the row's line (CSV: the header is line 1; JSON lines: the line;
  Parquet: the row, from 1), and the raw row.

A row never raises. Problems of the whole file (no such file, unknown format,
a CSV or Parquet file without a required column, a file that is not Parquet)
raise :class:`~darkpool.errors.DarkpoolError` from :func:`open_trade_file`,
before any row is read.

Rules (docs/trade-files.md is the user's version):

- columns: names case-insensitive and trimmed, extra columns ignored;
  ``event_time`` or ``timestamp`` (``event_time`` wins when both exist),
  ``symbol``, ``venue``, ``price``, ``quantity`` required; ``side`` and
  ``trade_id`` optional. An empty or null required value is ``missing_field``.
- time: ISO-8601 text (``Z``, an offset, a space instead of ``T``, naive =
  UTC), a plain number = epoch time whose unit is told by its magnitude
  (:data:`EPOCH_UNITS`: seconds, milliseconds, microseconds, nanoseconds, each
  covering the same instants), or a Parquet timestamp column (its own unit).
  The instant must lie in [:data:`EARLIEST_TIME_MS`, :data:`LATEST_TIME_MS`]; anything
  else is ``bad_event_time``. Times are rounded to the millisecond.
- side: :data:`BUY_SIDES` -> ``"B"``, :data:`SELL_SIDES` -> ``"S"``,
  :data:`UNKNOWN_SIDES` (or null, or no side column) -> ``None``; else ``bad_side``.
- price: a number or numeric text, finite (else ``bad_type``), > 0 (else
  ``non_positive_price``); quantity: a whole number (else ``bad_type``), > 0
  (else ``non_positive_quantity``).
- trade_id: text or an integer, kept; empty or absent -> ``None`` (the caller
  generates one).
- venues are not checked here: the caller decides (the pipeline dead-letters
  unknown venues, the feed warns about them).

The checks run in the order of the pipeline's parse step (missing fields,
text types, price type, quantity type, quantity sign, price sign, side, time),
so a row gets the reason the same trade would get as a Kafka record.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

from darkpool.contracts import (
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_SYMBOL_LENGTH,
    MAX_TRADE_ID_LENGTH,
    REASON_BAD_CSV_ROW,
    REASON_BAD_EVENT_TIME,
    REASON_BAD_JSON,
    REASON_BAD_SIDE,
    REASON_BAD_TYPE,
    REASON_MISSING_FIELD,
    REASON_NON_POSITIVE_PRICE,
    REASON_NON_POSITIVE_QUANTITY,
    REASON_NOT_OBJECT,
    REASON_OUT_OF_RANGE,
    REASON_TOO_LONG,
    SIDES,
    format_event_time,
    parse_event_time,
)
from darkpool.contracts import datetime_to_ms as contract_datetime_to_ms
from darkpool.errors import DarkpoolError

# --- formats -----------------------------------------------------------------------
FORMATS = ("csv", "jsonl", "parquet")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
              ".parquet": "parquet", ".pq": "parquet"}
COMPRESSED_SUFFIX = ".gz"  # CSV and JSON lines may be gzip-compressed (trades.csv.gz)
PARQUET_BATCH_ROWS = 65_536
MAX_DETAIL_CHARS = 300  # of a row error's detail

# --- columns -------------------------------------------------------------------------
TIME_COLUMNS = ("event_time", "timestamp")  # the first one present is used
REQUIRED_COLUMNS = ("symbol", "venue", "price", "quantity")
OPTIONAL_COLUMNS = ("side", "trade_id")
TIME = "time"  # the logical name of whichever time column the file has

# --- sides ---------------------------------------------------------------------------
BUY, SELL = SIDES  # the contract's sides (unknown: None)
BUY_SIDES = frozenset({"B", "BUY", "BOT", "BOUGHT"})
SELL_SIDES = frozenset({"S", "SELL", "SLD", "SOLD", "SS", "SHORT"})
UNKNOWN_SIDES = frozenset({"", "U", "UNKNOWN", "NULL", "NONE", "N/A", "NA", "X"})


# --- time ----------------------------------------------------------------------------
class EpochUnit(NamedTuple):
    """A unit of epoch numbers: the magnitudes [low, high) that mean it, and its milliseconds (num/den)."""

    name: str
    low: int
    high: int
    ms_num: int
    ms_den: int


# Each range covers the same instants, from 1973-03-03T09:46:40Z to 5138-11-16T09:46:40Z
# (EARLIEST_TIME_MS, LATEST_TIME_MS), so a magnitude means exactly one unit.
EPOCH_UNITS = (
    EpochUnit("seconds", 10**8, 10**11, 1000, 1),
    EpochUnit("milliseconds", 10**11, 10**14, 1, 1),
    EpochUnit("microseconds", 10**14, 10**17, 1, 1000),
    EpochUnit("nanoseconds", 10**17, 10**20, 1, 1_000_000),
)
EARLIEST_TIME_MS = 10**11  # 1973-03-03T09:46:40.000Z: the earliest readable time
LATEST_TIME_MS = 10**14  # 5138-11-16T09:46:40.000Z: the latest (an epoch number just below a unit's high rounds to it)
ARROW_UNITS = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}


class BadRow(Exception):  # noqa: N818 - an outcome of one row, not an error of the program
    """One row's problem: a dead-letter ``reason`` and a human ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        detail = _cut(detail, MAX_DETAIL_CHARS)  # a cell of a megabyte is shown by its start
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _scaled_ms(value: int | float, num: int, den: int) -> int:
    """``value * num / den`` rounded to the nearest integer (halves up); exact for integers."""
    if type(value) is int:
        return (value * num + den // 2) // den
    return math.floor(value * num / den + 0.5)


def _in_range(ms: int, shown: object) -> int:
    """``ms`` when it is a readable time (EARLIEST_TIME_MS <= ms <= LATEST_TIME_MS); BadRow(bad_event_time) if not."""
    if not EARLIEST_TIME_MS <= ms <= LATEST_TIME_MS:
        readable = f"{format_event_time(EARLIEST_TIME_MS)} .. {format_event_time(LATEST_TIME_MS)}"
        raise BadRow(REASON_BAD_EVENT_TIME, f"time {shown!r} is outside the readable range {readable}")
    return ms


def epoch_unit(number: int | float) -> EpochUnit:
    """The unit an epoch number is in, by its magnitude (:data:`EPOCH_UNITS`); BadRow when none fits."""
    if math.isfinite(number):
        for unit in EPOCH_UNITS:
            if unit.low <= number < unit.high:
                return unit
    raise BadRow(REASON_BAD_EVENT_TIME,
                 f"epoch time {number!r} is not in any unit's range (seconds from 1e8 to nanoseconds below 1e20)")


def epoch_to_ms(number: int | float) -> int:
    """An epoch number in seconds, milliseconds, microseconds or nanoseconds (told by magnitude) -> epoch ms."""
    unit = epoch_unit(number)
    return _scaled_ms(number, unit.ms_num, unit.ms_den)  # in [EARLIEST_TIME_MS, LATEST_TIME_MS] by the unit's range


def datetime_to_ms(value: datetime, shown: str | None = None) -> int:
    """A datetime (naive = UTC) -> epoch ms (contracts.datetime_to_ms), in the readable range.

    ``shown``: how the time was written, for the error.
    """
    return _in_range(contract_datetime_to_ms(value), shown or value.isoformat())


def iso_to_ms(text: str) -> int:
    """ISO-8601 text -> epoch ms by the contract's rule (contracts.parse_event_time), in the readable range;
    BadRow(bad_event_time) otherwise."""
    try:
        ms = parse_event_time(text)
    except ValueError:
        raise BadRow(REASON_BAD_EVENT_TIME, f"time {text!r} is neither ISO-8601 nor an epoch number") from None
    return _in_range(ms, text)


def time_to_ms(value: Any) -> int:
    """A time cell -> epoch ms: ISO-8601 text, an epoch number (or its text), or a datetime.

    Raises :class:`BadRow` (missing_field when empty, bad_event_time otherwise).
    """
    kind = type(value)
    if kind is str:
        text = value.strip()
        if not text:
            raise BadRow(REASON_MISSING_FIELD, "the time is empty")
        if text.isdigit():
            try:
                number = int(text)  # not for digits int() does not read (superscripts) or > 4,300 of them
            except ValueError:
                raise BadRow(REASON_BAD_EVENT_TIME, f"time {_cut(text)!r} is not an epoch number") from None
            return epoch_to_ms(number)
        if text[0].isdigit() and ("-" in text[1:] or ":" in text):  # ISO-8601: no float() attempt (and raise)
            return iso_to_ms(text)
        try:
            number = float(text)
        except ValueError:
            return iso_to_ms(text)
        return epoch_to_ms(number)
    if kind is int or kind is float:
        return epoch_to_ms(value)
    if value is None:
        raise BadRow(REASON_MISSING_FIELD, "the time is empty")
    if isinstance(value, datetime):
        return datetime_to_ms(value)
    if isinstance(value, date):
        return datetime_to_ms(datetime(value.year, value.month, value.day))
    raise BadRow(REASON_BAD_EVENT_TIME, f"time {value!r} is not a time")


def side_of(value: Any) -> str | None:
    """A side cell -> ``"B"``, ``"S"`` or None (unknown); BadRow(bad_side) for anything else."""
    if value is None:
        return None
    if type(value) is str:
        text = value.strip().upper()
        if text in BUY_SIDES:
            return BUY
        if text in SELL_SIDES:
            return SELL
        if text in UNKNOWN_SIDES:
            return None
    raise BadRow(REASON_BAD_SIDE, f"side {value!r} is not buy (B, BUY, ...), sell (S, SELL, ...) or unknown")


def price_of(value: Any) -> float:
    """A price cell -> float > 0: BadRow(bad_type) when not a finite number, (non_positive_price) when <= 0."""
    kind = type(value)
    if kind is float or kind is int:
        price = float(value)
    elif kind is str:
        try:
            price = float(value)
        except ValueError:
            raise BadRow(REASON_BAD_TYPE, f"price {value!r} is not a number") from None
    else:
        raise BadRow(REASON_BAD_TYPE, f"price {value!r} is not a number")
    if not math.isfinite(price):
        raise BadRow(REASON_BAD_TYPE, f"price {value!r} is not a finite number")
    return price


def quantity_of(value: Any) -> int:
    """A quantity cell -> int: BadRow(bad_type) unless a whole number (``100``, ``"100"``, ``100.0``)."""
    kind = type(value)
    if kind is int:
        return value
    if kind is str:
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            raise BadRow(REASON_BAD_TYPE, f"quantity {text!r} is not a number") from None
    elif kind is not float:
        raise BadRow(REASON_BAD_TYPE, f"quantity {value!r} is not a number")
    if not math.isfinite(value) or not value.is_integer():
        raise BadRow(REASON_BAD_TYPE, f"quantity {value!r} is not a whole number")
    return int(value)


def text_of(name: str, value: Any) -> str:
    """A symbol / venue cell -> its trimmed text; BadRow(bad_type) when it is not valid text."""
    if type(value) is not str:
        raise BadRow(REASON_BAD_TYPE, f"{name} {value!r} is not text")
    text = value.strip()
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a CSV cell that was not UTF-8 (read with surrogateescape)
            raise BadRow(REASON_BAD_TYPE, f"{name} {text.encode('utf-8', 'surrogateescape')!r} is not UTF-8") from None
    return text


def trade_id_of(value: Any) -> str | None:
    """A trade_id cell -> its text (integers become text); None when empty or null."""
    if value is None:
        return None
    if type(value) is int:
        return str(value)
    text = text_of("trade_id", value)
    return text or None


def _shown(value: Any) -> str:
    """A cell as an error shows it: text quoted and trimmed, numbers as they are."""
    return repr(value.strip()) if type(value) is str else repr(value)


def _cut(text: str, limit: int = 80) -> str:
    """Text as an error shows it: at most ``limit`` characters."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _empty(value: Any) -> bool:
    return value is None or (type(value) is str and not value.strip())


# --- rows --------------------------------------------------------------------------
class Trade(NamedTuple):
    """One readable row: the contract trade's fields, normalised, and where it was."""

    line: int  # CSV line (header = 1), JSON-lines line, or Parquet row (from 1)
    event_ms: int
    symbol: str
    venue: str
    price: float
    quantity: int
    side: str | None  # "B", "S" or None (unknown)
    trade_id: str | None  # None: the file gave none, the caller generates one

    def contract(self, default_trade_id: str) -> dict:
        """The ``darkpool.trades`` JSON fields (contracts.TRADE_FIELDS order); ``default_trade_id`` when none."""
        return {"trade_id": self.trade_id or default_trade_id, "event_time": format_event_time(self.event_ms),
                "symbol": self.symbol, "venue": self.venue, "price": self.price, "quantity": self.quantity,
                "side": self.side}


@dataclass(frozen=True)
class RowError:
    """One row that cannot be read: its dead-letter reason, a detail, where it is, and its raw text."""

    file: str  # the file's name
    line: int  # as Trade.line
    reason: str  # one of contracts.DEADLETTER_REASONS
    detail: str
    raw: bytes | None  # the row as in the file (CSV: re-joined cells; Parquet: the used columns as JSON)

    @property
    def where(self) -> str:
        """``<file>:<line>``."""
        return f"{self.file}:{self.line}"

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}: {self.detail}"


TimeParser = Callable[[Any], int]


def build_trade(line: int, time: Any, symbol: Any, venue: Any, price: Any, quantity: Any, side: Any = None,
                trade_id: Any = None, parse_time: TimeParser = time_to_ms) -> Trade:
    """One row's cells -> a :class:`Trade`; raises :class:`BadRow` (checks in the parse step's order)."""
    if _empty(time) or _empty(symbol) or _empty(venue) or _empty(price) or _empty(quantity):
        for name, value in (("time", time), ("symbol", symbol), ("venue", venue), ("price", price),
                            ("quantity", quantity)):
            if _empty(value):
                raise BadRow(REASON_MISSING_FIELD, f"{name} is empty")
    symbol_text = text_of("symbol", symbol)
    venue_text = text_of("venue", venue)
    trade_id_text = trade_id_of(trade_id)
    if len(symbol_text) > MAX_SYMBOL_LENGTH or (trade_id_text is not None and len(trade_id_text) > MAX_TRADE_ID_LENGTH):
        raise BadRow(REASON_TOO_LONG, f"symbol of {len(symbol_text):,} characters (at most {MAX_SYMBOL_LENGTH}) or "
                                      f"trade_id of {len(trade_id_text or ''):,} (at most {MAX_TRADE_ID_LENGTH})")
    price_value = price_of(price)
    quantity_value = quantity_of(quantity)
    if quantity_value <= 0:
        raise BadRow(REASON_NON_POSITIVE_QUANTITY, f"quantity {_shown(quantity)} must be > 0")
    if price_value <= 0.0:
        raise BadRow(REASON_NON_POSITIVE_PRICE, f"price {_shown(price)} must be > 0")
    if quantity_value > MAX_QUANTITY:
        raise BadRow(REASON_OUT_OF_RANGE, f"quantity {_shown(quantity)} is above {MAX_QUANTITY:,}")
    if price_value > MAX_PRICE:
        raise BadRow(REASON_OUT_OF_RANGE, f"price {_shown(price)} is above {MAX_PRICE:,.0f}")
    return Trade(line, parse_time(time), symbol_text, venue_text, price_value, quantity_value, side_of(side),
                 trade_id_text)


# --- columns -------------------------------------------------------------------------
def find_columns(names: list[str] | tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """Actual column names -> ({logical name: actual name}, [missing required columns]).

    Case-insensitive and trimmed; the logical names are ``time`` (``event_time``
    or ``timestamp``), the required and the optional columns.
    """
    lookup: dict[str, str] = {}
    for name in names:
        if isinstance(name, str):
            lookup.setdefault(name.strip().lower(), name)
    columns: dict[str, str] = {}
    missing: list[str] = []
    time_column = next((lookup[c] for c in TIME_COLUMNS if c in lookup), None)
    if time_column is None:
        missing.append("timestamp (or event_time)")
    else:
        columns[TIME] = time_column
    for name in REQUIRED_COLUMNS:
        if name in lookup:
            columns[name] = lookup[name]
        else:
            missing.append(name)
    for name in OPTIONAL_COLUMNS:
        if name in lookup:
            columns[name] = lookup[name]
    return columns, missing


def _resolve_columns(names: list[str], path: Path) -> dict[str, str]:
    """Like :func:`find_columns`, raising a DarkpoolError naming the missing (or doubled) columns."""
    columns, missing = find_columns(names)
    if missing:
        raise DarkpoolError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(names) or 'none'})",
                            hint="expected timestamp, symbol, price, quantity, venue[, side][, trade_id]; "
                                 "see docs/trade-files.md")
    seen: dict[str, str] = {}
    for name in names:
        key = name.strip().lower() if isinstance(name, str) else name
        if key in seen and seen[key] in columns.values():
            raise DarkpoolError(f"{path}: columns {seen[key]!r} and {name!r} are the same column "
                                "(names are case-insensitive)")
        seen.setdefault(key, name)
    return columns


# --- files ---------------------------------------------------------------------------
def detect_format(path: Path, fmt: str | None = None) -> str:
    """The file format: ``fmt`` if given (not ``auto``), else from the extension (``.gz`` looked through)."""
    if fmt and fmt != "auto":
        if fmt not in FORMATS:
            raise DarkpoolError(f"unknown file format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
        return fmt
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == COMPRESSED_SUFFIX:
        suffixes.pop()
    detected = EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if detected is None:
        raise DarkpoolError(f"cannot tell the format of {path} from its extension",
                            hint=f"name it {', '.join(EXTENSIONS)} (CSV and JSON lines also .gz), "
                                 "or give the format (darkpool feed --format)")
    return detected


def _open_text(path: Path) -> IO[str]:
    """A CSV file as text (UTF-8, a BOM skipped; undecodable bytes kept as surrogates for the row checks)."""
    if path.suffix.lower() == COMPRESSED_SUFFIX:
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="")
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix.lower() == COMPRESSED_SUFFIX:
        return gzip.open(path, "rb")
    return open(path, "rb")


def _csv_text(cells: list[str]) -> bytes:
    """CSV cells -> the row as CSV text (for a dead letter's raw value)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(cells)
    return buffer.getvalue().encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class TradeFile:
    """A trade file whose format and columns have been checked: :meth:`rows` reads it."""

    path: Path
    format: str  # one of FORMATS
    columns: dict[str, str] | None  # logical -> actual column (CSV, Parquet); None for JSON lines (per line)

    @property
    def name(self) -> str:
        return self.path.name

    def rows(self) -> Iterator[Trade | RowError]:
        """Every data row, in file order: a Trade or a RowError (blank lines and all-empty CSV rows skipped).

        A file that cannot be read on past some row (a truncated or corrupt gzip stream or Parquet page)
        raises DarkpoolError naming the last row read: no row after it can be trusted to exist.
        """
        if self.format == "csv":
            return self._readable(self._csv_rows())
        if self.format == "jsonl":
            return self._readable(self._jsonl_rows())
        return self._readable(self._parquet_rows())

    def _readable(self, rows: Iterator[Trade | RowError]) -> Iterator[Trade | RowError]:
        """``rows``, with a read failure of the file itself turned into a DarkpoolError naming where."""
        line = 0
        try:
            for row in rows:
                line = row.line
                yield row
        except (OSError, EOFError, zlib.error) as exc:
            raise DarkpoolError(f"{self.path}: cannot be read past line {line} ({type(exc).__name__}: {exc})",
                                hint="the file is truncated or corrupt; the rows before it were read") from exc

    def _csv_rows(self) -> Iterator[Trade | RowError]:
        name = self.name
        with _open_text(self.path) as stream:
            reader = csv.reader(stream, skipinitialspace=True)
            header = next(reader, None)
            if header is None:
                return
            columns = _resolve_columns(header, self.path)
            index = {logical: header.index(actual) for logical, actual in columns.items()}
            i_time, i_symbol, i_venue = index[TIME], index["symbol"], index["venue"]
            i_price, i_quantity = index["price"], index["quantity"]
            i_side, i_trade_id = index.get("side"), index.get("trade_id")
            width = len(header)
            while True:
                line = reader.line_num + 1
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield RowError(name, line, REASON_BAD_CSV_ROW, f"not readable as CSV ({exc})", None)
                    continue
                if len(cells) != width:
                    if not cells or all(not c.strip() for c in cells):
                        continue
                    yield RowError(name, line, REASON_BAD_CSV_ROW, f"{len(cells)} fields, the header has {width}",
                                   _csv_text(cells))
                    continue
                try:
                    yield build_trade(line, cells[i_time], cells[i_symbol], cells[i_venue], cells[i_price],
                                      cells[i_quantity], None if i_side is None else cells[i_side],
                                      None if i_trade_id is None else cells[i_trade_id])
                except BadRow as bad:
                    if all(not c.strip() for c in cells):
                        continue
                    yield RowError(name, line, bad.reason, bad.detail, _csv_text(cells))

    def _jsonl_rows(self) -> Iterator[Trade | RowError]:
        name = self.name
        layouts: dict[tuple, tuple[dict[str, str], list[str]]] = {}
        with _open_binary(self.path) as stream:
            for line, raw in enumerate(stream, start=1):
                text = raw.strip()
                if not text:
                    continue
                try:
                    row = orjson.loads(text)
                except orjson.JSONDecodeError as exc:
                    yield RowError(name, line, REASON_BAD_JSON, f"not JSON ({exc.msg})", text)
                    continue
                if type(row) is not dict:
                    yield RowError(name, line, REASON_NOT_OBJECT, f"a trade is a JSON object, got {type(row).__name__}",
                                   text)
                    continue
                keys = tuple(row)
                layout = layouts.get(keys)
                if layout is None:
                    layout = layouts[keys] = find_columns(keys)
                columns, missing = layout
                if missing:
                    yield RowError(name, line, REASON_MISSING_FIELD, f"missing field(s) {', '.join(missing)}", text)
                    continue
                side = columns.get("side")
                trade_id = columns.get("trade_id")
                try:
                    yield build_trade(line, row[columns[TIME]], row[columns["symbol"]], row[columns["venue"]],
                                      row[columns["price"]], row[columns["quantity"]],
                                      None if side is None else row[side], None if trade_id is None else row[trade_id])
                except BadRow as bad:
                    yield RowError(name, line, bad.reason, bad.detail, text)

    def _parquet_rows(self) -> Iterator[Trade | RowError]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        assert self.columns is not None
        columns = self.columns
        name = self.name
        try:
            parquet = pq.ParquetFile(self.path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise DarkpoolError(f"{self.path}: not readable as Parquet ({exc})") from exc
        logical = [c for c in (TIME, *REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in columns]
        actual = [columns[c] for c in logical]
        time_type = parquet.schema_arrow.field(columns[TIME]).type
        parse_time: TimeParser = time_to_ms
        if pa.types.is_timestamp(time_type):
            num, den = ARROW_UNITS[time_type.unit]

            def parse_time(value: Any) -> int:  # the column's integers, in its own unit (no magnitude guess)
                if value is None:
                    raise BadRow(REASON_MISSING_FIELD, "the time is empty")
                return _in_range(_scaled_ms(value, num, den), f"{value} {time_type.unit} since the epoch")

        line = 0
        for batch in _parquet_batches(parquet, actual):
            data = {}
            for logical_name, actual_name in zip(logical, actual, strict=True):
                column = batch.column(batch.schema.get_field_index(actual_name))
                if logical_name == TIME and pa.types.is_timestamp(column.type):
                    column = column.cast(pa.int64())
                try:
                    data[logical_name] = column.to_pylist()
                except (UnicodeDecodeError, pa.ArrowException) as exc:  # e.g. a string column that is not UTF-8
                    raise OSError(f"column {actual_name!r} of rows {line + 1}-{line + batch.num_rows}: {exc}") from exc
            times, symbols, venues = data[TIME], data["symbol"], data["venue"]
            prices, quantities = data["price"], data["quantity"]
            sides, trade_ids = data.get("side"), data.get("trade_id")
            for i in range(batch.num_rows):
                line += 1
                try:
                    yield build_trade(line, times[i], symbols[i], venues[i], prices[i], quantities[i],
                                      None if sides is None else sides[i],
                                      None if trade_ids is None else trade_ids[i], parse_time)
                except BadRow as bad:
                    row = {actual_name: data[logical_name][i] for logical_name, actual_name in zip(logical, actual,
                                                                                                  strict=True)}
                    yield RowError(name, line, bad.reason, bad.detail, orjson.dumps(row, default=str))


def _parquet_batches(parquet: Any, columns: list[str]) -> Iterator[Any]:
    """A Parquet file's record batches of ``columns``; a corrupt page raises OSError (see TradeFile.rows)."""
    import pyarrow as pa

    batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except pa.ArrowException as exc:
            raise OSError(str(exc)) from exc
        yield batch


def open_trade_file(path: str | Path, fmt: str | None = None) -> TradeFile:
    """Check a trade file before reading it: it exists, its format, and (CSV, Parquet) its columns.

    Raises DarkpoolError naming the problem. ``fmt``: one of FORMATS, or None / ``auto`` for the extension.
    """
    path = Path(path)
    if not path.is_file():
        raise DarkpoolError(f"no such file: {path}")
    kind = detect_format(path, fmt)
    columns: dict[str, str] | None = None
    if kind == "csv":
        try:
            with _open_text(path) as stream:
                header = next(csv.reader(stream, skipinitialspace=True), None)
        except (OSError, csv.Error, EOFError) as exc:
            raise DarkpoolError(f"{path}: not readable as CSV ({exc})") from exc
        if header is None:
            raise DarkpoolError(f"{path} is empty (no header line)")
        columns = _resolve_columns(header, path)
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            names = pq.ParquetFile(path).schema_arrow.names
        except (OSError, pa.ArrowInvalid) as exc:
            raise DarkpoolError(f"{path}: not readable as Parquet ({exc})") from exc
        columns = _resolve_columns(names, path)
    return TradeFile(path, kind, columns)


def read_rows(path: str | Path, fmt: str | None = None) -> Iterator[Trade | RowError]:
    """Every data row of a trade file, in file order, as a :class:`Trade` or a :class:`RowError`.

    File-level problems raise DarkpoolError before the first row (see :func:`open_trade_file`).
    """
    return open_trade_file(path, fmt).rows()
