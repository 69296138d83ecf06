"""The Flink JobManager SIGKILLed mid-stream: the user is told what happened, and the job resumes exactly.

The local cluster is a session cluster without high availability: its JobManager keeps
the jobs in memory only, so when it dies the running job is gone, and a restarted
JobManager does not know it. What survives is on disk: the job's retained checkpoints
(chk-N with its ``_metadata``) and its record under <state>/jobs/<name>.json. The test:

1. publishes a tape, submits the pipeline, waits until the tape went through a completed
   checkpoint (the group's committed offsets reach the topic's end), publishes a second
   part and, while the job works on it, SIGKILLs the JobManager's process group;
2. `darkpool jobs list` says the cluster does not answer and names the job with its last
   retained checkpoint and what to run (time to detect = kill to that answer);
3. restarts the stack the way a user does (`darkpool stack up`): the TaskManager outlives
   its JobManager and still runs the lost job's tasks (until its heartbeat times out), so
   `stack up` restarts it before the JobManager, and those tasks stop writing panes that no
   checkpoint covers; `darkpool stack status` then says the job is not on the cluster
   because the JobManager restarted, with its last retained checkpoint chk-N and
   `darkpool jobs resume NAME`;
4. `darkpool jobs resume NAME` continues from that checkpoint (the new job's restored
   checkpoint is that chk-N), a third part is published, and the final panes (Kafka and
   Parquet) equal an independent recomputation of all three parts: nothing lost, nothing
   counted twice. `stack status` shows the resumed job's restarts and checkpoints.

It ends with the test stack healthy (JobManager and TaskManager up, no job left running).
About 3-4 minutes: a job submission, a JobManager start, a resubmission and a settle.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from flink_support import PipelineRun, Tape, build_tape, wait_until_consumed

from console import cli
from darkpool.config import Settings
from darkpool.stack import flink
from darkpool.stack import jobs as stack_jobs
from darkpool.stack.commands import stop_orphaned_taskmanagers
from darkpool.stack.services import service_by_name, stack_services

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def _current_tape(seed: int, n: int = 8_000) -> Tape:
    """A tape over the last 2 minutes (still current when a later part is published after the restart)."""
    return build_tape(n, seed=seed, end_ms=int(time.time() * 1000), span_ms=2 * 60_000)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a `darkpool` command in-process; returns what it printed (and echoes it to the test's output)."""
    capsys.readouterr()
    status = cli.main(list(argv))
    out = capsys.readouterr().out
    with capsys.disabled():
        print(f"\n$ darkpool {' '.join(argv)}   (exit {status})\n{out}", flush=True)
    return out


@pytest.fixture
def archiving_stack(flink_stack: Settings) -> Settings:
    """The test stack with a JobManager that archives ended jobs (restarted if it predates that setting)."""
    config = {entry["key"]: entry["value"] for entry in flink.rest_get(flink_stack, "/jobmanager/config")}
    if config.get("jobmanager.archive.fs.dir") != flink.flink_configuration(flink_stack)["jobmanager.archive.fs.dir"]:
        stale = [s for s in stack_services(flink_stack) if s.name.startswith("flink-")]
        for service in reversed(stale):
            service.stop()
        for service in stale:
            service.start()
    return flink_stack


@pytest.fixture
def loss_run(archiving_stack: Settings, tmp_path: Path):
    run = PipelineRun(archiving_stack, tmp_path)
    yield run
    # leave the shared stack healthy: every service up (the JobManager restarted), no job of ours running
    stop_orphaned_taskmanagers(archiving_stack)
    for service in stack_services(archiving_stack):
        service.start()
    run.cancel()


