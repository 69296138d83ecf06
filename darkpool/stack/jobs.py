"""The pipeline's Flink jobs as this machine knows them: job records, retained checkpoints, health, fate.

Each Flink submission is recorded under <state>/jobs/<name>.json (its argv, its Flink job
id, when it was submitted, what it was restored from and, after `darkpool jobs stop`, its
savepoint; after `darkpool jobs cancel` of a lost job, when it was given up). The local
cluster is a *session cluster without high availability*: the JobManager keeps its jobs
in memory only, so when it dies (or is stopped) every job it ran is gone from the
cluster; their retained checkpoints stay on disk (or S3). This module puts the two
together:

- :func:`latest_retained_checkpoint` — the newest *complete* checkpoint (chk-N with its
  ``_metadata``) of a recorded job, where `darkpool jobs resume` continues from;
- :func:`job_health` — a running job's restarts and checkpoint figures from the REST API,
  and :func:`health_lines` to print them (`darkpool stack status`, `darkpool jobs list`);
- :func:`record_fate` — what became of a recorded job that the cluster no longer runs
  (lost with a JobManager, ended, stopped with a savepoint), and :func:`fate_line` to say
  it and what to run.

The JobManager archives every job that ends (FINISHED, CANCELED, FAILED) in
:func:`darkpool.stack.flink.archive_dir`; a job that is neither on the cluster nor in
that archive was lost with its JobManager. The ``format``/``summarize`` functions are
pure: they take REST payloads as Flink returns them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from darkpool.config import Settings
from darkpool.errors import DarkpoolError
from darkpool.stack import flink
from darkpool.storage import as_uri, is_file, is_s3, join, list_names

log = logging.getLogger(__name__)


# --- the job records --------------------------------------------------------------
def registry_dir(settings: Settings) -> Path:
    return settings.state_dir / "jobs"


def load_record(settings: Settings, name: str) -> dict:
    path = registry_dir(settings) / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in registry_dir(settings).glob("*.json"))
        raise DarkpoolError(f"no pipeline job named {name!r} was submitted from this machine",
                            hint=f"known: {', '.join(known) or 'none'}; start one with `darkpool run`")
    return json.loads(path.read_text())


def save_record(settings: Settings, name: str, record: dict) -> None:
    registry_dir(settings).mkdir(parents=True, exist_ok=True)
    path = registry_dir(settings) / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)


def load_records(settings: Settings) -> list[dict]:
    """Every job record (newest submission first); unreadable files are skipped with a warning."""
    records = []
    for path in registry_dir(settings).glob("*.json"):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            log.warning("skipping the unreadable job record %s: %s", path, exc)
    return sorted(records, key=lambda r: r.get("submitted_at", ""), reverse=True)


# --- retained checkpoints -----------------------------------------------------------
@dataclass(frozen=True)
class RetainedCheckpoint:
    """A complete retained checkpoint: chk-N of a Flink job, with when it was written (if known)."""

    number: int
    uri: str
    written_at: float | None  # epoch seconds of its _metadata (local checkpoints only)

    @property
    def label(self) -> str:
        return f"chk-{self.number}"


def checkpoint_numbers(names: list[str]) -> list[int]:
    """The N of each ``chk-N`` among a folder's entry names, newest (highest) first."""
    return sorted((int(name[4:]) for name in names if name.startswith("chk-") and name[4:].isdigit()),
                  reverse=True)


def retained_checkpoints(settings: Settings, job_id: str) -> list[RetainedCheckpoint]:
    """The complete checkpoints (chk-N holding a ``_metadata``) of a Flink job, newest first.

    A chk-N without ``_metadata`` was in progress when the job stopped and cannot be restored.
    Looked up where the checkpoints are: the local folder, or S3 (``flink_state_uri``).
    """
    job_dir = join(flink.checkpoint_location(settings), job_id)
    found = []
    for number in checkpoint_numbers(list_names(job_dir, settings)):
        folder = join(job_dir, f"chk-{number}")
        metadata = join(folder, "_metadata")
        if is_file(metadata, settings):
            written = None if is_s3(metadata) else os.stat(metadata).st_mtime
            found.append(RetainedCheckpoint(number, as_uri(folder), written))
    return found


