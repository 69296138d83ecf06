"""ParseTrades: validate every raw record; valid trades out in per-partition batches, bad ones dead-lettered.

The hottest code of the pipeline: every record passes through :func:`parse_trade`
once. It uses orjson, the contract's per-second cache for the usual ``...T14:30:00.123Z``
timestamps, and no exceptions on the happy path.

Valid trades leave as few, large elements: one ``(partition key, [Trade, ...])``
batch per source partition per bundle (capped at ``max_batch`` trades), in the
global window with the batch's earliest timestamp. Keeping the partition as the
key lets the next step (:mod:`pipeline.transforms.lateness`) track each
partition's watermark in keyed state.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Iterable

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from darkpool.contracts import (
    DEADLETTER_REASONS,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_SYMBOL_LENGTH,
    MAX_TRADE_ID_LENGTH,
    REASON_ABSURD_EVENT_TIME,
    REASON_BAD_EVENT_TIME,
    REASON_BAD_JSON,
    REASON_BAD_SIDE,
    REASON_BAD_TYPE,
    REASON_EMPTY,
    REASON_MISSING_FIELD,
    REASON_NON_POSITIVE_PRICE,
    REASON_NON_POSITIVE_QUANTITY,
    REASON_NOT_OBJECT,
    REASON_OUT_OF_RANGE,
    REASON_TOO_LONG,
    REASON_UNKNOWN_VENUE,
    TRADE_FIELDS,
    format_event_time,
    parse_event_time,
)
from pipeline.codec import TRADE_BATCH, decode_record_batch
from pipeline.records import Trade, new_trade

DEADLETTER_TAG = "deadletter"
METRICS_NAMESPACE = "darkpool.pipeline"
MIN_EVENT_MS = 946_684_800_000  # 2000-01-01T00:00:00Z: anything earlier is absurd
# A dead letter stays far below a Kafka record's size limit (1 MiB by default) whatever it holds:
MAX_RAW_BYTES = 65_536  # of the source value kept in raw_value (the rest is cut: raw_encoding "...+truncated")
MAX_RAW_KEY_BYTES = 1_024  # of the source key kept in raw_key
MAX_DETAIL_CHARS = 1_000  # of the human detail
KEY_BASE64_PREFIX = "base64:"  # raw_key of a key that is not UTF-8 text: this prefix + the key's base64
TRUNCATED_SUFFIX = "+truncated"
# Beam's element timestamps are int64 microseconds: a dead letter's is clamped into this range (epoch ms)
_ELEMENT_MS_RANGE = (-(2**62) // 1000, (2**62) // 1000)


class Rejected(Exception):  # noqa: N818 - it is an outcome, not an error of the program
    """A record that fails validation: ``reason`` (one of contracts.DEADLETTER_REASONS) and a human ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def event_time_ms(text: object) -> int:
    """A trade's ISO-8601 event_time -> epoch ms by the contract's rule (contracts.parse_event_time,
    which caches each second of the usual ``...T14:30:00.123Z`` form).

    Raises Rejected(bad_type) for a value that is not a string, Rejected(bad_event_time) for text
    that does not parse.
    """
    if type(text) is not str:
        raise Rejected(REASON_BAD_TYPE, f"event_time must be a string, got {type(text).__name__}")
    try:
        return parse_event_time(text)
    except ValueError as exc:
        raise Rejected(REASON_BAD_EVENT_TIME, f"unparseable event_time {text!r}") from exc


