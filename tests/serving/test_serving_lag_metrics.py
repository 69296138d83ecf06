"""Consumer lag on /metrics, against the real broker: serving's own consumer and the pipeline's consumer group.

Records are produced to chosen partitions, so every partition's high watermark
is known; the lag series must equal them minus what was read or committed,
exactly. The pipeline's group is played by a real consumer of that group that
reads some records and commits (as KafkaIO does when Flink completes a
checkpoint).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from sample_panes import CREATED, Tape, Topics, make_topics

from darkpool.contracts import liquidity_key, market_key
from darkpool.stack.topics import TopicSpec, create_topics
from serving import create_app
from serving.metrics import LagProbe, LagSnapshot, lag_families, partition_lag

Series = dict[tuple[tuple[str, str], ...], float]


def scrape(app: Flask) -> dict[str, Series]:
    """GET /metrics, parsed by Prometheus' own parser: sample name -> {labels: value}."""
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    samples: dict[str, Series] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def by_partition(series: Series, topic: str, **labels: str) -> dict[int, int]:
    """{partition: value} of the samples of one topic (and the given other labels)."""
    out = {}
    for key, value in series.items():
        named = dict(key)
        if named.get("topic") == topic and all(named.get(k) == v for k, v in labels.items()):
            out[int(named["partition"])] = int(value)
    return out


def produce_to_partitions(bootstrap: str, topic: str, counts: list[int], records: list[tuple[bytes, bytes]]) -> None:
    """``counts[p]`` records (key, value), taken in turn from ``records``, to partition p; waits for delivery."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    failures: list[str] = []
    i = 0
    for partition, count in enumerate(counts):
        for _ in range(count):
            key, value = records[i % len(records)]
            i += 1
            producer.produce(topic, value, key=key, partition=partition,
                             on_delivery=lambda err, _m: failures.append(str(err)) if err else None)
    assert producer.flush(30) == 0 and not failures, failures[:3]


def pane_records(tape: Tape) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    liquidity = [(liquidity_key(r["symbol"], r["venue"], r["window_start"]), orjson.dumps(r)) for r in tape.liquidity]
    market = [(market_key(r["symbol"], r["window_start"]), orjson.dumps(r)) for r in tape.market]
    return liquidity, market


@pytest.fixture
def trades_topic(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh 3-partition topic standing for the trades topic."""
    topic = f"test.lag.trades.{uuid.uuid4().hex[:10]}"
    create_topics(kafka_bootstrap, {topic: TopicSpec(3, {})})
    CREATED.append(topic)  # deleted with the serving tests' topics at the session's end
    yield topic


