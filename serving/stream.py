"""Live push of new panes and alerts to Server-Sent-Events clients.

The consumer publishes each pane it stored (an event named after its kind,
``liquidity`` or ``market``) and each alert it stored, new or raised (an
``alert`` event), once the stores have caught up with the topics, to a
:class:`Hub`; every connected client has its own bounded
queue. A client that falls more than its queue behind is dropped (its stream
ends; browsers' EventSource reconnects by itself) so a slow reader can never
hold memory or the consumer back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator

import orjson

from darkpool.contracts import format_event_time
from serving.records import ALERT, Alert, Pane

log = logging.getLogger(__name__)

_CLOSED = object()


class Subscription:
    """One stream client's queue of encoded events, optionally limited to one symbol."""

    def __init__(self, maxsize: int, symbol: str | None) -> None:
        self.queue: queue.Queue[object] = queue.Queue(maxsize=maxsize)
        self.symbol = symbol
        self.dropped = False


class Hub:
    """Fan-out of encoded SSE events to subscribers."""

    def __init__(self, queue_size: int, max_clients: int) -> None:
        self.queue_size = queue_size
        self.max_clients = max_clients
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def client_count(self) -> int:
        return len(self._subs)

    def subscribe(self, symbol: str | None = None) -> Subscription | None:
        """A new subscription, or None when the client limit is reached."""
        with self._lock:
            if self._closed or len(self._subs) >= self.max_clients:
                return None
            sub = Subscription(self.queue_size, symbol)
            self._subs.add(sub)
            return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def publish(self, panes: list[Pane]) -> None:
        """Queue each pane as an SSE event (``liquidity`` / ``market``) for every subscriber of its symbol."""
        if self._subs and panes:
            self._fan_out([(p.symbol, encode_event(p.kind, orjson.dumps(p.record))) for p in panes])

    def publish_alerts(self, alerts: list[Alert]) -> None:
        """Queue each alert as an ``alert`` SSE event for every subscriber of its symbol."""
        if self._subs and alerts:
            self._fan_out([(a.symbol, encode_event(ALERT, orjson.dumps(a.record))) for a in alerts])

    def _fan_out(self, encoded: list[tuple[str, bytes]]) -> None:
        """Queue encoded (symbol, event) pairs; a subscriber whose queue is full is dropped."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            for symbol, event in encoded:
                if sub.symbol is not None and sub.symbol != symbol:
                    continue
                try:
                    sub.queue.put_nowait(event)
                except queue.Full:
                    sub.dropped = True
                    self.unsubscribe(sub)
                    log.warning("stream client dropped: more than %d events behind", self.queue_size)
                    break

    def close(self) -> None:
        """End every stream (server shutting down)."""
        with self._lock:
            self._closed = True
            subs = list(self._subs)
            self._subs.clear()
        for sub in subs:
            try:
                sub.queue.put_nowait(_CLOSED)
            except queue.Full:
                sub.dropped = True


def encode_event(event: str, data: bytes) -> bytes:
    """One SSE event: ``event: <name>`` and a single ``data:`` line (JSON has no raw newlines)."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def heartbeat_event(version: int) -> bytes:
    data = orjson.dumps({"time": format_event_time(int(time.time() * 1000)), "version": version})
    return encode_event("heartbeat", data)


def event_stream(hub: Hub, sub: Subscription, heartbeat_s: float, version_of: Callable[[], int]) -> Iterator[bytes]:
    """The body of one SSE response: a retry hint, a first heartbeat, then events and heartbeats."""
    try:
        yield b"retry: 3000\n\n"
        yield heartbeat_event(version_of())
        next_beat = time.monotonic() + heartbeat_s
        while not sub.dropped:
            timeout = max(0.0, next_beat - time.monotonic())
            try:
                item = sub.queue.get(timeout=timeout)
            except queue.Empty:
                yield heartbeat_event(version_of())
                next_beat = time.monotonic() + heartbeat_s
                continue
            if item is _CLOSED:
                return
            yield item  # type: ignore[misc]
    finally:
        hub.unsubscribe(sub)
