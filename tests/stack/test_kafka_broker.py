"""Broker lifecycle against a real Kafka 4.4 broker, on its own ports and state folder."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from darkpool.config import load_settings
from darkpool.errors import DarkpoolError
from darkpool.stack.kafka import broker_service, new_cluster_id, prepare
from darkpool.stack.topics import TopicSpec, create_topics


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for value in values:
        producer.produce(topic, key=b"k", value=value)
    assert producer.flush(30) == 0


def _consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    values: list[bytes] = []
    import time

    deadline = time.monotonic() + timeout
    while len(values) < expected and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            values.append(message.value())
    consumer.close()
    return values


@pytest.fixture
def private_broker(tmp_path: Path):
    """A second broker with its own ports and state folder, so it can be stopped and restarted."""
    settings = load_settings(state_dir=tmp_path / "state", kafka_port=29092, kafka_controller_port=29093)
    service = broker_service(settings)
    yield settings, service
    service.stop()


def test_broker_lifecycle_keeps_data_across_restart(private_broker) -> None:
    settings, broker = private_broker
    status = broker.start()
    assert status.running and status.answering and status.pid
    assert (settings.state_dir / "kafka" / "data" / "meta.properties").exists()

    topic = "lifecycle"
    create_topics(settings.bootstrap_servers, {topic: TopicSpec(partitions=1)})
    _produce(settings.bootstrap_servers, topic, [b"one", b"two", b"three"])
    assert _consume_all(settings.bootstrap_servers, topic, 3) == [b"one", b"two", b"three"]

    # starting again while it runs is a no-op that keeps the same process
    assert broker.start().pid == status.pid

    assert broker.stop() is True
    assert broker.status().running is False
    assert broker.stop() is False  # already stopped

    restarted = broker.start()
    assert restarted.pid != status.pid
    assert _consume_all(settings.bootstrap_servers, topic, 3) == [b"one", b"two", b"three"]


def test_start_reports_a_taken_port(private_broker) -> None:
    settings, broker = private_broker
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((settings.host, settings.kafka_port))
        squatter.listen(1)
        with pytest.raises(DarkpoolError, match=f"port {settings.host}:{settings.kafka_port} is already in use"):
            broker.start()
    assert broker.pid() is None


def test_new_cluster_ids_never_start_with_a_dash() -> None:
    ids = {new_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(len(cluster_id) == 22 and not cluster_id.startswith("-") for cluster_id in ids)


def test_storage_formats_with_a_cluster_id_that_starts_with_a_dash(tmp_path: Path) -> None:
    """A state folder from before the fix may hold such an id; the storage tool must take it."""
    settings = load_settings(state_dir=tmp_path / "state", kafka_port=29092, kafka_controller_port=29093)
    (settings.state_dir / "kafka").mkdir(parents=True)
    (settings.state_dir / "kafka" / "cluster.id").write_text("-" + new_cluster_id()[1:])
    prepare(settings)
    meta = (settings.state_dir / "kafka" / "data" / "meta.properties").read_text()
    assert "cluster.id=-" in meta
