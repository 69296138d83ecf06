"""The too-late rule: count and dead-letter the trades the runner would drop as too late.

Beam drops data beyond the allowed lateness silently. To make
``in = aggregated + dead-lettered + too late`` reconcile, this step decides it
explicitly, before windowing, with the rule of :func:`pipeline.eventtime.is_too_late`:

    a trade is too late when, at its arrival, the watermark of its source
    partition has reached the end of its earliest window (the end of its
    one-period slot) plus the allowed lateness.

Such a trade is removed from *all* its windows (never a partial drop), counted
(Beam counter ``too_late``) and written to the dead-letter output with reason
``too_late``. KafkaIO's CreateTime watermark of a partition is the largest
record timestamp read so far (capped at the wall clock), so this stateful
DoFn, keyed by source partition, keeps exactly that maximum in keyed state (it survives checkpoints
and restarts). Watermarks flow in order behind the records, so the runner's
watermark at the window step is never ahead of this estimate and never drops a
trade that passed here. (Exception, documented: KafkaIO moves an idle, caught-up
partition's watermark to the wall clock; records produced with event times far
in the past into a live pipeline can then be dropped by the runner uncounted.)

Two transforms apply it (same rule, :func:`split_too_late`):

- :class:`ParseAndFilterPartitionBatches`: for the default Kafka reader's
  ``(partition, record batch)`` elements, parsing and the rule in one keyed step;
- :class:`FilterTooLate`: after :class:`~pipeline.transforms.parse.ParseTrades`
  (Beam's ReadFromKafka rows, or a file in a test), keyed by ``topic/partition``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import apache_beam as beam
import orjson
from apache_beam.coders import VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from darkpool.contracts import REASON_TOO_LATE, format_event_time
from pipeline import eventtime
from pipeline.codec import RECORD_BATCH, TRADE_BATCH
from pipeline.records import Trade
from pipeline.transforms.parse import (
    DEADLETTER_TAG,
    METRICS_NAMESPACE,
    ParseTally,
    deadletter_record,
    parse_record_batch,
    partition_key,
)

TOO_LATE_TAG = "too_late"
# per source partition: the latest record time seen (the partition watermark estimate)
PARTITION_WATERMARK = ReadModifyWriteStateSpec("partition_watermark", VarIntCoder())


def trade_json(trade: Trade) -> bytes:
    """The trade as a contract JSON record (re-encoded from the parsed fields)."""
    return orjson.dumps({
        "trade_id": trade.trade_id, "event_time": format_event_time(trade.event_ms),
        "symbol": trade.symbol, "venue": trade.venue, "price": trade.price,
        "quantity": trade.quantity, "side": trade.side,
    })


def split_too_late(topic: str, partition: int, trades: list[Trade], watermark: int | None, period_ms: int,
                   allowed_lateness_ms: int, now_ms: int) -> tuple[list[Trade], list[dict], int | None]:
    """One partition's trades in arrival order -> (kept trades, too-late dead letters, new partition watermark).

    The watermark advances with each kept trade's record time, capped at ``now_ms``:
    like KafkaIO's CreateTime policy, a future-stamped record never moves it past now
    (one record stamped an hour ahead would otherwise make the next hour of trades too late).
    """
    kept: list[Trade] = []
    dead: list[dict] = []
    is_too_late = eventtime.is_too_late
    for trade in trades:
        if is_too_late(trade.event_ms, watermark, period_ms, allowed_lateness_ms):
            dead.append(deadletter_record(
                REASON_TOO_LATE,
                f"partition watermark {format_event_time(watermark)} had passed the end of its first "
                f"window + allowed lateness",
                trade_json(trade), trade.symbol.encode(), topic, partition, trade.offset,
                raw_encoding="json-reencoded"))
            continue
        kept.append(trade)
        record_ms = min(trade.record_ms, now_ms)
        if watermark is None or record_ms > watermark:
            watermark = record_ms
    return kept, dead, watermark


def filter_too_late(topic: str, partition: int, trades: list[Trade], watermark_state, period_ms: int,
                    allowed_lateness_ms: int, too_late_counter) -> tuple[list[Trade], list[dict]]:
    """:func:`split_too_late` against a partition's watermark in keyed state: reads and updates the
    state, counts the too-late trades; returns (kept trades, too-late dead letters)."""
    kept, dead, watermark = split_too_late(topic, partition, trades, watermark_state.read(), period_ms,
                                           allowed_lateness_ms, int(time.time() * 1000))
    if watermark is not None:
        watermark_state.write(watermark)
    if dead:
        too_late_counter.inc(len(dead))
    return kept, dead


class FilterTooLateFn(beam.DoFn):
    """Per source partition: track the watermark (max record timestamp) and split off too-late trades."""

    def __init__(self, period_ms: int, allowed_lateness_ms: int) -> None:
        self._period_ms = period_ms
        self._lateness_ms = allowed_lateness_ms

    def setup(self) -> None:
        self._too_late_counter = Metrics.counter(METRICS_NAMESPACE, "too_late")

    def process(self, element, watermark_state=beam.DoFn.StateParam(PARTITION_WATERMARK)):  # noqa: B008 - Beam idiom
        key, trades = element
        topic, _, partition = key.rpartition("/")
        kept, dead = filter_too_late(topic, int(partition), trades, watermark_state, self._period_ms,
                                     self._lateness_ms, self._too_late_counter)
        for record in dead:
            yield beam.pvalue.TaggedOutput(TOO_LATE_TAG, record)
        if kept:
            yield key, kept


class ParseAndFilterPartitionBatchFn(beam.DoFn):
    """(partition, record batch) from the darkpool Kafka reader -> parsed, too-late-checked trades, in one step.

    Keyed by source partition, so it parses the raw batch and tracks the
    partition's watermark in the same stateful step: the trades never cross a
    shuffle between parsing and the too-late rule, and a record passes one
    Python stage fewer on its way to the windows. Main output: ``(partition
    key, [Trade, ...])``; tagged ``deadletter``: parse rejections and too-late
    trades. ``venues``: the MPIDs of the job's registry. ``too_late_filter``
    False (bounded runs) skips the rule.
    """

    def __init__(self, topic: str, venues: Iterable[str], max_skew_ms: int, period_ms: int,
                 allowed_lateness_ms: int, too_late_filter: bool = True, keep_before_ms: int | None = None) -> None:
        self._topic = topic
        self._venue_mpids = tuple(sorted(venues))
        self._max_skew_ms = max_skew_ms
        self._period_ms = period_ms
        self._lateness_ms = allowed_lateness_ms
        self._too_late_filter = too_late_filter
        self._keep_before_ms = keep_before_ms

    def setup(self) -> None:
        self._venues = frozenset(self._venue_mpids)
        self._tally = ParseTally()
        self._too_late_counter = Metrics.counter(METRICS_NAMESPACE, "too_late")

    def process(self, element, watermark_state=beam.DoFn.StateParam(PARTITION_WATERMARK)):  # noqa: B008 - Beam idiom
        partition, batch = element
        trades, dead = parse_record_batch(batch, self._topic, self._venues, self._max_skew_ms, self._tally,
                                          self._keep_before_ms)
        for record in dead:
            yield beam.pvalue.TaggedOutput(DEADLETTER_TAG, record)
        if self._too_late_filter and trades:
            trades, too_late = filter_too_late(self._topic, partition, trades, watermark_state, self._period_ms,
                                               self._lateness_ms, self._too_late_counter)
            for record in too_late:
                yield beam.pvalue.TaggedOutput(DEADLETTER_TAG, record)
        if trades:
            yield partition_key(self._topic, partition), trades

    def finish_bundle(self) -> None:
        self._tally.flush()


class FilterTooLate(beam.PTransform):
    """Split per-partition trade batches into on-time-enough batches (main) and ``too_late`` dead letters.

    Input and main output: ``(partition key, [Trade, ...])`` in the global window.
    The rule is :func:`pipeline.eventtime.is_too_late`.
    """

    def __init__(self, period_ms: int, allowed_lateness_ms: int) -> None:
        super().__init__()
        self._period_ms = period_ms
        self._lateness_ms = allowed_lateness_ms

    def expand(self, batches):
        outputs = batches | "TrackPartitionWatermark" >> beam.ParDo(
            FilterTooLateFn(self._period_ms, self._lateness_ms)
        ).with_input_types(TRADE_BATCH).with_output_types(TRADE_BATCH).with_outputs(TOO_LATE_TAG, main="trades")
        return {"trades": outputs.trades, "deadletter": outputs[TOO_LATE_TAG]}


class ParseAndFilterPartitionBatches(beam.PTransform):
    """(partition, record batch) -> ``trades`` (per-partition trade batches) and ``deadletter`` (dicts).

    The darkpool Kafka reader's path: ParseTrades and FilterTooLate in one keyed step
    (:class:`ParseAndFilterPartitionBatchFn`). Counters as both of them.
    """

    def __init__(self, topic: str, venues: Iterable[str], max_skew_ms: int, period_ms: int,
                 allowed_lateness_ms: int, too_late_filter: bool = True, keep_before_ms: int | None = None) -> None:
        super().__init__()
        self._fn = ParseAndFilterPartitionBatchFn(topic, venues, max_skew_ms, period_ms, allowed_lateness_ms,
                                                  too_late_filter, keep_before_ms)

    def expand(self, batches):
        outputs = batches | "ParseAndTrackPartitionWatermark" >> beam.ParDo(self._fn).with_input_types(
            RECORD_BATCH).with_output_types(TRADE_BATCH).with_outputs(DEADLETTER_TAG, main="trades")
        return {"trades": outputs.trades, "deadletter": outputs[DEADLETTER_TAG]}
