"""Sources: the trades topic through KafkaIO, a bounded range of it, or a trades file.

- :class:`ReadTradesFromKafka`: Java KafkaIO through the project's expansion
  service (started with ``--experiments=use_deprecated_read`` so the reader
  checkpoints on Flink), CreateTime timestamps (element time = record time,
  watermark = per-partition max record time), offsets committed to the
  consumer group when Flink finalizes a checkpoint (and only then: Kafka's
  auto-commit is switched off). Two readers, same records:

  - ``darkpool`` (default): the project's ``ReadTradeRecords`` transform
    (jvm/transforms), KafkaIO handing Python one ``(partition, bytes)`` element
    per partition per bundle, the records in a compact binary layout
    (:func:`pipeline.codec.decode_record_batch`) with each record's
    partition, offset and timestamp;
  - ``beam``: Beam's own ``apache_beam.io.kafka.ReadFromKafka`` with metadata:
    one schema Row per record (:class:`~pipeline.records.SourceRecord` attributes).
    Same semantics, several times the cost per record.

  With ``range_start`` it is bounded: it starts at the first offset at or
  after that time and reads as many records as the topic held then (counted
  with confluent-kafka); the parse step keeps only records before ``range_end``.
- :class:`ReadTradesFile`: a CSV, JSON-lines or Parquet file of trades, read by
  the one trade-file reader (:mod:`darkpool.tradefile`, docs/trade-files.md), as
  SourceRecords of one partition in file order (offset = the row's line), and
  a dead letter for each row it cannot read.
"""

from __future__ import annotations

import logging
import time
import typing
from pathlib import Path

import apache_beam as beam
import orjson
from apache_beam.io.kafka import ReadFromKafka
from apache_beam.transforms.external import ExternalTransform, NamedTupleBasedPayloadBuilder

from darkpool import tradefile
from darkpool.contracts import format_event_time
from darkpool.errors import DarkpoolError
from darkpool.kafka_client import client_config, java_client_config
from darkpool.tradefile import RowError, Trade
from pipeline.options import KAFKA_READERS
from pipeline.records import SourceRecord
from pipeline.transforms.parse import DEADLETTER_TAG, ParseTally, deadletter_record

PROGRESS_EVERY = 100_000
LOG = logging.getLogger(__name__)

# jvm/transforms/.../ReadTradeRecords.java (its batch layout: pipeline.codec.decode_record_batch)
READ_TRADE_RECORD_BATCHES_URN = "darkpool:transform:read_trade_record_batches:v2"


