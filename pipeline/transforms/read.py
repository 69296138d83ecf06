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
    (:func:`pipeline.records.decode_record_batch`) with each record's
    partition, offset and timestamp;
  - ``beam``: Beam's own ``apache_beam.io.kafka.ReadFromKafka`` with metadata:
    one schema Row per record (:class:`~pipeline.records.SourceRecord` attributes).
    Same semantics, several times the cost per record.

  With ``range_start`` it is bounded: it starts at the first offset at or
  after that time and reads as many records as the topic held then (counted
  with confluent-kafka); the parse step keeps only records before ``range_end``.
- :class:`ReadTradesFile`: a CSV (contract columns, or the seed layout
  ``timestamp, symbol, price, quantity, venue, side``; extra columns ignored),
  JSON-lines or Parquet file of trades, as SourceRecords of one partition in file order.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import time
import typing
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
import orjson
import pyarrow.parquet as pq
from apache_beam.io.kafka import ReadFromKafka
from apache_beam.transforms.external import ExternalTransform, NamedTupleBasedPayloadBuilder

from darkpool.contracts import format_event_time, parse_event_time
from darkpool.errors import DarkpoolError
from darkpool.kafka_client import client_config, java_client_config
from pipeline.options import INPUT_SUFFIXES, KAFKA_READERS
from pipeline.records import SourceRecord
from pipeline.transforms.parse import Rejected, event_time_ms

FILE_FORMATS = INPUT_SUFFIXES
PROGRESS_EVERY = 100_000
LOG = logging.getLogger(__name__)

# jvm/transforms/.../ReadTradeRecords.java (its batch layout: pipeline.records.decode_record_batch)
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

    ``reader="darkpool"``: ``(partition, bytes)`` batches (:func:`pipeline.records.decode_record_batch`);
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
def _event_time_text(value: object) -> str | None:
    """A file's time cell -> the contract's ISO-8601 text, or the raw text when it cannot be read.

    Accepts ISO-8601 (with 'Z', an offset, a space instead of 'T', or naive = UTC),
    epoch seconds or milliseconds, and datetime values (Parquet timestamps).
    """
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return format_event_time(int(round(aware.timestamp() * 1000)))
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            try:
                return format_event_time(parse_event_time(text))
            except ValueError:
                return text
    millis = number if number >= 1e11 else number * 1000.0  # epoch ms vs epoch seconds
    return format_event_time(int(round(millis)))


def _number(value: object) -> object:
    """A CSV cell -> int or float when it is one, else unchanged (validation dead-letters it)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return value


def row_to_record(row: dict, source: str, offset: int) -> SourceRecord:
    """A file row (contract or seed columns) -> a SourceRecord holding the trade as contract JSON."""
    time_text = _event_time_text(row["event_time"] if "event_time" in row else row.get("timestamp"))
    side = row.get("side")
    trade = {
        "trade_id": row.get("trade_id") or f"{source}-{offset}",
        "event_time": time_text,
        "symbol": row.get("symbol"),
        "venue": row.get("venue"),
        "price": _number(row.get("price")),
        "quantity": _number(row.get("quantity")),
        "side": side if side not in ("", None) else None,
    }
    try:
        record_ms = parse_event_time(time_text) if time_text else 0
    except ValueError:
        record_ms = 0
    symbol = trade["symbol"]
    key = symbol.encode() if isinstance(symbol, str) else None
    return SourceRecord(f"file:{source}", 0, offset, record_ms, key, orjson.dumps(trade))


def _jsonl_record(line: bytes, source: str, offset: int) -> SourceRecord:
    """A JSON line is the raw record value itself; its record timestamp is its event_time when readable."""
    record_ms = 0
    key = None
    try:
        data = orjson.loads(line)
        if isinstance(data, dict):
            key = data["symbol"].encode() if isinstance(data.get("symbol"), str) else None
            record_ms = event_time_ms(data.get("event_time"))
    except (orjson.JSONDecodeError, Rejected):
        pass  # the parse step dead-letters the record with its reason
    return SourceRecord(f"file:{source}", 0, offset, record_ms, key, line)


def read_trade_file(path: str) -> Iterator[SourceRecord]:
    """Every row of a trades file (CSV / JSON lines / Parquet) as a SourceRecord, in file order.

    Logs progress every PROGRESS_EVERY rows.
    """
    for count, record in enumerate(_read_rows(Path(path)), start=1):
        if count % PROGRESS_EVERY == 0:
            LOG.info("backfill: read %s rows of %s", f"{count:,}", path)
        yield record


def _read_rows(file: Path) -> Iterator[SourceRecord]:
    path = str(file)
    suffix = file.suffix.lower()
    source = file.name
    if suffix == ".csv":
        with open(file, newline="", encoding="utf-8") as handle:
            for offset, row in enumerate(csv.DictReader(handle, skipinitialspace=True)):
                cells = {k.strip(): v.strip() if isinstance(v, str) else v for k, v in row.items() if k}
                yield row_to_record(cells, source, offset)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        with open(file, "rb") as handle:
            offset = 0
            for line in handle:
                line = line.strip()
                if line:
                    yield _jsonl_record(line, source, offset)
                    offset += 1
    elif suffix == ".parquet":
        offset = 0
        for batch in pq.ParquetFile(file).iter_batches(batch_size=65_536):
            for row in batch.to_pylist():
                yield row_to_record(row, source, offset)
                offset += 1
    else:
        raise DarkpoolError(f"{path}: unsupported trades file type {suffix!r}",
                            f"use one of {', '.join(FILE_FORMATS)}")


class ReadTradesFile(beam.PTransform):
    """A trades file -> SourceRecords (one partition, file order), for bounded backfill."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = Path(path)
        if self._path.suffix.lower() not in FILE_FORMATS:
            raise DarkpoolError(f"{path}: unsupported trades file type", f"use one of {', '.join(FILE_FORMATS)}")

    def expand(self, pbegin):
        return (
            pbegin
            | "FilePath" >> beam.Create([str(self._path)])
            | "ReadRows" >> beam.FlatMap(read_trade_file)
        )
