"""Publishing the tape: an idempotent confluent-kafka producer, delivery accounting, progress, summary.

:func:`publish_batches` sends :class:`~feed.generator.EncodedBatch` objects
(key = symbol, value = the trade's JSON text, record timestamp = event time)
and returns a :class:`FeedSummary`; :func:`publish` does the same for an
iterable of :class:`~feed.generator.TapeRecord` (the simple API for tests).

Delivery accounting: ``sent`` counts records handed to the producer, ``failed``
the delivery reports with an error, ``acked`` the records the broker
acknowledged. With ``delivery_reports="all"`` (default) every record gets a
delivery report and ``acked`` counts the successful ones; with ``"errors"``
librdkafka reports failures only and ``acked`` = sent - failed - still queued,
which is exact once the final flush has emptied the queue (and is cheaper).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

from darkpool.contracts import DARK_VENUE_TYPES, load_venues
from darkpool.errors import DarkpoolError
from darkpool.kafka_client import client_config
from feed.generator import (
    F_DUP,
    FAULT_LABELS,
    EncodedBatch,
    TapeGenerator,
    TapeRecord,
)

log = logging.getLogger(__name__)

# librdkafka's own log lines (connection refused while a broker restarts, ...) go to this logger
_RDKAFKA_LOG = logging.getLogger("feed.rdkafka")


@dataclass(frozen=True)
class ProducerOptions:
    """Producer tuning, in one place. The defaults favour throughput with bounded latency."""

    linger_ms: float = 20.0
    batch_bytes: int = 1_000_000
    compression: str = "lz4"
    queue_messages: int = 1_000_000
    queue_kbytes: int = 1_048_576
    message_timeout_ms: int = 120_000
    delivery_reports: str = "all"  # "all" | "errors"

    def config(self, bootstrap: str) -> dict[str, Any]:
        """The confluent-kafka configuration dict (idempotent producer, acks=all)."""
        if self.delivery_reports not in ("all", "errors"):
            raise DarkpoolError(f"delivery reports must be 'all' or 'errors', got {self.delivery_reports!r}")
        return {
            **client_config(),  # the configured authentication (darkpool/kafka_client.py), if any
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": self.linger_ms,
            "batch.size": self.batch_bytes,
            "compression.type": self.compression,
            "queue.buffering.max.messages": self.queue_messages,
            "queue.buffering.max.kbytes": self.queue_kbytes,
            "message.timeout.ms": self.message_timeout_ms,
            "partitioner": "murmur2_random",  # the Java client's partitioner: same key -> same partition
            "delivery.report.only.error": self.delivery_reports == "errors",
            "logger": _RDKAFKA_LOG,
        }


@dataclass
class FeedSummary:
    """What a feed run did. ``faults`` maps fault label -> records sent with it."""

    topic: str
    bootstrap: str
    mode: str = "replay"
    seed: int | None = None
    sent: int = 0
    acked: int = 0
    failed: int = 0
    unconfirmed: int = 0
    elapsed_seconds: float = 0.0
    valid_trades: int = 0
    share_volume: int = 0
    dark_share: float | None = None
    by_venue: dict[str, dict[str, int]] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    first_event_time_ms: int | None = None
    last_event_time_ms: int | None = None
    first_error: str | None = None
    tape_out: str | None = None
    interrupted: bool = False

    @property
    def rate(self) -> float:
        """Records sent per second of wall-clock time."""
        return self.sent / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rate"] = round(self.rate, 1)
        return data

    def format(self) -> str:
        """A human-readable multi-line summary."""
        lines = [
            f"feed summary ({self.mode} -> {self.topic} at {self.bootstrap}"
            + (f", seed {self.seed}" if self.seed is not None else "") + ")",
            f"  sent {self.sent:,}  acknowledged {self.acked:,}  failed {self.failed:,}"
            + (f"  unconfirmed {self.unconfirmed:,}" if self.unconfirmed else "")
            + f"  in {self.elapsed_seconds:.2f} s ({self.rate:,.0f} records/s)"
            + ("  (interrupted)" if self.interrupted else ""),
            f"  valid trades {self.valid_trades:,}  shares {self.share_volume:,}"
            + (f"  dark share {self.dark_share:.1%}" if self.dark_share is not None else ""),
        ]
        if self.by_venue:
            lines.append("  by venue (trades / shares):")
            venues = load_venues()
            ranked = sorted(self.by_venue.items(), key=lambda item: -item[1]["shares"])
            for mpid, stats in ranked:
                kind = venues[mpid].venue_type if mpid in venues else "?"
                lines.append(f"    {mpid:<6} {kind:<8} {stats['trades']:>12,} {stats['shares']:>16,}")
        injected = {k: v for k, v in self.faults.items() if v}
        lines.append("  injected faults: " + (", ".join(f"{k} {v:,}" for k, v in sorted(injected.items()))
                                              if injected else "none"))
        if self.first_error:
            lines.append(f"  first delivery error: {self.first_error}")
        if self.tape_out:
            lines.append(f"  tape written to {self.tape_out}")
        return "\n".join(lines)


class DeliveryCounter:
    """The producer's delivery-report callback: counts acknowledged and failed records."""

    def __init__(self) -> None:
        self.acked = 0
        self.failed = 0
        self.first_error: str | None = None

    def __call__(self, err: KafkaError | None, msg: object) -> None:
        if err is None:
            self.acked += 1
        else:
            self.failed += 1
            if self.first_error is None:
                self.first_error = err.str()


