"""The product's Kafka topics: create and describe them with the confluent-kafka AdminClient.

(Kafka's TopicCommand is not in the broker jars.) The raw and
dead-letter topics use time retention; the three output topics are keyed by
window (``symbol|venue|window_start``; the alerts ``symbol|kind|window_start``)
and compacted, so the latest pane (the highest alert) per key is kept for
consumers that rebuild their state from the topic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from darkpool import contracts
from darkpool.errors import DarkpoolError
from darkpool.kafka_client import client_config

WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """Partitions and topic-level configuration of one topic."""

    partitions: int = 4
    config: dict[str, str] = field(default_factory=dict)


def product_topic_specs(trades: str = contracts.TRADES_TOPIC, deadletter: str = contracts.DEADLETTER_TOPIC,
                        liquidity: str = contracts.LIQUIDITY_TOPIC, market: str = contracts.MARKET_TOPIC,
                        partitions: int = 4, alerts: str = contracts.ALERTS_TOPIC) -> dict[str, TopicSpec]:
    """The five product topics (contracts.ALL_TOPICS) with their retention policies."""
    delete = {"cleanup.policy": "delete", "retention.ms": str(WEEK_MS)}
    compacted = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1",
                 "segment.ms": str(3600 * 1000), "delete.retention.ms": str(24 * 3600 * 1000)}
    return {
        trades: TopicSpec(partitions, {**delete, "compression.type": "producer"}),
        deadletter: TopicSpec(1, {"cleanup.policy": "delete", "retention.ms": str(4 * WEEK_MS)}),
        liquidity: TopicSpec(partitions, compacted),
        market: TopicSpec(partitions, compacted),
        alerts: TopicSpec(partitions, compacted),
    }


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({**client_config(), "bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})


def check_reachable(bootstrap: str, timeout: float = 5.0) -> None:
    """Raise a clear DarkpoolError when no broker answers at bootstrap."""
    try:
        admin_client(bootstrap).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise DarkpoolError(f"no Kafka broker answers at {bootstrap} ({exc.args[0].str()})",
                            hint="start the local broker with `darkpool kafka start`, or pass --bootstrap") from exc


def create_topics(bootstrap: str, specs: dict[str, TopicSpec], timeout: float = 30.0) -> dict[str, str]:
    """Create the topics that do not exist yet; returns name -> "created" | "exists"."""
    check_reachable(bootstrap)
    admin = admin_client(bootstrap)
    existing = set(admin.list_topics(timeout=timeout).topics)
    outcome = {name: "exists" for name in specs if name in existing}
    new = [NewTopic(name, num_partitions=spec.partitions, replication_factor=1, config=spec.config)
           for name, spec in specs.items() if name not in existing]
    if new:
        for name, future in admin.create_topics(new, request_timeout=timeout).items():
            try:
                future.result()
                outcome[name] = "created"
            except KafkaException as exc:
                if exc.args[0].name() == "TOPIC_ALREADY_EXISTS":
                    outcome[name] = "exists"
                else:
                    raise DarkpoolError(f"creating topic {name} failed: {exc.args[0].str()}") from exc
    return outcome


def describe_topics(bootstrap: str, names: list[str], timeout: float = 10.0) -> list[dict[str, object]]:
    """Partitions, end offsets (records) and cleanup policy of each named topic."""
    from confluent_kafka.admin import ConfigResource

    check_reachable(bootstrap)
    admin = admin_client(bootstrap)
    metadata = admin.list_topics(timeout=timeout).topics
    consumer = Consumer({**client_config(), "bootstrap.servers": bootstrap, "group.id": "darkpool-describe",
                         "enable.auto.commit": False})
    rows = []
    try:
        for name in names:
            if name not in metadata:
                rows.append({"topic": name, "exists": False})
                continue
            partitions = sorted(metadata[name].partitions)
            records = 0
            for p in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout)
                records += max(0, high - low)
            resource = ConfigResource(ConfigResource.Type.TOPIC, name)
            config = admin.describe_configs([resource])[resource].result(timeout=timeout)
            rows.append({"topic": name, "exists": True, "partitions": len(partitions), "records": records,
                         "cleanup.policy": config["cleanup.policy"].value,
                         "retention.ms": config["retention.ms"].value})
    finally:
        consumer.close()
    return rows


def end_offset(bootstrap: str, topic: str, timeout: float = 10.0) -> int:
    """Records ever written to a topic: the sum of its partitions' end offsets (0 if it does not exist)."""
    consumer = Consumer({**client_config(), "bootstrap.servers": bootstrap, "group.id": "darkpool-offsets"})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return 0
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
                   for p in metadata.partitions)
    finally:
        consumer.close()


def committed_offset(bootstrap: str, group: str, topic: str, attempts: int = 10) -> int:
    """The sum of a consumer group's committed offsets on a topic (KafkaIO commits when a checkpoint
    completes); retried while the broker's group coordinator is not ready yet (a fresh broker)."""
    consumer = Consumer({**client_config(), "bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        for attempt in range(attempts):
            try:
                committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
                return sum(max(tp.offset, 0) for tp in committed)
            except KafkaException:
                if attempt == attempts - 1:
                    raise
                time.sleep(1.0)
        return 0
    finally:
        consumer.close()
