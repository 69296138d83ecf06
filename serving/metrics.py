"""Prometheus metrics of the serving process (one registry per app, so tests stay isolated).

Besides the request, store and consumer metrics, ``/metrics`` reports consumer
lag per topic/partition (:class:`LagCollector`), measured against the broker's
high watermarks when scraped (cached for ``LAG_CHECK_SECONDS``, so a scrape
costs at most one broker round trip per period):

- ``darkpool_serving_partition_lag{topic,partition}``: high watermark − the
  serving consumer's position (the next offset it reads), for every partition
  of the output topics it reads (liquidity, market, and alerts once it exists);
- ``darkpool_pipeline_consumer_lag{group,topic,partition}``: high watermark −
  the offset the pipeline's consumer group (``PIPELINE_GROUP``, the pipeline's
  ``--group-id``) committed, for the trades topic and every topic the group has
  committed on. The pipeline commits only when Flink completes a checkpoint, so
  this is the lag *since the last completed checkpoint* (it saws up to the
  records of one checkpoint interval even when the job keeps up); a partition
  the group never committed counts from the low watermark (where it starts).

``darkpool_pipeline_committed_offset`` and ``darkpool_kafka_high_watermark``
give the two terms; ``darkpool_lag_probe_up`` is 0 when the last probe failed
(the lag series are then absent), ``darkpool_lag_probes`` counts the probes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from flask import Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from darkpool.contracts import ALERT_KINDS, SEVERITIES
from serving import params

TopicPart = tuple[str, int]

log = logging.getLogger(__name__)
# librdkafka's reconnect lines of the lag probe's client stay out of the log: a failed probe is reported by
# darkpool_lag_probe_up, and logged once when probes start failing (the consumer logs the outage itself)
_PROBE_LOG = logging.getLogger("serving.metrics.rdkafka")
_PROBE_LOG.addHandler(logging.NullHandler())
_PROBE_LOG.propagate = False


class Metrics:
    """The app's metrics; attach with :meth:`init_app`, read ``app.extensions['darkpool_metrics']``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("darkpool_http_requests", "HTTP requests served", ["endpoint", "status"], registry=r)
        self.latency = Histogram(
            "darkpool_http_request_seconds", "HTTP request handling time", ["endpoint"], registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.panes = Counter("darkpool_serving_panes", "output panes consumed, by topic kind and outcome",
                             ["kind", "outcome"], registry=r)
        self.invalid = Counter("darkpool_serving_invalid_records", "records rejected as not following the contract",
                               ["kind"], registry=r)
        self.lag = Gauge("darkpool_serving_consumer_lag", "records behind the topics' end offsets", registry=r)
        self.connected = Gauge("darkpool_serving_consumer_connected", "1 when the broker answers", registry=r)
        self.ready = Gauge("darkpool_serving_ready", "1 once the store has rebuilt from the topics", registry=r)
        self.records = Gauge("darkpool_serving_store_records", "panes held in the store", registry=r)
        self.windows = Gauge("darkpool_serving_store_windows", "windows held in the store", registry=r)
        self.version = Gauge("darkpool_serving_store_version", "store snapshot version", registry=r)
        self.evicted = Counter("darkpool_serving_evicted_windows", "windows dropped by retention or the cap",
                               registry=r)
        self.stream_clients = Gauge("darkpool_serving_stream_clients", "connected SSE clients", registry=r)
        self.alerts_received = Counter("darkpool_serving_alerts", "valid alert records consumed, by kind and "
                                       "severity", ["kind", "severity"], registry=r)
        self.alert_updates = Counter("darkpool_serving_alert_updates", "what the alert store did with the alerts "
                                     "consumed: stored (new or raised), superseded (an equal or higher severity "
                                     "held), expired (past retention), evicted (dropped later by retention or "
                                     "the cap)", ["outcome"], registry=r)
        for kind in ALERT_KINDS:  # every series from the start, at 0: a rate over a first alert is right
            for severity in SEVERITIES:
                self.alerts_received.labels(kind, severity)
        self.alerts_stored = Gauge("darkpool_serving_alerts_stored", "alerts held in the alert store", registry=r)
        self.alerts_topic_present = Gauge("darkpool_serving_alerts_topic_present", "1 when the alerts topic "
                                          "exists and is read (0: missing, no alerts yet)", registry=r)
        self.lag_probes = Counter("darkpool_lag_probes", "consumer-lag probes of the broker, by outcome", ["outcome"],
                                  registry=r)
        self.lag_collector: LagCollector | None = None
        self._attach_lock = threading.Lock()

    def init_app(self, app: Flask) -> None:
        app.extensions["darkpool_metrics"] = self
        app.before_request(self._start_timer)
        app.after_request(self._record)
        app.add_url_rule("/metrics", "metrics", self.export)

    @staticmethod
    def _start_timer() -> None:
        g.darkpool_t0 = time.perf_counter()

    def _record(self, response: Response) -> Response:
        endpoint = request.endpoint or "unmatched"
        request.environ["darkpool.endpoint"] = endpoint  # read by the response cache (serving.fastpath)
        t0 = g.get("darkpool_t0")
        if t0 is not None:
            self.latency.labels(endpoint).observe(time.perf_counter() - t0)
        self.requests.labels(endpoint, str(response.status_code)).inc()
        return response

    def export(self) -> Response:
        """GET /metrics: Prometheus text exposition (the lag collector is attached on the first scrape).

        It takes no query parameters: like every API route, an unknown one is a 400 (serving.params)."""
        params.check_known(request.args, ())
        self._attach_lag(current_app)
        if self.lag_collector is not None:
            self.lag_collector.snapshot()  # probe first (when due), so this scrape's probe counts are current
        return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST)

    def _attach_lag(self, app: Flask) -> None:
        """Register a :class:`LagCollector` for the app's consumer and the pipeline's group (once; none when the
        app has no consumer: then it has no broker either)."""
        if self.lag_collector is not None:
            return
        services = app.extensions.get("darkpool")
        consumer = getattr(services, "consumer", None)
        if consumer is None:
            return
        with self._attach_lock:
            if self.lag_collector is not None:
                return
            config = app.config
            serving_topics = tuple(t for t in (config["LIQUIDITY_TOPIC"], config["MARKET_TOPIC"],
                                               config.get("ALERTS_TOPIC")) if t)
            group = config.get("PIPELINE_GROUP") or ""
            self.lag_collector = LagCollector(
                LagProbe(config["BOOTSTRAP_SERVERS"]), positions=consumer.positions, serving_topics=serving_topics,
                pipeline_group=group, pipeline_topics=(config.get("TRADES_TOPIC") or "",) if group else (),
                cache_seconds=float(config["LAG_CHECK_SECONDS"]), probes=self.lag_probes)
            self.registry.register(self.lag_collector)


