"""Replay trades from a file: CSV, JSONL or Parquet.

Columns (names case-insensitive, extra columns ignored):

- ``timestamp`` or ``event_time``: ISO-8601 (``Z``/offset; naive = UTC; a space
  instead of ``T`` is fine) or epoch seconds / milliseconds / microseconds
  (told apart by magnitude); Parquet timestamp columns are used as they are;
- ``symbol``, ``venue`` (MPID), ``price`` (> 0), ``quantity`` (integer > 0);
- ``side`` (optional): B/BUY, S/SELL, or empty/U/UNKNOWN/null for unknown;
- ``trade_id`` (optional): kept as is; otherwise ids are generated.

This covers the seed project's CSV layout (``timestamp, symbol, price,
quantity, venue, side``). Rows that cannot be read raise a DarkpoolError that
names the line (CSV/JSONL; the header is line 1 of a CSV) or row (Parquet),
unless ``skip_bad_rows`` is set, in which case they are skipped and counted.
Venues missing from the registry are kept (the pipeline dead-letters them)
with a warning.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from darkpool.contracts import load_venues, parse_event_time
from darkpool.errors import DarkpoolError
from feed.generator import EncodedBatch, FaultConfig, FaultInjector, Shard, TradeBatch, TradeEncoder

log = logging.getLogger(__name__)

FORMATS = ("csv", "jsonl", "parquet")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
              ".parquet": "parquet", ".pq": "parquet"}
TIME_COLUMNS = ("event_time", "timestamp")
REQUIRED = ("symbol", "venue", "price", "quantity")
BUY = frozenset({"B", "BUY", "BOT", "BOUGHT"})
SELL = frozenset({"S", "SELL", "SLD", "SOLD", "SS", "SHORT"})
UNKNOWN_SIDE = frozenset({"", "U", "UNKNOWN", "NULL", "NONE", "N/A", "NA", "X"})
MAX_ERRORS_SHOWN = 10


class RowError(ValueError):
    """One unreadable field of one row."""


def detect_format(path: Path, fmt: str | None = None) -> str:
    """The file format: ``fmt`` if given, else from the extension."""
    if fmt and fmt != "auto":
        if fmt not in FORMATS:
            raise DarkpoolError(f"unknown file format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
        return fmt
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    detected = EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if detected is None:
        raise DarkpoolError(f"cannot tell the format of {path} from its extension",
                            hint="name it .csv, .jsonl or .parquet, or pass --format")
    return detected


def parse_timestamp(value: Any) -> int:
    """A timestamp cell -> epoch ms (ISO-8601 text or epoch s / ms / us by magnitude)."""
    if value is None:
        raise RowError("timestamp is empty")
    if isinstance(value, bool):
        raise RowError(f"timestamp {value!r} is not a time")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise RowError("timestamp is empty")
        try:
            number = float(text)
        except ValueError:
            try:
                return parse_event_time(text)
            except ValueError as exc:
                raise RowError(f"timestamp {value!r} is not ISO-8601 or epoch time") from exc
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        raise RowError(f"timestamp {value!r} is not a time")
    if not math.isfinite(number) or number <= 0:
        raise RowError(f"timestamp {value!r} is not a positive epoch time")
    if number >= 1e14:  # microseconds
        return int(round(number / 1000))
    if number >= 1e11:  # milliseconds
        return int(round(number))
    return int(round(number * 1000))  # seconds


def parse_price(value: Any) -> float:
    try:
        price = float(value)
    except (TypeError, ValueError) as exc:
        raise RowError(f"price {value!r} is not a number") from exc
    if not math.isfinite(price) or price <= 0:
        raise RowError(f"price {value!r} must be > 0")
    return price


def parse_quantity(value: Any) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise RowError(f"quantity {value!r} is not a number") from exc
    if not math.isfinite(number) or number != int(number):
        raise RowError(f"quantity {value!r} is not a whole number")
    if number <= 0:
        raise RowError(f"quantity {value!r} must be > 0")
    return int(number)


def parse_side(value: Any) -> int:
    """B -> 0, S -> 1, unknown -> 2."""
    text = "" if value is None else str(value).strip().upper()
    if text in BUY:
        return 0
    if text in SELL:
        return 1
    if text in UNKNOWN_SIDE:
        return 2
    raise RowError(f"side {value!r} is not B, S or empty")


def parse_text(name: str, value: Any) -> str:
    text = "" if value is None else str(value).strip()
    if not text:
        raise RowError(f"{name} is empty")
    return text


@dataclass
class FileTrades:
    """Trades read from a file, as columns in file order."""

    path: Path
    ts: np.ndarray
    sym: np.ndarray
    venue: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    side: np.ndarray
    symbols: list[str]
    venues: list[str]
    trade_ids: list[str] | None
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts)


class _Columns:
    """Accumulates parsed rows; collects errors with their line numbers."""

    def __init__(self, skip_bad_rows: bool) -> None:
        self.skip_bad_rows = skip_bad_rows
        self.ts: list[int] = []
        self.sym: list[int] = []
        self.venue: list[int] = []
        self.price: list[float] = []
        self.qty: list[int] = []
        self.side: list[int] = []
        self.ids: list[str] = []
        self.symbols: dict[str, int] = {}
        self.venues: dict[str, int] = {}
        self.errors: list[str] = []
        self.error_count = 0

    def add(self, where: str, row: dict[str, Any], columns: dict[str, str]) -> None:
        try:
            ts = parse_timestamp(row.get(columns["time"]))
            symbol = parse_text("symbol", row.get(columns["symbol"]))
            venue = parse_text("venue", row.get(columns["venue"]))
            price = parse_price(row.get(columns["price"]))
            qty = parse_quantity(row.get(columns["quantity"]))
            side = parse_side(row.get(columns["side"])) if "side" in columns else 2
            trade_id = parse_text("trade_id", row.get(columns["trade_id"])) if "trade_id" in columns else ""
        except RowError as exc:
            self.error_count += 1
            if len(self.errors) < MAX_ERRORS_SHOWN:
                self.errors.append(f"{where}: {exc}")
            return
        self.ts.append(ts)
        self.sym.append(self.symbols.setdefault(symbol, len(self.symbols)))
        self.venue.append(self.venues.setdefault(venue, len(self.venues)))
        self.price.append(price)
        self.qty.append(qty)
        self.side.append(side)
        self.ids.append(trade_id)
        if len(self.ts) % 500_000 == 0:
            log.info("read %d trades so far (%s)", len(self.ts), where)

    def bad_row(self, where: str, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_SHOWN:
            self.errors.append(f"{where}: {message}")

    def finish(self, path: Path, has_ids: bool) -> FileTrades:
        if self.error_count and not self.skip_bad_rows:
            more = self.error_count - len(self.errors)
            raise DarkpoolError(
                f"{path}: {self.error_count} unreadable row(s):\n  " + "\n  ".join(self.errors)
                + (f"\n  ... and {more} more" if more > 0 else ""),
                hint="fix the rows, or pass --skip-bad-rows to replay the readable ones")
        if self.error_count:
            log.warning("%s: skipped %d unreadable row(s), first: %s", path, self.error_count, self.errors[0])
        if not self.ts:
            raise DarkpoolError(f"{path} holds no readable trades")
        unknown = sorted(v for v in self.venues if v not in load_venues())
        if unknown:
            log.warning("%s: venue(s) not in the registry (the pipeline will dead-letter them): %s",
                        path, ", ".join(unknown))
        return FileTrades(
            path=path, ts=np.array(self.ts, dtype=np.int64), sym=np.array(self.sym, dtype=np.int64),
            venue=np.array(self.venue, dtype=np.int64), price=np.array(self.price, dtype=float),
            qty=np.array(self.qty, dtype=np.int64), side=np.array(self.side, dtype=np.int8),
            symbols=list(self.symbols), venues=list(self.venues), trade_ids=self.ids if has_ids else None,
            skipped=self.error_count, errors=self.errors)


def _find_columns(names: list[str]) -> tuple[dict[str, str], list[str]]:
    """Map logical column -> actual name (case-insensitive); also the required ones that are missing."""
    lookup = {str(n).strip().lower(): n for n in names if n is not None}
    columns: dict[str, str] = {}
    missing: list[str] = []
    time_column = next((lookup[c] for c in TIME_COLUMNS if c in lookup), None)
    if time_column is None:
        missing.append("timestamp (or event_time)")
    else:
        columns["time"] = time_column
    for name in REQUIRED:
        if name in lookup:
            columns[name] = lookup[name]
        else:
            missing.append(name)
    for name in ("side", "trade_id"):
        if name in lookup:
            columns[name] = lookup[name]
    return columns, missing


def _resolve_columns(names: list[str], path: Path) -> dict[str, str]:
    """Like _find_columns, raising a clear error when required columns are missing."""
    columns, missing = _find_columns(names)
    if missing:
        raise DarkpoolError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(names) or 'none'})",
                            hint="expected timestamp, symbol, price, quantity, venue[, side][, trade_id]")
    return columns


def _read_csv(path: Path, acc: _Columns) -> bool:
    with open(path, newline="", encoding="utf-8-sig") as stream:
        reader = csv.reader(stream)
        try:
            header = next(reader)
        except StopIteration:
            raise DarkpoolError(f"{path} is empty (no header line)") from None
        columns = _resolve_columns(header, path)
        try:
            for cells in reader:
                if not cells or all(not c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    acc.bad_row(f"line {reader.line_num}", f"{len(cells)} fields, the header has {len(header)}")
                    continue
                acc.add(f"line {reader.line_num}", dict(zip(header, cells, strict=True)), columns)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DarkpoolError(f"{path}, line {reader.line_num}: not readable as CSV ({exc})") from exc
    return "trade_id" in columns


def _read_jsonl(path: Path, acc: _Columns) -> bool:
    columns: dict[str, str] | None = None
    has_ids = True
    with open(path, "rb") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                acc.bad_row(f"line {number}", f"not JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                acc.bad_row(f"line {number}", "not a JSON object")
                continue
            row_columns, missing = _find_columns(list(row))
            if missing:
                acc.bad_row(f"line {number}", f"missing field(s) {', '.join(missing)}")
                continue
            columns = columns or row_columns
            has_ids = has_ids and "trade_id" in row_columns
            acc.add(f"line {number}", row, row_columns)
    if columns is None and not acc.error_count:
        raise DarkpoolError(f"{path} holds no JSON lines")
    return has_ids


def _read_parquet(path: Path, acc: _Columns) -> bool:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DarkpoolError(f"{path}: not readable as Parquet ({exc})") from exc
    columns = _resolve_columns(table.column_names, path)
    time_column = table.column(columns["time"])
    if pa.types.is_timestamp(time_column.type):
        unit_ms = time_column.cast(pa.timestamp("ms", tz=time_column.type.tz)).cast(pa.int64())
        table = table.set_column(table.column_names.index(columns["time"]), columns["time"], unit_ms)
    data = {name: table.column(name).to_pylist() for name in set(columns.values())}
    for i in range(table.num_rows):
        acc.add(f"row {i + 1}", {name: values[i] for name, values in data.items()}, columns)
    return "trade_id" in columns


def read_trades(path: str | Path, fmt: str | None = None, skip_bad_rows: bool = False) -> FileTrades:
    """Read a trade file (CSV, JSONL or Parquet) into columns, validating every row."""
    path = Path(path)
    if not path.is_file():
        raise DarkpoolError(f"no such file: {path}")
    kind = detect_format(path, fmt)
    acc = _Columns(skip_bad_rows)
    started = time.monotonic()
    has_ids = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}[kind](path, acc)
    trades = acc.finish(path, has_ids)
    log.info("read %d trades from %s (%s) in %.1f s", len(trades), path, kind, time.monotonic() - started)
    return trades


def file_batches(trades: FileTrades, faults: FaultConfig | None = None, seed: int = 1, count: int | None = None,
                 shift_to_ms: int | None = None, batch_size: int = 8192, id_prefix: str = "R-",
                 shard: Shard | None = None) -> Iterator[EncodedBatch]:
    """The file's trades as encoded batches, in file order, with optional faults and time shift.

    ``shift_to_ms`` moves every timestamp by the offset that puts the first
    trade at that instant; ``release`` (for pacing) is the running maximum of
    the shifted times.
    """
    faults = faults or FaultConfig()
    shard = shard or Shard()
    injector = FaultInjector(faults, len(trades.symbols))
    rng = np.random.default_rng(seed)
    encoder = TradeEncoder(trades.symbols, trades.venues, id_prefix)
    offset = 0 if shift_to_ms is None else shift_to_ms - int(trades.ts[0])
    release_all = np.maximum.accumulate(trades.ts + offset)
    remaining = count
    for start in range(0, len(trades), batch_size):
        if remaining is not None and remaining <= 0:
            return
        rows = slice(start, min(start + batch_size, len(trades)))
        t = trades.ts[rows] + offset
        n = len(t)
        u = rng.random((5, n))
        sym = trades.sym[rows]
        fault, ts = injector.inject(sym, t, u[0], u[1], u[2])
        batch = TradeBatch(seq=np.arange(rows.start, rows.stop, dtype=np.int64), ts=ts, release=release_all[rows],
                           sym=sym, venue=trades.venue[rows], price=trades.price[rows], qty=trades.qty[rows],
                           side=trades.side[rows], mid=trades.price[rows], half_spread=np.zeros(n),
                           fault=fault, detail=np.floor(u[3] * 1e6).astype(np.int64))
        if faults.duplicate_rate:
            batch = injector.duplicate(batch, u[4])
        if remaining is not None:
            batch = batch.take(slice(0, remaining))
            remaining -= len(batch)
        batch = shard.select(batch)
        if not len(batch):
            continue
        ids = None if trades.trade_ids is None else [trades.trade_ids[i] for i in batch.seq.tolist()]
        yield encoder.encode(batch, trade_ids=ids, with_release=True)

