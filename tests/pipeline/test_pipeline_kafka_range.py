"""The kafka-range source's record count, against the real broker (the `kafka_bootstrap` fixture)."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from darkpool.errors import DarkpoolError
from darkpool.stack.topics import TopicSpec, create_topics
from pipeline.transforms.read import count_records_since

pytestmark = pytest.mark.stack

T0 = 1_795_615_200_000


def test_count_records_since_counts_from_the_first_offset_at_or_after_the_start(kafka_bootstrap, unique_topic):
    topic = f"{unique_topic}.trades"
    create_topics(kafka_bootstrap, {topic: TopicSpec(3)})
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    # partition p gets 10 records at T0 + i minutes
    for partition in range(3):
        for i in range(10):
            producer.produce(topic, value=b"{}", partition=partition, timestamp=T0 + i * 60_000)
    assert producer.flush(30) == 0
    assert count_records_since(kafka_bootstrap, topic, T0) == 30
    assert count_records_since(kafka_bootstrap, topic, T0 + 4 * 60_000) == 18  # minutes 4..9 on 3 partitions
    assert count_records_since(kafka_bootstrap, topic, T0 + 4 * 60_000 + 1) == 15
    assert count_records_since(kafka_bootstrap, topic, T0 + 10 * 60_000) == 0


def test_count_records_since_unknown_topic_is_a_clear_error(kafka_bootstrap, unique_topic):
    with pytest.raises(DarkpoolError, match="not found"):
        count_records_since(kafka_bootstrap, f"{unique_topic}.missing", T0)
