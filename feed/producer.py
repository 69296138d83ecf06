"""Publishing batches: an idempotent confluent-kafka producer, delivery accounting, progress.

:func:`publish_batches` sends :class:`~feed.generator.EncodedBatch` objects
(key = symbol, value = the trade's JSON text, record timestamp = event time)
and returns a :class:`~feed.summary.FeedSummary`; :func:`publish` does the
same for an iterable of :class:`~feed.generator.TapeRecord` (the simple API
for tests). Tape files are :mod:`feed.tape`, the topic check and creation
:mod:`feed.topic_admin`, live pacing :mod:`feed.live`.

Delivery accounting: ``sent`` counts records handed to the producer, ``failed``
the delivery reports with an error, ``acked`` the records the broker
acknowledged. With ``delivery_reports="all"`` (default) every record gets a
delivery report and ``acked`` counts the successful ones; with ``"errors"``
librdkafka reports failures only and ``acked`` = sent - failed - still queued,
which is exact once the final flush has emptied the queue (and is cheaper).

A broker outage (a restart, a network cut): librdkafka keeps every record it
was handed in its queue and retries it, with the idempotent producer's sequence
numbers, so a record the broker wrote before the cut and that is retried after
it is stored once. :class:`BrokerWatch` logs when the broker became unreachable
and when the first acknowledgement after it arrived. A record expires (a failed
delivery) only after ``message_timeout_ms`` (default 5 minutes), and the queue
holds ``queue_messages`` records (1,000,000: over 8 minutes at 2,000 trades/s),
so an outage shorter than both loses nothing; a longer one blocks the sender when
the queue is full (it waits for room) and fails records only past the timeout.

A producer that stays stuck after the broker is back: librdkafka (2.16, and
every version with KIP-951's leader hints) can leave a partition without a
leader for good when a produce response said "leader -1" (a single broker's
controlled shutdown does that) - its queued records then never leave, although
the broker answers. :class:`BrokerWatch` tells this from an outage (the broker
answers metadata with a leader for every partition, yet nothing is acknowledged
for two stall periods) and :meth:`Publisher.rebuild` purges the records still
queued, lets the ones in flight finish, creates a new producer and hands the
purged ones to it in their order. In the stuck case no purged record reached a
leader; a record queued again after a request that timed out might have, and
could then be stored twice (docs/reliability.md).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from darkpool.errors import DarkpoolError
from darkpool.kafka_client import client_config
from feed.generator import F_DUP, FAULT_LABELS, EncodedBatch, TapeRecord
from feed.summary import FeedSummary, FeedTotals
from feed.tape import TapeWriter
from feed.topic_admin import ensure_topic

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
    message_timeout_ms: int = 300_000  # = delivery.timeout.ms: how long a record may wait for the broker
    reconnect_backoff_max_ms: int = 1_000  # retry a lost broker at least every second (librdkafka: 10 s)
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
            "reconnect.backoff.ms": min(100, self.reconnect_backoff_max_ms),
            "reconnect.backoff.max.ms": self.reconnect_backoff_max_ms,
            "partitioner": "murmur2_random",  # the Java client's partitioner: same key -> same partition
            "delivery.report.only.error": self.delivery_reports == "errors",
            "logger": _RDKAFKA_LOG,
        }


def _clock_text(epoch_s: float) -> str:
    """Wall-clock time as ISO-8601 UTC with milliseconds (what the outage log lines show)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s))
    return f"{stamp}.{int(epoch_s * 1000) % 1000:03d}Z"


@dataclass(frozen=True)
class Outage:
    """A time the broker was unreachable: from librdkafka's all-brokers-down report to the next ack."""

    down_at: float  # epoch seconds
    back_at: float  # epoch seconds: the first successful delivery report after it
    queued_at_back: int  # records waiting in the producer's queue when it came back

    @property
    def seconds(self) -> float:
        return self.back_at - self.down_at