class Progress:
    """A progress line on stderr at most every ``interval`` seconds (rewritten in place on a terminal)."""

    def __init__(self, enabled: bool = True, interval: float = 1.0, stream: IO[str] | None = None) -> None:
        self.enabled = enabled
        self.interval = interval
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._next = self.started + interval
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_sent = 0
        self._last_time = self.started

    def update(self, sent: int, acked: int, failed: int, queued: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now < self._next:
            return
        window = now - self._last_time
        rate = (sent - self._last_sent) / window if window > 0 else 0.0
        self._last_sent, self._last_time, self._next = sent, now, now + self.interval
        line = (f"feed: {now - self.started:7.1f} s  sent {sent:>12,}  {rate:>10,.0f}/s  "
                f"acked {acked:>12,}  failed {failed:,}  queued {queued:,}")
        self.stream.write(("\r" + line) if self._tty else (line + "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._tty:
            self.stream.write("\n")
            self.stream.flush()


# connection errors while probing are expected: keep librdkafka's log lines out of the console
_PROBE_LOG = logging.getLogger("feed.rdkafka.probe")
_PROBE_LOG.addHandler(logging.NullHandler())
_PROBE_LOG.propagate = False


def _admin(bootstrap: str, timeout: float):
    from confluent_kafka.admin import AdminClient

    return AdminClient({**client_config(), "bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout * 1000),
                        "logger": _PROBE_LOG})


def check_broker(bootstrap: str, timeout: float = 3.0) -> None:
    """Raise a clear DarkpoolError (which address, how to start it) when no broker answers."""
    try:
        _admin(bootstrap, timeout).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise DarkpoolError(
            f"no Kafka broker answers at {bootstrap} ({exc.args[0].str()})",
            hint="start the local broker with `darkpool kafka start` (or `darkpool stack up`), "
                 "or point --bootstrap at a running one") from exc


def ensure_topic(bootstrap: str, topic: str, partitions: int = 4, timeout: float = 30.0) -> None:
    """Check that a broker answers (clear error if not) and create the topic if it is missing.

    A new topic gets the product's settings for the trades topic
    (``darkpool.stack.topics.product_topic_specs``).
    """
    from confluent_kafka.admin import NewTopic

    from darkpool.stack.topics import product_topic_specs

    check_broker(bootstrap)
    admin = _admin(bootstrap, timeout)
    if topic in admin.list_topics(timeout=timeout).topics:
        return
    spec = product_topic_specs(trades=topic, partitions=partitions)[topic]
    future = admin.create_topics([NewTopic(topic, num_partitions=spec.partitions, replication_factor=1,
                                           config=spec.config)], request_timeout=timeout)[topic]
    try:
        future.result()
    except KafkaException as exc:
        if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
            raise DarkpoolError(f"creating topic {topic} at {bootstrap} failed: {exc.args[0].str()}") from exc


class _Stats:
    """Running totals for the summary, updated per batch with numpy."""

    def __init__(self) -> None:
        self.faults = np.zeros(len(FAULT_LABELS), dtype=np.int64)
        self.venue_trades: dict[str, int] = {}
        self.venue_shares: dict[str, int] = {}
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    def add(self, batch: EncodedBatch) -> None:
        if not len(batch):
            return
        self.faults += np.bincount(batch.faults, minlength=len(FAULT_LABELS))
        names = batch.venue_names
        valid_venues = batch.venue[batch.valid]
        trades = np.bincount(valid_venues, minlength=len(names))
        shares = np.bincount(valid_venues, weights=batch.qty[batch.valid], minlength=len(names))
        for i in np.flatnonzero(trades).tolist():
            name = names[i]
            self.venue_trades[name] = self.venue_trades.get(name, 0) + int(trades[i])
            self.venue_shares[name] = self.venue_shares.get(name, 0) + int(shares[i])
        lo, hi = min(batch.timestamps), max(batch.timestamps)
        self.first_ts = lo if self.first_ts is None else min(self.first_ts, lo)
        self.last_ts = hi if self.last_ts is None else max(self.last_ts, hi)

    def fill(self, summary: FeedSummary) -> None:
        venues = load_venues()
        summary.by_venue = {m: {"trades": self.venue_trades[m], "shares": self.venue_shares[m]}
                            for m in self.venue_trades}
        summary.valid_trades = sum(self.venue_trades.values())
        summary.share_volume = sum(self.venue_shares.values())
        dark = sum(v for m, v in self.venue_shares.items() if m in venues and venues[m].venue_type
                   in DARK_VENUE_TYPES)
        registry_total = sum(v for m, v in self.venue_shares.items() if m in venues)
        summary.dark_share = dark / registry_total if registry_total else None
        summary.faults = {label: int(n) for label, n in zip(FAULT_LABELS, self.faults.tolist(), strict=True)
                          if label is not None}
        summary.first_event_time_ms, summary.last_event_time_ms = self.first_ts, self.last_ts


class TapeWriter:
    """Writes every record actually sent as JSONL: key, timestamp_ms, value (text), fault."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def write(self, batch: EncodedBatch) -> None:
        dumps = orjson.dumps
        labels = [FAULT_LABELS[c] for c in batch.faults.tolist()]
        self.stream.write(b"".join(
            dumps({"key": k.decode("utf-8"), "timestamp_ms": t, "value": v, "fault": f}) + b"\n"
            for k, t, v, f in zip(batch.keys, batch.timestamps, batch.values, labels, strict=True)))


def read_tape(path: str | Path) -> Iterator[TapeRecord]:
    """Read a tape written with ``--tape-out`` back as TapeRecords."""
    with open(path, "rb") as stream:
        for line in stream:
            row = orjson.loads(line)
            yield TapeRecord(row["key"], row["timestamp_ms"], row["value"], row["fault"])


class Publisher:
    """Sends encoded batches with one idempotent producer; keeps counts and stats."""

    def __init__(self, bootstrap: str, topic: str, options: ProducerOptions | None = None,
                 progress: Progress | None = None, tape: TapeWriter | None = None) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.options = options or ProducerOptions()
        self.delivery = DeliveryCounter()
        config = self.options.config(bootstrap)
        config["on_delivery"] = self.delivery
        try:
            self.producer = Producer(config)
        except KafkaException as exc:
            raise DarkpoolError(f"cannot create a Kafka producer: {exc.args[0].str()}") from exc
        self.progress = progress or Progress(enabled=False)
        self.tape = tape
        self.sent = 0
        self.stats = _Stats()

    @property
    def acked(self) -> int:
        if self.options.delivery_reports == "all":
            return self.delivery.acked
        return max(0, self.sent - self.delivery.failed - len(self.producer))

    def send(self, batch: EncodedBatch) -> None:
        """Hand every record of the batch to the producer (waiting when its queue is full)."""
        produce, topic = self.producer.produce, self.topic
        # positional (topic, value, key, partition, callback, on_delivery, timestamp): about 30 % cheaper
        # per call than keyword arguments in confluent-kafka 2.16; partition -1 = the configured partitioner.
        # The delivery callback is the producer-wide default (config "on_delivery").
        for value, key, stamp in zip(batch.values, batch.keys, batch.timestamps, strict=True):
            try:
                produce(topic, value, key, -1, None, None, stamp)
            except BufferError:
                self._produce_when_room(value, key, stamp)
        self.sent += len(batch)
        self.stats.add(batch)
        if self.tape is not None:
            self.tape.write(batch)
        self.producer.poll(0)
        self._report()

    def _produce_when_room(self, value: str, key: bytes, stamp: int) -> None:
        """The producer's queue is full: serve delivery reports until the record fits."""
        while True:
            self.producer.poll(0.05)
            self._report()
            try:
                self.producer.produce(self.topic, value, key, -1, None, None, stamp)
                return
            except BufferError:
                continue

    def send_paced(self, batch: EncodedBatch, deadline: float | None) -> bool:
        """Send each record once the wall clock reaches its ``release`` time (epoch ms).

        Returns False when the deadline (monotonic seconds) passed before the batch was done.
        """
        release = batch.release
        assert release is not None
        i, n = 0, len(batch)
        while i < n:
            now_ms = time.time() * 1000.0
            j = int(np.searchsorted(release, now_ms, side="right"))
            if j > i:
                self.send(batch.slice(i, j))
                i = j
                continue
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self.producer.poll(min(0.05, max(0.0, (float(release[i]) - now_ms) / 1000.0)))
            self._report()
        return True

    def _report(self, force: bool = False) -> None:
        self.progress.update(self.sent, self.acked, self.delivery.failed, len(self.producer), force)

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for outstanding deliveries; returns how many remain."""
        deadline = time.monotonic() + timeout
        while len(self.producer) and time.monotonic() < deadline:
            self.producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
            self._report()
        self._report(force=True)
        return len(self.producer)

    def summary(self, elapsed: float, **meta: Any) -> FeedSummary:
        summary = FeedSummary(topic=self.topic, bootstrap=self.bootstrap, sent=self.sent, acked=self.acked,
                              failed=self.delivery.failed, unconfirmed=len(self.producer),
                              elapsed_seconds=elapsed, first_error=self.delivery.first_error, **meta)
        self.stats.fill(summary)
        return summary


def publish_batches(batches: Iterable[EncodedBatch], bootstrap: str, topic: str, *,
                    duration: float | None = None, pace: bool = False, tape_out: str | Path | None = None,
                    options: ProducerOptions | None = None, progress: bool | Progress = False,
                    create_topic: bool = True, partitions: int = 4, flush_timeout: float = 60.0,
                    **meta: Any) -> FeedSummary:
    """Publish encoded batches to ``topic``; returns the run's summary.

    ``duration`` stops after that many wall-clock seconds; ``pace`` sends each
    record no earlier than its ``release`` time (replay shifted to now);
    ``tape_out`` writes every record sent as JSONL. The broker is checked
    first (a clear DarkpoolError if none answers) and the topic created if
    missing (``create_topic``).
    """
    if create_topic:
        ensure_topic(bootstrap, topic, partitions)
    reporter = progress if isinstance(progress, Progress) else Progress(enabled=bool(progress))
    started = time.monotonic()
    deadline = started + duration if duration is not None else None
    with ExitStack() as stack:
        tape = None
        if tape_out is not None:
            Path(tape_out).parent.mkdir(parents=True, exist_ok=True)
            tape = TapeWriter(stack.enter_context(open(tape_out, "wb")))
        publisher = Publisher(bootstrap, topic, options, reporter, tape)
        interrupted = False
        try:
            for batch in batches:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if pace and batch.release is not None:
                    if not publisher.send_paced(batch, deadline):
                        break
                else:
                    publisher.send(batch)
        except KeyboardInterrupt:
            interrupted = True
            log.info("interrupted: flushing what was sent")
        finally:
            remaining = publisher.flush(flush_timeout)
            reporter.close()
    elapsed = time.monotonic() - started
    if remaining:
        log.warning("%d records were still unconfirmed after %.0f s", remaining, flush_timeout)
    return publisher.summary(elapsed, tape_out=str(tape_out) if tape_out else None, interrupted=interrupted, **meta)


def _label_code(label: str | None) -> int:
    try:
        return FAULT_LABELS.index(label)
    except ValueError as exc:
        raise DarkpoolError(f"unknown fault label {label!r}") from exc


def records_to_batches(records: Iterable[TapeRecord], size: int = 8192) -> Iterator[EncodedBatch]:
    """Group TapeRecords into EncodedBatches (venue and quantity parsed from valid values)."""
    names: dict[str, int] = {}
    chunk: list[TapeRecord] = []

    def flush(rows: list[TapeRecord]) -> EncodedBatch:
        faults = np.array([_label_code(r.fault) for r in rows], dtype=np.int8)
        valid = faults < F_DUP
        venue = np.zeros(len(rows), dtype=np.int64)
        qty = np.zeros(len(rows), dtype=np.int64)
        for i in np.flatnonzero(valid).tolist():
            try:
                trade = orjson.loads(rows[i].value)
                venue[i] = names.setdefault(str(trade["venue"]), len(names))
                qty[i] = int(trade["quantity"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                valid[i] = False  # a record labelled valid that does not parse: not counted as a trade
        return EncodedBatch(keys=[r.key.encode("utf-8") for r in rows], values=[r.value for r in rows],
                            timestamps=[int(r.timestamp_ms) for r in rows], faults=faults, venue=venue, qty=qty,
                            valid=valid, venue_names=np.array(list(names) or [""], dtype=object))

    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield flush(chunk)
            chunk = []
    if chunk:
        yield flush(chunk)


def publish(records: Iterable[TapeRecord], bootstrap: str, topic: str, **kwargs: Any) -> FeedSummary:
    """Publish TapeRecords (e.g. from :func:`feed.generator.generate_tape`); same options as publish_batches."""
    return publish_batches(records_to_batches(records), bootstrap, topic, **kwargs)


def live_batches(generator: TapeGenerator, rate: float, count: int | None = None,
                 tick: float = 0.05) -> Iterator[EncodedBatch]:
    """Live mode: prints stamped with the current time, ``rate`` per second, until ``count`` records.

    Every ``tick`` seconds the prints due since the last tick are generated,
    their event times spread evenly over that interval (never in the future).
    """
    if rate <= 0:
        raise DarkpoolError(f"--rate must be > 0, got {rate}")
    start = time.time()
    last_ms = int(start * 1000)
    due_total = 0
    produced = 0
    cap = generator.config.batch_size
    while count is None or produced < count:
        now = time.time()
        due = min(int(rate * (now - start)) - due_total, cap)
        if count is not None:
            due = min(due, count - produced)
        if due <= 0:
            time.sleep(min(tick, max(0.001, (due_total + 1) / rate - (now - start))))
            continue
        now_ms = max(int(now * 1000), last_ms)
        times = last_ms + (np.arange(1, due + 1, dtype=np.int64) * (now_ms - last_ms)) // due
        last_ms = now_ms
        due_total += due
        batch = generator.batch(times)
        if count is not None and len(batch) > count - produced:
            batch = batch.take(slice(0, count - produced))
        produced += len(batch)
        yield generator.encoder.encode(batch)
