"""A stuck producer is replaced without loss, duplicates or reordering (real broker).

librdkafka can leave a partition without a leader for good after a produce response said "leader -1"
(a single broker's controlled shutdown); its queued records then never leave although the broker answers.
The feed's BrokerWatch tells that from an outage (metadata answers with every leader, two probes in a row,
no acknowledgement) and Publisher.rebuild hands the queued records to a new producer. Here the "stuck"
records are held back by a long linger, so the detection and the hand-over run on the real broker.
"""

from __future__ import annotations

import time
from collections import defaultdict

from feed_checks import consume_all

from feed.generator import FeedConfig, generate_batches
from feed.producer import ProducerOptions, Publisher
from feed.topic_admin import ensure_topic


def test_a_stuck_producer_is_detected_and_replaced_with_every_record_once_in_order(
        kafka_bootstrap: str, unique_topic: str) -> None:
    ensure_topic(kafka_bootstrap, unique_topic, 4)
    # records wait in the queue for a minute: to the watch, a producer that does not move
    publisher = Publisher(kafka_bootstrap, unique_topic, ProducerOptions(linger_ms=60_000))
    publisher.watch.stall_s = 0.5
    batch = next(iter(generate_batches(FeedConfig(seed=7, session_trades=5_000))))
    publisher.send(batch)
    assert publisher.queued == len(batch) and publisher.acked == 0

    deadline = time.monotonic() + 20
    while publisher.rebuilds == 0 and time.monotonic() < deadline:
        publisher.producer.poll(0.1)
        publisher._report()
    assert publisher.rebuilds == 1, "the stuck producer was not detected"
    assert publisher.queued == len(batch) and publisher.delivery.failed == 0  # moved, not failed

    assert publisher.flush(30) == 0
    assert publisher.acked == publisher.sent == len(batch) and publisher.delivery.failed == 0
    consumed = consume_all(kafka_bootstrap, unique_topic, len(batch))
    assert sorted(value for *_, value in consumed) == sorted(v.encode() for v in batch.values)  # each once
    # per partition, the records keep the order they were sent in
    sent_order = {v.encode(): i for i, v in enumerate(batch.values)}
    by_partition: dict[int, list[int]] = defaultdict(list)
    for partition, _, _, value in consumed:  # consume_all returns each partition in offset order
        by_partition[partition].append(sent_order[value])
    assert all(order == sorted(order) for order in by_partition.values())