def latest_retained_checkpoint(settings: Settings, record: dict) -> str | None:
    """The newest complete checkpoint folder of the recorded Flink job, as a URI (None when there is none)."""
    found = retained_checkpoints(settings, record["flink_job_id"])
    return found[0].uri if found else None


@dataclass(frozen=True)
class RestorePoint:
    """Where `darkpool jobs resume` continues a job from, and what kind of point it is."""

    uri: str
    kind: str  # "savepoint", "checkpoint", "restored-from" (the job had no checkpoint of its own yet)
    checkpoint: RetainedCheckpoint | None = None


def restore_point(settings: Settings, record: dict) -> RestorePoint:
    """The job's savepoint (after `jobs stop`), else its newest complete retained checkpoint, else — when it
    died before its first checkpoint — the savepoint or checkpoint it was itself restored from.

    Raises a DarkpoolError naming where it looked when there is none.
    """
    if record.get("savepoint"):
        return RestorePoint(record["savepoint"], "savepoint")
    found = retained_checkpoints(settings, record["flink_job_id"])
    if found:
        return RestorePoint(found[0].uri, "checkpoint", found[0])
    if record.get("restored_from"):
        return RestorePoint(record["restored_from"], "restored-from")
    where = as_uri(join(flink.checkpoint_location(settings), record["flink_job_id"]))
    incomplete = checkpoint_numbers(list_names(join(flink.checkpoint_location(settings),
                                                    record["flink_job_id"]), settings))
    detail = (f" (only {', '.join(f'chk-{n}' for n in incomplete)} without _metadata: in progress when it stopped)"
              if incomplete else "")
    raise DarkpoolError(
        f"job {record['name']!r} (Flink job {record['flink_job_id']}) has no savepoint and no complete "
        f"checkpoint under {where}{detail}: there is nothing to resume from",
        hint=f"start it afresh with `darkpool run --job-name {record['name']} ...` (its argv is in its record, "
             f"jobs/{record['name']}.json), or give a path: `darkpool jobs resume {record['name']} --from PATH`")


# --- a running job's health ---------------------------------------------------------
@dataclass(frozen=True)
class CheckpointSummary:
    """A job's checkpoint figures from ``/jobs/<id>/checkpoints``."""

    completed: int
    failed: int
    in_progress: int
    restored: int
    last_id: int | None = None
    last_completed_ms: int | None = None  # when its last acknowledgement arrived
    last_size: int | None = None  # bytes this checkpoint wrote (incremental: the changed files)
    last_state_size: int | None = None  # bytes of the whole state it stands for
    last_path: str | None = None
    last_failure_ms: int | None = None
    last_failure: str | None = None


def summarize_checkpoints(payload: dict) -> CheckpointSummary:
    """The figures of a ``GET /jobs/<id>/checkpoints`` answer (pure)."""
    counts = payload.get("counts") or {}
    latest = payload.get("latest") or {}
    completed = latest.get("completed") or {}
    failed = latest.get("failed") or {}
    failure = failed.get("failure_message")
    return CheckpointSummary(
        completed=int(counts.get("completed", 0)), failed=int(counts.get("failed", 0)),
        in_progress=int(counts.get("in_progress", 0)), restored=int(counts.get("restored", 0)),
        last_id=completed.get("id"), last_completed_ms=completed.get("latest_ack_timestamp"),
        last_size=completed.get("checkpointed_size"), last_state_size=completed.get("state_size"),
        last_path=completed.get("external_path"),
        last_failure_ms=failed.get("failure_timestamp"),
        last_failure=failure.strip().splitlines()[0][:200] if failure else None,
    )


