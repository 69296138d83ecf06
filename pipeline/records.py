"""In-pipeline record shapes: the source record, the parsed trade, the running statistics.

Elements that cross between runner stages are plain tuples, lists and dicts
(cheap to encode with Beam's FastPrimitivesCoder); the layouts are named here
once so the rest of the code never uses a bare index.

- :class:`SourceRecord`: what the parse step reads, with the attributes of the
  Row that ``ReadFromKafka(with_metadata=True)`` yields (topic, partition,
  offset, timestamp, key, value). File backfill and tests build the same shape.
- Record batch: what the default Kafka reader hands Python, one source
  partition's records in one ``(partition, bytes)`` element (:func:`decode_record_batch`).
- Trade tuple: ``(event_ms, symbol, venue, price, quantity, side, trade_id, offset, record_ms)``
  (record_ms: the source record's timestamp, which drives the watermark).
- Venue statistics: a list indexed by the ``S_*`` constants (see :func:`new_stats`).
- Symbol statistics: ``{venue MPID: venue statistics}``, enough for the market
  rollup (HHI needs every venue's quantity).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from darkpool import market
from darkpool.contracts import format_event_time, load_venues


class SourceRecord(NamedTuple):
    """One raw record of the trades topic (or a row of a backfill file), before validation."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # record timestamp, epoch ms (Kafka CreateTime)
    key: bytes | None
    value: bytes | None


# --- record batches of the darkpool Kafka reader ----------------------------------
# jvm/transforms/src/main/java/io/darkpool/beam/ReadTradeRecords.java writes them:
# per record a big-endian header (flags, partition, offset, timestamp ms, key
# length, value length), then the key and value bytes. Flags mark null keys/values.
RECORD_HEADER = struct.Struct(">BiqqII")
KEY_NULL = 1
VALUE_NULL = 2


def decode_record_batch(batch: bytes) -> Iterator[tuple[int, int, int, bytes | None, bytes | None]]:
    """A batch from ReadTradeRecords -> (partition, offset, timestamp ms, key, value) per record, in order."""
    unpack = RECORD_HEADER.unpack_from
    header_size = RECORD_HEADER.size
    position, end = 0, len(batch)
    while position < end:
        flags, partition, offset, timestamp, key_length, value_length = unpack(batch, position)
        position += header_size
        key = None if flags & KEY_NULL else batch[position:position + key_length]
        position += key_length
        value = None if flags & VALUE_NULL else batch[position:position + value_length]
        position += value_length
        yield partition, offset, timestamp, key, value


def encode_record_batch(records: Iterable[SourceRecord]) -> bytes:
    """SourceRecords -> one batch in ReadTradeRecords' layout (what the Java side sends; for tests and tools)."""
    parts = []
    for record in records:
        key = record.key or b""
        value = record.value or b""
        flags = (KEY_NULL if record.key is None else 0) | (VALUE_NULL if record.value is None else 0)
        parts.append(RECORD_HEADER.pack(flags, record.partition, record.offset, record.timestamp,
                                        len(key), len(value)))
        parts.append(key)
        parts.append(value)
    return b"".join(parts)


# --- trade tuple layout ---------------------------------------------------------
T_EVENT_MS, T_SYMBOL, T_VENUE, T_PRICE, T_QUANTITY, T_SIDE, T_TRADE_ID, T_OFFSET, T_RECORD_MS = range(9)

# --- venue statistics layout ------------------------------------------------------
(S_COUNT, S_QUANTITY, S_NOTIONAL, S_MIN_PRICE, S_MAX_PRICE,
 S_BLOCK_COUNT, S_BLOCK_QUANTITY, S_BUY_QUANTITY, S_SELL_QUANTITY) = range(9)
STATS_LEN = 9


def new_stats() -> list:
    """Empty venue statistics: count, quantity, notional, min/max price, blocks, buy/sell quantity."""
    return [0, 0, 0.0, math.inf, -math.inf, 0, 0, 0, 0]


