"""Serving: the Flask app that turns the pipeline's output topics into a REST API, a live
stream and the dashboard.

``create_app(config)`` builds an isolated app (Flask's tutorial layout): defaults,
then ``DARKPOOL_*`` environment variables, then ``serving.cfg`` in the instance
folder, then ``config`` (tests, the CLI). It wires the pane store, the alert
store, the SSE hub, the metrics and the Kafka consumer (built unless ``CONSUMER_ENABLED`` is false), and
registers the blueprints. Building the app starts nothing: no thread, no
connection. The consumer starts where the server starts
(:func:`serving.commands.server_app`, the factory granian and gunicorn load in
their worker), or by :func:`start_consumer` (tests). Nothing happens at import
time. Run it with ``darkpool serve`` (granian by default, or gunicorn: one worker
process with threads, since the store lives in the process).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Request, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from serving import api, legacy, web
from serving import config as serving_config
from serving.alerts import AlertStore
from serving.consumer import PaneConsumer
from serving.fastpath import CachedResponses
from serving.metrics import Metrics
from serving.params import ApiError
from serving.records import ALERT, LIQUIDITY, MARKET
from serving.store import Store
from serving.stream import Hub

log = logging.getLogger(__name__)

# Content-Security-Policy the dashboard is built to satisfy: nothing leaves the machine.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "worker-src 'self' blob:",
    "connect-src 'self'",
    "font-src 'self' data:",
    "object-src 'none'",
    "base-uri 'self'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the serving app; ``config`` overrides every other source of settings."""
    app = Flask(__name__, instance_relative_config=True, static_folder=None)
    app.config.from_mapping(serving_config.DEFAULTS)
    app.config.update(serving_config.from_environ())
    app.config.from_pyfile("serving.cfg", silent=True)
    if config:
        app.config.update(config)
    serving_config.finalize(app.config)

    metrics = Metrics()
    metrics.init_app(app)
    retention_ms = int(app.config["RETENTION_HOURS"] * 3_600_000)
    store = Store(retention_ms=retention_ms, max_records=app.config["MAX_RECORDS"])
    alert_store = AlertStore(retention_ms=retention_ms, max_alerts=app.config["MAX_ALERTS"])
    hub = Hub(queue_size=app.config["SSE_QUEUE_SIZE"], max_clients=app.config["SSE_MAX_CLIENTS"])
    metrics.stream_clients.set_function(lambda: hub.client_count)
    consumer = None
    if app.config["CONSUMER_ENABLED"]:
        consumer = PaneConsumer(
            store, hub, metrics, bootstrap=app.config["BOOTSTRAP_SERVERS"],
            topics={LIQUIDITY: app.config["LIQUIDITY_TOPIC"], MARKET: app.config["MARKET_TOPIC"],
                    ALERT: app.config["ALERTS_TOPIC"]},
            batch_size=app.config["CONSUMER_BATCH_SIZE"], poll_s=app.config["CONSUMER_POLL_SECONDS"],
            lag_check_s=app.config["LAG_CHECK_SECONDS"], alert_store=alert_store,
        )
    app.extensions["darkpool"] = api.Services(config=app.config, store=store, hub=hub, metrics=metrics,
                                              consumer=consumer, alert_store=alert_store)

    api.init_app(app)
    legacy.init_app(app)
    web.init_app(app)
    _init_errors(app)
    origins = serving_config.cors_origins(app.config)
    _init_headers(app, origins)
    app.wsgi_app = CachedResponses(app.wsgi_app, store, metrics, max_entries=app.config["RESPONSE_CACHE_SIZE"],
                                   cors_enabled=bool(origins))

    return app


def start_consumer(app: Flask) -> None:
    """Start the app's background Kafka consumer (nothing if ``CONSUMER_ENABLED`` is false)."""
    app.extensions["darkpool"].start()


def _init_errors(app: Flask) -> None:
    """Every error is JSON: {"error": {"code": ..., "message": ...}} (the document's Error schema); a 405 keeps
    werkzeug's Allow header."""

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> tuple[dict, int]:
        return exc.body(), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[dict, int, list[tuple[str, str]]]:
        code = exc.code or 500
        message = exc.description or exc.name
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]  # a 405 keeps its Allow
        if isinstance(exc, MethodNotAllowed):
            allowed = ", ".join(sorted(exc.valid_methods or ()))
            message = f"method {request.method} is not allowed on {request.path} (it answers {allowed})"
        return {"error": {"code": code, "message": message}}, code, headers

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[dict, int]:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return {"error": {"code": 500, "message": "internal error (logged on the server)"}}, 500


def _init_headers(app: Flask, origins: frozenset[str]) -> None:
    """Security headers on every response, Allow sorted; CORS headers only for configured origins."""

    @app.after_request
    def add_headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        if allow := response.headers.get("Allow"):  # 405s and OPTIONS: one order, "GET, HEAD, OPTIONS"
            response.headers["Allow"] = ", ".join(sorted(method.strip() for method in allow.split(",")))
        if request.path.startswith("/api/") and "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        if origins:
            _add_cors(request, response, origins)
        return response


def _add_cors(req: Request, response: Response, origins: frozenset[str]) -> None:
    origin = req.headers.get("Origin")
    if not origin or not req.path.startswith(("/api/", "/metrics")):
        return
    if "*" in origins:
        response.headers["Access-Control-Allow-Origin"] = "*"
    elif origin in origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    else:
        return
    response.headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type, Last-Event-ID"
