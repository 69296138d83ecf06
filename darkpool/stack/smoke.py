"""A stack self-check: a trivial Beam pipeline that copies one Kafka topic to another.

It exercises every service of the local stack (Kafka, the Flink cluster, the
Beam job server, the KafkaIO expansion service and the Python worker pool) the
way the real pipeline does, and is submitted detached: the Flink job keeps
running after the submitting process exits. tests/stack/test_flink_stack.py
submits it; it lives in the package (not in tests/) because the Flink job's Python
workers, started by the worker pool, must import its function by module name.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.kafka import ReadFromKafka, WriteToKafka
from apache_beam.options.pipeline_options import PipelineOptions

from darkpool.config import Settings
from darkpool.stack.flink import checkpoint_dir


def portable_flink_options(settings: Settings, job_name: str, extra: list[str] | None = None) -> PipelineOptions:
    """PipelineOptions for a detached streaming job on the local Flink cluster through the job server."""
    return PipelineOptions([
        "--runner=PortableRunner",
        f"--job_endpoint={settings.job_endpoint}",
        "--environment_type=EXTERNAL",
        f"--environment_config={settings.worker_pool_address}",
        "--streaming",
        f"--job_name={job_name}",
        "--checkpointing_interval=10000",
        "--state_backend=rocksdb",
        f"--state_backend_storage_path={checkpoint_dir(settings).as_uri()}",
        *(extra or []),
    ])


def upper_case_value(record: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """The smoke job's transformation: the value in upper case, the key unchanged."""
    key, value = record
    return key, value.upper()


def submit_copy_job(settings: Settings, source_topic: str, target_topic: str, job_name: str) -> str:
    """Submit the copy job and return its Beam job state right after submission."""
    consumer_config = {"bootstrap.servers": settings.bootstrap_servers, "auto.offset.reset": "earliest",
                       "group.id": f"darkpool-smoke-{job_name}"}
    pipeline = beam.Pipeline(options=portable_flink_options(settings, job_name))
    _ = (pipeline
         | "ReadTopic" >> ReadFromKafka(consumer_config=consumer_config, topics=[source_topic],
                                        expansion_service=settings.expansion_address,
                                        timestamp_policy=ReadFromKafka.create_time_policy)
         | "UpperCaseValue" >> beam.Map(upper_case_value).with_output_types(tuple[bytes, bytes])
         | "WriteTopic" >> WriteToKafka(producer_config={"bootstrap.servers": settings.bootstrap_servers},
                                        topic=target_topic, expansion_service=settings.expansion_address))
    result = pipeline.run()
    return str(result.state)