# -- consumer lag -------------------------------------------------------------------------------------------
def partition_lag(low: int, high: int, position: int | None) -> int:
    """Records of a partition a reader has still to read: high watermark − its position (a position below the
    low watermark, or none yet, reads from the low watermark: those records are gone or never read)."""
    start = low if position is None or position < low else position
    return max(0, high - start)


@dataclass(frozen=True)
class LagSnapshot:
    """One probe's answer: watermarks per partition and the pipeline group's committed offsets."""

    watermarks: dict[TopicPart, tuple[int, int]]  # (low, high) for every partition of the probed topics
    committed: dict[TopicPart, int]  # the pipeline group's committed offsets (partitions it committed)
    positions: dict[TopicPart, int]  # the serving consumer's positions at probe time
    taken_at: float = field(default_factory=time.monotonic)


class LagProbe:
    """Asks the broker (one AdminClient) for watermarks and a consumer group's committed offsets."""

    def __init__(self, bootstrap: str, timeout: float = 2.0) -> None:
        self.bootstrap, self.timeout = bootstrap, timeout
        self._admin = None

    def admin(self):  # noqa: ANN201 - confluent_kafka.admin.AdminClient, imported lazily
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            from darkpool.kafka_client import client_config

            self._admin = AdminClient({**client_config(), "bootstrap.servers": self.bootstrap,
                                       "socket.timeout.ms": int(self.timeout * 1000), "client.id": "darkpool-lag",
                                       "logger": _PROBE_LOG})
        return self._admin

    def committed(self, group: str) -> dict[TopicPart, int]:
        """Every offset ``group`` committed (partitions without a commit are left out)."""
        from confluent_kafka import ConsumerGroupTopicPartitions

        futures = self.admin().list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                           request_timeout=self.timeout)
        result = futures[group].result(timeout=self.timeout)
        return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or []
                if tp.error is None and tp.offset >= 0}

    def watermarks(self, topics: set[str]) -> dict[TopicPart, tuple[int, int]]:
        """(low, high) watermarks of every partition of ``topics`` (topics that do not exist are left out)."""
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import OffsetSpec

        admin = self.admin()
        parts: list[TopicPart] = []
        # metadata of all topics, none named: naming a missing one (the alerts topic before `darkpool topics`)
        # would make a broker with auto.create.topics.enable create it with its defaults
        cluster = admin.list_topics(timeout=self.timeout)
        for topic in sorted(topics):
            meta = cluster.topics.get(topic)
            if meta is not None and meta.error is None:
                parts.extend((topic, p) for p in sorted(meta.partitions))
        if not parts:
            return {}
        ends: dict[str, dict[TopicPart, int]] = {}
        for name, spec in (("low", OffsetSpec.earliest()), ("high", OffsetSpec.latest())):
            futures = admin.list_offsets({TopicPartition(t, p): spec for t, p in parts},
                                         request_timeout=self.timeout)
            ends[name] = {(tp.topic, tp.partition): future.result(timeout=self.timeout).offset
                          for tp, future in futures.items()}
        return {tp: (ends["low"][tp], ends["high"][tp]) for tp in parts}


