"""Scale-out on the real local Flink cluster: two TaskManagers, parallelism > 1, and rescaling a job.

One job goes through every step (each a job submission, which is what costs time here):

1. parallelism 1, trades published, stopped with a savepoint (`darkpool jobs stop`);
2. resumed at parallelism 4 (`darkpool jobs resume NAME --parallelism 4`): its subtasks
   run on both TaskManagers (slots spread evenly); more trades; the panes (Kafka and
   Parquet) equal the independent recomputation of everything so far;
3. stopped again and resumed at parallelism 1; more trades; the final panes count
   every trade of the three phases exactly once.

This works because every job has the same fixed max parallelism (the key groups its
keyed state is stored in).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flink_support import PipelineRun, Tape, build_tape, wait_until_consumed

from console import cli
from darkpool.config import Settings
from darkpool.stack import flink
from pipeline.commands import load_record

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@pytest.fixture(scope="module")
def two_taskmanagers(flink_stack: Settings) -> Iterator[Settings]:
    """The test stack scaled to two TaskManagers the way a user does it (`darkpool flink start
    --taskmanagers 2`), and back to one afterwards (which stops the second)."""
    assert cli.main(["flink", "start", "--taskmanagers", "2"]) == 0
    settings = dataclasses.replace(flink_stack, taskmanagers=2)
    assert len(flink.registered_taskmanager_ids(settings)) == 2
    yield settings
    assert cli.main(["flink", "start", "--taskmanagers", "1"]) == 0
    assert flink.taskmanager_service(settings, 2).pid() is None
    deadline = time.monotonic() + 60  # the JobManager drops the stopped TaskManager's registration
    while len(flink.registered_taskmanager_ids(settings)) != 1:
        assert time.monotonic() < deadline, flink.registered_taskmanager_ids(settings)
        time.sleep(1)


@pytest.fixture
def scaled_run(two_taskmanagers: Settings, tmp_path: Path) -> Iterator[PipelineRun]:
    run = PipelineRun(two_taskmanagers, tmp_path, partitions=4)
    yield run
    run.cancel()


def _current_tape(seed: int, n: int = 8_000) -> Tape:
    """A tape over the last 2 minutes (it must still be current after a restart)."""
    now = int(time.time() * 1000)
    return build_tape(n, seed=seed, end_ms=now, span_ms=2 * 60_000)


def job_taskmanagers(settings: Settings, job_id: str) -> set[str]:
    """The TaskManagers that run at least one subtask of the job."""
    flink.wait_job_running(settings, job_id)
    vertices = flink.rest_get(settings, f"/jobs/{job_id}")["vertices"]
    used: set[str] = set()
    for vertex in vertices:
        detail = flink.rest_get(settings, f"/jobs/{job_id}/vertices/{vertex['id']}/taskmanagers")
        used |= {tm["taskmanager-id"] for tm in detail["taskmanagers"]}
    return used


def job_parallelism(settings: Settings, job_id: str) -> int:
    """The highest parallelism among the job's vertices, once they all run."""
    flink.wait_job_running(settings, job_id)
    return max(vertex["parallelism"] for vertex in flink.rest_get(settings, f"/jobs/{job_id}")["vertices"])


def _stop(settings: Settings, name: str) -> None:
    assert cli.main(["jobs", "stop", name]) == 0
    assert not flink.running_job_ids(settings, name)


def _resume(settings: Settings, name: str, parallelism: int) -> str:
    assert cli.main(["jobs", "resume", name, "--parallelism", str(parallelism)]) == 0
    job_id = load_record(settings, name)["flink_job_id"]
    flink.wait_job_running(settings, job_id)
    assert job_parallelism(settings, job_id) == parallelism
    return job_id


def test_a_job_rescaled_from_1_to_4_on_two_taskmanagers_and_back_keeps_exact_panes(scaled_run: PipelineRun) -> None:
    settings = scaled_run.settings
    name, trades = scaled_run.job_name, scaled_run.topics["trades"]
    phases = [_current_tape(seed=41)]
    scaled_run.publish(phases[0].records)
    first = scaled_run.submit()
    assert job_parallelism(settings, first) == 1
    record = load_record(settings, name)
    assert (record["parallelism"], record["max_parallelism"]) == (1, settings.flink_max_parallelism)
    wait_until_consumed(settings.bootstrap_servers, name, trades, timeout=300)
    _stop(settings, name)

    wide = _resume(settings, name, 4)
    # the key groups came from the savepoint (Flink's default for the first run, never set explicitly)
    vertices = flink.rest_get(settings, f"/jobs/{wide}")["vertices"]
    assert {vertex["maxParallelism"] for vertex in vertices} == {settings.flink_max_parallelism}, vertices
    used = job_taskmanagers(settings, wide)  # 4 of the 8 slots, spread over both TaskManagers
    assert len(used) == 2 and used <= flink.registered_taskmanager_ids(settings), used
    phases.append(_current_tape(seed=42))
    scaled_run.publish(phases[1].records)
    # at parallelism 4 on two TaskManagers, the panes are exact already
    so_far = Tape(phases[0].records + phases[1].records)
    scaled_run.settle(so_far)
    print("parallelism 1 -> 4 on two TaskManagers:", scaled_run.check_against(so_far, check_parquet=True))
    _stop(settings, name)
    assert load_record(settings, name)["parallelism"] == 4

    _resume(settings, name, 1)
    phases.append(_current_tape(seed=43))
    scaled_run.publish(phases[2].records)
    whole = Tape([record for phase in phases for record in phase.records])
    scaled_run.settle(whole)
    figures = scaled_run.check_against(whole, check_parquet=False)
    print("parallelism 1 -> 4 -> 1:", figures)