def commit_after_reading(bootstrap: str, group: str, topic: str, reads: dict[int, int]) -> None:
    """A real consumer of ``group`` reads ``reads[p]`` more records of partition p from the group's committed
    offset (or the start) and commits what it read."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    try:
        committed = {tp.partition: tp.offset for tp in
                     consumer.committed([TopicPartition(topic, p) for p in reads], timeout=10)}
        for partition, count in reads.items():
            start = committed[partition] if committed[partition] >= 0 else 0
            consumer.assign([TopicPartition(topic, partition, start)])
            last = start - 1
            deadline = time.monotonic() + 30
            while last < start + count - 1:
                assert time.monotonic() < deadline, f"could not read {count} records of {topic}[{partition}]"
                msg = consumer.poll(1.0)
                if msg is not None and msg.error() is None:
                    last = msg.offset()
            consumer.commit(offsets=[TopicPartition(topic, partition, last + 1)], asynchronous=False)
    finally:
        consumer.close()


def lag_app(app_factory, topics: Topics, **extra) -> Flask:
    return app_factory(topics, LAG_CHECK_SECONDS=extra.pop("LAG_CHECK_SECONDS", 0.2), **extra)


# -- the pure rule ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("low", "high", "position", "lag"), [
    (0, 10, 4, 6), (0, 10, 10, 0), (0, 10, None, 10), (3, 10, None, 7), (3, 10, 1, 7), (0, 0, None, 0),
    (0, 5, 7, 0),  # a position past the watermark it was compared with (read after the probe): never negative
])
def test_partition_lag(low: int, high: int, position: int | None, lag: int) -> None:
    assert partition_lag(low, high, position) == lag


def test_lag_families_of_a_snapshot() -> None:
    snap = LagSnapshot(
        watermarks={("liq", 0): (0, 9), ("liq", 1): (2, 4), ("trades", 0): (5, 20), ("trades", 1): (0, 8),
                    ("old", 0): (0, 3)},
        committed={("trades", 0): 12, ("old", 0): 3}, positions={("liq", 0): 9})
    families = {f.name: {tuple(s.labels.values()): s.value for s in f.samples}
                for f in lag_families(snap, ("liq",), "g", ("trades",))}
    assert families["darkpool_serving_partition_lag"] == {("liq", "0"): 0, ("liq", "1"): 2}  # 1: never read
    assert families["darkpool_pipeline_committed_offset"] == {("g", "old", "0"): 3, ("g", "trades", "0"): 12}
    assert families["darkpool_pipeline_consumer_lag"] == {  # a topic the group committed on is included
        ("g", "old", "0"): 0, ("g", "trades", "0"): 8, ("g", "trades", "1"): 8}
    assert families["darkpool_kafka_high_watermark"][("trades", "0")] == 20
    assert "darkpool_pipeline_consumer_lag" not in {f.name for f in lag_families(snap, ("liq",), "", ())}


def test_no_consumer_no_lag_series_and_no_broker_asked() -> None:
    app = create_app({"CONSUMER_ENABLED": False, "BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    started = time.monotonic()
    samples = scrape(app)
    assert time.monotonic() - started < 1.0
    assert not {"darkpool_lag_probe_up", "darkpool_serving_partition_lag"} & samples.keys()
    bad = app.test_client().get("/metrics?x=1")  # no query parameters, as every API route
    assert bad.status_code == 400 and "unknown query parameter" in bad.get_json()["error"]["message"]


# -- against the broker ---------------------------------------------------------------------------------------
def test_serving_partition_lag_is_high_watermark_minus_its_position(kafka_bootstrap: str, tape: Tape,
                                                                   app_factory) -> None:
    topics = make_topics(kafka_bootstrap, partitions=3)
    liquidity, market = pane_records(tape)
    produce_to_partitions(kafka_bootstrap, topics.liquidity, [3, 5, 0], liquidity)
    produce_to_partitions(kafka_bootstrap, topics.market, [2, 0, 4], market)
    app = lag_app(app_factory, topics, PIPELINE_GROUP="")

    samples = scrape(app)  # caught up: nothing left to read
    assert samples["darkpool_lag_probe_up"][()] == 1
    high = samples["darkpool_kafka_high_watermark"]
    assert by_partition(high, topics.liquidity) == {0: 3, 1: 5, 2: 0}
    assert by_partition(high, topics.market) == {0: 2, 1: 0, 2: 4}
    lag = samples["darkpool_serving_partition_lag"]
    assert by_partition(lag, topics.liquidity) == {0: 0, 1: 0, 2: 0}
    assert by_partition(lag, topics.market) == {0: 0, 1: 0, 2: 0}
    assert "darkpool_pipeline_consumer_lag" not in samples  # PIPELINE_GROUP empty: not reported

    app.extensions["darkpool"].consumer.stop()  # serving stops reading; more records arrive
    produce_to_partitions(kafka_bootstrap, topics.liquidity, [1, 0, 2], liquidity)
    produce_to_partitions(kafka_bootstrap, topics.market, [0, 3, 0], market)
    time.sleep(0.3)  # past LAG_CHECK_SECONDS: the next scrape probes again
    lag = scrape(app)["darkpool_serving_partition_lag"]
    assert by_partition(lag, topics.liquidity) == {0: 1, 1: 0, 2: 2}
    assert by_partition(lag, topics.market) == {0: 0, 1: 3, 2: 0}


def test_pipeline_group_lag_is_high_watermark_minus_committed(kafka_bootstrap: str, trades_topic: str,
                                                             app_factory) -> None:
    group = f"test-lag-group-{uuid.uuid4().hex[:8]}"
    produce_to_partitions(kafka_bootstrap, trades_topic, [10, 7, 4], [(b"AAPL", b'{"n": 1}')])
    commit_after_reading(kafka_bootstrap, group, trades_topic, {0: 6, 1: 7})  # partition 2: never committed
    app = lag_app(app_factory, make_topics(kafka_bootstrap, partitions=1), PIPELINE_GROUP=group,
                  TRADES_TOPIC=trades_topic)

    samples = scrape(app)
    assert by_partition(samples["darkpool_pipeline_committed_offset"], trades_topic, group=group) == {0: 6, 1: 7}
    assert by_partition(samples["darkpool_pipeline_consumer_lag"], trades_topic, group=group) == {0: 4, 1: 0, 2: 4}

    commit_after_reading(kafka_bootstrap, group, trades_topic, {0: 3, 2: 1})  # the next "checkpoint"
    produce_to_partitions(kafka_bootstrap, trades_topic, [0, 5, 0], [(b"MSFT", b'{"n": 2}')])
    time.sleep(0.3)
    samples = scrape(app)
    assert by_partition(samples["darkpool_pipeline_committed_offset"], trades_topic, group=group) == \
        {0: 9, 1: 7, 2: 1}
    assert by_partition(samples["darkpool_pipeline_consumer_lag"], trades_topic, group=group) == {0: 1, 1: 5, 2: 3}
    assert by_partition(samples["darkpool_kafka_high_watermark"], trades_topic) == {0: 10, 1: 12, 2: 4}


def test_scrapes_within_the_period_share_one_probe(kafka_bootstrap: str, trades_topic: str, app_factory) -> None:
    group = f"test-lag-group-{uuid.uuid4().hex[:8]}"
    produce_to_partitions(kafka_bootstrap, trades_topic, [5, 5, 5], [(b"AAPL", b"x")])
    app = lag_app(app_factory, make_topics(kafka_bootstrap, partitions=1), PIPELINE_GROUP=group,
                  TRADES_TOPIC=trades_topic, LAG_CHECK_SECONDS=60.0)
    first = scrape(app)
    commit_after_reading(kafka_bootstrap, group, trades_topic, {0: 5})
    for _ in range(20):
        again = scrape(app)
    assert again["darkpool_lag_probes_total"] == {(("outcome", "ok"),): 1.0}  # one probe for 21 scrapes
    assert again["darkpool_pipeline_consumer_lag"] == first["darkpool_pipeline_consumer_lag"]  # cached


def test_a_broker_that_does_not_answer_reports_the_probe_down(app_factory, kafka_bootstrap: str) -> None:
    app = lag_app(app_factory, make_topics(kafka_bootstrap, partitions=1))
    assert scrape(app)["darkpool_lag_probe_up"][()] == 1
    collector = app.extensions["darkpool"].metrics.lag_collector
    collector.probe = LagProbe("127.0.0.1:1", timeout=0.5)  # a real probe of a port where no broker listens
    time.sleep(0.3)
    started = time.monotonic()
    samples = scrape(app)
    assert time.monotonic() - started < 5.0  # bounded by the probe's timeout, not hanging
    assert samples["darkpool_lag_probe_up"][()] == 0
    assert "darkpool_serving_partition_lag" not in samples
    assert samples["darkpool_lag_probes_total"][(("outcome", "error"),)] == 1
