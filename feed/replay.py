"""Replay trades from a file: CSV, JSONL or Parquet, read by the one trade-file reader.

:mod:`darkpool.tradefile` owns the rules (columns, time units, side aliases,
price and quantity, errors; docs/trade-files.md); this module collects its
rows into columns for the feed. The seed project's CSV layout (``timestamp,
symbol, price, quantity, venue, side`` and extra columns) reads as it is.

Rows that cannot be read raise a DarkpoolError that names each line (CSV:
the header is line 1; JSONL: the line; Parquet: the row) and its dead-letter
reason, unless ``skip_bad_rows`` is set, in which case they are skipped and
counted. Venues missing from the registry are kept (the pipeline dead-letters
them as unknown_venue) with a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from darkpool import logs
from darkpool.contracts import load_venues
from darkpool.errors import DarkpoolError
from darkpool.tradefile import RowError, Trade, open_trade_file
from feed.generator import (
    SIDE_VALUE,
    EncodedBatch,
    FaultConfig,
    FaultInjector,
    Shard,
    TradeBatch,
    TradeEncoder,
)
from feed.scenarios import NO_SCENARIO

log = logging.getLogger(__name__)

MAX_ERRORS_SHOWN = 10
SIDE_CODES = {side: code for code, side in enumerate(SIDE_VALUE)}  # "B" -> 0, "S" -> 1, None -> 2


@dataclass
class FileTrades:
    """Trades read from a file, as columns in file order, and the rows that could not be read."""

    path: Path
    ts: np.ndarray
    sym: np.ndarray
    venue: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    side: np.ndarray
    symbols: list[str]
    venues: list[str]
    trade_ids: list[str | None] | None  # None: the file has no trade ids at all (ids are generated)
    skipped: int = 0
    errors: list[str] = field(default_factory=list)  # the first MAX_ERRORS_SHOWN, "line N: reason: detail"
    rejected: list[RowError] = field(default_factory=list)  # every unreadable row

    def __len__(self) -> int:
        return len(self.ts)


class _Columns:
    """Accumulates the reader's trades as columns; keeps its row errors."""

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.sym: list[int] = []
        self.venue: list[int] = []
        self.price: list[float] = []
        self.qty: list[int] = []
        self.side: list[int] = []
        self.ids: list[str | None] = []
        self.symbols: dict[str, int] = {}
        self.venues: dict[str, int] = {}
        self.rejected: list[RowError] = []

    def add(self, trade: Trade) -> None:
        self.ts.append(trade.event_ms)
        self.sym.append(self.symbols.setdefault(trade.symbol, len(self.symbols)))
        self.venue.append(self.venues.setdefault(trade.venue, len(self.venues)))
        self.price.append(trade.price)
        self.qty.append(trade.quantity)
        self.side.append(SIDE_CODES[trade.side])
        self.ids.append(trade.trade_id)
        if len(self.ts) % 500_000 == 0:
            log.info("read %d trades so far (line %d)", len(self.ts), trade.line)

    def finish(self, path: Path, skip_bad_rows: bool) -> FileTrades:
        errors = [str(e) for e in self.rejected[:MAX_ERRORS_SHOWN]]
        if self.rejected and not skip_bad_rows:
            more = len(self.rejected) - len(errors)
            raise DarkpoolError(
                f"{path}: {len(self.rejected)} unreadable row(s):\n  " + "\n  ".join(errors)
                + (f"\n  ... and {more} more" if more > 0 else ""),
                hint="fix the rows, or pass --skip-bad-rows to replay the readable ones (docs/trade-files.md)")
        if self.rejected:
            for error in self.rejected[:MAX_ERRORS_SHOWN]:  # each with its position, as structured fields
                log.warning("%s: row skipped: %s", error.where, error,
                            extra={**logs.file_position(path, error.line), "reason": error.reason})
            log.warning("%s: skipped %d unreadable row(s), first: %s", path, len(self.rejected), errors[0],
                        extra={"file": str(path), "skipped": len(self.rejected)})
        if not self.ts:
            raise DarkpoolError(f"{path} holds no readable trades")
        unknown = sorted(v for v in self.venues if v not in load_venues())
        if unknown:
            log.warning("%s: venue(s) not in the active registry (the pipeline will dead-letter them): %s; "
                        "declare them with darkpool --venues FILE (docs/venues.md)", path,
                        ", ".join(v if len(v) <= 40 else f"{v[:40]}... ({len(v):,} characters)" for v in unknown[:20])
                        + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""))
        has_ids = any(i is not None for i in self.ids)
        return FileTrades(
            path=path, ts=np.array(self.ts, dtype=np.int64), sym=np.array(self.sym, dtype=np.int64),
            venue=np.array(self.venue, dtype=np.int64), price=np.array(self.price, dtype=float),
            qty=np.array(self.qty, dtype=np.int64), side=np.array(self.side, dtype=np.int8),
            symbols=list(self.symbols), venues=list(self.venues), trade_ids=self.ids if has_ids else None,
            skipped=len(self.rejected), errors=errors, rejected=self.rejected)


def read_trades(path: str | Path, fmt: str | None = None, skip_bad_rows: bool = False) -> FileTrades:
    """Read a trade file (CSV, JSONL or Parquet; :mod:`darkpool.tradefile`) into columns."""
    trade_file = open_trade_file(path, fmt)
    acc = _Columns()
    started = time.monotonic()
    for row in trade_file.rows():
        if type(row) is Trade:
            acc.add(row)
        else:
            acc.rejected.append(row)
    trades = acc.finish(trade_file.path, skip_bad_rows)
    log.info("read %d trades from %s (%s) in %.1f s", len(trades), trade_file.path, trade_file.format,
             time.monotonic() - started)
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
                           fault=fault, detail=np.floor(u[3] * 1e6).astype(np.int64),
                           scenario=np.full(n, NO_SCENARIO, dtype=np.int16))
        if faults.duplicate_rate:
            batch = injector.duplicate(batch, u[4])
        if remaining is not None:
            batch = batch.take(slice(0, remaining))
            remaining -= len(batch)
        batch = shard.select(batch)
        if not len(batch):
            continue
        ids = None if trades.trade_ids is None else [
            trades.trade_ids[i] or encoder.trade_id(i) for i in batch.seq.tolist()]  # a row without one: generated
        yield encoder.encode(batch, trade_ids=ids, with_release=True)

