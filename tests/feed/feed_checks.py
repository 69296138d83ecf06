"""Independent checks for the feed tests: classify records from their content alone, consume topics.

Nothing here uses the feed's own fault labels: a record's class is derived
from its bytes, its key and its Kafka timestamp, the way a consumer (or the
pipeline) would see it.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterable

import orjson
from confluent_kafka import Consumer, TopicPartition

from darkpool.contracts import SIDES, TRADE_FIELDS, load_venues, parse_event_time

# anything further behind its symbol's latest time than this is "late" (the feed's defaults:
# allowed lateness 600 s + window 300 s + margin 60 s; out-of-order delays are at most 30 s)
LATE_THRESHOLD_MS = 600_000


def validation_error(value: str | bytes, record_ts: int) -> str | None:
    """Why a trade value is invalid (the dead-letter reason its malformed kind is named by), or None.

    Written from the trade contract (docs/design.md, "Contracts"), checking in the pipeline's order;
    stricter than the pipeline on one point: the feed stamps every valid record with its event time,
    so any other event time is absurd here.
    """
    try:
        trade = orjson.loads(value)
    except orjson.JSONDecodeError:
        return "bad_json"
    if not isinstance(trade, dict):
        return "not_an_object"
    if any(field not in trade for field in TRADE_FIELDS):
        return "missing_field"
    quantity, price = trade["quantity"], trade["price"]
    if not all(isinstance(trade[name], str) for name in ("trade_id", "symbol", "venue")) \
            or not isinstance(price, (int, float)) or isinstance(price, bool) \
            or not isinstance(quantity, int) or isinstance(quantity, bool):
        return "bad_type"
    if quantity <= 0:
        return "non_positive_quantity"
    if price <= 0:
        return "non_positive_price"
    if trade["venue"] not in load_venues():
        return "unknown_venue"
    if trade["side"] is not None and trade["side"] not in SIDES:
        return "bad_side"
    try:
        event_ms = parse_event_time(trade["event_time"])
    except ValueError:
        return "bad_event_time"
    if event_ms != record_ts:
        return "absurd_event_time"
    return None


def classify(records: Iterable[tuple[str, int, str | bytes]]) -> list[str | None]:
    """Label each (key, timestamp_ms, value) in arrival order, as the feed's labels should read.

    Per key (symbol): malformed by validation; duplicate when its trade_id was
    seen before; late when more than LATE_THRESHOLD_MS behind the key's
    latest timestamp so far; out of order when behind it at all.
    """
    latest: dict[str, int] = {}
    seen: set[str] = set()
    labels: list[str | None] = []
    for key, ts, value in records:
        error = validation_error(value, ts)
        if error is not None:
            labels.append(f"malformed:{error}")
        else:
            trade_id = orjson.loads(value)["trade_id"]
            top = latest.get(key)
            if trade_id in seen:
                labels.append("duplicate")
            elif top is not None and ts < top - LATE_THRESHOLD_MS:
                labels.append("late")
            elif top is not None and ts < top:
                labels.append("out_of_order")
            else:
                labels.append(None)
            seen.add(trade_id)
        latest[key] = max(latest.get(key, ts), ts)
    return labels


def label_counts(labels: Iterable[str | None]) -> dict[str, int]:
    return dict(Counter(label for label in labels if label is not None))


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[tuple[int, str, int, bytes]]:
    """Read a topic from the start until ``expected`` records arrived; (partition, key, ts, value) in
    partition order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"feed-test-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
        out: list[tuple[int, str, int, bytes]] = []
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                if message.error():
                    raise RuntimeError(message.error().str())
                out.append((message.partition(), message.key().decode(), message.timestamp()[1],
                            message.value()))
        # anything beyond the expected count would be a bug: wait briefly for stragglers
        for message in consumer.consume(num_messages=10_000, timeout=1.0):
            if not message.error():
                out.append((message.partition(), message.key().decode(), message.timestamp()[1], message.value()))
        return out
    finally:
        consumer.close()