class BrokerWatch:
    """Says when the broker became unreachable and when it answered again.

    The producer's ``error_cb`` reports ``_ALL_BROKERS_DOWN`` (librdkafka lost
    every broker connection); the first successful delivery report after that
    ends the outage. Both are logged (WARNING) with the wall-clock time.
    """

    def __init__(self, queued: Callable[[], int] = lambda: 0, stall_s: float = 10.0) -> None:
        self.queued = queued  # how many records wait in the producer's queue (set once the producer exists)
        self.down_since: float | None = None
        self.outages: list[Outage] = []
        self.stall_s = stall_s
        self._acked_seen = -1
        self._progress_at = time.monotonic()
        self._next_probe = 0.0
        self._answered = 0  # metadata probes in a row that answered with every leader, still no ack

    def check(self, producer: Producer, topic: str, acked: int) -> bool:
        """Called as the feed sends: records queued and no acknowledgement for ``stall_s`` seconds -> ask the
        broker for the topic's metadata (at most every ``stall_s``). No answer is an outage (librdkafka does
        not always report one). An answer with a leader for every partition, on two probes in a row with
        still no acknowledgement, means the producer itself is stuck: returns True (rebuild it)."""
        now = time.monotonic()
        if acked != self._acked_seen or not len(producer):
            if acked > self._acked_seen >= 0 and self.down_since is not None:
                self.on_ack()  # delivery reports of errors only: a rising count ends the outage
            self._acked_seen, self._progress_at, self._answered = acked, now, 0
            return False
        if now - self._progress_at < self.stall_s or now < self._next_probe:
            return False
        self._next_probe = now + self.stall_s
        try:
            metadata = producer.list_topics(topic, timeout=2.0).topics[topic]
            if metadata.error is not None:
                raise KafkaException(metadata.error)
        except KafkaException as exc:
            self._answered = 0
            if self.down_since is None:
                self.down_since = time.time()
                log.warning("feed: broker unreachable at %s (no acknowledgement for %.0f s, and no answer to a "
                            "metadata request: %s); %d records queued, librdkafka retries them",
                            _clock_text(self.down_since), now - self._progress_at, exc, len(producer))
            return False
        leaders = [partition.leader for partition in metadata.partitions.values()]
        if not leaders or min(leaders) < 0:
            self._answered = 0
            log.warning("feed: no acknowledgement for %.0f s with %d records queued; the broker answers but "
                        "elects partition leaders", now - self._progress_at, len(producer))
            return False
        self._answered += 1
        log.warning("feed: no acknowledgement for %.0f s with %d records queued although the broker answers "
                    "with a leader for every partition (%d probe(s) in a row)",
                    now - self._progress_at, len(producer), self._answered)
        return self._answered >= 2

    def rebuilt(self) -> None:
        """The producer was replaced: the stall clock starts again."""
        self._answered, self._progress_at, self._acked_seen = 0, time.monotonic(), -1

    def on_error(self, err: KafkaError) -> None:
        """librdkafka's error callback (from poll/flush): outages are reported, the rest logged."""
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            if self.down_since is None:
                self.down_since = time.time()
                log.warning("feed: broker unreachable at %s (%s); %d records queued, sending continues into "
                            "the queue and librdkafka retries them", _clock_text(self.down_since), err.str(),
                            self.queued())
        elif err.fatal():
            log.error("feed: fatal producer error: %s", err.str())
        else:  # a refused connection, a timeout...: librdkafka's own log line (feed.rdkafka) says the same
            log.debug("feed: kafka reports %s", err.str())

    def on_ack(self) -> None:
        """A successful delivery report: ends an outage in progress."""
        if self.down_since is None:
            return
        back = time.time()
        outage = Outage(self.down_since, back, self.queued())
        self.outages.append(outage)
        self.down_since = None
        log.warning("feed: broker reachable again at %s: first acknowledgement %.1f s after it became "
                    "unreachable (%d records still queued)", _clock_text(back), outage.seconds,
                    outage.queued_at_back)


class DeliveryCounter:
    """The producer's delivery-report callback: counts acknowledged and failed records."""

    def __init__(self, watch: BrokerWatch | None = None) -> None:
        self.acked = 0
        self.failed = 0
        self.first_error: str | None = None
        self.watch = watch
        # while a stuck producer is rebuilt: the records purged from its queue, in order, to send again
        self.purged: list[tuple[bytes | None, bytes | None, int]] | None = None

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None and self.purged is not None and err.code() == KafkaError._PURGE_QUEUE:
            self.purged.append((msg.value(), msg.key(), msg.timestamp()[1]))
            return
        if err is None:
            self.acked += 1
            if self.watch is not None and self.watch.down_since is not None:
                self.watch.on_ack()
        else:
            self.failed += 1
            if self.first_error is None:
                self.first_error = err.str()
            if self.failed <= 5 or self.failed % 1000 == 0:
                log.warning("delivery failed (%d so far): %s", self.failed, err.str(),
                            extra={"topic": msg.topic(), "partition": msg.partition(), "code": err.name()})


