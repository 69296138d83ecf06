"""Beam's side of the local stack: the Flink job server, the KafkaIO expansion
service and the Python SDK worker pool.

- The job server (Beam's FlinkJobServerDriver) takes portable pipelines and
  runs them on the Flink session cluster, staging its own classpath (KafkaIO,
  the Java SDK harness) with each job.
- The expansion service expands ReadFromKafka/WriteToKafka into Java KafkaIO
  with the EMBEDDED environment (the Java code runs inside the TaskManager) and
  the legacy unbounded reader (`use_deprecated_read`: the SDF-based reader never
  completed a Flink checkpoint, see docs/design.md, "Pitfalls").
- The worker pool runs the Python SDK workers (EXTERNAL environment), so a
  submitted job keeps running after its client exits. It starts workers as
  `python` from PATH, so the project's virtual environment goes first on PATH,
  and with a user-state cache (darkpool.stack.worker_pool).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from darkpool.config import Settings
from darkpool.stack import jvm
from darkpool.stack.flink import write_conf
from darkpool.stack.process import Service, java_executable, port_open


def job_server_service(settings: Settings) -> Service:
    def command() -> list[str]:
        conf = write_conf(settings)
        return [java_executable(), "-Xms256m", "-Xmx1g", *jvm.JAVA17_OPENS,
                "-cp", jvm.classpath(settings, "beam"),
                "org.apache.beam.runners.flink.FlinkJobServerDriver",
                f"--flink-master={settings.host}:{settings.flink_rest_port}",
                f"--flink-conf-dir={conf}",
                f"--job-host={settings.host}",
                f"--job-port={settings.job_server_port}",
                f"--artifact-port={settings.job_server_artifact_port}",
                f"--expansion-port={settings.job_server_expansion_port}",
                f"--artifacts-dir={settings.state_dir / 'beam' / 'artifacts'}"]

    return Service(
        name="beam-job-server", port=settings.job_server_port, settings=settings, command=command,
        ready=lambda: port_open(settings.host, settings.job_server_port),
        description="Beam 2.62.0 Flink job server (portable runner endpoint)",
        extra_ports=(settings.job_server_artifact_port, settings.job_server_expansion_port), start_timeout=90,
        code_files=lambda: jvm.jars(settings, "beam"),
    )


def expansion_service(settings: Settings) -> Service:
    def command() -> list[str]:
        return [java_executable(), "-Xms128m", "-Xmx512m", *jvm.JAVA17_OPENS,
                "-cp", jvm.classpath(settings, "beam"),
                "org.apache.beam.sdk.expansion.service.ExpansionService", str(settings.expansion_port),
                "--defaultEnvironmentType=EMBEDDED", "--experiments=use_deprecated_read"]

    return Service(
        name="beam-expansion-service", port=settings.expansion_port, settings=settings, command=command,
        ready=lambda: port_open(settings.host, settings.expansion_port),
        description="Beam Java expansion service for KafkaIO (EMBEDDED, legacy unbounded reader)",
        start_timeout=90, code_files=lambda: jvm.jars(settings, "beam"),
    )


def worker_pool_service(settings: Settings) -> Service:
    venv_bin = str(Path(sys.executable).parent)

    def command() -> list[str]:
        return [sys.executable, "-m", "darkpool.stack.worker_pool", f"--port={settings.worker_pool_port}"]

    def env() -> dict[str, str]:
        return {"PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}

    return Service(
        name="beam-worker-pool", port=settings.worker_pool_port, settings=settings, command=command,
        env=env, ready=lambda: port_open(settings.host, settings.worker_pool_port),
        description="Beam Python SDK worker pool (EXTERNAL environment)", start_timeout=60,
    )