def add_trade(stats: list, price: float, quantity: int, side: str | None) -> None:
    """Add one print to venue statistics, in place."""
    stats[S_COUNT] += 1
    stats[S_QUANTITY] += quantity
    stats[S_NOTIONAL] += price * quantity
    if price < stats[S_MIN_PRICE]:
        stats[S_MIN_PRICE] = price
    if price > stats[S_MAX_PRICE]:
        stats[S_MAX_PRICE] = price
    if market.is_block(price, quantity):
        stats[S_BLOCK_COUNT] += 1
        stats[S_BLOCK_QUANTITY] += quantity
    if side == "B":
        stats[S_BUY_QUANTITY] += quantity
    elif side == "S":
        stats[S_SELL_QUANTITY] += quantity


def merge_stats_into(target: list, other: list) -> None:
    """Add ``other`` venue statistics into ``target``, in place (order-independent)."""
    target[S_COUNT] += other[S_COUNT]
    target[S_QUANTITY] += other[S_QUANTITY]
    target[S_NOTIONAL] += other[S_NOTIONAL]
    if other[S_MIN_PRICE] < target[S_MIN_PRICE]:
        target[S_MIN_PRICE] = other[S_MIN_PRICE]
    if other[S_MAX_PRICE] > target[S_MAX_PRICE]:
        target[S_MAX_PRICE] = other[S_MAX_PRICE]
    target[S_BLOCK_COUNT] += other[S_BLOCK_COUNT]
    target[S_BLOCK_QUANTITY] += other[S_BLOCK_QUANTITY]
    target[S_BUY_QUANTITY] += other[S_BUY_QUANTITY]
    target[S_SELL_QUANTITY] += other[S_SELL_QUANTITY]


def merge_symbol_stats_into(target: dict, other: dict) -> None:
    """Add ``other`` symbol statistics (venue -> stats) into ``target``, in place."""
    for venue, stats in other.items():
        mine = target.get(venue)
        if mine is None:
            target[venue] = list(stats)
        else:
            merge_stats_into(mine, stats)


# --- output records (contracts.LIQUIDITY_FIELDS / MARKET_FIELDS) -----------------------
def liquidity_values(symbol: str, venue: str, stats: list) -> dict:
    """The aggregate part of a darkpool.liquidity record for one (window, symbol, venue)."""
    venue_info = load_venues().get(venue)
    quantity = stats[S_QUANTITY]
    return {
        "symbol": symbol,
        "venue": venue,
        "venue_type": venue_info.venue_type if venue_info else None,
        "trade_count": stats[S_COUNT],
        "share_quantity": quantity,
        "notional": stats[S_NOTIONAL],
        "vwap": market.vwap(stats[S_NOTIONAL], quantity),
        "min_price": stats[S_MIN_PRICE] if stats[S_COUNT] else None,
        "max_price": stats[S_MAX_PRICE] if stats[S_COUNT] else None,
        "avg_trade_size": market.average_trade_size(quantity, stats[S_COUNT]),
        "block_count": stats[S_BLOCK_COUNT],
        "block_quantity": stats[S_BLOCK_QUANTITY],
        "buy_quantity": stats[S_BUY_QUANTITY],
        "sell_quantity": stats[S_SELL_QUANTITY],
    }


def market_values(symbol: str, by_venue: dict) -> dict:
    """The aggregate part of a darkpool.market record: totals, dark vs lit, HHI, top venue."""
    venues = load_venues()
    count = quantity = dark_quantity = dark_count = block_count = block_quantity = dark_blocks = 0
    total_notional = dark_notional = lit_notional = 0.0
    quantities: dict[str, int] = {}
    for venue, stats in by_venue.items():
        venue_info = venues.get(venue)
        dark = market.is_dark(venue_info.venue_type if venue_info else None)
        count += stats[S_COUNT]
        quantity += stats[S_QUANTITY]
        total_notional += stats[S_NOTIONAL]
        block_count += stats[S_BLOCK_COUNT]
        block_quantity += stats[S_BLOCK_QUANTITY]
        quantities[venue] = stats[S_QUANTITY]
        if dark:
            dark_quantity += stats[S_QUANTITY]
            dark_notional += stats[S_NOTIONAL]
            dark_count += stats[S_COUNT]
            dark_blocks += stats[S_BLOCK_COUNT]
        else:
            lit_notional += stats[S_NOTIONAL]
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
