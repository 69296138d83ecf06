"""Sinks: Kafka topics (Beam's WriteToKafka) and the Parquet dataset (and JSON-lines dead letters).

Parquet: ``<root>/<table>/date=YYYY-MM-DD/part-<emitted ms>-<uuid>.parquet``
(Hive partitioning by the window_start date; table is ``liquidity`` or
``market``), explicit schema from darkpool.contracts, one row per pane. Rows
are collected per bundle and date, then buffered per (table, date) in keyed
state (a file at ``batch_rows`` rows, or ``flush_seconds`` of processing time
after the first buffered row, or when a bounded input ends; a file never holds
more than ``batch_rows`` rows), and
each batch appears whole or not at all (darkpool.storage): in a local folder it
is written to a hidden temporary file (``.part-...parquet.tmp``, ignored by
pyarrow, DuckDB globs on ``*.parquet`` and Spark) that is renamed into place
atomically; under an ``s3://`` root it is encoded in memory and stored with one
PUT (an object is visible only once its PUT completed; S3 has no rename). The
S3 endpoint and credentials come from the workers' Settings (``DARKPOOL_S3_*``),
never from the pipeline's arguments.

A restarted pipeline may re-emit panes it had emitted before its last
checkpoint: rows are at-least-once; readers keep the latest pane per key
(window_start, symbol[, venue]) by pane_index/emitted_at, as they would anyway.
"""

from __future__ import annotations

import pickle
import time
import uuid

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.coders import BytesCoder, VarIntCoder
from apache_beam.io.kafka import WriteToKafka
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from darkpool import storage
from darkpool.config import load_settings
from darkpool.contracts import PARQUET_PARTITION_FIELD
from darkpool.kafka_client import java_client_config
from darkpool.schema import KIND_TIME, kind_of
from pipeline.codec import DATED_ROWS
from pipeline.transforms.parse import METRICS_NAMESPACE

BYTE_ARRAY_SERIALIZER = "org.apache.kafka.common.serialization.ByteArraySerializer"