def restarts_of(metrics: list[dict]) -> int | None:
    """``numRestarts`` from a ``GET /jobs/<id>/metrics?get=numRestarts`` answer (pure; None when absent)."""
    for metric in metrics:
        if metric.get("id") == "numRestarts":
            try:
                return int(float(metric["value"]))
            except (KeyError, TypeError, ValueError):
                return None
    return None


@dataclass(frozen=True)
class ExceptionSummary:
    count: int
    truncated: bool
    latest_ms: int | None = None
    latest: str | None = None  # the exception's first line
    task: str | None = None


def summarize_exceptions(payload: dict) -> ExceptionSummary:
    """The job's failures from ``GET /jobs/<id>/exceptions`` (pure): each entry of the exception history is
    one failure that restarted (part of) the job; the newest comes first."""
    history = payload.get("exceptionHistory") or {}
    entries = history.get("entries") or []
    if not entries:
        return ExceptionSummary(0, bool(history.get("truncated")))
    newest = max(entries, key=lambda e: e.get("timestamp") or 0)
    trace = (newest.get("stacktrace") or newest.get("exceptionName") or "").strip()
    return ExceptionSummary(len(entries), bool(history.get("truncated")), newest.get("timestamp"),
                            trace.splitlines()[0][:200] if trace else None, newest.get("taskName"))


@dataclass(frozen=True)
class JobHealth:
    job_id: str
    name: str
    state: str
    started_ms: int
    restarts: int | None
    checkpoints: CheckpointSummary
    exceptions: ExceptionSummary


def job_health(settings: Settings, job: dict) -> JobHealth:
    """A job's health from the REST API (``job``: an entry of ``/jobs/overview``)."""
    job_id = job["jid"]
    checkpoints = summarize_checkpoints(flink.rest_get(settings, f"/jobs/{job_id}/checkpoints", timeout=3))
    metrics = flink.rest_get_list(settings, f"/jobs/{job_id}/metrics?get=numRestarts", timeout=3)
    exceptions = summarize_exceptions(flink.rest_get(settings, f"/jobs/{job_id}/exceptions?maxExceptions=20",
                                                     timeout=3))
    return JobHealth(job_id, job.get("name", ""), job.get("state", ""), int(job.get("start-time", 0)),
                     restarts_of(metrics), checkpoints, exceptions)


def human_bytes(size: int | None) -> str:
    """1234567 -> '1.2 MB' (decimal units; '?' when unknown)."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def human_age(seconds: float) -> str:
    """12.3 -> '12 s', 125 -> '2 min 5 s', 7300 -> '2 h 1 min'."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def utc_text(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def health_lines(health: JobHealth, now_ms: int) -> list[str]:
    """What `stack status` and `jobs list` print about a running job (pure): restarts, checkpoints, failures."""
    c = health.checkpoints
    restarts = "?" if health.restarts is None else str(health.restarts)
    lines = [f"job {health.name} ({health.job_id}): {health.state}, up {human_age((now_ms - health.started_ms) / 1000)}"
             f", {restarts} restart{'' if restarts == '1' else 's'}"]
    figures = f"  checkpoints: {c.completed} completed, {c.failed} failed"
    if c.in_progress:
        figures += f", {c.in_progress} in progress"
    if c.restored:
        figures += f", restored {c.restored}x"
    if c.last_id is not None and c.last_completed_ms is not None:
        figures += (f"; last chk-{c.last_id} {human_age((now_ms - c.last_completed_ms) / 1000)} ago, "
                    f"{human_bytes(c.last_size)} written ({human_bytes(c.last_state_size)} state)")
    else:
        figures += "; none completed yet"
    lines.append(figures)
    if c.last_failure:
        when = f" {human_age((now_ms - c.last_failure_ms) / 1000)} ago" if c.last_failure_ms else ""
        lines.append(f"  last checkpoint failure{when}: {c.last_failure}")
    e = health.exceptions
    if e.count:
        when = f" {human_age((now_ms - e.latest_ms) / 1000)} ago" if e.latest_ms else ""
        more = "+" if e.truncated else ""
        task = f" in {e.task}" if e.task else ""
        lines.append(f"  failures: {e.count}{more}; latest{when}{task}: {e.latest}")
    return lines