def test_jobmanager_sigkill_is_reported_and_the_job_resumes_from_its_retained_checkpoint(
        loss_run: PipelineRun, capsys: pytest.CaptureFixture[str]) -> None:
    run, settings = loss_run, loss_run.settings
    started = time.monotonic()
    figures: dict[str, object] = {}

    def phase(name: str) -> float:
        elapsed = time.monotonic() - started
        with capsys.disabled():
            print(f"\n[{elapsed:6.1f} s] {name}", flush=True)
        return elapsed

    first = _current_tape(seed=41)
    run.publish(first.records)
    job_id = run.submit()
    wait_until_consumed(settings.bootstrap_servers, run.job_name, run.topics["trades"], timeout=300)
    assert flink.rest_get(settings, f"/jobs/{job_id}/checkpoints")["counts"]["completed"] >= 1
    phase("first part consumed through a completed checkpoint")

    # mid-stream: a second part is being processed when the JobManager is SIGKILLed
    second = _current_tape(seed=42)
    run.publish(second.records)
    time.sleep(2.0)
    jobmanager = service_by_name(settings, "flink-jobmanager")
    taskmanager = service_by_name(settings, "flink-taskmanager")
    killed = time.monotonic()
    jobmanager.kill()
    phase("JobManager SIGKILLed")
    retained = stack_jobs.retained_checkpoints(settings, job_id)
    assert retained, "the job left no complete checkpoint"
    last = retained[0]

    # detection: `darkpool jobs list` right after the kill
    out = _cli(capsys, "jobs", "list")
    figures["detect_s"] = round(time.monotonic() - killed, 1)
    assert "does not answer" in out and "not running" in out
    lost = [line for line in out.splitlines() if f"job {run.job_name} ({job_id})" in line]
    assert lost, out
    assert "not on the cluster (the JobManager is down" in lost[0]
    assert f"last retained checkpoint {last.label} at " in lost[0]
    assert f"run `darkpool jobs resume {run.job_name}`" in lost[0]

    # the TaskManager outlives its JobManager, still running the lost job's tasks (until its heartbeat with the
    # dead JobManager times out): `stack up` restarts it first, so they stop writing panes no checkpoint covers
    orphan = taskmanager.pid()
    figures["taskmanager_survived"] = orphan is not None
    figures["orphan_stopped_after_s"] = round(time.monotonic() - killed, 1)
    out = _cli(capsys, "stack", "up")
    restarted = time.monotonic()
    figures["restart_s"] = round(restarted - killed, 1)
    phase("stack up again")
    assert jobmanager.pid() is not None and taskmanager.pid() is not None
    if orphan is not None:
        assert "flink-taskmanager: the JobManager is not running; stopping this TaskManager" in out
        assert taskmanager.pid() != orphan
    out = _cli(capsys, "stack", "status")
    lines = [line for line in out.splitlines() if f"job {run.job_name} ({job_id})" in line]
    assert lines, out
    assert re.search(r"not on the cluster \(JobManager restarted at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", lines[0])
    assert f"last retained checkpoint {last.label} at " in lines[0]
    assert f"`darkpool jobs resume {run.job_name}`" in lines[0]
    assert job_id not in (stack_jobs.cluster_job_states(settings) or {})  # the restarted JobManager forgot it

    # resume from the retained checkpoint
    retained = stack_jobs.retained_checkpoints(settings, job_id)
    assert retained[0].number == last.number, "the dead job wrote a checkpoint after the kill"
    out = _cli(capsys, "jobs", "resume", run.job_name)
    assert f"from its last retained checkpoint {last.label}: {last.uri}" in out
    resumed = stack_jobs.load_record(settings, run.job_name)["flink_job_id"]
    assert resumed != job_id
    flink.wait_job_running(settings, resumed)
    figures["resume_s"] = round(time.monotonic() - restarted, 1)
    figures["kill_to_running_s"] = round(time.monotonic() - killed, 1)
    figures["checkpoint"] = last.label
    phase(f"resumed from {last.label}")
    restored = flink.rest_get(settings, f"/jobs/{resumed}/checkpoints")["latest"]["restored"]
    assert restored is not None and restored["external_path"].rstrip("/").endswith(f"{job_id}/{last.label}")

    third = _current_tape(seed=43)
    run.publish(third.records)
    whole = Tape(first.records + second.records + third.records)
    run.settle(whole)
    phase("settled")
    counts = run.check_against(whole)
    phase("final panes equal the recomputation of all three parts")

    # the resumed job's health in `stack status`: restarts and checkpoints; the lost job is no longer listed
    out = _cli(capsys, "stack", "status")
    assert re.search(rf"job {run.job_name} \({resumed}\): RUNNING, up .*, \d+ restarts?", out), out
    assert re.search(r"checkpoints: \d+ completed, \d+ failed.*; last chk-\d+ \d+ s ago, [\d.]+ [kM]?B written", out)
    assert f"({job_id})" not in out
    with capsys.disabled():
        print(f"\nJobManager loss: {figures}; counts {counts}", flush=True)