def rows_to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Contract records (ISO-8601 strings for times) -> an Arrow table in the given schema."""
    columns = []
    for field in schema:
        values = [row.get(field.name) for row in rows]
        if kind_of(field.type) == KIND_TIME:
            columns.append(pa.array(values, pa.string()).cast(field.type))
        else:
            columns.append(pa.array(values, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def part_name(suffix: str) -> str:
    """A new file name: ``part-<epoch ms>-<random>.<suffix>`` (unique, and sorted by write time)."""
    return f"part-{int(time.time() * 1000)}-{uuid.uuid4().hex[:12]}.{suffix}"


def parquet_bytes(rows: list[dict], schema: pa.Schema) -> bytes:
    """Rows as one complete Parquet file (zstd), in memory."""
    sink = pa.BufferOutputStream()
    pq.write_table(rows_to_table(rows, schema), sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def write_parquet_atomically(rows: list[dict], schema: pa.Schema, directory: storage.Location,
                             client: storage.S3Client | None = None) -> storage.Location:
    """Write rows as one Parquet file in ``directory`` (a folder, or s3:// with ``client``), whole or not at all."""
    return storage.write_atomically(directory, part_name("parquet"), parquet_bytes(rows, schema), client)


def write_jsonl_atomically(rows: list[dict], directory: storage.Location,
                           client: storage.S3Client | None = None) -> storage.Location:
    """Write rows as one JSON-lines file in ``directory`` (a folder, or s3:// with ``client``), whole or not at all."""
    data = b"".join(orjson.dumps(row) + b"\n" for row in rows)
    return storage.write_atomically(directory, part_name("jsonl"), data, client)


def _client_for(root: str) -> storage.S3Client | None:
    """The S3 client of the worker's Settings for an s3:// root (None for a folder)."""
    return storage.s3_client(load_settings()) if storage.is_s3(root) else None


def partition_key(record: dict) -> tuple[str, dict]:
    """Key a record by its date partition: the date of window_start (or of rejected_at)."""
    stamp = record.get("window_start") or record.get("rejected_at")
    return stamp[:10], record


class WriteParquetFileFn(beam.DoFn):
    """(date, [rows]) -> one Parquet file under <root>/<table>/date=<date>/."""

    def setup(self) -> None:
        self._files = Metrics.counter(METRICS_NAMESPACE, f"parquet_{self._table}_files")
        self._rows = Metrics.counter(METRICS_NAMESPACE, f"parquet_{self._table}_rows")
        self._client = _client_for(self._root)

    def __init__(self, root: str, table: str, schema: pa.Schema, batch_rows: int) -> None:
        self._root = root
        self._table = table
        self._schema = schema
        self._batch_rows = batch_rows

    def process(self, element):
        date, rows = element
        directory = storage.join(self._root, self._table, f"{PARQUET_PARTITION_FIELD}={date}")
        for chunk in split_rows(list(rows), self._batch_rows):
            path = write_parquet_atomically(chunk, self._schema, directory, self._client)
            self._files.inc()
            self._rows.inc(len(chunk))
            yield str(path)


class WriteJsonLinesFileFn(beam.DoFn):
    """(date, [rows]) -> one JSON-lines file under <root>/date=<date>/."""

    def __init__(self, root: str) -> None:
        self._root = root

    def setup(self) -> None:
        self._client = _client_for(self._root)

    def process(self, element):
        date, rows = element
        directory = storage.join(self._root, f"{PARQUET_PARTITION_FIELD}={date}")
        yield str(write_jsonl_atomically(list(rows), directory, self._client))


class BundleRowsFn(beam.DoFn):
    """Records -> (date, [records]) per date per bundle, in the global window.

    Collecting rows inside the bundle first means the stateful buffer after it
    touches its state once per bundle and date, not once per row (each state
    access is a round trip to the runner when the worker has no state cache).
    """

    def __init__(self, max_rows: int) -> None:
        self._max_rows = max_rows

    def start_bundle(self) -> None:
        self._rows: dict[str, list] = {}
        self._earliest: dict[str, Timestamp] = {}

    def process(self, record, timestamp=beam.DoFn.TimestampParam):  # noqa: B008 - Beam idiom
        date, _ = partition_key(record)
        rows = self._rows.setdefault(date, [])
        rows.append(record)
        if date not in self._earliest or timestamp < self._earliest[date]:
            self._earliest[date] = timestamp
        if len(rows) >= self._max_rows:
            yield WindowedValue((date, rows), self._earliest.pop(date), (GlobalWindow(),))
            del self._rows[date]

    def finish_bundle(self):
        for date, rows in self._rows.items():
            yield WindowedValue((date, rows), self._earliest[date], (GlobalWindow(),))
        self._rows = {}
        self._earliest = {}


class BufferRowsFn(beam.DoFn):
    """Stateful, per date: buffer row lists until ``batch_rows`` rows or ``flush_seconds`` have passed.

    Emits (date, [rows]); a bounded run flushes what is left when the input ends.
    """

    # each bundle's rows as ONE pickled blob: Beam's state cache sizes every cached element with objsize
    # at every commit, so a bag of row dicts cost time quadratic in the rows buffered per flush (47% of the
    # busiest SDK worker's samples at 2,000 trades/s); a bag of bytes is sized in a few steps
    BUFFER = BagStateSpec("rows", BytesCoder())
    COUNT = ReadModifyWriteStateSpec("row_count", VarIntCoder())
    END_TIMER = TimerSpec("input_end", TimeDomain.WATERMARK)
    FLUSH_TIMER = TimerSpec("flush", TimeDomain.REAL_TIME)

    def __init__(self, batch_rows: int, flush_seconds: float, clock=time.time) -> None:
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        self._clock = clock  # processing time in seconds; tests pass the TestStream clock's origin

    def process(self, element, win=beam.DoFn.WindowParam,  # noqa: B008 - Beam idiom
                buffer=beam.DoFn.StateParam(BUFFER), count=beam.DoFn.StateParam(COUNT),  # noqa: B008
                end_timer=beam.DoFn.TimerParam(END_TIMER),  # noqa: B008
                flush_timer=beam.DoFn.TimerParam(FLUSH_TIMER)):  # noqa: B008
        date, rows = element
        end_timer.set(win.max_timestamp())
        buffered = count.read() or 0
        if buffered == 0:
            flush_timer.set(Timestamp.of(self._clock() + self._flush_seconds))
        buffer.add(pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL))
        buffered += len(rows)
        count.write(buffered)
        if buffered >= self._batch_rows:
            yield from self._flush(date, buffer, count, flush_timer)

    @on_timer(END_TIMER)
    def on_input_end(self, key=beam.DoFn.KeyParam, buffer=beam.DoFn.StateParam(BUFFER),  # noqa: B008
                     count=beam.DoFn.StateParam(COUNT), flush_timer=beam.DoFn.TimerParam(FLUSH_TIMER)):  # noqa: B008
        """The input ended (bounded run, or the end of a TestStream): write what is buffered."""
        yield from self._flush(key, buffer, count, flush_timer)

    @on_timer(FLUSH_TIMER)
    def on_flush(self, key=beam.DoFn.KeyParam, buffer=beam.DoFn.StateParam(BUFFER),  # noqa: B008
                 count=beam.DoFn.StateParam(COUNT), flush_timer=beam.DoFn.TimerParam(FLUSH_TIMER)):  # noqa: B008
        """flush_seconds of processing time since the first buffered row: write what is buffered."""
        yield from self._flush(key, buffer, count, flush_timer)

    @staticmethod
    def _flush(date, buffer, count, flush_timer):
        rows = [row for blob in buffer.read() for row in pickle.loads(blob)]
        buffer.clear()
        count.clear()
        flush_timer.clear()
        if rows:
            yield date, rows


