"""A per-snapshot response cache in front of Flask, for the read endpoints the dashboard polls.

Every answer of a read endpoint is a pure function of (path, query string, store
snapshot). So the first 200 response for a (path, query) at a snapshot version
is kept — status, headers (security headers included) and body — in that
snapshot's memo, and repeats are answered straight from the WSGI layer without
Flask's routing, request context and hooks. A new consumer batch publishes a
new snapshot with an empty memo, so a cached answer is never older than the
data a reader could otherwise see. Errors, streams, /status (time-dependent)
and requests carrying an Origin header while CORS is on always go to Flask.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from serving.metrics import Metrics
from serving.store import Store

CACHEABLE_PATHS = ("/api/v1/windows/", "/api/v1/market", "/api/v1/symbols", "/api/v1/venues", "/api/heatmap_data")

StartResponse = Callable[..., Any]


class CachedResponses:
    """WSGI middleware: serve repeated GETs of read endpoints from the current snapshot's memo."""

    def __init__(self, wsgi_app: Callable[[dict, StartResponse], Iterable[bytes]], store: Store, metrics: Metrics,
                 max_entries: int, cors_enabled: bool) -> None:
        self.wsgi_app = wsgi_app
        self.store = store
        self.metrics = metrics
        self.max_entries = max_entries
        self.cors_enabled = cors_enabled

    def cacheable(self, environ: dict[str, Any]) -> bool:
        if environ.get("REQUEST_METHOD") != "GET":
            return False
        if self.cors_enabled and "HTTP_ORIGIN" in environ:
            return False
        return environ.get("PATH_INFO", "").startswith(CACHEABLE_PATHS)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self.cacheable(environ):
            return self.wsgi_app(environ, start_response)
        t0 = time.perf_counter()
        snap = self.store.snapshot
        key = ("wsgi", environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""))
        hit = snap.cache.get(key)
        if hit is not None:
            endpoint, status, headers, body = hit
            start_response(status, headers)
            self.metrics.requests.labels(endpoint, "200").inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - t0)
            return [body]
        return self._miss(environ, start_response, snap.cache, key)

    def _miss(self, environ: dict[str, Any], start_response: StartResponse, memo: dict, key: tuple) -> list[bytes]:
        """Answer through Flask and keep a 200 answer for the next identical request."""
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
            captured["status"], captured["headers"] = status, headers
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        result = self.wsgi_app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        endpoint = environ.get("darkpool.endpoint")
        if captured.get("status", "").startswith("200") and endpoint and len(memo) < self.max_entries:
            memo[key] = (endpoint, captured["status"], captured["headers"], body)
        return [body]
