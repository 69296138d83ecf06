"""The Flink session cluster and Beam's services, exercised by a real Beam pipeline.

A trivial pipeline (ReadFromKafka -> upper-case -> WriteToKafka) is submitted
through the Beam job server from a separate process that then exits; the job
must keep running on the cluster and copy records produced afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from darkpool.config import Settings
from darkpool.stack import flink
from darkpool.stack.topics import TopicSpec, create_topics

pytestmark = pytest.mark.stack


def _read(bootstrap: str, topic: str, expected: int, timeout: float) -> dict[bytes, bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen: dict[bytes, bytes] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < expected and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            seen[message.key()] = message.value()
    consumer.close()
    return seen


def test_flink_cluster_answers_with_a_taskmanager(flink_stack: Settings) -> None:
    overview = flink.rest_get(flink_stack, "/overview")
    assert overview["taskmanagers"] == 1
    assert overview["slots-total"] == flink_stack.taskmanager_slots
    assert overview["flink-version"] == "1.19.3"


def test_beam_kafka_pipeline_keeps_running_after_its_client_exits(flink_stack: Settings, unique_topic: str) -> None:
    source, target = f"{unique_topic}.in", f"{unique_topic}.out"
    bootstrap = flink_stack.bootstrap_servers
    create_topics(bootstrap, {source: TopicSpec(2), target: TopicSpec(2)})
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(20):
        producer.produce(source, key=f"before-{i}".encode(), value=f"value {i}".encode())
    producer.flush(30)

    job_name = f"smoke-{unique_topic}"
    submit = subprocess.run(
        [sys.executable, "-c",
         "import sys; from darkpool.config import load_settings; from darkpool.stack.smoke import submit_copy_job; "
         "print(submit_copy_job(load_settings(), sys.argv[1], sys.argv[2], sys.argv[3]))",
         source, target, job_name],
        capture_output=True, text=True, timeout=300)
    assert submit.returncode == 0, submit.stderr[-3000:]
    assert "RUNNING" in submit.stdout
    try:
        first = _read(bootstrap, target, 20, timeout=120)
        assert first == {f"before-{i}".encode(): f"VALUE {i}".encode() for i in range(20)}

        # the submitting process is gone: records produced now must still be copied
        for i in range(10):
            producer.produce(source, key=f"after-{i}".encode(), value=f"late value {i}".encode())
        producer.flush(30)
        everything = _read(bootstrap, target, 30, timeout=90)
        assert {k: v for k, v in everything.items() if k.startswith(b"after-")} == {
            f"after-{i}".encode(): f"LATE VALUE {i}".encode() for i in range(10)}

        job_ids = flink.running_job_ids(flink_stack, job_name)
        assert len(job_ids) == 1
        vertices = flink.rest_get(flink_stack, f"/jobs/{job_ids[0]}")["vertices"]
        # the legacy unbounded reader (a native Flink source that checkpoints), not the SDF read
        assert any("ReadFromKafkaViaUnbounded" in v["name"] for v in vertices)
    finally:
        for job_id in flink.running_job_ids(flink_stack, job_name):
            flink.cancel_job(flink_stack, job_id)