class _BatchByDate(beam.PTransform):
    """Records -> (date, [records]) batches of about batch_rows rows, flushed every flush_seconds."""

    def __init__(self, batch_rows: int, flush_seconds: float, clock=time.time) -> None:
        super().__init__()
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        self._clock = clock

    def expand(self, pcoll):
        return (
            pcoll
            | "GlobalWindow" >> beam.WindowInto(GlobalWindows())
            | "RowsPerBundle" >> beam.ParDo(BundleRowsFn(self._batch_rows)).with_output_types(DATED_ROWS)
            | "BufferPerDate" >> beam.ParDo(BufferRowsFn(self._batch_rows, self._flush_seconds, self._clock))
            .with_input_types(DATED_ROWS)
        )


def split_rows(rows: list, batch_rows: int) -> list[list]:
    """Rows -> consecutive chunks of at most ``batch_rows``."""
    return [rows[i:i + batch_rows] for i in range(0, len(rows), batch_rows)]


class WriteParquet(beam.PTransform):
    """Contract records -> a Hive-partitioned Parquet table, files appearing atomically as the stream runs."""

    def __init__(self, root: storage.Location, table: str, schema: pa.Schema, batch_rows: int, flush_seconds: float,
                 clock=time.time) -> None:
        super().__init__()
        self._root = str(root)
        self._table = table
        self._schema = schema
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds
        self._clock = clock

    def expand(self, records):
        return (
            records
            | "BatchByDate" >> _BatchByDate(self._batch_rows, self._flush_seconds, self._clock)
            | "WriteFile" >> beam.ParDo(WriteParquetFileFn(self._root, self._table, self._schema, self._batch_rows))
        )


class WriteJsonLines(beam.PTransform):
    """Records (dead letters) -> JSON-lines files under <root>/date=YYYY-MM-DD/, atomically."""

    def __init__(self, root: storage.Location, batch_rows: int, flush_seconds: float) -> None:
        super().__init__()
        self._root = str(root)
        self._batch_rows = batch_rows
        self._flush_seconds = flush_seconds

    def expand(self, records):
        return (
            records
            | "BatchByDate" >> _BatchByDate(self._batch_rows, self._flush_seconds)
            | "WriteFile" >> beam.ParDo(WriteJsonLinesFileFn(self._root))
        )


class WriteKafkaRecords(beam.PTransform):
    """Contract records -> a Kafka topic through Beam's WriteToKafka (Java KafkaIO, expansion service).

    ``to_kv`` maps a record to its (key, JSON value) bytes (see pipeline.transforms.format).
    """

    def __init__(self, bootstrap_servers: str, topic: str, to_kv, expansion_service: str) -> None:
        super().__init__()
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._to_kv = to_kv
        self._expansion_service = expansion_service

    def expand(self, records):
        return (
            records
            | "ToKeyValue" >> beam.Map(self._to_kv).with_output_types(tuple[bytes, bytes])
            | "WriteToKafka" >> WriteToKafka(
                producer_config={**java_client_config(), "bootstrap.servers": self._bootstrap_servers},
                topic=self._topic,
                key_serializer=BYTE_ARRAY_SERIALIZER,
                value_serializer=BYTE_ARRAY_SERIALIZER,
                expansion_service=self._expansion_service,
            )
        )
