"""The pipeline on the local Flink runner, end to end, against an independent recomputation.

A known tape (out-of-order, too-late and malformed records, duplicates) goes
into a fresh trades topic; the real pipeline runs on the local Flink cluster
(submitted through the Beam job server like `darkpool run`); the test reads
both output topics, the dead-letter topic and the Parquet dataset and checks
the final panes against a pandas recomputation of the same tape. The restart
tests stop the job with a savepoint and resume it, and SIGKILL the
TaskManager so Flink recovers from its last checkpoint; both must end with the
same final panes (nothing lost, nothing counted twice).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flink_support import PipelineRun, Tape, build_tape, wait_until_consumed

from darkpool.config import Settings
from darkpool.stack import flink
from darkpool.stack.services import service_by_name

pytestmark = [pytest.mark.stack, pytest.mark.slow]

@pytest.fixture
def pipeline_run(flink_stack: Settings, tmp_path: Path):
    run = PipelineRun(flink_stack, tmp_path)
    yield run
    run.cancel()


def _tape(seed: int, n: int = 24_000) -> Tape:
    """A tape over the 12 minutes that ended 6 minutes ago: once the watermark reaches the present
    (an idle partition's watermark is the wall clock), every window has had its on-time pane."""
    now = int(time.time() * 1000)
    return build_tape(n, seed=seed, end_ms=now - 6 * 60_000, span_ms=12 * 60_000)


def test_final_panes_equal_an_independent_recomputation(pipeline_run: PipelineRun) -> None:
    tape = _tape(seed=11)
    assert tape.count("late") and tape.count("malformed") and tape.count("out_of_order") and tape.count("dup")
    pipeline_run.publish(tape.records)
    pipeline_run.submit()
    pipeline_run.settle(tape)
    figures = pipeline_run.check_against(tape)
    print("end-to-end:", figures)


def _current_tape(seed: int, n: int = 12_000) -> Tape:
    """A tape over the last 2 minutes, for a stream that continues across a restart: a part published
    after a pause must still be current, or the live watermark (the wall clock, once a partition is
    idle) would already have closed its windows."""
    now = int(time.time() * 1000)
    return build_tape(n, seed=seed, end_ms=now, span_ms=2 * 60_000)


def test_stop_with_savepoint_and_resume_loses_and_double_counts_nothing(pipeline_run: PipelineRun) -> None:
    settings = pipeline_run.settings
    first = _current_tape(seed=12)
    pipeline_run.publish(first.records)
    job_id = pipeline_run.submit()
    wait_until_consumed(settings.bootstrap_servers, pipeline_run.job_name, pipeline_run.topics["trades"],
                        timeout=300)
    savepoint = flink.stop_with_savepoint(settings, job_id)
    assert Path(savepoint.removeprefix("file:")).exists()
    assert not flink.running_job_ids(settings, pipeline_run.job_name)

    resumed = pipeline_run.submit(savepoint=savepoint)
    flink.wait_job_running(settings, resumed)
    second = _current_tape(seed=22)
    pipeline_run.publish(second.records)
    whole = Tape(first.records + second.records)
    pipeline_run.settle(whole)
    pipeline_run.check_against(whole, check_parquet=False)


def test_taskmanager_killed_mid_stream_recovers_from_checkpoint(pipeline_run: PipelineRun) -> None:
    settings = pipeline_run.settings
    first = _current_tape(seed=13)
    pipeline_run.publish(first.records)
    job_id = pipeline_run.submit()
    wait_until_consumed(settings.bootstrap_servers, pipeline_run.job_name, pipeline_run.topics["trades"],
                        timeout=300)  # offsets are committed when a checkpoint completes

    taskmanager = service_by_name(settings, "flink-taskmanager")
    taskmanager.kill()
    second = _current_tape(seed=23)
    pipeline_run.publish(second.records)  # while the job has no TaskManager
    taskmanager.start()
    whole = Tape(first.records + second.records)
    pipeline_run.settle(whole)
    assert flink.rest_get(settings, f"/jobs/{job_id}/checkpoints")["counts"]["restored"] >= 1
    pipeline_run.check_against(whole, check_parquet=False)
