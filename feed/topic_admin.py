"""Topic administration for the feed: is a broker answering, and create the topic it publishes to.

:func:`check_broker` raises a clear :class:`~darkpool.errors.DarkpoolError`
(which address, how to start one) when no broker answers; :func:`ensure_topic`
creates a missing topic with the product's settings for the trades topic.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException

from darkpool.errors import DarkpoolError
from darkpool.kafka_client import client_config

# connection errors while probing are expected: keep librdkafka's log lines out of the console
_PROBE_LOG = logging.getLogger("feed.rdkafka.probe")
_PROBE_LOG.addHandler(logging.NullHandler())
_PROBE_LOG.propagate = False


def _admin(bootstrap: str, timeout: float):
    from confluent_kafka.admin import AdminClient

    return AdminClient({**client_config(), "bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout * 1000),
                        "logger": _PROBE_LOG})


def check_broker(bootstrap: str, timeout: float = 3.0) -> None:
    """Raise a clear DarkpoolError (which address, how to start it) when no broker answers."""
    try:
        _admin(bootstrap, timeout).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise DarkpoolError(
            f"no Kafka broker answers at {bootstrap} ({exc.args[0].str()})",
            hint="start the local broker with `darkpool kafka start` (or `darkpool stack up`), "
                 "or point --bootstrap at a running one") from exc


def ensure_topic(bootstrap: str, topic: str, partitions: int = 4, timeout: float = 30.0) -> None:
    """Check that a broker answers (clear error if not) and create the topic if it is missing.

    A new topic gets the product's settings for the trades topic
    (``darkpool.stack.topics.product_topic_specs``).
    """
    from confluent_kafka.admin import NewTopic

    from darkpool.stack.topics import product_topic_specs

    check_broker(bootstrap)
    admin = _admin(bootstrap, timeout)
    if topic in admin.list_topics(timeout=timeout).topics:
        return
    spec = product_topic_specs(trades=topic, partitions=partitions)[topic]
    future = admin.create_topics([NewTopic(topic, num_partitions=spec.partitions, replication_factor=1,
                                           config=spec.config)], request_timeout=timeout)[topic]
    try:
        future.result()
    except KafkaException as exc:
        if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
            raise DarkpoolError(f"creating topic {topic} at {bootstrap} failed: {exc.args[0].str()}") from exc