def parse_trade(value: bytes | None, record_ms: int, offset: int, venues, max_skew_ms: int) -> Trade:
    """Validate one trade record (JSON bytes) -> :class:`~pipeline.records.Trade`.

    ``venues`` is a set of known MPIDs; ``record_ms`` the record's timestamp;
    an event_time further than ``max_skew_ms`` from it, or before 2000, is absurd.
    Raises :class:`Rejected` with the reason otherwise.
    """
    if not value:
        raise Rejected(REASON_EMPTY, "empty record value")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise Rejected(REASON_BAD_JSON, str(exc)) from exc
    if type(data) is not dict:
        raise Rejected(REASON_NOT_OBJECT, f"a trade is a JSON object, got {type(data).__name__}")
    try:
        trade_id = data["trade_id"]
        event_time = data["event_time"]
        symbol = data["symbol"]
        venue = data["venue"]
        price = data["price"]
        quantity = data["quantity"]
        side = data["side"]
    except KeyError:
        missing = [name for name in TRADE_FIELDS if name not in data]
        raise Rejected(REASON_MISSING_FIELD, f"missing {', '.join(missing)}") from None
    if type(trade_id) is not str or type(symbol) is not str or not symbol or type(venue) is not str:
        raise Rejected(REASON_BAD_TYPE, "trade_id, symbol and venue must be non-empty strings")
    if len(symbol) > MAX_SYMBOL_LENGTH or len(trade_id) > MAX_TRADE_ID_LENGTH:
        raise Rejected(REASON_TOO_LONG, f"symbol of {len(symbol):,} characters (at most {MAX_SYMBOL_LENGTH}) "
                                        f"or trade_id of {len(trade_id):,} (at most {MAX_TRADE_ID_LENGTH})")
    price_type = type(price)
    if price_type is int:
        price = float(price)
    elif price_type is not float or not math.isfinite(price):
        raise Rejected(REASON_BAD_TYPE, f"price must be a number, got {price!r}")
    if type(quantity) is not int:
        if type(quantity) is float and quantity.is_integer():
            quantity = int(quantity)
        else:
            raise Rejected(REASON_BAD_TYPE, f"quantity must be an integer, got {quantity!r}")
    if quantity <= 0:
        raise Rejected(REASON_NON_POSITIVE_QUANTITY, f"quantity {quantity}")
    if price <= 0.0:
        raise Rejected(REASON_NON_POSITIVE_PRICE, f"price {price}")
    if quantity > MAX_QUANTITY:
        raise Rejected(REASON_OUT_OF_RANGE, f"quantity {quantity} is above {MAX_QUANTITY:,}")
    if price > MAX_PRICE:
        raise Rejected(REASON_OUT_OF_RANGE, f"price {price} is above {MAX_PRICE:,.0f}")
    if venue not in venues:
        raise Rejected(REASON_UNKNOWN_VENUE, f"venue {venue!r} is not in the registry")
    if side is not None and side != "B" and side != "S":
        raise Rejected(REASON_BAD_SIDE, f"side must be 'B', 'S' or null, got {side!r}")
    event_ms = event_time_ms(event_time)
    if event_ms < MIN_EVENT_MS or abs(event_ms - record_ms) > max_skew_ms:
        raise Rejected(REASON_ABSURD_EVENT_TIME, f"event_time {event_time} vs record timestamp {shown_ms(record_ms)}")
    return new_trade(Trade, (event_ms, symbol, venue, price, quantity, side, trade_id, offset, record_ms))


def shown_ms(epoch_ms: int) -> str:
    """An epoch-ms time as ISO-8601 for a message; the plain number when it is outside datetime's years."""
    try:
        return format_event_time(epoch_ms)
    except (ValueError, OverflowError, OSError):
        return f"{epoch_ms} ms since the epoch"


def raw_text(raw: bytes | None, limit: int = MAX_RAW_BYTES) -> tuple[str | None, str, bool]:
    """Bytes -> (text, encoding, truncated): their UTF-8 text when they decode, else their base64;
    at most ``limit`` bytes of them (cut at a character boundary when the cut splits one)."""
    if raw is None:
        return None, "none", False
    truncated = len(raw) > limit
    kept = raw[:limit] if truncated else raw
    try:
        return kept.decode("utf-8"), "utf-8", truncated
    except UnicodeDecodeError as exc:
        if truncated and exc.reason == "unexpected end of data":  # the cut split a character
            return kept[:exc.start].decode("utf-8"), "utf-8", truncated
        return base64.b64encode(kept).decode("ascii"), "base64", truncated


def raw_key_text(key: bytes | None) -> tuple[str | None, bool]:
    """A source key -> (raw_key, truncated): its UTF-8 text, or ``base64:<its base64>`` when it is not UTF-8
    (or its text itself starts with ``base64:``); at most MAX_RAW_KEY_BYTES of it."""
    text, encoding, truncated = raw_text(key, MAX_RAW_KEY_BYTES)
    if text is not None and (encoding == "base64" or text.startswith(KEY_BASE64_PREFIX)):
        kept = key[:MAX_RAW_KEY_BYTES]
        text = KEY_BASE64_PREFIX + base64.b64encode(kept).decode("ascii")
    return text, truncated


