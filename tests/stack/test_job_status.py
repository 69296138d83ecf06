"""What `darkpool stack status` and `darkpool jobs list` say about the pipeline's Flink jobs (no cluster needed).

The pure functions of darkpool.stack.jobs are fed REST payloads in the shapes Flink 1.19
answers (the completed-checkpoint, metrics and empty-exceptions payloads below were
captured from the local cluster running the pipeline; the failed-checkpoint and exception
entries carry the fields Flink's FailedCheckpointStatistics and exception history have),
and the checkpoint and job-record look-ups run on a real state folder in tmp_path.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from darkpool.config import Settings
from darkpool.errors import DarkpoolError
from darkpool.stack import flink
from darkpool.stack import jobs as stack_jobs
from darkpool.stack.jobs import Fate, JobManagerInfo, RestorePoint, RetainedCheckpoint

JOB = "e0d357ce413820a2b982dc59e3d665cb"
COMPLETED = {
    "className": "completed", "id": 3, "status": "COMPLETED", "is_savepoint": False, "savepointFormat": None,
    "trigger_timestamp": 1796144240737, "latest_ack_timestamp": 1796144242631, "checkpointed_size": 1396464,
    "state_size": 2491085, "end_to_end_duration": 1894, "alignment_buffered": 0, "processed_data": 0,
    "persisted_data": 0, "num_subtasks": 6, "num_acknowledged_subtasks": 6, "checkpoint_type": "CHECKPOINT",
    "tasks": {}, "external_path": f"file:/work/main/.state/flink/checkpoints/{JOB}/chk-3", "discarded": False,
}
CHECKPOINTS = {  # GET /jobs/<id>/checkpoints of the running pipeline (summary trimmed)
    "counts": {"restored": 0, "total": 5, "in_progress": 0, "completed": 3, "failed": 2},
    "summary": {"checkpointed_size": {"min": 919351, "max": 1396464, "avg": 1184320}},
    "latest": {"completed": COMPLETED, "savepoint": None, "failed": None, "restored": None},
    "history": [COMPLETED],
}
FAILED = {
    "className": "failed", "id": 4, "status": "FAILED", "is_savepoint": False, "savepointFormat": None,
    "trigger_timestamp": 1796144250737, "latest_ack_timestamp": 1796144251000, "checkpointed_size": 0,
    "state_size": 0, "end_to_end_duration": 600000, "alignment_buffered": 0, "processed_data": 0,
    "persisted_data": 0, "num_subtasks": 6, "num_acknowledged_subtasks": 4, "checkpoint_type": "CHECKPOINT",
    "tasks": {}, "failure_timestamp": 1796144252000,
    "failure_message": "Checkpoint expired before completing.\n\tat org.apache.flink.runtime.checkpoint...",
}
METRICS = [{"id": "lastCheckpointSize", "value": "919351"}, {"id": "numRestarts", "value": "0"},
           {"id": "fullRestarts", "value": "0"}, {"id": "lastCheckpointDuration", "value": "7128"}]
NO_EXCEPTIONS = {"root-exception": None, "timestamp": None, "all-exceptions": [], "truncated": False,
                 "exceptionHistory": {"entries": [], "truncated": False}}


def _exception(timestamp: int, first_line: str, task: str) -> dict:
    return {"exceptionName": first_line.split(":")[0], "stacktrace": f"{first_line}\n\tat org.apache.flink...",
            "timestamp": timestamp, "taskName": task, "endpoint": "127.0.0.1:40123",
            "taskManagerId": "flink-taskmanager-1a2b3c4d", "failureLabels": {}, "concurrentExceptions": []}


# --- REST payloads -> figures ------------------------------------------------------------
def test_checkpoint_figures_of_a_running_job() -> None:
    summary = stack_jobs.summarize_checkpoints(CHECKPOINTS)
    assert (summary.completed, summary.failed, summary.in_progress, summary.restored) == (3, 2, 0, 0)
    assert (summary.last_id, summary.last_completed_ms) == (3, 1796144242631)
    assert (summary.last_size, summary.last_state_size) == (1396464, 2491085)
    assert summary.last_path == COMPLETED["external_path"]
    assert summary.last_failure is None and summary.last_failure_ms is None


def test_the_latest_checkpoint_failure_is_its_first_line() -> None:
    payload = copy.deepcopy(CHECKPOINTS)
    payload["latest"]["failed"] = FAILED
    summary = stack_jobs.summarize_checkpoints(payload)
    assert summary.last_failure == "Checkpoint expired before completing."
    assert summary.last_failure_ms == 1796144252000


def test_a_job_without_any_checkpoint_yet() -> None:
    payload = {"counts": {"restored": 0, "total": 0, "in_progress": 0, "completed": 0, "failed": 0},
               "summary": {}, "latest": {"completed": None, "savepoint": None, "failed": None, "restored": None},
               "history": []}
    summary = stack_jobs.summarize_checkpoints(payload)
    assert summary.completed == 0 and summary.last_id is None and summary.last_size is None


def test_restarts_come_from_the_num_restarts_metric() -> None:
    assert stack_jobs.restarts_of(METRICS) == 0
    assert stack_jobs.restarts_of([{"id": "numRestarts", "value": "7"}]) == 7
    assert stack_jobs.restarts_of([]) is None  # the metric is not reported (yet)
    assert stack_jobs.restarts_of([{"id": "numRestarts", "value": "n/a"}]) is None


def test_the_newest_exception_of_the_history_is_shown() -> None:
    assert stack_jobs.summarize_exceptions(NO_EXCEPTIONS).count == 0
    payload = copy.deepcopy(NO_EXCEPTIONS)
    payload["exceptionHistory"] = {"truncated": True, "entries": [
        _exception(1796144300000, "org.apache.flink.runtime.jobmaster.JobMasterException: TaskManager lost",
                   "ParseTrades (1/1)"),
        _exception(1796144200000, "java.lang.RuntimeException: older", "Sink (1/1)")]}
    summary = stack_jobs.summarize_exceptions(payload)
    assert (summary.count, summary.truncated, summary.latest_ms) == (2, True, 1796144300000)
    assert summary.latest == "org.apache.flink.runtime.jobmaster.JobMasterException: TaskManager lost"
    assert summary.task == "ParseTrades (1/1)"


# --- figures -> what is printed ------------------------------------------------------------
def _health(checkpoints: dict = CHECKPOINTS, metrics: list = METRICS, exceptions: dict = NO_EXCEPTIONS):
    return stack_jobs.JobHealth(JOB, "darkpool-liquidity", "RUNNING", 1796144195530, stack_jobs.restarts_of(metrics),
                                stack_jobs.summarize_checkpoints(checkpoints),
                                stack_jobs.summarize_exceptions(exceptions))


def test_health_lines_of_a_healthy_job() -> None:
    now_ms = 1796144242631 + 4_000
    assert stack_jobs.health_lines(_health(), now_ms) == [
        f"job darkpool-liquidity ({JOB}): RUNNING, up 51 s, 0 restarts",
        "  checkpoints: 3 completed, 2 failed; last chk-3 4 s ago, 1.4 MB written (2.5 MB state)",
    ]


def test_health_lines_of_a_job_that_restarted_and_failed_checkpoints() -> None:
    checkpoints = copy.deepcopy(CHECKPOINTS)
    checkpoints["latest"]["failed"] = FAILED
    checkpoints["counts"].update(restored=2, in_progress=1)
    exceptions = copy.deepcopy(NO_EXCEPTIONS)
    exceptions["exceptionHistory"]["entries"] = [_exception(1796144250000, "java.io.IOException: broken pipe",
                                                            "Sink (1/1)")]
    now_ms = 1796144252000 + 125_000
    lines = stack_jobs.health_lines(_health(checkpoints, [{"id": "numRestarts", "value": "1"}], exceptions), now_ms)
    assert lines == [
        f"job darkpool-liquidity ({JOB}): RUNNING, up 3 min 1 s, 1 restart",
        "  checkpoints: 3 completed, 2 failed, 1 in progress, restored 2x; last chk-3 2 min 14 s ago, "
        "1.4 MB written (2.5 MB state)",
        "  last checkpoint failure 2 min 5 s ago: Checkpoint expired before completing.",
        "  failures: 1; latest 2 min 7 s ago in Sink (1/1): java.io.IOException: broken pipe",
    ]


def test_health_lines_before_the_first_checkpoint_and_without_the_metric() -> None:
    empty = {"counts": {"completed": 0, "failed": 0}, "latest": {}}
    lines = stack_jobs.health_lines(_health(empty, []), 1796144195530 + 7_200_000)
    assert lines == [f"job darkpool-liquidity ({JOB}): RUNNING, up 2 h 0 min, ? restarts",
                     "  checkpoints: 0 completed, 0 failed; none completed yet"]


def test_sizes_and_ages_read_like_a_person_would_write_them() -> None:
    assert [stack_jobs.human_bytes(n) for n in (None, 0, 999, 1000, 1_396_464, 2_500_000_000, 10**13)] == [
        "?", "0 B", "999 B", "1.0 kB", "1.4 MB", "2.5 GB", "10000.0 GB"]
    assert [stack_jobs.human_age(s) for s in (-3, 0.4, 59.6, 60, 3599, 3600, 7325)] == [
        "0 s", "0 s", "1 min 0 s", "1 min 0 s", "59 min 59 s", "1 h 0 min", "2 h 2 min"]


# --- what became of a recorded job ------------------------------------------------------------
SUBMITTED = "2026-12-01T17:00:00+00:00"
SUBMITTED_S = datetime(2026, 12, 1, 17, 0, tzinfo=UTC).timestamp()
RECORD = {"name": "darkpool-x", "flink_job_id": JOB, "submitted_at": SUBMITTED, "savepoint": None,
          "restored_from": None, "pipeline_args": []}
CHK17 = RetainedCheckpoint(17, f"file:///state/flink/checkpoints/{JOB}/chk-17", SUBMITTED_S + 180)
AT_CHK17 = RestorePoint(CHK17.uri, "checkpoint", CHK17)
RESTARTED = JobManagerInfo(True, SUBMITTED_S + 300)
SINCE = SUBMITTED_S - 86_400


def test_a_job_lost_with_its_jobmanager_says_what_happened_and_what_to_run() -> None:
    fate = stack_jobs.record_fate(RECORD, {}, None, RESTARTED, SINCE, AT_CHK17)
    assert fate.kind == "lost"
    assert stack_jobs.fate_line(fate) == (
        f"job darkpool-x ({JOB}): not on the cluster (JobManager restarted at 2026-12-01 17:05:00 UTC; a session "
        "cluster without high availability loses its running jobs with the JobManager); last retained checkpoint "
        "chk-17 at 2026-12-01 17:03:00 UTC; run `darkpool jobs resume darkpool-x`")


def test_while_the_jobmanager_is_down_its_jobs_are_lost() -> None:
    for states, jobmanager in ((None, JobManagerInfo(False, SUBMITTED_S - 60)), (None, RESTARTED)):
        fate = stack_jobs.record_fate(RECORD, states, None, jobmanager, SINCE, AT_CHK17)
        assert (fate.kind, fate.detail) == ("lost", "the JobManager is down")


def test_a_running_ended_stopped_or_old_job_is_not_lost() -> None:
    assert stack_jobs.record_fate(RECORD, {JOB: "RESTARTING"}, None, RESTARTED, SINCE, None).kind == "running"
    ended = stack_jobs.record_fate(RECORD, {JOB: "CANCELED"}, None, RESTARTED, SINCE, AT_CHK17)
    assert (ended.kind, ended.detail) == ("ended", "CANCELED")
    assert stack_jobs.fate_line(ended).endswith("CANCELED; last retained checkpoint chk-17 at 2026-12-01 17:03:00 "
                                                "UTC; run `darkpool jobs resume darkpool-x`")
    # gone from the cluster, but the JobManager archived its end
    archived = stack_jobs.record_fate(RECORD, {}, "FAILED", RESTARTED, SINCE, AT_CHK17)
    assert (archived.kind, archived.detail) == ("ended", "FAILED")
    stopped = {**RECORD, "savepoint": "file:///state/flink/savepoints/savepoint-e0d357-1"}
    fate = stack_jobs.record_fate(stopped, {}, None, RESTARTED, SINCE, RestorePoint(stopped["savepoint"], "savepoint"))
    assert fate.kind == "stopped"
    assert stack_jobs.fate_line(fate).endswith("run `darkpool jobs resume darkpool-x` to continue from its savepoint")
    # submitted before the JobManager archived ended jobs: a cancelled job and a lost one look alike
    assert stack_jobs.record_fate(RECORD, {}, None, RESTARTED, SUBMITTED_S + 1, AT_CHK17).kind == "unknown"
    assert stack_jobs.record_fate(RECORD, {}, None, RESTARTED, None, AT_CHK17).kind == "unknown"


def test_a_lost_job_without_a_checkpoint_cannot_be_resumed_and_says_so() -> None:
    line = stack_jobs.fate_line(Fate("darkpool-x", JOB, "lost", "the JobManager is down", None))
    assert "no savepoint or complete retained checkpoint: it cannot be resumed, only started afresh" in line
    started = Fate("darkpool-x", JOB, "lost", "the JobManager is down",
                   RestorePoint("file:///s/savepoints/savepoint-1", "restored-from"))
    assert stack_jobs.fate_line(started).endswith(
        "no checkpoint of its own; run `darkpool jobs resume darkpool-x` to continue from "
        "file:///s/savepoints/savepoint-1 (where it started)")


# --- on a real state folder ----------------------------------------------------------------------
@pytest.fixture
def state(settings: Settings, tmp_path: Path) -> Settings:
    return dataclasses.replace(settings, state_dir=tmp_path, flink_state_uri="")


def _checkpoint(settings: Settings, job_id: str, number: int, complete: bool = True) -> Path:
    folder = flink.checkpoint_dir(settings) / job_id / f"chk-{number}"
    folder.mkdir(parents=True)
    if complete:
        (folder / "_metadata").write_bytes(b"\x00")
    return folder


def test_resume_takes_the_newest_complete_checkpoint_and_skips_one_in_progress(state: Settings) -> None:
    _checkpoint(state, JOB, 16)
    complete = _checkpoint(state, JOB, 17)
    _checkpoint(state, JOB, 18, complete=False)  # in progress when the JobManager died
    (flink.checkpoint_dir(state) / JOB / "shared").mkdir()
    assert [c.number for c in stack_jobs.retained_checkpoints(state, JOB)] == [17, 16]
    point = stack_jobs.restore_point(state, RECORD)
    assert (point.kind, point.uri) == ("checkpoint", complete.as_uri())
    assert point.checkpoint is not None and point.checkpoint.written_at == os.stat(complete / "_metadata").st_mtime
    assert stack_jobs.latest_retained_checkpoint(state, RECORD) == complete.as_uri()
    # a savepoint (after `jobs stop`) comes first
    savepoint = {**RECORD, "savepoint": "file:///sp/savepoint-1"}
    assert stack_jobs.restore_point(state, savepoint) == RestorePoint("file:///sp/savepoint-1", "savepoint")


def test_resume_refuses_clearly_when_no_checkpoint_is_complete(state: Settings) -> None:
    _checkpoint(state, JOB, 1, complete=False)
    with pytest.raises(DarkpoolError, match=r"has no savepoint and no complete checkpoint under .*"
                                            r"\(only chk-1 without _metadata: in progress when it stopped\)"):
        stack_jobs.restore_point(state, RECORD)
    # a job that died before its first checkpoint continues from what it was restored from
    resumed = {**RECORD, "restored_from": "file:///cp/old-job/chk-9"}
    assert stack_jobs.restore_point(state, resumed) == RestorePoint("file:///cp/old-job/chk-9", "restored-from")


def _archive(settings: Settings, job_id: str, state_name: str) -> None:
    """An ended job's archive as the JobManager writes it (FsJobArchivist: a list of REST path -> JSON)."""
    overview = {"jobs": [{"jid": job_id, "name": "x", "state": state_name, "start-time": 1, "end-time": 2}]}
    archive = {"archive": [{"path": "/jobs/overview", "json": json.dumps(overview)},
                           {"path": f"/jobs/{job_id}", "json": "{}"}]}
    (flink.archive_dir(settings) / job_id).write_text(json.dumps(archive))


