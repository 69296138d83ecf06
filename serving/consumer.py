"""Background Kafka consumer that feeds the store from darkpool.liquidity and darkpool.market.

On start it assigns every partition of both topics from the beginning (no
consumer-group offsets: the topics are the state, compacted to the latest pane
per key), so a restarted server rebuilds exactly what it had. It notes the end
offsets at start; once it has read up to them on every partition it is *ready*
and from then on also pushes each new pane to the SSE hub. It keeps following
the topics; ``lag`` is refreshed from the broker every ``lag_check_s`` seconds,
and ``connected`` says whether the broker answered the last time it was asked.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from darkpool.kafka_client import client_config
from serving.metrics import Metrics
from serving.records import InvalidRecord, decode_pane
from serving.store import Store
from serving.stream import Hub

log = logging.getLogger(__name__)

TopicPart = tuple[str, int]


@dataclass
class ConsumerStatus:
    """What the consumer thread reports to /status, /ready and the metrics."""

    connected: bool = False
    ready: bool = False
    lag: int | None = None
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    rebuild_total: int = 0  # records between the start and end offsets seen at start
    records_read: int = 0


class PaneConsumer:
    """Reads both output topics into the store on a daemon thread (start/stop)."""

    def __init__(self, store: Store, hub: Hub, metrics: Metrics, bootstrap: str, topics: dict[str, str],
                 batch_size: int = 1000, poll_s: float = 0.25, lag_check_s: float = 5.0) -> None:
        self.store, self.hub, self.metrics = store, hub, metrics
        self.bootstrap = bootstrap
        self.topics = dict(topics)  # kind -> topic
        self.kind_of = {topic: kind for kind, topic in self.topics.items()}
        self.batch_size, self.poll_s, self.lag_check_s = batch_size, poll_s, lag_check_s
        self.status = ConsumerStatus()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._targets: dict[TopicPart, int] = {}  # end offsets at start
        self._positions: dict[TopicPart, int] = {}  # next offset to read
        self._invalid_logged = 0

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="darkpool-pane-consumer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the thread -------------------------------------------------------------
    def _run(self) -> None:
        log.info("consumer starting: bootstrap=%s topics=%s", self.bootstrap, ", ".join(self.topics.values()))
        backoff = 1.0
        while not self._stop.is_set():
            consumer = Consumer(self._config())
            try:
                self._assign_from_beginning(consumer)
                backoff = 1.0
                self._follow(consumer)
            except KafkaException as exc:
                self._set_disconnected(f"Kafka error: {exc}")
                log.warning("consumer: %s; retrying in %.0f s", exc, backoff)
            except _TopicsMissing as exc:
                self._set_disconnected(str(exc))
                log.warning("consumer: %s; retrying in %.0f s (create them with `darkpool topics`)", exc, backoff)
            finally:
                consumer.close()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)
        log.info("consumer stopped")

    def _config(self) -> dict[str, object]:
        return {
            **client_config(),  # the configured authentication (darkpool/kafka_client.py), if any
            "bootstrap.servers": self.bootstrap,
            "group.id": f"darkpool-serving-{id(self)}",  # never committed: partitions are assigned, not subscribed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
            "queued.max.messages.kbytes": 65536,
            "client.id": "darkpool-serving",
            "error_cb": self._on_error,
        }

    def _on_error(self, err: KafkaError) -> None:
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self._set_disconnected(f"broker unreachable: {err.str()}")
        log.warning("consumer: kafka reports %s", err.str())

    def _set_disconnected(self, reason: str) -> None:
        self.status.connected = False
        self.status.error = reason
        self.metrics.connected.set(0)

    def _set_connected(self) -> None:
        self.status.connected = True
        self.status.error = None
        self.metrics.connected.set(1)

    def _assign_from_beginning(self, consumer: Consumer) -> None:
        """Find every partition of both topics, note their end offsets at first start, and assign them."""
        partitions: list[TopicPartition] = []
        missing = []
        for topic in self.topics.values():
            meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                missing.append(topic)
                continue
            # from the beginning on first start; where it left off after a reconnect
            partitions.extend(TopicPartition(topic, p, self._positions.get((topic, p), OFFSET_BEGINNING))
                              for p in sorted(meta.partitions))
        if missing:
            raise _TopicsMissing(f"topic(s) not found: {', '.join(missing)}")
        self._set_connected()
        if not self._ready.is_set():
            total = 0
            for tp in partitions:
                low, high = consumer.get_watermark_offsets(tp, timeout=10)
                self._targets[(tp.topic, tp.partition)] = high
                total += max(0, high - low)
            self.status.rebuild_total = total
            log.info("consumer: rebuilding the store from %d partitions, %d records to read", len(partitions), total)
        consumer.assign(partitions)

    def _follow(self, consumer: Consumer) -> None:
        last_lag_check = 0.0
        last_progress = time.monotonic()
        self._check_caught_up(consumer)
        while not self._stop.is_set():
            messages = consumer.consume(num_messages=self.batch_size, timeout=self.poll_s)
            if messages:
                self._ingest(messages)
            now = time.monotonic()
            if not self._ready.is_set():
                self._check_caught_up(consumer)
                if now - last_progress >= 2.0 and not self._ready.is_set():
                    last_progress = now
                    self._log_progress()
            if now - last_lag_check >= self.lag_check_s:
                last_lag_check = now
                self._refresh_lag(consumer)

    def _ingest(self, messages: list) -> None:
        panes = []
        for msg in messages:
            err = msg.error()
            key = (msg.topic(), msg.partition())
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._positions[key] = max(self._positions.get(key, 0), msg.offset())
                    continue
                if err.fatal():
                    raise KafkaException(err)
                log.warning("consumer: %s", err.str())
                continue
            self._positions[key] = msg.offset() + 1
            kind = self.kind_of[msg.topic()]
            try:
                panes.append(decode_pane(kind, msg.value()))
            except InvalidRecord as exc:
                self.metrics.invalid.labels(kind).inc()
                self._log_invalid(msg, exc)
        self.status.records_read += sum(1 for m in messages if m.error() is None)
        if not panes:
            return
        result = self.store.apply(panes)
        for pane in result.applied:
            self.metrics.panes.labels(pane.kind, "stored").inc()
        if result.superseded:
            self.metrics.panes.labels("any", "superseded").inc(result.superseded)
        if result.expired:
            self.metrics.panes.labels("any", "expired").inc(result.expired)
        if result.evicted_windows:
            self.metrics.evicted.inc(result.evicted_windows)
        snap = self.store.snapshot
        self.metrics.records.set(snap.record_count)
        self.metrics.windows.set(len(snap.order))
        self.metrics.version.set(snap.version)
        if self._ready.is_set():
            self.hub.publish(result.applied)

    def _log_invalid(self, msg, exc: InvalidRecord) -> None:
        self._invalid_logged += 1
        if self._invalid_logged <= 5 or self._invalid_logged % 1000 == 0:
            log.warning("consumer: invalid record %s[%d]@%d skipped (%d so far): %s",
                        msg.topic(), msg.partition(), msg.offset(), self._invalid_logged, exc)

    def _check_caught_up(self, consumer: Consumer) -> None:
        if any(self._positions.get(tp, 0) < end for tp, end in self._targets.items()):
            return
        self._refresh_lag(consumer)  # so /status shows a measured lag from the first ready moment
        self._ready.set()
        self.status.ready = True
        self.status.ready_at = time.time()
        self.metrics.ready.set(1)
        snap = self.store.snapshot
        log.info("consumer: caught up in %.1f s: %d records read, %d panes stored in %d windows; now live",
                 self.status.ready_at - self.status.started_at, self.status.records_read,
                 snap.record_count, len(snap.order))

    def _log_progress(self) -> None:
        total = self.status.rebuild_total or 1
        log.info("consumer: rebuild %d/%d records (%.0f%%), %d panes stored",
                 self.status.records_read, self.status.rebuild_total,
                 100.0 * min(1.0, self.status.records_read / total), self.store.snapshot.record_count)

    def _refresh_lag(self, consumer: Consumer) -> None:
        lag = 0
        try:
            for topic, partition in list(self._positions.keys() | self._targets.keys()):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
                lag += max(0, high - max(low, self._positions.get((topic, partition), low)))
        except KafkaException as exc:
            self._set_disconnected(f"broker did not answer: {exc}")
            return
        self._set_connected()
        self.status.lag = lag
        self.metrics.lag.set(lag)


class _TopicsMissing(Exception):
    """The output topics do not exist (yet)."""