# --- Kafka -----------------------------------------------------------------------------
def count_records_since(bootstrap_servers: str, topic: str, start_ms: int, timeout: float = 15.0) -> int:
    """How many records the topic holds from the first offset at/after ``start_ms`` to its end, now."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({**client_config(), "bootstrap.servers": bootstrap_servers,
                         "group.id": f"darkpool-range-{time.time_ns()}", "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        topic_meta = metadata.topics.get(topic)
        if topic_meta is None or topic_meta.error is not None or not topic_meta.partitions:
            raise DarkpoolError(f"topic {topic} not found on {bootstrap_servers}", "create it with `darkpool topics`")
        partitions = [TopicPartition(topic, p, start_ms) for p in sorted(topic_meta.partitions)]
        starts = consumer.offsets_for_times(partitions, timeout=timeout)
        total = 0
        for start in starts:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, start.partition), timeout=timeout)
            if start.offset >= 0:  # -1: no record at or after start_ms in this partition
                total += max(0, high - start.offset)
        return total
    except KafkaException as exc:
        raise DarkpoolError(f"cannot read offsets of {topic} from {bootstrap_servers}: {exc}",
                            "is the broker running? (`darkpool kafka status`)") from exc
    finally:
        consumer.close()


# The expansion payload of ReadTradeRecords (Java setters setConsumerConfig, setTopics, ...).
# Functional NamedTuple syntax: the field types must be real typing objects for Beam's schema
# inference (this module's `from __future__ import annotations` would make class-syntax ones strings).
ReadTradeRecordsPayload = typing.NamedTuple("ReadTradeRecordsPayload", [  # noqa: UP014
    ("consumer_config", typing.Mapping[str, str]),
    ("topics", typing.List[str]),  # noqa: UP006
    ("start_read_time", typing.Optional[int]),  # noqa: UP045
    ("max_num_records", typing.Optional[int]),  # noqa: UP045
    ("commit_offset_in_finalize", bool),
])


class ReadTradesFromKafka(beam.PTransform):
    """Trades topic -> raw records, streaming or (with range_start) bounded.

    ``reader="darkpool"``: ``(partition, bytes)`` batches (:func:`pipeline.codec.decode_record_batch`);
    ``reader="beam"``: KafkaIO metadata rows. Records at or after the range end
    are dropped by the parse step (its ``keep_before_ms``), not here.
    """

    def __init__(self, bootstrap_servers: str, topic: str, group_id: str, expansion_service: str,
                 range_start: int | None = None, reader: str = "darkpool") -> None:
        super().__init__()
        if reader not in KAFKA_READERS:
            raise ValueError(f"unknown Kafka reader {reader!r}; use one of {KAFKA_READERS}")
        self._reader = reader
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._group_id = group_id
        self._expansion_service = expansion_service
        self._range_start = range_start

    def expand(self, pbegin):
        start_read_time = max_num_records = None
        if self._range_start is not None:
            max_num_records = count_records_since(self._bootstrap_servers, self._topic, self._range_start)
            if max_num_records == 0:
                raise DarkpoolError(f"no records in {self._topic} at or after "
                                    f"{format_event_time(self._range_start)}", "check --range-start")
            start_read_time = self._range_start
        consumer_config = {
            **java_client_config(),  # the configured authentication (darkpool/kafka_client.py), if any
            "bootstrap.servers": self._bootstrap_servers,
            "group.id": self._group_id,
            "auto.offset.reset": "earliest",
            # Offsets are committed only when Flink completes a checkpoint
            # (commit_offset_in_finalize). The cross-language ReadFromKafka does not
            # apply KafkaIO's Java defaults, so without this the Kafka client's default
            # (auto-commit every 5 s) commits records no checkpoint holds yet.
            "enable.auto.commit": "false",
        }
        commit = self._range_start is None
        if self._reader == "darkpool":
            payload = ReadTradeRecordsPayload(
                consumer_config=consumer_config, topics=[self._topic], start_read_time=start_read_time,
                max_num_records=max_num_records, commit_offset_in_finalize=commit)
            return pbegin | "ReadTradeRecords" >> ExternalTransform(
                READ_TRADE_RECORD_BATCHES_URN, NamedTupleBasedPayloadBuilder(payload), self._expansion_service)
        bounded = {}
        if self._range_start is not None:
            bounded = {"start_read_time": start_read_time, "max_num_records": max_num_records}
        return pbegin | "ReadFromKafka" >> ReadFromKafka(
            consumer_config=consumer_config,
            topics=[self._topic],
            timestamp_policy=ReadFromKafka.create_time_policy,
            with_metadata=True,
            commit_offset_in_finalize=commit,
            expansion_service=self._expansion_service,
            **bounded,
        )


# --- files -------------------------------------------------------------------------------
def file_record(trade: Trade, name: str) -> SourceRecord:
    """A readable row of file ``name`` -> a SourceRecord holding the contract trade JSON.

    Topic ``file:<name>``, partition 0, offset = the row's line, record time =
    the trade's event time, key = its symbol; a row without a trade_id gets
    ``<name>:<line>``.
    """
    value = orjson.dumps(trade.contract(f"{name}:{trade.line}"))
    return SourceRecord(topic=f"file:{name}", partition=0, offset=trade.line, timestamp=trade.event_ms,
                        key=trade.symbol.encode(), value=value)


def unreadable_row_letter(error: RowError) -> dict:
    """A row the reader could not read -> its darkpool.deadletter record.

    reason = the reader's, source_topic ``file:<name>``, source_offset = the
    line, detail ``<name>:<line>: <what is wrong>``, raw_value = the row.
    """
    return deadletter_record(reason=error.reason, detail=f"{error.where}: {error.detail}", value=error.raw,
                             key=None, topic=f"file:{error.file}", partition=0, offset=error.line)


class ReadTradeFileFn(beam.DoFn):
    """A trade file's path -> a SourceRecord per readable row (main) and a dead letter per unreadable row
    (tagged ``deadletter``), in file order, read by :mod:`darkpool.tradefile`.

    The unreadable rows never reach the parse step, so they are counted here,
    as the parse step counts its rejections: ``records_in`` and
    ``deadletter_<reason>`` (:class:`~pipeline.transforms.parse.ParseTally`).
    Logs progress every PROGRESS_EVERY rows.
    """

    def __init__(self, fmt: str | None = None) -> None:
        self._fmt = fmt

    def setup(self) -> None:
        self._tally = ParseTally()

    def process(self, path: str):
        name = Path(path).name
        tally = self._tally
        for count, row in enumerate(tradefile.read_rows(path, self._fmt), start=1):
            if type(row) is Trade:
                yield file_record(row, name)
            else:
                tally.records += 1
                tally.reject(row.reason)
                yield beam.pvalue.TaggedOutput(DEADLETTER_TAG, unreadable_row_letter(row))
            if count % PROGRESS_EVERY == 0:
                LOG.info("backfill: read %s rows of %s", f"{count:,}", path)
                tally.flush()
        tally.flush()


class ReadTradesFile(beam.PTransform):
    """A trade file -> ``{"records": SourceRecords, "deadletter": dead letters of its unreadable rows}``.

    One partition, file order, for bounded backfill. The file's format and
    columns are checked when the transform is built (a DarkpoolError then, not a
    failed run); a row that cannot be read is dead-lettered with its reason and
    line and never stops the run.
    """

    def __init__(self, path: Path, fmt: str | None = None) -> None:
        super().__init__()
        checked = tradefile.open_trade_file(path, fmt)
        self._path = str(checked.path)
        self._fmt = checked.format

    def expand(self, pbegin):
        rows = (
            pbegin
            | "FilePath" >> beam.Create([self._path])
            | "ReadRows" >> beam.ParDo(ReadTradeFileFn(self._fmt)).with_outputs(DEADLETTER_TAG, main="records")
        )
        return {"records": rows.records, "deadletter": rows[DEADLETTER_TAG]}