def test_only_jobs_lost_with_the_jobmanager_are_listed_as_missing(state: Settings) -> None:
    flink.write_conf(state)  # creates the archive folder and its "since" mark
    since = flink.archive_since(state)
    assert since is not None and since <= time.time()
    assert flink.flink_configuration(state)["jobmanager.archive.fs.dir"] == flink.archive_dir(state).as_uri()
    after = datetime.fromtimestamp(since + 1, UTC).isoformat()
    before = datetime.fromtimestamp(since - 3600, UTC).isoformat()
    jobs = {"lost": ("a" * 32, after), "cancelled": ("b" * 32, after), "running": ("c" * 32, after),
            "old": ("d" * 32, before), "stopped": ("e" * 32, after)}
    for name, (job_id, submitted) in jobs.items():
        stack_jobs.save_record(state, name, {**RECORD, "name": name, "flink_job_id": job_id, "submitted_at": submitted,
                                             "savepoint": "file:///sp/1" if name == "stopped" else None})
    _checkpoint(state, "a" * 32, 5)
    _archive(state, "b" * 32, "CANCELED")
    assert stack_jobs.archived_state(state, "b" * 32) == "CANCELED"
    assert stack_jobs.archived_state(state, "a" * 32) is None

    # the JobManager is down (no pid file): the jobs it ran are lost
    down = stack_jobs.missing_jobs(state, None)
    assert sorted((f.name, f.detail) for f in down) == [("lost", "the JobManager is down"),
                                                        ("running", "the JobManager is down")]
    # a JobManager started after their submission (this test's own process stands in for it) runs "running"
    jobmanager = flink.jobmanager_service(state)
    state.run_dir.mkdir(parents=True, exist_ok=True)
    jobmanager.pid_file.write_text(str(os.getpid()))
    os.utime(jobmanager.pid_file, (since + 10, since + 10))
    missing = stack_jobs.missing_jobs(state, {"c" * 32: "RUNNING"})
    assert [f.name for f in missing] == ["lost"]
    assert missing[0].detail.startswith("JobManager restarted at ")
    assert missing[0].restore is not None and missing[0].restore.checkpoint is not None
    assert "last retained checkpoint chk-5 at " in stack_jobs.fate_line(missing[0])


def test_taskmanagers_that_outlived_their_jobmanager_are_orphans(state: Settings) -> None:
    state.run_dir.mkdir(parents=True)
    assert flink.orphaned_taskmanagers(state) == []  # nothing runs
    # a TaskManager runs (this test's own process stands in for it), the JobManager does not
    flink.taskmanager_service(state, 1).pid_file.write_text(str(os.getpid()))
    assert [s.name for s in flink.orphaned_taskmanagers(state)] == ["flink-taskmanager"]
    flink.jobmanager_service(state).pid_file.write_text(str(os.getpid()))
    assert flink.orphaned_taskmanagers(state) == []