class Progress:
    """A progress line on stderr at most every ``interval`` seconds (rewritten in place on a terminal).

    When stderr is not a terminal (a log file: the stack's services) and no stream is given, each
    update is a log record instead (``feed progress`` with the counts as fields, darkpool/logs.py)."""

    def __init__(self, enabled: bool = True, interval: float = 1.0, stream: IO[str] | None = None) -> None:
        self.enabled = enabled
        self.interval = interval
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._next = self.started + interval
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._as_log = stream is None and not self._tty
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
        if self._as_log:
            log.info("feed progress", extra={"elapsed_s": round(now - self.started, 1), "sent": sent,
                                             "rate_per_s": round(rate), "acked": acked, "failed": failed,
                                             "queued": queued})
            return
        line = (f"feed: {now - self.started:7.1f} s  sent {sent:>12,}  {rate:>10,.0f}/s  "
                f"acked {acked:>12,}  failed {failed:,}  queued {queued:,}")
        self.stream.write(("\r" + line) if self._tty else (line + "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._tty:
            self.stream.write("\n")
            self.stream.flush()


class Publisher:
    """Sends encoded batches with one idempotent producer; keeps counts and stats."""

    def __init__(self, bootstrap: str, topic: str, options: ProducerOptions | None = None,
                 progress: Progress | None = None, tape: TapeWriter | None = None) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.options = options or ProducerOptions()
        self.watch = BrokerWatch()
        self.delivery = DeliveryCounter(self.watch)
        self.producer = self._new_producer()
        self.rebuilds = 0
        self._retired: list[Producer] = []  # replaced producers whose records in flight have not finished
        self.progress = progress or Progress(enabled=False)
        self.tape = tape
        self.sent = 0
        self.stats = FeedTotals()

    def _new_producer(self) -> Producer:
        config = self.options.config(self.bootstrap)
        config["on_delivery"] = self.delivery
        config["error_cb"] = self.watch.on_error
        try:
            producer = Producer(config)
        except KafkaException as exc:
            raise DarkpoolError(f"cannot create a Kafka producer: {exc.args[0].str()}") from exc
        self.watch.queued = producer.__len__
        return producer

    def rebuild(self, in_flight_timeout: float | None = None) -> int:
        """Replace a stuck producer: purge its queued records, let the ones in flight finish (up to the message
        timeout), and hand the purged ones to a new producer in their order. Returns how many were moved.

        A purged record was queued, not in flight: in the stuck case (no leader taken up) it was never
        accepted by a broker. A record queued again for a retry after a request that timed out may have been
        written, though; a new producer id cannot deduplicate it (docs/reliability.md)."""
        old = self.producer
        timeout = self.options.message_timeout_ms / 1000 if in_flight_timeout is None else in_flight_timeout
        self.delivery.purged = purged = []
        try:
            old.purge(in_queue=True, in_flight=False, blocking=True)
            old.poll(0)  # serves the purged records' delivery reports (collected, not counted as failures)
            deadline = time.monotonic() + timeout
            while len(old) and time.monotonic() < deadline:
                old.poll(0.1)
        finally:
            self.delivery.purged = None
        in_flight = len(old)
        if in_flight:
            self._retired.append(old)  # still polled and flushed; its records count as queued
            log.error("feed: %d records of the stuck producer were still in flight after %.0f s; the queued ones "
                      "move on now, so a partition's order may break between the two", in_flight, timeout)
        self.producer = self._new_producer()
        for value, key, stamp in purged:
            while True:
                try:
                    self.producer.produce(self.topic, value, key, -1, None, None, stamp)
                    break
                except BufferError:
                    self.producer.poll(0.05)
        self.rebuilds += 1
        self.watch.rebuilt()
        log.warning("feed: the producer was stuck (a leader the broker has was never taken up again); a new "
                    "producer took over its %d queued records in order (%d still in flight in the old one)",
                    len(purged), in_flight, extra={"moved": len(purged), "in_flight": in_flight})
        return len(purged)

    @property
    def queued(self) -> int:
        """Records handed to a producer (the current one or a replaced one) and not yet reported."""
        return len(self.producer) + sum(len(old) for old in self._retired)

    @property
    def acked(self) -> int:
        if self.options.delivery_reports == "all":
            return self.delivery.acked
        return max(0, self.sent - self.delivery.failed - self.queued)

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
                produce = self.producer.produce  # waiting for room may have replaced a stuck producer
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
        for old in self._retired:
            old.poll(0)
        self._retired = [old for old in self._retired if len(old)]
        if self.watch.check(self.producer, self.topic, self.delivery.acked
                            if self.options.delivery_reports == "all" else self.sent - self.queued):
            self.rebuild()
        self.progress.update(self.sent, self.acked, self.delivery.failed, self.queued, force)

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for outstanding deliveries; returns how many remain."""
        deadline = time.monotonic() + timeout
        while self.queued and time.monotonic() < deadline:
            for producer in (*self._retired, self.producer):
                producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
            self._report()
        self._report(force=True)
        return self.queued

    def summary(self, elapsed: float, **meta: Any) -> FeedSummary:
        summary = FeedSummary(topic=self.topic, bootstrap=self.bootstrap, sent=self.sent, acked=self.acked,
                              failed=self.delivery.failed, unconfirmed=self.queued,
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
