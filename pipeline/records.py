"""The pipeline's records: the source record, the parsed trade, venue and symbol statistics, output values.

Every element passed between the pipeline's steps has named fields:

- :class:`SourceRecord`: what the parse step reads, with the attributes of the
  Row that ``ReadFromKafka(with_metadata=True)`` yields (topic, partition,
  offset, timestamp, key, value). File backfill and tests build the same shape.
- :class:`Trade`: a validated trade (a NamedTuple: a tuple, so cheap to build
  and to move); ``record_ms`` is the source record's timestamp, which drives
  the watermark. Trades travel in ``(partition key, [Trade, ...])`` batches.
- :class:`VenueStats`: the running statistics of one (window, symbol, venue),
  a mutable dataclass that trades are added into in place.
- Symbol statistics: ``{venue MPID: VenueStats}``, enough for the market rollup
  (HHI needs every venue's quantity).

Every derived figure comes from :mod:`darkpool.market`; this module only adds
numbers up and lays them out as contract records. The byte layouts (the Java
reader's record batches) and the Beam coders of these types are in
:mod:`pipeline.codec`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from darkpool import market
from darkpool.contracts import format_event_time


class SourceRecord(NamedTuple):
    """One raw record of the trades topic (or a row of a backfill file), before validation."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # record timestamp, epoch ms (Kafka CreateTime)
    key: bytes | None
    value: bytes | None


class Trade(NamedTuple):
    """A validated trade print, as the parse step hands it on."""

    event_ms: int  # the trade's event_time, epoch ms
    symbol: str
    venue: str  # MPID, in the job's venue registry
    price: float
    quantity: int
    side: str | None  # "B", "S" or None
    trade_id: str
    offset: int  # the source record's offset (dead letters name it)
    record_ms: int  # the source record's timestamp, epoch ms (drives the watermark)


new_trade = tuple.__new__
"""``new_trade(Trade, (event_ms, symbol, ...))``: a Trade without the Python-level ``__new__`` call
(a third of the cost of ``Trade(...)``; the parse step builds one per record)."""


@dataclass(slots=True)
class VenueStats:
    """Statistics of the trades of one (window, symbol, venue); add trades and merge in place."""

    count: int = 0
    quantity: int = 0
    notional: float = 0.0
    min_price: float = math.inf
    max_price: float = -math.inf
    block_count: int = 0
    block_quantity: int = 0
    buy_quantity: int = 0
    sell_quantity: int = 0

    def add(self, price: float, quantity: int, side: str | None) -> None:
        """Add one print."""
        self.count += 1
        self.quantity += quantity
        self.notional += price * quantity
        if price < self.min_price:
            self.min_price = price
        if price > self.max_price:
            self.max_price = price
        if market.is_block(price, quantity):
            self.block_count += 1
            self.block_quantity += quantity
        if side == "B":
            self.buy_quantity += quantity
        elif side == "S":
            self.sell_quantity += quantity

    def merge(self, other: VenueStats) -> None:
        """Add ``other`` into these statistics (order-independent)."""
        self.count += other.count
        self.quantity += other.quantity
        self.notional += other.notional
        if other.min_price < self.min_price:
            self.min_price = other.min_price
        if other.max_price > self.max_price:
            self.max_price = other.max_price
        self.block_count += other.block_count
        self.block_quantity += other.block_quantity
        self.buy_quantity += other.buy_quantity
        self.sell_quantity += other.sell_quantity

    def copy(self) -> VenueStats:
        return VenueStats(*self.as_tuple())

    def as_tuple(self) -> tuple:
        """The fields in declaration order (what :class:`pipeline.codec.VenueStatsCoder` writes)."""
        return (self.count, self.quantity, self.notional, self.min_price, self.max_price,
                self.block_count, self.block_quantity, self.buy_quantity, self.sell_quantity)


SymbolStats = dict[str, VenueStats]  # venue MPID -> statistics, for one (window, symbol)


def merge_symbol_stats_into(target: SymbolStats, other: SymbolStats) -> None:
    """Add ``other`` symbol statistics into ``target``, in place (``other`` is never modified)."""
    for venue, stats in other.items():
        mine = target.get(venue)
        if mine is None:
            target[venue] = stats.copy()
        else:
            mine.merge(stats)


# --- output records (contracts.LIQUIDITY_FIELDS / MARKET_FIELDS) -----------------------
def liquidity_values(symbol: str, venue: str, stats: VenueStats, venue_types: Mapping[str, str]) -> dict:
    """The aggregate part of a darkpool.liquidity record for one (window, symbol, venue).

    ``venue_types``: {MPID: venue type} of the job's registry (PipelineConfig.venue_types).
    """
    quantity = stats.quantity
    count = stats.count
    return {
        "symbol": symbol,
        "venue": venue,
        "venue_type": venue_types.get(venue),
        "trade_count": count,
        "share_quantity": quantity,
        "notional": stats.notional,
        "vwap": market.vwap(stats.notional, quantity),
        "min_price": stats.min_price if count else None,
        "max_price": stats.max_price if count else None,
        "avg_trade_size": market.average_trade_size(quantity, count),
        "block_count": stats.block_count,
        "block_quantity": stats.block_quantity,
        "buy_quantity": stats.buy_quantity,
        "sell_quantity": stats.sell_quantity,
    }


def market_values(symbol: str, by_venue: Mapping[str, VenueStats], venue_types: Mapping[str, str]) -> dict:
    """The aggregate part of a darkpool.market record: totals, dark vs lit, HHI, top venue.

    ``venue_types``: {MPID: venue type} of the job's registry (PipelineConfig.venue_types).
    """
    count = quantity = dark_quantity = dark_count = block_count = block_quantity = dark_blocks = 0
    total_notional = dark_notional = lit_notional = 0.0
    quantities: dict[str, int] = {}
    for venue, stats in by_venue.items():
        count += stats.count
        quantity += stats.quantity
        total_notional += stats.notional
        block_count += stats.block_count
        block_quantity += stats.block_quantity
        quantities[venue] = stats.quantity
        if market.is_dark(venue_types.get(venue)):
            dark_quantity += stats.quantity
            dark_notional += stats.notional
            dark_count += stats.count
            dark_blocks += stats.block_count
        else:
            lit_notional += stats.notional
    top, top_share = market.top_venue(quantities)
    return {
        "symbol": symbol,
        "trade_count": count,
        "share_quantity": quantity,
        "notional": total_notional,
        "vwap": market.vwap(total_notional, quantity),
        "dark_quantity": dark_quantity,
        "lit_quantity": quantity - dark_quantity,
        "dark_notional": dark_notional,
        "lit_notional": lit_notional,
        "dark_trade_count": dark_count,
        "lit_trade_count": count - dark_count,
        "dark_share": market.dark_share(dark_quantity, quantity),
        "block_count": block_count,
        "block_quantity": block_quantity,
        "dark_block_count": dark_blocks,
        "hhi": market.hhi(quantities),
        "venue_count": market.venue_count(quantities),
        "top_venue": top,
        "top_venue_share": top_share,
    }


def window_fields(start_ms: int, end_ms: int) -> dict:
    """window_start / window_end as ISO-8601 UTC strings (the Kafka contract)."""
    return {"window_start": format_event_time(start_ms), "window_end": format_event_time(end_ms)}
