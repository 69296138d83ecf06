"""A Flink 1.19.3 session cluster: one JobManager (web UI + REST) and N TaskManagers (default 1).

The distribution comes from the apache-flink-libraries package. The processes
are started the way Flink's own scripts start them: the memory settings are
computed by Flink's BashJavaUtils from the configuration, and Java 17 gets
Flink's default --add-opens list. State is RocksDB with file checkpoints and
savepoints in the state folder, or on S3 (Settings ``flink_state_uri``; the
S3 file system plugin is in the cluster's plugins folder).
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from darkpool.config import Settings
from darkpool.errors import DarkpoolError
from darkpool.stack import jvm
from darkpool.stack.process import Service, http_ok, java_executable
from darkpool.stack.s3 import flink_s3_configuration
from darkpool.storage import Location, as_uri, join

log = logging.getLogger(__name__)

LOG4J = """\
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = MainAppender
logger.akka.name = akka
logger.akka.level = WARN
logger.pekko.name = org.apache.pekko
logger.pekko.level = WARN
logger.kafka.name = org.apache.kafka
logger.kafka.level = WARN
logger.zookeeper.name = org.apache.zookeeper
logger.zookeeper.level = WARN
logger.netty.name = org.jboss.netty.channel.DefaultChannelPipeline
logger.netty.level = OFF
appender.main.name = MainAppender
appender.main.type = RollingFile
appender.main.append = true
appender.main.fileName = ${sys:log.file}
appender.main.filePattern = ${sys:log.file}.%i
appender.main.layout.type = PatternLayout
appender.main.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
appender.main.policies.type = Policies
appender.main.policies.size.type = SizeBasedTriggeringPolicy
appender.main.policies.size.size = 100MB
appender.main.strategy.type = DefaultRolloverStrategy
appender.main.strategy.max = 5
"""


def flink_dir(settings: Settings) -> Path:
    return settings.state_dir / "flink"


def checkpoint_dir(settings: Settings) -> Path:
    return flink_dir(settings) / "checkpoints"


def savepoint_dir(settings: Settings) -> Path:
    return flink_dir(settings) / "savepoints"


def checkpoint_location(settings: Settings) -> Location:
    """Where jobs keep their checkpoints: <flink_state_uri>/checkpoints on S3, else :func:`checkpoint_dir`."""
    return join(settings.flink_state_uri, "checkpoints") if settings.flink_state_uri else checkpoint_dir(settings)


def savepoint_location(settings: Settings) -> Location:
    """Where savepoints go: <flink_state_uri>/savepoints on S3, else :func:`savepoint_dir`."""
    return join(settings.flink_state_uri, "savepoints") if settings.flink_state_uri else savepoint_dir(settings)


def archive_dir(settings: Settings) -> Path:
    """Where the JobManager archives each job that ends (FINISHED, CANCELED, FAILED): one JSON file per job id.

    A job that is neither on the cluster nor here did not end: it was lost with its JobManager
    (`darkpool stack status` and `darkpool jobs list` say so; darkpool.stack.jobs).
    """
    return flink_dir(settings) / "completed-jobs"


ARCHIVE_SINCE = ".since"


def archive_since(settings: Settings) -> float | None:
    """Since when (epoch seconds) the JobManager archives ended jobs here; None before it first did."""
    try:
        return float((archive_dir(settings) / ARCHIVE_SINCE).read_text().strip())
    except (OSError, ValueError):
        return None


def process_env(settings: Settings) -> dict[str, str]:
    """Environment of the JobManager and TaskManagers: the plugins folder (the S3 file system plugin)."""
    return {"FLINK_PLUGINS_DIR": str(jvm.flink_plugins_dir(settings))}


def flink_configuration(settings: Settings) -> dict[str, str]:
    """The cluster's configuration (flink-conf.yaml), sized for a 2-core, 24 GiB machine."""
    host = settings.host
    return {
        "jobmanager.rpc.address": host,
        "jobmanager.rpc.port": str(settings.flink_rpc_port),
        "jobmanager.bind-host": host,
        "taskmanager.bind-host": host,
        "taskmanager.host": host,
        "rest.address": host,
        "rest.bind-address": host,
        "rest.port": str(settings.flink_rest_port),
        "jobmanager.memory.process.size": settings.jobmanager_process_memory,
        "taskmanager.memory.process.size": settings.taskmanager_process_memory,
        # each Beam job loads its classes again: a larger metaspace survives resubmissions
        "taskmanager.memory.jvm-metaspace.size": settings.taskmanager_metaspace,
        "taskmanager.numberOfTaskSlots": str(settings.taskmanager_slots),
        # Beam's Fn API (gRPC/netty) and Kafka clients use direct memory: with the defaults a
        # TaskManager died of "OutOfMemoryError: Direct buffer memory" after about a dozen submissions
        "taskmanager.memory.task.off-heap.size": "768m",
        "taskmanager.memory.framework.off-heap.size": "256m",
        "parallelism.default": "1",
        # no pipeline.max-parallelism: with it, Beam splits the Kafka source into that many readers (one per
        # partition), which one source subtask reads in lockstep at the quietest partition's pace (1.4k
        # trades/s instead of 60k here); Flink's default key groups (128) restore at any parallelism anyway
        # a job's slots spread over all TaskManagers instead of filling the first one
        "cluster.evenly-spread-out-slots": "true",
        # a network buffer is shipped when full or after this long: Flink's default (100 ms) adds
        # up to that at each of the pipeline's shuffles; the pipeline's elements are few and large
        "execution.buffer-timeout.interval": "10 ms",
        "state.backend.type": "rocksdb",
        "state.backend.incremental": "true",
        "state.checkpoints.dir": as_uri(checkpoint_location(settings)),
        "state.savepoints.dir": as_uri(savepoint_location(settings)),
        "state.checkpoints.num-retained": "3",
        # cancelled and failed jobs keep their checkpoints too (a lost JobManager leaves them all)
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "jobmanager.archive.fs.dir": as_uri(archive_dir(settings)),
        "io.tmp.dirs": str(flink_dir(settings) / "tmp"),
        "web.tmpdir": str(flink_dir(settings) / "web"),
        "web.upload.dir": str(flink_dir(settings) / "web"),
        "blob.storage.directory": str(flink_dir(settings) / "blobs"),
        "classloader.check-leaked-classloader": "false",
        "heartbeat.timeout": "60000",
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": "1000",
        "restart-strategy.fixed-delay.delay": "5 s",
        "env.java.opts.all": " ".join(jvm.JAVA17_OPENS),
        # s3:// checkpoints, savepoints (flink_state_uri): the endpoint and credentials of the S3 plugin
        **flink_s3_configuration(settings),
    }


