"""`darkpool k8s submit` (what the submission Job runs) with the dev overlay's own ConfigMap arguments,
on the real local Flink stack: only the addresses, topic names and paths that differ between a cluster
and this machine are replaced; every other argument goes to Beam and Flink exactly as the Job passes it.
The job runs and writes panes; a second submission (a re-run Job) finds it running and submits nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from k8s_support import pipeline_argv

from darkpool.config import Settings
from darkpool.stack import flink
from darkpool.stack.topics import TopicSpec, create_topics, end_offset
from deploy import render
from deploy.submit import flag_value
from feed.generator import FeedConfig, TapeGenerator
from feed.producer import publish

pytestmark = pytest.mark.k8s


def with_flags(argv: list[str], values: dict[str, str]) -> list[str]:
    """argv with each flag of ``values`` set to its value (appended when absent)."""
    kept = [a for a in argv if a.split("=", 1)[0] not in values]
    return [*kept, *(f"{flag}={value}" for flag, value in values.items())]


def submit_cli(args_file: Path, settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "console.cli", "k8s", "submit", f"--args-file={args_file}",
                           f"--flink-rest-url={settings.flink_rest_url}", "--timeout=300"],
                          capture_output=True, text=True, timeout=600, env=os.environ.copy())


@pytest.mark.stack
@pytest.mark.slow
def test_submit_runs_the_configmap_pipeline_once(flink_stack: Settings, tmp_path: Path) -> None:
    settings = flink_stack
    argv = pipeline_argv(render.render_objects("dev"))
    prefix = f"k8s.{uuid.uuid4().hex[:8]}"
    topics = {name: f"{prefix}.{name}" for name in ("trades", "deadletter", "liquidity", "market", "alerts")}
    create_topics(settings.bootstrap_servers, {topics["trades"]: TopicSpec(2), topics["deadletter"]: TopicSpec(1),
                                               topics["liquidity"]: TopicSpec(2), topics["market"]: TopicSpec(2),
                                               topics["alerts"]: TopicSpec(1)})
    job_name = f"k8s-submit-{prefix.split('.')[1]}"
    local = {
        "--bootstrap-servers": settings.bootstrap_servers, "--expansion-service": settings.expansion_address,
        "--trades-topic": topics["trades"], "--deadletter-topic": topics["deadletter"],
        "--liquidity-topic": topics["liquidity"], "--market-topic": topics["market"],
        "--alerts-topic": topics["alerts"], "--group-id": job_name,
        "--output": str(tmp_path / "parquet"), "--parallelism": "1",
        "--job_endpoint": settings.job_endpoint,
        "--artifact_endpoint": f"{settings.host}:{settings.job_server_artifact_port}",
        "--environment_config": settings.worker_pool_address, "--job_name": job_name,
        "--state_backend_storage_path": (settings.state_dir / "flink" / "checkpoints").as_uri(),
    }
    unchanged = [a for a in argv if a.split("=", 1)[0] not in local]
    assert {"--runner=PortableRunner", "--environment_type=EXTERNAL", "--max_parallelism=128",
            "--finish_bundle_before_checkpointing", "--checkpointing_interval=10000", "--detach",
            "--alerts"} <= set(unchanged)
    args_file = tmp_path / "args"
    args_file.write_text("# the dev ConfigMap's arguments, local addresses\n" + "\n".join(with_flags(argv, local)))

    try:
        first = submit_cli(args_file, settings)
        assert first.returncode == 0, first.stdout + first.stderr
        submitted = re.search(rf"submitted {job_name}: Flink job ([0-9a-f]{{32}})", first.stdout)
        assert submitted, first.stdout
        job_id = submitted.group(1)
        assert "the Beam job server at" in first.stdout and "answers" in first.stdout
        flink.wait_job_running(settings, job_id)
        job = flink.rest_get(settings, f"/jobs/{job_id}")
        assert job["name"] == job_name
        assert {vertex.get("maxParallelism") for vertex in job["vertices"]} == {128}, job["vertices"]

        # trades in, panes out (early panes every 2 s)
        generator = TapeGenerator(FeedConfig(seed=7, id_prefix="K8S-"))
        now = int(time.time() * 1000)
        batch = generator.batch(np.linspace(now - 60_000, now, 2_000).astype(np.int64))
        summary = publish(generator.encoder.encode(batch).records(), settings.bootstrap_servers, topics["trades"],
                          create_topic=False)
        assert summary.failed == 0
        deadline = time.monotonic() + 180
        while end_offset(settings.bootstrap_servers, topics["liquidity"]) == 0:
            assert time.monotonic() < deadline, "no liquidity pane within 180 s"
            time.sleep(2.0)

        # the Job run again (a retry, or `kubectl apply` of a new Job): nothing submitted twice
        second = submit_cli(args_file, settings)
        assert second.returncode == 0, second.stdout + second.stderr
        assert f"job {job_name!r} already runs on Flink ({job_id}" in second.stdout
        assert flink.running_job_ids(settings, job_name) == [job_id]
        assert flag_value(with_flags(argv, local), "--job_name") == job_name
    finally:
        for running in flink.running_job_ids(settings, job_name):
            flink.cancel_job(settings, running)


def test_submit_refuses_arguments_the_pipeline_rejects(tmp_path: Path) -> None:
    args_file = tmp_path / "args"
    argv = pipeline_argv(render.render_objects("dev"))
    args_file.write_text("\n".join(with_flags(argv, {"--period-minutes": "2"})))
    result = subprocess.run([sys.executable, "-m", "console.cli", "k8s", "submit", f"--args-file={args_file}",
                             "--flink-rest-url=http://127.0.0.1:1", "--timeout=5"],
                            capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert result.returncode == 1
    assert "the pipeline rejects its arguments" in result.stderr and "multiple of --period-minutes" in result.stderr
