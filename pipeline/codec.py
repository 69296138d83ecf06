"""Byte layouts of the pipeline: the Java reader's record batches, and the Beam coders of its records.

- Record batches: what the default Kafka reader (``jvm/transforms/.../ReadTradeRecords.java``)
  hands Python, one source partition's records in one ``(partition, bytes)``
  element. Per record a big-endian header (flags, partition, offset, timestamp
  ms, key length, value length), then the key and value bytes; flags mark null
  keys/values. :func:`decode_record_batch` reads it, :func:`encode_record_batch`
  writes it (what the Java side sends; for tests and tools).
- Coders: :class:`TradeCoder` and :class:`VenueStatsCoder` are registered with
  Beam's coder registry for :class:`~pipeline.records.Trade` and
  :class:`~pipeline.records.VenueStats`, so a PCollection typed with
  :data:`TRADE_BATCH` or :data:`SYMBOL_PARTIAL` gets a ``StrUtf8Coder`` key
  (deterministic, as keyed state needs) and compact values instead of a
  pickle per object. Import the type hints from here: importing this module
  is what registers the coders.
"""

from __future__ import annotations

import pickle
import struct
import typing
from collections.abc import Iterable, Iterator

from apache_beam import coders
from apache_beam.coders.coder_impl import FastPrimitivesCoderImpl, StreamCoderImpl

from pipeline.records import SourceRecord, Trade, VenueStats

RECORD_HEADER = struct.Struct(">BiqqII")
KEY_NULL = 1
VALUE_NULL = 2


def decode_record_batch(batch: bytes) -> Iterator[tuple[int, int, int, bytes | None, bytes | None]]:
    """A batch from ReadTradeRecords -> (partition, offset, timestamp ms, key, value) per record, in order.

    A batch that ends inside a record raises ValueError (the reader's bug, not bad input: a
    record's bytes, whatever they are, always arrive whole).
    """
    unpack = RECORD_HEADER.unpack_from
    header_size = RECORD_HEADER.size
    position, end = 0, len(batch)
    while position < end:
        try:
            flags, partition, offset, timestamp, key_length, value_length = unpack(batch, position)
        except struct.error:
            raise ValueError(f"record batch of {end} bytes ends inside a record header at byte {position}") from None
        position += header_size
        key = None if flags & KEY_NULL else batch[position:position + key_length]
        position += key_length
        value = None if flags & VALUE_NULL else batch[position:position + value_length]
        position += value_length
        if position > end:
            raise ValueError(f"record batch of {end} bytes ends inside the record at offset {offset}")
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


# --- Beam coders ---------------------------------------------------------------------
_new_tuple = tuple.__new__


class _TradeCoderImpl(StreamCoderImpl):
    """A trade as the tuple of its fields in Beam's fast primitive encoding (no class name per trade)."""

    def __init__(self) -> None:
        self._fields = FastPrimitivesCoderImpl(coders.PickleCoder().get_impl())

    def encode_to_stream(self, value: Trade, out, nested: bool) -> None:
        self._fields.encode_to_stream(tuple(value), out, nested)

    def decode_from_stream(self, in_stream, nested: bool) -> Trade:
        return _new_tuple(Trade, self._fields.decode_from_stream(in_stream, nested))


class TradeCoder(coders.Coder):
    """Beam coder of :class:`~pipeline.records.Trade` (registered for the type)."""

    def _create_impl(self) -> _TradeCoderImpl:
        return _TradeCoderImpl()

    def to_type_hint(self):
        return Trade

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


# count, quantity, notional, min price, max price, block count/quantity, buy/sell quantity
_STATS = struct.Struct(">qqdddqqqq")
_PACKED, _PICKLED = b"\x00", b"\x01"


class VenueStatsCoder(coders.Coder):
    """Beam coder of :class:`~pipeline.records.VenueStats`: 73 bytes (a pickle if a sum outgrows 64 bits)."""

    def encode(self, value: VenueStats) -> bytes:
        fields = value.as_tuple()
        try:
            return _PACKED + _STATS.pack(*fields)
        except struct.error:
            return _PICKLED + pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> VenueStats:
        if encoded[:1] == _PACKED:
            return VenueStats(*_STATS.unpack_from(encoded, 1))
        return VenueStats(*pickle.loads(encoded[1:]))

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self):
        return VenueStats

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


coders.registry.register_coder(Trade, TradeCoder)
coders.registry.register_coder(VenueStats, VenueStatsCoder)

# Element types of the PCollections between the pipeline's steps (for ``with_output_types``).
RECORD_BATCH = tuple[int, bytes]  # (source partition, record batch) from the Java reader
TRADE_BATCH = tuple[str, list[Trade]]  # (partition key, trades)
SYMBOL_PARTIAL = tuple[str, dict[str, VenueStats]]  # (symbol, {venue: statistics})
SYMBOL_PARTIAL_PANE = tuple[str, Iterable[dict[str, VenueStats]]]  # a grouped pane of partials
DATED_ROWS = tuple[str, typing.Any]  # (date, [output rows]) of the sinks' buffers