def write_conf(settings: Settings) -> Path:
    """Write the cluster's configuration folder and return it."""
    conf = flink_dir(settings) / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    for sub in ("tmp", "web", "blobs", "checkpoints", "savepoints", "completed-jobs"):
        (flink_dir(settings) / sub).mkdir(parents=True, exist_ok=True)
    since = archive_dir(settings) / ARCHIVE_SINCE
    if not since.exists():
        since.write_text(f"{time.time_ns() // 1_000_000 / 1000:.3f}\n")  # whole ms, never after now
    lines = [f"{key}: {value}" for key, value in flink_configuration(settings).items()]
    (conf / "flink-conf.yaml").write_text("\n".join(lines) + "\n")
    (conf / "log4j.properties").write_text(LOG4J)
    return conf


def resource_params(conf: Path, which: str) -> tuple[list[str], list[str]]:
    """JVM memory flags and dynamic -D settings, computed by Flink's BashJavaUtils like its scripts do.

    which: "GET_TM_RESOURCE_PARAMS" or "GET_JM_RESOURCE_PARAMS".
    """
    utils = jvm.flink_home() / "bin" / "bash-java-utils.jar"
    argv = [java_executable(), "-cp", f"{utils}:{jvm.flink_classpath()}",
            "org.apache.flink.runtime.util.bash.BashJavaUtils", which, "--configDir", str(conf)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    outputs = [line.split(":", 1)[1] for line in result.stdout.splitlines()
               if line.startswith("BASH_JAVA_UTILS_EXEC_RESULT:")]
    if result.returncode != 0 or len(outputs) < 2:
        raise DarkpoolError(f"Flink's BashJavaUtils {which} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return outputs[0].split(), outputs[1].split()


def _process_command(settings: Settings, entrypoint: str, which: str, log_name: str) -> list[str]:
    conf = write_conf(settings)
    jvm_flags, dynamic = resource_params(conf, which)
    return [java_executable(), *jvm_flags, *jvm.JAVA17_OPENS,
            f"-Dlog.file={settings.log_dir / log_name}",
            f"-Dlog4j.configurationFile=file:{conf / 'log4j.properties'}",
            f"-Dlog4j2.configurationFile=file:{conf / 'log4j.properties'}",
            "-cp", jvm.flink_classpath(), entrypoint, "--configDir", str(conf), *dynamic]


class RestTimeout(DarkpoolError):
    """The JobManager accepted the connection but did not answer in time (busy, e.g. right after a
    savepoint or while two cores are shared with a build): worth asking again."""


def rest_get(settings: Settings, path: str, timeout: float = 5.0, attempts: int = 3) -> dict:
    """GET a Flink REST endpoint of the local cluster and decode its JSON; a read that times out is tried again."""
    return get_json(f"{settings.flink_rest_url}{path}", timeout=timeout, attempts=attempts)


def get_json(url: str, timeout: float = 5.0, attempts: int = 3) -> dict:
    """GET a Flink REST URL (any cluster's) and decode its JSON; a read that times out is tried again."""
    for attempt in range(1, attempts + 1):
        try:
            return rest_request("GET", url, timeout=timeout)
        except RestTimeout:
            if attempt == attempts:
                raise
            log.info("Flink REST GET %s timed out after %.0f s (attempt %d of %d)", url, timeout, attempt, attempts)
    raise AssertionError("unreachable")


def rest_get_list(settings: Settings, path: str, timeout: float = 5.0) -> list:
    """GET a Flink REST endpoint that answers a JSON list (metrics: ``/jobs/<id>/metrics?get=...``)."""
    answer = rest_request("GET", f"{settings.flink_rest_url}{path}", timeout=timeout)
    if not isinstance(answer, list):
        raise DarkpoolError(f"Flink REST GET {path} answered {type(answer).__name__}, not a list")
    return answer


def rest_call(settings: Settings, method: str, path: str, body: dict | None = None, timeout: float = 30.0) -> dict:
    """Call a Flink REST endpoint of the local cluster (with a JSON body, if any) and decode its JSON answer."""
    return rest_request(method, f"{settings.flink_rest_url}{path}", body, timeout)


def rest_request(method: str, url: str, body: dict | None = None, timeout: float = 30.0) -> Any:
    """Call a Flink REST URL (with a JSON body, if any) and decode its JSON answer.

    A timeout raises :class:`RestTimeout`; an HTTP error or an unreachable server a DarkpoolError.
    """
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (loopback or in-cluster)
            text = response.read()
        return json.loads(text) if text else {}
    except ValueError as exc:
        raise DarkpoolError(f"Flink REST {method} {url} answered something that is not JSON ({exc})") from exc
    except urllib.error.HTTPError as exc:
        raise DarkpoolError(f"Flink REST {method} {url} failed: {exc.code} {exc.read().decode()[:500]}") from exc
    except (urllib.error.URLError, OSError) as exc:
        if isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError):
            raise RestTimeout(f"the Flink REST API at {url} did not answer within {timeout:g} s",
                              hint="the JobManager is busy or overloaded: `darkpool stack logs flink-jobmanager`"
                              ) from exc
        raise DarkpoolError(f"the Flink REST API at {url} does not answer ({exc})",
                            hint="start the cluster with `darkpool stack up`") from exc


def jobmanager_service(settings: Settings) -> Service:
    return Service(
        name="flink-jobmanager", port=settings.flink_rest_port, settings=settings,
        command=lambda: _process_command(
            settings, "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
            "GET_JM_RESOURCE_PARAMS", "flink-jobmanager.log"),
        ready=lambda: http_ok(f"{settings.flink_rest_url}/overview"),
        description=f"Flink 1.19.3 JobManager, web UI {settings.flink_rest_url}",
        extra_ports=(settings.flink_rpc_port,), start_timeout=120, env=lambda: process_env(settings),
    )


def taskmanager_name(index: int) -> str:
    """The service name of the index-th TaskManager: flink-taskmanager, flink-taskmanager-2, ..."""
    return "flink-taskmanager" if index == 1 else f"flink-taskmanager-{index}"


def taskmanager_index(name: str) -> int:
    """The inverse of :func:`taskmanager_name`: 1 for flink-taskmanager, N for flink-taskmanager-N."""
    suffix = name.removeprefix("flink-taskmanager").removeprefix("-")
    return int(suffix) if suffix.isdigit() else 1


def registered_taskmanager_ids(settings: Settings) -> set[str]:
    """The resource ids of the TaskManagers registered with the JobManager (empty when it does not answer)."""
    try:
        listed = rest_get(settings, "/taskmanagers", timeout=2, attempts=1).get("taskmanagers", [])
        return {tm["id"] for tm in listed}
    except DarkpoolError:
        return set()


def taskmanager_service(settings: Settings, index: int = 1) -> Service:
    """The index-th TaskManager (1-based): its own resource id, log file and temporary folders.

    Each start draws a fresh resource id (kept in <run>/<name>.id), so readiness means
    *this* process registered, not an earlier one the JobManager has not yet declared lost.
    """
    name = taskmanager_name(index)
    id_file = settings.run_dir / f"{name}.id"

    def command() -> list[str]:
        resource_id = f"{name}-{uuid.uuid4().hex[:8]}"
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        id_file.write_text(resource_id)
        tmp = flink_dir(settings) / "tmp" / name
        tmp.mkdir(parents=True, exist_ok=True)
        return [*_process_command(settings, "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
                                  "GET_TM_RESOURCE_PARAMS", f"{name}.log"),
                "-D", f"taskmanager.resource-id={resource_id}", "-D", f"io.tmp.dirs={tmp}"]

    def ready() -> bool:
        try:
            resource_id = id_file.read_text().strip()
        except OSError:
            return False
        return resource_id in registered_taskmanager_ids(settings)

    return Service(
        name=name, port=settings.flink_rest_port, settings=settings, command=command, ready=ready,
        description=f"Flink TaskManager {index} ({settings.taskmanager_slots} slots, "
                    f"{settings.taskmanager_process_memory} process memory)",
        owns_port=False, start_timeout=120, env=lambda: process_env(settings),
    )


def taskmanager_services(settings: Settings) -> list[Service]:
    """TaskManagers 1..``settings.taskmanagers``, plus any further one still running from an earlier
    `darkpool stack up --taskmanagers N` (so `stack down` and `stack status` never lose one)."""
    count = max(1, settings.taskmanagers)
    for pid_file in settings.run_dir.glob("flink-taskmanager-*.pid"):
        count = max(count, taskmanager_index(pid_file.stem))
    services = [taskmanager_service(settings, index) for index in range(1, count + 1)]
    # beyond the configured count, only those that run
    return [s for i, s in enumerate(services, start=1) if i <= settings.taskmanagers or s.pid() is not None]


def orphaned_taskmanagers(settings: Settings) -> list[Service]:
    """The running TaskManagers of a JobManager that is not running (it died or was killed).

    Such a TaskManager keeps running the lost jobs' tasks until its heartbeat with the dead
    JobManager times out (``heartbeat.timeout``, 60 s): they go on reading Kafka and writing
    panes that no checkpoint will ever cover, with pane indexes a resumed job need not reach.
    `darkpool stack up` / `flink start` restarts them before it starts the JobManager.
    """
    if jobmanager_service(settings).pid() is not None:
        return []
    return [service for service in taskmanager_services(settings) if service.pid() is not None]


# --- jobs on the session cluster ---------------------------------------------
TERMINAL_STATES = frozenset({"FINISHED", "CANCELED", "FAILED"})


def list_jobs(settings: Settings) -> list[dict]:
    """All jobs the cluster knows: id, name, state, start time (newest first)."""
    jobs = rest_get(settings, "/jobs/overview").get("jobs", [])
    return sorted(jobs, key=lambda job: job.get("start-time", 0), reverse=True)


def running_job_ids(settings: Settings, name: str | None = None) -> list[str]:
    return [job["jid"] for job in list_jobs(settings)
            if job["state"] not in TERMINAL_STATES and (name is None or job["name"] == name)]


def cancel_job(settings: Settings, job_id: str) -> None:
    rest_call(settings, "PATCH", f"/jobs/{job_id}?mode=cancel")


def wait_job_running(settings: Settings, job_id: str, timeout: float = 180.0) -> None:
    """Wait until the job and all its tasks run (a savepoint needs every task running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = rest_get(settings, f"/jobs/{job_id}")
        if job["state"] in TERMINAL_STATES:
            raise DarkpoolError(f"job {job_id} is {job['state']}")
        if job["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in job["vertices"]):
            return
        time.sleep(1.0)
    raise DarkpoolError(f"the tasks of job {job_id} are not all running after {timeout:.0f} s",
                        hint=f"{settings.flink_rest_url}/#/job/running/{job_id}/exceptions")


def stop_with_savepoint(settings: Settings, job_id: str, timeout: float = 180.0, attempts: int = 3) -> str:
    """Take a savepoint of the running job and cancel it right after; returns the savepoint path.

    Not Flink's stop-with-savepoint (``/jobs/<id>/stop``): on a stop, Beam's Flink
    source wrapper (``UnboundedSourceWrapper``, KafkaIO's legacy read) leaves its
    read loop and emits a final ``Long.MAX_VALUE`` watermark *before* the
    savepoint barrier, so every window fires its on-time pane early and is
    garbage-collected, and every stateful DoFn's state is cleared, before the
    snapshot: the savepoint holds empty windows and state (data read but not yet
    emitted is lost on resume). A savepoint taken while the job runs
    (``cancel-job``: Flink stops periodic checkpoints, snapshots, then cancels)
    holds the complete state. Waits until every task runs first, tries again when
    the savepoint is declined because a task was (re)starting, and returns once
    the job has ended.
    """
    target = as_uri(savepoint_location(settings))
    failure = ""
    for _ in range(attempts):
        wait_job_running(settings, job_id)
        trigger = rest_call(settings, "POST", f"/jobs/{job_id}/savepoints",
                            {"cancel-job": True, "target-directory": target})
        request_id = trigger["request-id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = rest_get(settings, f"/jobs/{job_id}/savepoints/{request_id}")
            if status.get("status", {}).get("id") == "COMPLETED":
                break
            time.sleep(1.0)
        else:
            raise DarkpoolError(f"the savepoint of job {job_id} did not complete within {timeout:.0f} s")
        operation = status.get("operation", {})
        if "failure-cause" not in operation:
            wait_job_ended(settings, job_id, timeout)
            return operation["location"]
        failure = operation["failure-cause"].get("stack-trace", "")[:1500]
        log.warning("savepoint of job %s failed, trying again: %s", job_id, failure.splitlines()[0])
    raise DarkpoolError(f"stopping job {job_id} with a savepoint failed {attempts} times:\n{failure}")


def wait_job_ended(settings: Settings, job_id: str, timeout: float = 180.0) -> str:
    """Wait until the job reached a terminal state (FINISHED, CANCELED, FAILED); returns it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = rest_get(settings, f"/jobs/{job_id}")["state"]
        if state in TERMINAL_STATES:
            return state
        time.sleep(0.5)
    raise DarkpoolError(f"job {job_id} did not end within {timeout:.0f} s")
