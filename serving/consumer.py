"""Background Kafka consumer that feeds the stores from darkpool.liquidity, darkpool.market and darkpool.alerts.

On start it assigns every partition of the topics from the beginning (no
consumer-group offsets: the topics are the state, compacted to the latest pane
or alert per key), so a restarted server rebuilds exactly what it had. It notes the end
offsets at start; once it has read up to them on every partition it is *ready*
and from then on also pushes each new pane to the SSE hub. It keeps following
the topics; ``lag`` is refreshed from the broker every ``lag_check_s`` seconds,
and ``connected`` says whether the broker answered the last time it was asked.

Degraded: while the broker is unreachable the server keeps answering from the
panes it holds, but says so. The consumer becomes *degraded* when librdkafka
reports that every broker connection is down (``_ALL_BROKERS_DOWN``), when a
metadata or watermark request fails, or when nothing came from the broker (no
record, no end-of-partition event, no watermark answer) for
``degraded_after_s`` seconds; it is *ok* again at the next answer, and reads on
from where it stopped (nothing is skipped: the positions are kept).
:meth:`PaneConsumer.health` is the state with its reason and since-time.

The alerts topic is optional: deployments made before the alerts existed have
no ``darkpool.alerts`` until ``darkpool topics`` creates it. A missing alerts
topic means "no alerts yet", never an error: the panes are read as usual, the
status says the topic is missing (``alerts_available`` false, with a note), and
the metadata is asked again every ``lag_check_s`` seconds; once the topic
exists its partitions are assigned from the beginning beside the others.
Serving's metadata requests name no topic, so they never make a broker that
auto-creates topics create a missing one (with its defaults, uncompacted).
Its records go to the :class:`~serving.alerts.AlertStore` (and, once ready, to
the SSE hub as ``alert`` events).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from darkpool import logs
from darkpool.contracts import format_event_time
from darkpool.kafka_client import client_config
from serving.alerts import AlertStore
from serving.metrics import Metrics
from serving.records import ALERT, Alert, InvalidRecord, Pane, decode_alert, decode_pane
from serving.store import Store
from serving.stream import Hub

log = logging.getLogger(__name__)


class RepeatFilter(logging.Filter):
    """Drops a log line identical to one passed less than ``interval`` seconds ago (librdkafka retries a lost
    broker several times a second and logs each refused connection); the next one passed says how many went."""

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[str, tuple[float, int]] = {}  # message -> (when passed, dropped since)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        now = time.monotonic()
        passed, dropped = self._last.get(text, (-self.interval - 1.0, 0))
        if now - passed < self.interval:
            self._last[text] = (passed, dropped + 1)
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[text] = (now, 0)
        if dropped:
            record.msg, record.args = f"{text} ({dropped} identical line(s) in the last {now - passed:.0f} s)", ()
        return True


# librdkafka's own log lines (a refused connection while the broker restarts, ...) go through this logger
_RDKAFKA_LOG = logging.getLogger("serving.rdkafka")
_RDKAFKA_LOG.addFilter(RepeatFilter())

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
    degraded: bool = True  # until the broker first answers
    degraded_reason: str | None = "not connected to the broker yet"
    degraded_since: float = field(default_factory=time.time)  # epoch s: since when degraded (or ok)
    degraded_total_s: float = 0.0  # time spent degraded after the first connection
    outages: int = 0  # ok -> degraded transitions after the first connection
    alerts_available: bool = False  # the alerts topic exists and its partitions are assigned
    alerts_note: str | None = None  # why there are no alerts to read (the topic is missing), else None

    def health(self) -> dict[str, Any]:
        """``{"state": "ok" | "degraded", "reason": str | None, "since": ISO-8601 UTC}`` (what /health says)."""
        return {"state": "degraded" if self.degraded else "ok",
                "reason": self.degraded_reason if self.degraded else None,
                "since": format_event_time(int(self.degraded_since * 1000))}


class PaneConsumer:
    """Reads the output topics into the stores on a daemon thread (start/stop).

    ``topics`` maps liquidity and market (required: missing ones are retried as an error) and, optionally,
    :data:`~serving.records.ALERT` (``alert_store`` then holds its alerts; a missing topic is "no alerts yet")
    to topic names."""

    def __init__(self, store: Store, hub: Hub, metrics: Metrics, bootstrap: str, topics: dict[str, str],
                 batch_size: int = 1000, poll_s: float = 0.25, lag_check_s: float = 5.0,
                 degraded_after_s: float | None = None, alert_store: AlertStore | None = None) -> None:
        self.store, self.hub, self.metrics = store, hub, metrics
        self.alert_store = alert_store
        self.bootstrap = bootstrap
        self.topics = {kind: topic for kind, topic in topics.items() if topic}  # kind -> topic
        if ALERT in self.topics and alert_store is None:
            raise ValueError("an alerts topic needs an alert_store")
        self.kind_of = {topic: kind for kind, topic in self.topics.items()}
        self.batch_size, self.poll_s, self.lag_check_s = batch_size, poll_s, lag_check_s
        # silence longer than this means the broker is gone; the lag check asks it every lag_check_s
        self.degraded_after_s = degraded_after_s or max(10.0, 2 * lag_check_s + 5.0)
        self.status = ConsumerStatus()
        self._alerts_missing_logged = False
        self._last_contact = time.monotonic()
        self._ever_connected = False
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

    def health(self) -> dict[str, Any]:
        """Degraded or ok, why, and since when: :meth:`ConsumerStatus.health`."""
        return self.status.health()

    def positions(self) -> dict[TopicPart, int]:
        """The next offset to read per (topic, partition) (a copy)."""
        return dict(self._positions)

    def position(self, topic: str) -> int:
        """Records of ``topic`` read so far: the sum of its partitions' next offsets (comparable to end offsets)."""
        return sum(offset for (name, _), offset in self.positions().items() if name == topic)

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
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 1000,  # find a restarted broker within a second (librdkafka: 10 s)
            "error_cb": self._on_error,
            "logger": _RDKAFKA_LOG,
        }

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._set_disconnected(f"broker unreachable: {err.str()}")
            log.warning("consumer: kafka reports %s", err.str())
        else:  # a refused connection, a timeout...: the same text as librdkafka's own (rate-limited) log line
            log.debug("consumer: kafka reports %s", err.str())

    def _set_disconnected(self, reason: str) -> None:
        self.status.connected = False
        self.status.error = reason
        self.metrics.connected.set(0)
        self._set_degraded(reason)

    def _set_connected(self) -> None:
        self.status.connected = True
        self.status.error = None
        self.metrics.connected.set(1)
        self._contact()

    def _set_degraded(self, reason: str) -> None:
        status = self.status
        if status.degraded:
            status.degraded_reason = reason  # the latest reason; the since-time stays
            return
        status.degraded_reason, status.degraded_since, status.degraded = reason, time.time(), True
        status.outages += 1
        log.warning("consumer: DEGRADED since %s: %s (serving the panes it holds; reading on when the broker "
                    "answers)", format_event_time(int(status.degraded_since * 1000)), reason)

    def _contact(self) -> None:
        """The broker answered: note it, and end a degraded state."""
        self._last_contact = time.monotonic()
        status = self.status
        if not status.degraded:
            return
        now = time.time()
        if self._ever_connected:
            status.degraded_total_s += now - status.degraded_since
            log.warning("consumer: ok again at %s after %.1f s degraded (%s)", format_event_time(int(now * 1000)),
                        now - status.degraded_since, status.degraded_reason)
        self._ever_connected = True
        status.degraded, status.degraded_reason, status.degraded_since = False, None, now

    def _check_silence(self) -> None:
        silent = time.monotonic() - self._last_contact
        if silent > self.degraded_after_s:
            self._set_degraded(f"no answer from the broker for {silent:.0f} s")

    def _assign_from_beginning(self, consumer: Consumer) -> None:
        """Find every partition of the topics, note their end offsets at first start, and assign them.

        A missing pane topic is an error (retried); a missing alerts topic is noted in the status. The metadata
        request names no topic (it asks for all of them): one that names a missing topic makes a broker with
        ``auto.create.topics.enable`` create it, with the broker's defaults instead of ``darkpool topics``'
        compacted settings."""
        partitions: list[TopicPartition] = []
        missing = []
        alerts_missing = False
        cluster = consumer.list_topics(timeout=5)
        for kind, topic in self.topics.items():
            meta = cluster.topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                if kind == ALERT:
                    alerts_missing = True
                else:
                    missing.append(topic)
                continue
            # from the beginning on first start; where it left off after a reconnect
            partitions.extend(TopicPartition(topic, p, self._positions.get((topic, p), OFFSET_BEGINNING))
                              for p in sorted(meta.partitions))
        if missing:
            raise _TopicsMissing(f"topic(s) not found: {', '.join(missing)}")
        self._set_connected()
        if ALERT in self.topics:
            self._note_alerts_topic(not alerts_missing)
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
            if messages and self._ingest(messages):
                if self.status.degraded or not self.status.connected:
                    self._set_connected()  # records or end-of-partition events: the broker answers again
                else:
                    self._last_contact = time.monotonic()
            else:
                self._check_silence()
            now = time.monotonic()
            if not self._ready.is_set():
                self._check_caught_up(consumer)
                if now - last_progress >= 2.0 and not self._ready.is_set():
                    last_progress = now
                    self._log_progress()
            if now - last_lag_check >= self.lag_check_s:
                last_lag_check = now
                self._refresh_lag(consumer)
                self._look_for_alerts_topic(consumer)

    # -- the optional alerts topic ---------------------------------------------------
    def _note_alerts_topic(self, available: bool) -> None:
        topic = self.topics[ALERT]
        was = self.status.alerts_available
        self.status.alerts_available = available
        self.status.alerts_note = None if available else (
            f"topic {topic} not found: no alerts yet (the pipeline writes it once `darkpool topics` has created "
            f"it; looked for again every {self.lag_check_s:g} s)")
        self.metrics.alerts_topic_present.set(1 if available else 0)
        if available and not was:
            log.info("consumer: reading alerts from %s", topic)
            self._alerts_missing_logged = False
        elif not available and not self._alerts_missing_logged:
            log.warning("consumer: %s", self.status.alerts_note)
            self._alerts_missing_logged = True  # said once (until the topic appears and goes again)

    def _look_for_alerts_topic(self, consumer: Consumer) -> None:
        """While the alerts topic is missing, ask for it again; once it exists, assign it beside the others."""
        if ALERT not in self.topics or self.status.alerts_available:
            return
        topic = self.topics[ALERT]
        try:
            meta = consumer.list_topics(timeout=2).topics.get(topic)  # no topic named: nothing auto-created
        except KafkaException as exc:
            log.debug("consumer: metadata of %s: %s", topic, exc)
            return
        if meta is not None and meta.error is None and meta.partitions:
            self._assign_from_beginning(consumer)  # every topic again, from where each partition stands

    def _ingest(self, messages: list) -> bool:
        """Store the panes and alerts of a batch; True when the broker sent something (a record or an end of
        partition)."""
        panes: list[Pane] = []
        alerts: list[Alert] = []
        answered = False
        for msg in messages:
            err = msg.error()
            key = (msg.topic(), msg.partition())
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    answered = True
                    self._positions[key] = max(self._positions.get(key, 0), msg.offset())
                    continue
                if err.fatal():
                    raise KafkaException(err)
                log.warning("consumer: %s", err.str())
                continue
            answered = True
            self._positions[key] = msg.offset() + 1
            kind = self.kind_of[msg.topic()]
            try:
                if kind == ALERT:
                    alerts.append(decode_alert(msg.value()))
                else:
                    panes.append(decode_pane(kind, msg.value()))
            except InvalidRecord as exc:
                self.metrics.invalid.labels(kind).inc()
                self._log_invalid(msg, exc)
        self.status.records_read += sum(1 for m in messages if m.error() is None)
        if panes:  # panes first: a stream client gets the pane that triggered an alert before the alert
            self._store_panes(panes)
        if alerts:
            self._store_alerts(alerts)
        return answered

    def _store_alerts(self, alerts: list[Alert]) -> None:
        """Apply a batch's alerts to the alert store, count them, and push the stored ones once ready."""
        assert self.alert_store is not None
        for alert in alerts:
            self.metrics.alerts_received.labels(alert.kind, alert.severity).inc()
        result = self.alert_store.apply(alerts)
        for outcome, count in (("stored", len(result.applied)), ("superseded", result.superseded),
                               ("expired", result.expired), ("evicted", result.evicted)):
            if count:
                self.metrics.alert_updates.labels(outcome).inc(count)
        self.metrics.alerts_stored.set(len(self.alert_store.snapshot.alerts))
        if self._ready.is_set():
            self.hub.publish_alerts(result.applied)

    def _store_panes(self, panes: list[Pane]) -> None:
        """Apply a batch's panes to the store, count them, and push the stored ones once ready."""
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
                        msg.topic(), msg.partition(), msg.offset(), self._invalid_logged, exc,
                        extra={**logs.kafka_position(msg.topic(), msg.partition(), msg.offset()), "reason": str(exc)})

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
            error = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
            self._set_disconnected(f"the broker did not answer a watermark request: {error}")
            return
        self._set_connected()
        self.status.lag = lag
        self.metrics.lag.set(lag)


class _TopicsMissing(Exception):
    """The output topics do not exist (yet)."""