def safe_text(text: str, limit: int) -> str:
    """Text that JSON can carry (no lone surrogates: those become backslash escapes), at most ``limit``
    characters (``...`` and the full length at the end when cut)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text):,} characters)"
    return text


def deadletter_record(reason: str, detail: str, value: bytes | None, key: bytes | None,
                      topic: str, partition: int, offset: int, raw_encoding: str | None = None) -> dict:
    """A darkpool.deadletter record (contracts.DEADLETTER_FIELDS, plus a human ``detail``).

    Whatever the source record held, the result encodes as JSON and stays small:
    ``raw_value`` is the value's UTF-8 text or base64 (``raw_encoding``), its first
    MAX_RAW_BYTES bytes only (then ``raw_encoding`` ends in ``+truncated`` and the
    detail tells the full size); ``raw_key`` the key's text or ``base64:<base64>``
    (:func:`raw_key_text`); the detail at most MAX_DETAIL_CHARS characters.
    """
    raw_value, encoding, truncated = raw_text(value)
    raw_key, key_truncated = raw_key_text(key)
    detail = safe_text(detail, MAX_DETAIL_CHARS)
    if truncated:
        detail += f" (raw_value: the first {MAX_RAW_BYTES:,} of {len(value):,} bytes)"
    if key_truncated:
        detail += f" (raw_key: the first {MAX_RAW_KEY_BYTES:,} of {len(key):,} bytes)"
    return {
        "reason": reason,
        "raw_value": raw_value,
        "raw_encoding": (raw_encoding or encoding) + (TRUNCATED_SUFFIX if truncated else ""),
        "raw_key": raw_key,
        "source_topic": safe_text(topic, MAX_DETAIL_CHARS),
        "source_partition": partition,
        "source_offset": offset,
        "rejected_at": format_event_time(int(time.time() * 1000)),
        "detail": detail,
    }


def element_seconds(epoch_ms: int) -> float:
    """A record time as a Beam element timestamp (seconds), clamped into Beam's range."""
    low, high = _ELEMENT_MS_RANGE
    return min(max(epoch_ms, low), high) / 1000.0


class ParseTally:
    """Outcome counts of the parse step in plain integers, added to the Beam counters by :meth:`flush`.

    (A Beam counter increment costs about as much as validating a record, so
    DoFns count locally and flush once per bundle or batch.) Create it in a
    DoFn's ``setup``.
    """

    def __init__(self) -> None:
        self.records = 0
        self.outside = 0
        self.rejected: dict[str, int] = {}
        self._in_counter = Metrics.counter(METRICS_NAMESPACE, "records_in")
        self._valid_counter = Metrics.counter(METRICS_NAMESPACE, "trades_valid")
        self._outside_counter = Metrics.counter(METRICS_NAMESPACE, "outside_range")
        self._reason_counters = {
            reason: Metrics.counter(METRICS_NAMESPACE, f"deadletter_{reason}") for reason in DEADLETTER_REASONS
        }

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def flush(self) -> None:
        """Add the counts to the Beam counters (records_in, trades_valid, deadletter_<reason>, outside_range)."""
        rejected = sum(self.rejected.values())
        if self.records:
            self._in_counter.inc(self.records)
            self._valid_counter.inc(self.records - rejected)
        for reason, count in self.rejected.items():
            self._reason_counters[reason].inc(count)
        if self.outside:
            self._outside_counter.inc(self.outside)
        self.records = 0
        self.outside = 0
        self.rejected = {}


def parse_records(records: Iterable[tuple], topic: str, venues, max_skew_ms: int, tally: ParseTally,
                  keep_before_ms: int | None = None) -> tuple[list[Trade], list[dict]]:
    """(partition, offset, record ms, key, value) records of a topic -> (valid trades in arrival order,
    dead-letter dicts); counts into tally. Records stamped at/after ``keep_before_ms`` (a bounded
    range's end) are skipped and counted as outside."""
    trades: list[Trade] = []
    dead: list[dict] = []
    append = trades.append
    seen = outside = 0
    for partition, offset, record_ms, key, value in records:
        seen += 1
        if keep_before_ms is not None and record_ms >= keep_before_ms:
            outside += 1
            continue
        try:
            append(parse_trade(value, record_ms, offset, venues, max_skew_ms))
        except Rejected as rejected:
            tally.reject(rejected.reason)
            dead.append(deadletter_record(rejected.reason, rejected.detail, value, key, topic, partition, offset))
    tally.records += seen - outside
    tally.outside += outside
    return trades, dead