class LagCollector:
    """The lag series of ``/metrics`` (a Prometheus custom collector): one probe per ``cache_seconds`` at most;
    scrapes in between, and scrapes while a probe runs, get the last snapshot."""

    def __init__(self, probe: LagProbe, positions: Callable[[], Mapping[TopicPart, int]],
                 serving_topics: tuple[str, ...], pipeline_group: str = "", pipeline_topics: tuple[str, ...] = (),
                 cache_seconds: float = 5.0, probes: Counter | None = None) -> None:
        self.probe, self.positions = probe, positions
        self.serving_topics = tuple(serving_topics)
        self.pipeline_group = pipeline_group
        self.pipeline_topics = tuple(t for t in pipeline_topics if t)
        self.cache_seconds = cache_seconds
        self.probes = probes
        self._snapshot: LagSnapshot | None = None
        self._error: str | None = None
        self._probed_at = float("-inf")
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        return []  # the series depend on the broker's answer: not described up front

    def snapshot(self) -> LagSnapshot | None:
        """The cached snapshot, refreshed first when older than ``cache_seconds`` (None after a failed probe)."""
        if time.monotonic() - self._probed_at >= self.cache_seconds and self._lock.acquire(blocking=False):
            try:
                self._refresh()
            finally:
                self._lock.release()
        return None if self._error else self._snapshot

    def _refresh(self) -> None:
        from confluent_kafka import KafkaException

        positions = dict(self.positions())  # before the watermarks: a position is never ahead of its watermark
        try:
            committed = self.probe.committed(self.pipeline_group) if self.pipeline_group else {}
            topics = set(self.serving_topics) | set(self.pipeline_topics) | {t for t, _ in committed}
            self._snapshot = LagSnapshot(self.probe.watermarks(topics), committed, positions)
            self._error = None
        except (KafkaException, TimeoutError, OSError) as exc:
            if self._error is None:
                log.warning("consumer-lag probe of %s failed: %s (lag series left out until it answers)",
                            self.probe.bootstrap, exc or type(exc).__name__)
            self._error = str(exc) or type(exc).__name__
        finally:
            self._probed_at = time.monotonic()
            if self.probes is not None:
                self.probes.labels("error" if self._error else "ok").inc()

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        up = GaugeMetricFamily("darkpool_lag_probe_up", "1 when the last consumer-lag probe of the broker answered")
        up.add_metric([], 0.0 if snap is None else 1.0)
        yield up
        if snap is None:
            return
        yield from lag_families(snap, self.serving_topics, self.pipeline_group, self.pipeline_topics)


def lag_families(snap: LagSnapshot, serving_topics: tuple[str, ...], group: str,
                 pipeline_topics: tuple[str, ...]) -> Iterator[Metric]:
    """The metric families of one snapshot (a pure function of it)."""
    high = GaugeMetricFamily("darkpool_kafka_high_watermark", "end offset (next offset to be written) per partition",
                             labels=["topic", "partition"])
    for (topic, partition), (_, end) in sorted(snap.watermarks.items()):
        high.add_metric([topic, str(partition)], end)
    yield high
    serving = GaugeMetricFamily("darkpool_serving_partition_lag",
                                "records the serving consumer has still to read: high watermark - its position",
                                labels=["topic", "partition"])
    for (topic, partition), (low, end) in sorted(snap.watermarks.items()):
        if topic in serving_topics:
            serving.add_metric([topic, str(partition)], partition_lag(low, end, snap.positions.get((topic, partition))))
    yield serving
    if not group:
        return
    committed = GaugeMetricFamily("darkpool_pipeline_committed_offset",
                                  "offset the pipeline's consumer group committed (at its last completed checkpoint)",
                                  labels=["group", "topic", "partition"])
    lag = GaugeMetricFamily("darkpool_pipeline_consumer_lag",
                            "records of the pipeline's consumer group since its last committed offset (checkpoint): "
                            "high watermark - committed offset", labels=["group", "topic", "partition"])
    group_topics = set(pipeline_topics) | {t for t, _ in snap.committed}
    for (topic, partition), (low, end) in sorted(snap.watermarks.items()):
        if topic not in group_topics:
            continue
        offset = snap.committed.get((topic, partition))
        if offset is not None:
            committed.add_metric([group, topic, str(partition)], offset)
        lag.add_metric([group, topic, str(partition)], partition_lag(low, end, offset))
    yield committed
    yield lag
