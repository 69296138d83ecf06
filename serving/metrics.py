"""Prometheus metrics of the serving process (one registry per app, so tests stay isolated)."""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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
        """GET /metrics: Prometheus text exposition."""
        return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST)