def parse_record_batch(batch: bytes, topic: str, venues, max_skew_ms: int, tally: ParseTally,
                       keep_before_ms: int | None = None) -> tuple[list[Trade], list[dict]]:
    """A darkpool reader record batch -> :func:`parse_records` of its records."""
    return parse_records(decode_record_batch(batch), topic, venues, max_skew_ms, tally, keep_before_ms)


class ParseAndBatchFn(beam.DoFn):
    """Raw records -> per-partition batches of trade tuples (main) + dead-letter dicts (tagged).

    Input: SourceRecord-like rows (KafkaIO metadata rows, file records). Records
    are collected per source partition and parsed a chunk at a time with
    :func:`parse_records` (at ``max_batch`` records, or when the bundle ends):
    no per-record call setup on this path. With ``keep_before_ms`` (a bounded
    range of the topic), records stamped at or after it are skipped and counted
    as ``outside_range``. ``venues``: the MPIDs of the job's registry.
    """

    def __init__(self, venues: Iterable[str], max_skew_ms: int, max_batch: int = 20_000,
                 keep_before_ms: int | None = None) -> None:
        self._venue_mpids = tuple(sorted(venues))
        self._max_skew_ms = max_skew_ms
        self._max_batch = max_batch
        self._keep_before_ms = keep_before_ms

    def setup(self) -> None:
        self._venues = frozenset(self._venue_mpids)
        self._tally = ParseTally()

    def start_bundle(self) -> None:
        self._pending: dict[tuple[str, int], list[tuple]] = {}

    def process(self, record):
        source = (record.topic, record.partition)
        pending = self._pending.get(source)
        if pending is None:
            pending = self._pending[source] = []
        pending.append((record.partition, record.offset, record.timestamp, record.key, record.value))
        if len(pending) >= self._max_batch:
            del self._pending[source]
            yield from self._parse_chunk(source, pending)

    def finish_bundle(self):
        for source, pending in self._pending.items():
            yield from self._parse_chunk(source, pending)
        self._pending = {}
        self._tally.flush()

    def _parse_chunk(self, source: tuple[str, int], pending: list[tuple]):
        """One partition's pending records -> its dead letters, then its batch of trades (if any), each
        in the global window, stamped with the chunk's earliest record time."""
        topic, partition = source
        trades, dead = parse_records(pending, topic, self._venues, self._max_skew_ms, self._tally,
                                     self._keep_before_ms)
        if dead:
            earliest = element_seconds(min(record_ms for _, _, record_ms, _, _ in pending))
            for letter in dead:
                yield beam.pvalue.TaggedOutput(DEADLETTER_TAG, WindowedValue(letter, earliest, (GlobalWindow(),)))
        if trades:
            yield _batch_value(topic, partition, trades)


def partition_key(topic: str, partition: int) -> str:
    """The key of a source partition's batches (and of its watermark state): ``topic/partition``."""
    return f"{topic}/{partition}"


def _batch_value(topic: str, partition: int, batch: list[Trade]) -> WindowedValue:
    """A batch element in the global window, stamped with its earliest event or record time."""
    earliest = min(min(trade.event_ms, trade.record_ms) for trade in batch)
    return WindowedValue((partition_key(topic, partition), batch), earliest / 1000.0, (GlobalWindow(),))


class ParseTrades(beam.PTransform):
    """Validate raw trade records: ``trades`` (per-partition batches) and ``deadletter`` (dicts).

    Every input record ends up in exactly one of the two outputs (or, with
    ``keep_before_ms``, is counted as ``outside_range``); Beam counters
    ``records_in``, ``trades_valid`` and ``deadletter_<reason>`` count them.
    Input: SourceRecord-like rows (Beam's ReadFromKafka, files). The darkpool
    Kafka reader's batches take :class:`~pipeline.transforms.lateness.ParseAndFilterPartitionBatches`.
    ``venues``: the MPIDs of the job's registry (a trade at any other venue is ``unknown_venue``).
    """

    def __init__(self, venues: Iterable[str], max_skew_ms: int, max_batch: int = 20_000,
                 keep_before_ms: int | None = None) -> None:
        super().__init__()
        self._fn = ParseAndBatchFn(venues, max_skew_ms, max_batch, keep_before_ms)

    def expand(self, records):
        outputs = records | "ValidateAndBatch" >> beam.ParDo(self._fn).with_output_types(
            TRADE_BATCH).with_outputs(DEADLETTER_TAG, main="trades")
        return {"trades": outputs.trades, "deadletter": outputs[DEADLETTER_TAG]}