# --- what became of a recorded job ---------------------------------------------------
@dataclass(frozen=True)
class JobManagerInfo:
    """The JobManager as the pid file tells: running or not, and when its process was started."""

    running: bool
    started_at: float | None  # epoch seconds


def jobmanager_info(settings: Settings) -> JobManagerInfo:
    service = flink.jobmanager_service(settings)
    pid = service.pid()
    try:
        started = service.pid_file.stat().st_mtime  # written right after the process was spawned
    except OSError:
        started = None
    return JobManagerInfo(pid is not None, started)


@dataclass(frozen=True)
class Fate:
    """What became of a recorded job: ``kind`` is running, ended, stopped, lost or unknown."""

    name: str
    job_id: str
    kind: str
    detail: str
    restore: RestorePoint | None = None


def parse_time(text: str | None) -> float | None:
    """An ISO-8601 timestamp of a job record -> epoch seconds (None when absent or unreadable)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def record_fate(record: dict, cluster_states: dict[str, str] | None, archived_state: str | None,
                jobmanager: JobManagerInfo, archive_since: float | None,
                restore: RestorePoint | None) -> Fate:
    """What became of a recorded job (pure).

    cluster_states: Flink job id -> state of every job the cluster knows (None: the JobManager does not
    answer); archived_state: the state in the JobManager's archive of ended jobs (None: not archived);
    archive_since: since when ended jobs are archived (a job submitted earlier and gone cannot be told
    apart from one that ended); restore: where `jobs resume` would continue it from.
    """
    name, job_id = record["name"], record["flink_job_id"]
    state = (cluster_states or {}).get(job_id)
    if state is not None and state not in flink.TERMINAL_STATES:
        return Fate(name, job_id, "running", state, restore)
    if record.get("savepoint"):
        return Fate(name, job_id, "stopped", f"stopped with a savepoint {record['savepoint']}", restore)
    ended = state or archived_state
    if ended is not None:
        return Fate(name, job_id, "ended", ended, restore)
    submitted = parse_time(record.get("submitted_at"))
    if archive_since is None or submitted is None or submitted < archive_since:
        return Fate(name, job_id, "unknown", "submitted before the JobManager archived ended jobs", restore)
    if cluster_states is None or not jobmanager.running:
        why = "the JobManager is down"
    elif jobmanager.started_at is not None and submitted is not None and jobmanager.started_at > submitted:
        why = f"JobManager restarted at {utc_text(jobmanager.started_at)}"
    else:
        why = "the JobManager does not know it and never recorded its end"
    return Fate(name, job_id, "lost", why, restore)


def fate_line(fate: Fate) -> str:
    """One line saying what happened to a job that is not running and what to run (pure)."""
    if fate.restore is None:
        point = "no savepoint or complete retained checkpoint: it cannot be resumed, only started afresh " \
                "(`darkpool run`)"
    elif fate.restore.kind == "checkpoint" and fate.restore.checkpoint is not None:
        written = fate.restore.checkpoint.written_at
        at = f" at {utc_text(written)}" if written else ""
        point = f"last retained checkpoint {fate.restore.checkpoint.label}{at}; run `darkpool jobs resume {fate.name}`"
    elif fate.restore.kind == "savepoint":
        point = f"run `darkpool jobs resume {fate.name}` to continue from its savepoint"
    else:
        point = (f"no checkpoint of its own; run `darkpool jobs resume {fate.name}` to continue from "
                 f"{fate.restore.uri} (where it started)")
    if fate.kind == "lost":
        return (f"job {fate.name} ({fate.job_id}): not on the cluster ({fate.detail}; a session cluster without "
                f"high availability loses its running jobs with the JobManager); {point}")
    if fate.kind == "ended":
        return f"job {fate.name} ({fate.job_id}): {fate.detail}; {point}"
    if fate.kind == "stopped":
        return f"job {fate.name} ({fate.job_id}): {fate.detail}; {point}"
    return f"job {fate.name} ({fate.job_id}): {fate.kind} ({fate.detail})"


def archived_state(settings: Settings, job_id: str) -> str | None:
    """The final state of a job the JobManager archived when it ended (None when it is not in the archive)."""
    path = flink.archive_dir(settings) / job_id
    if not path.is_file():
        return None
    try:
        archive = json.loads(path.read_text())
        for entry in archive.get("archive", []):
            if entry.get("path") == "/jobs/overview":
                jobs = json.loads(entry["json"]).get("jobs", [])
                if jobs:
                    return jobs[0].get("state", "ended")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("cannot read the archive of job %s: %s", job_id, exc)
    return "ended"


def cluster_job_states(settings: Settings) -> dict[str, str] | None:
    """Flink job id -> state of every job the cluster knows; None when the JobManager does not answer."""
    try:
        return {job["jid"]: job["state"] for job in flink.rest_get(settings, "/jobs/overview", timeout=3,
                                                                   attempts=1).get("jobs", [])}
    except DarkpoolError:
        return None


def safe_restore_point(settings: Settings, record: dict) -> RestorePoint | None:
    try:
        return restore_point(settings, record)
    except DarkpoolError:
        return None


def missing_jobs(settings: Settings, cluster_states: dict[str, str] | None) -> list[Fate]:
    """The recorded jobs the cluster no longer runs and never saw end: lost with a JobManager (newest first)."""
    jobmanager = jobmanager_info(settings)
    since = flink.archive_since(settings)
    fates = []
    for record in load_records(settings):
        if "flink_job_id" not in record or "name" not in record:
            continue
        job_id = record["flink_job_id"]
        if cluster_states is not None and job_id in cluster_states:
            continue
        if record.get("savepoint") or record.get("given_up_at"):
            continue
        fate = record_fate(record, cluster_states, archived_state(settings, job_id), jobmanager, since, None)
        if fate.kind == "lost":
            fates.append(Fate(fate.name, fate.job_id, fate.kind, fate.detail, safe_restore_point(settings, record)))
    return fates


def running_job_lines(settings: Settings, jobs: list[dict], now_ms: int) -> list[str]:
    """:func:`health_lines` of each job of ``jobs`` (entries of ``/jobs/overview``) that has not ended."""
    lines: list[str] = []
    for job in jobs:
        if job["state"] in flink.TERMINAL_STATES:
            continue
        try:
            lines.extend(health_lines(job_health(settings, job), now_ms))
        except DarkpoolError as exc:
            lines.append(f"job {job['name']} ({job['jid']}): {job['state']} (figures unavailable: {exc})")
    return lines


def job_report(settings: Settings) -> list[str]:
    """The lines `darkpool stack status` prints under "Flink jobs": each running job's health, then each
    recorded job lost with its JobManager and what to run."""
    states = cluster_job_states(settings)
    lines: list[str] = []
    now_ms = int(time.time() * 1000)
    if states is None:
        lines.append("the JobManager does not answer: no job can run")
        orphans = [service.name for service in flink.orphaned_taskmanagers(settings)]
        if orphans:
            lines.append(f"{', '.join(orphans)} outlived the JobManager and may still run tasks of the jobs it lost "
                         "(until their heartbeat times out); `darkpool stack up` restarts them with it")
    else:
        lines.extend(running_job_lines(settings, flink.list_jobs(settings), now_ms) or ["no job is running"])
    lines.extend(fate_line(fate) for fate in missing_jobs(settings, states))
    return lines
