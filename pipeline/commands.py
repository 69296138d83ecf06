"""CLI: `darkpool run` (start the pipeline) and `darkpool jobs` (list, stop, resume, cancel).

`darkpool run` submits the pipeline to the local Flink session cluster through
Beam's job server, detached: the job keeps running after the command returns
(its Python workers come from the long-running worker pool). With
`--runner direct` it runs in-process on Beam's DirectRunner instead (bounded
backfill from a file). Every pipeline flag (see `darkpool run --help`) is
passed to :func:`pipeline.main.run`.

Each Flink submission is recorded under <state>/jobs/<name>.json (its argv,
and later its savepoint), so `darkpool jobs resume NAME` resubmits the same
pipeline from its savepoint — or, after a crash or cancel, from its latest
retained checkpoint — with its Kafka offsets, so nothing is lost or counted twice.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from darkpool.config import Settings, load_settings
from darkpool.errors import DarkpoolError
from darkpool.stack import flink, jvm
from darkpool.stack import jobs as stack_jobs
from darkpool.stack.beam import expansion_service, job_server_service
from darkpool.stack.process import port_open
from darkpool.storage import as_uri, is_s3
from pipeline.options import registry_args

log = logging.getLogger(__name__)

DEFAULT_JOB_NAME = "darkpool-liquidity"


# --- the job registry (darkpool.stack.jobs; re-exported for the tests and tools that import them here)
registry_dir = stack_jobs.registry_dir
load_record = stack_jobs.load_record
save_record = stack_jobs.save_record
latest_retained_checkpoint = stack_jobs.latest_retained_checkpoint


# --- submission -----------------------------------------------------------------
def flink_beam_args(settings: Settings, job_name: str, savepoint: str | None = None,
                    checkpoint_seconds: int = 10) -> list[str]:
    """Beam options for a detached streaming job on the local Flink cluster.

    ``--finish_bundle_before_checkpointing``: every operator finishes its bundle
    before it forwards a checkpoint barrier, so a bundle's outputs go downstream
    ahead of the barrier. Without it, Beam's Flink runner finishes the bundle
    while snapshotting, keeps its outputs in the snapshot and emits them only
    after the barrier: once more by the old job and once more by a job restored
    from that checkpoint or savepoint, i.e. dead letters written twice.

    Checkpoints go to ``flink.checkpoint_location`` (local, or S3 with Settings
    ``flink_state_uri``; the cluster reaches S3 through its S3 file system plugin).
    """
    checkpoints = flink.checkpoint_location(settings)
    if is_s3(checkpoints) and not any(jvm.flink_plugins_dir(settings).glob("s3-fs-presto/*.jar")):
        raise DarkpoolError(f"checkpoints on {checkpoints} need Flink's S3 plugin, which is missing in "
                            f"{jvm.flink_plugins_dir(settings)}",
                            hint="run `make setup`, then `darkpool stack restart`")
    args = [
        "--runner=PortableRunner",
        f"--job_endpoint={settings.job_endpoint}",
        "--environment_type=EXTERNAL",
        f"--environment_config={settings.worker_pool_address}",
        f"--job_name={job_name}",
        f"--checkpointing_interval={checkpoint_seconds * 1000}",
        "--state_backend=rocksdb",
        f"--state_backend_storage_path={as_uri(checkpoints)}",
        "--externalized_checkpoints_enabled",
        "--retain_externalized_checkpoints_on_cancellation",
        "--finish_bundle_before_checkpointing",
        "--detach",
    ]
    if savepoint:
        args += [f"--savepoint_path={savepoint}", "--allow_non_restored_state"]
    return args


def _check_stack(settings: Settings) -> None:
    for what, port in (("the Beam job server", settings.job_server_port),
                       ("the expansion service", settings.expansion_port),
                       ("the Python worker pool", settings.worker_pool_port),
                       ("the Flink cluster", settings.flink_rest_port),
                       ("the Kafka broker", settings.kafka_port)):
        if not port_open(settings.host, port):
            raise DarkpoolError(f"{what} does not answer on {settings.host}:{port}",
                                hint="start the local stack with `darkpool stack up`")
    check_beam_services_current(settings)


def check_beam_services_current(settings: Settings) -> None:
    """Refuse to expand or submit through a Beam service that runs jars older than `.cache/jvm/beam`
    (it would not know the project's transforms: "Unknown urn")."""
    for service in (job_server_service(settings), expansion_service(settings)):
        stale = service.stale_code()
        if stale is not None:
            raise DarkpoolError(f"{service.name} runs older code than {stale}, which changed after it started "
                                "(`make setup` rebuilt the project's JVM transforms)",
                                hint="`darkpool stack up` restarts it with the new jars")


def parallelism_of(pipeline_args: Sequence[str]) -> int | None:
    """The ``--parallelism`` given in a pipeline argv (``--parallelism N`` or ``--parallelism=N``), if any."""
    value: str | None = None
    for position, arg in enumerate(pipeline_args):
        if arg == "--parallelism" and position + 1 < len(pipeline_args):
            value = pipeline_args[position + 1]
        elif arg.startswith("--parallelism="):
            value = arg.split("=", 1)[1]
    return int(value) if value is not None else None


def without_parallelism(pipeline_args: Sequence[str]) -> list[str]:
    """The argv without its ``--parallelism`` flags."""
    args: list[str] = []
    skip = False
    for arg in pipeline_args:
        if skip:
            skip = False
        elif arg == "--parallelism":
            skip = True
        elif not arg.startswith("--parallelism="):
            args.append(arg)
    return args


def with_parallelism(pipeline_args: Sequence[str], parallelism: int) -> list[str]:
    """The argv with its ``--parallelism`` (if any) replaced by ``parallelism``."""
    return [*without_parallelism(pipeline_args), f"--parallelism={parallelism}"]


def default_max_parallelism(parallelism: int) -> int:
    """The key groups Flink gives a job whose max parallelism is not set: 1.5 x the parallelism rounded up to a
    power of two, at least 128 (so 128 for a parallelism up to 85)."""
    wanted = parallelism + parallelism // 2
    return min(max(1 << max(0, wanted - 1).bit_length(), 128), 32768)


def scaling_args(settings: Settings, parallelism: int) -> list[str]:
    """Beam's Flink option for the job's parallelism; the max parallelism (key groups) is left to Flink.

    Keyed state (windows, the per-partition too-late watermark) is stored in key
    groups; a savepoint restores at any parallelism up to their number, because only
    whole key groups move between subtasks. Left unset, Flink gives a new job 128 (for a
    parallelism up to 85) and a restored one the number its state has, so rescaling
    stays possible. It is NOT set explicitly: Beam then splits the Kafka source into
    that many readers (one per partition), and several readers in one source subtask
    read in lockstep, at the pace of the quietest partition (docs/scale-out.md).
    """
    if not 1 <= parallelism <= settings.flink_max_parallelism:
        raise DarkpoolError(f"parallelism {parallelism} is outside 1..{settings.flink_max_parallelism}",
                            hint="at most DARKPOOL_FLINK_MAX_PARALLELISM (the key groups of a job)")
    return [f"--parallelism={parallelism}"]


def check_slots(settings: Settings, parallelism: int, wait_seconds: float = 0.0) -> None:
    """Refuse a parallelism the cluster's free slots cannot hold (the job would wait forever).

    wait_seconds: how long to wait for enough free slots first (after a JobManager restart the
    TaskManagers register again, and free the slots of the jobs it lost, within seconds).
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        overview = flink.rest_get(settings, "/overview")
        available = overview.get("slots-available", 0)
        if parallelism <= available or time.monotonic() >= deadline:
            break
        print(f"  waiting for {parallelism} free task slots ({available} free, "
              f"{overview.get('taskmanagers', 0)} TaskManagers registered) ...", flush=True)
        time.sleep(2.0)
    if parallelism > available:
        raise DarkpoolError(
            f"parallelism {parallelism} needs {parallelism} free task slots; the cluster has {available} "
            f"({overview.get('taskmanagers', 0)} TaskManagers, {overview.get('slots-total', 0)} slots in all)",
            hint="add TaskManagers with `darkpool stack up --taskmanagers N` "
                 f"({settings.taskmanager_slots} slots each) or choose a lower --parallelism")


def previous_max_parallelism(settings: Settings, job_name: str) -> int | None:
    """The key groups the job's record states (a resumed job keeps its state's)."""
    try:
        return load_record(settings, job_name).get("max_parallelism")
    except DarkpoolError:
        return None


def submit_to_flink(settings: Settings, job_name: str, pipeline_args: Sequence[str],
                    savepoint: str | None = None, timeout: float = 300.0, slot_wait: float = 0.0) -> str:
    """Submit the pipeline to the local Flink cluster, detached; returns the Flink job id.

    The parallelism is the argv's ``--parallelism`` (default 1); the max parallelism is Flink's
    default for a new job and the restored state's for a resumed one. ``slot_wait``: seconds to wait for free
    slots.
    """
    from pipeline.main import run  # noqa: PLC0415 (Beam imports are slow; only when submitting)

    _check_stack(settings)
    # the job's record keeps the venue registry it is built with, so `darkpool jobs resume` rebuilds it alike
    pipeline_args = [*pipeline_args, *registry_args(settings.venues_file, settings.venues_mode, pipeline_args)]
    parallelism = parallelism_of(pipeline_args) or 1
    check_slots(settings, parallelism, slot_wait)
    if flink.running_job_ids(settings, job_name):
        raise DarkpoolError(f"a job named {job_name!r} is already running on Flink",
                            hint=f"stop it first (`darkpool jobs stop {job_name}`) or choose --job-name")
    before = {job["jid"] for job in flink.list_jobs(settings)}
    argv = [*without_parallelism(pipeline_args), *flink_beam_args(settings, job_name, savepoint),
            *scaling_args(settings, parallelism)]
    log.info("submitting %s to %s", job_name, settings.job_endpoint)
    run(argv)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [job for job in flink.list_jobs(settings) if job["jid"] not in before and job["name"] == job_name]
        if new:
            job_id = new[0]["jid"]
            if new[0]["state"] in flink.TERMINAL_STATES:
                raise DarkpoolError(f"job {job_id} ended at once ({new[0]['state']})",
                                    hint=f"{settings.flink_rest_url}/#/job/completed/{job_id}/exceptions")
            save_record(settings, job_name, {
                "name": job_name, "pipeline_args": list(pipeline_args), "flink_job_id": job_id,
                "parallelism": parallelism,
                "max_parallelism": (previous_max_parallelism(settings, job_name) if savepoint
                                    else default_max_parallelism(parallelism)),
                "submitted_at": datetime.now(UTC).isoformat(), "restored_from": savepoint, "savepoint": None,
            })
            return job_id
        time.sleep(1.0)
    raise DarkpoolError(f"the job {job_name!r} did not appear on the Flink cluster within {timeout:.0f} s",
                        hint="`darkpool stack logs beam-job-server`")


# --- the commands ---------------------------------------------------------------
def _run(args: argparse.Namespace, pipeline_args: list[str]) -> int:
    settings = load_settings()
    if args.runner == "direct":
        from pipeline.main import run  # noqa: PLC0415

        check_beam_services_current(settings)  # a kafka-range run expands KafkaIO through the service
        result = run(pipeline_args)
        print(f"pipeline finished: {getattr(result, 'state', 'DONE')}")
        return 0
    job_id = submit_to_flink(settings, args.job_name, pipeline_args)
    print(f"submitted {args.job_name} to Flink: job {job_id}")
    print(f"  watch it: {settings.flink_rest_url}/#/job/running/{job_id}/overview")
    print(f"  stop it:  darkpool jobs stop {args.job_name}   (with a savepoint; resume with "
          f"`darkpool jobs resume {args.job_name}`)")
    return 0


def _resolve_job(settings: Settings, name_or_id: str) -> tuple[str | None, str]:
    """(registry name or None, Flink job id of the running job) for a job name or id."""
    running = [job for job in flink.list_jobs(settings) if job["state"] not in flink.TERMINAL_STATES]
    for job in running:
        if name_or_id in (job["jid"], job["name"]):
            return job["name"], job["jid"]
    raise DarkpoolError(f"no running job named or with id {name_or_id!r}",
                        hint="`darkpool jobs list` shows the jobs")


def _jobs(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.action == "list":
        list_jobs(settings)
        return 0
    if not args.job:
        raise DarkpoolError(f"`darkpool jobs {args.action}` needs a job name or id")
    if args.action == "stop":
        name, job_id = _resolve_job(settings, args.job)
        print(f"stopping {name} ({job_id}) with a savepoint ...", flush=True)
        location = flink.stop_with_savepoint(settings, job_id)
        if name and (registry_dir(settings) / f"{name}.json").exists():
            record = load_record(settings, name)
            record["savepoint"] = location
            save_record(settings, name, record)
        print(f"stopped; savepoint {location}\nresume with `darkpool jobs resume {name}`")
        return 0
    if args.action == "cancel":
        if forget_lost(settings, args.job):
            return 0
        name, job_id = _resolve_job(settings, args.job)
        flink.cancel_job(settings, job_id)
        print(f"cancelled {name} ({job_id}); its last checkpoint is retained for `darkpool jobs resume`")
        return 0
    if args.action == "resume":
        resume(settings, args.job, args.from_path, args.parallelism)
        return 0
    raise DarkpoolError(f"unknown action {args.action!r}")


def list_jobs(settings: Settings) -> None:
    """`darkpool jobs list`: the cluster's jobs, each running one's restarts and checkpoints, then the
    recorded jobs the cluster lost (its JobManager died or was stopped) with what to run."""
    states = stack_jobs.cluster_job_states(settings)
    if states is None:
        info = stack_jobs.jobmanager_info(settings)
        print(f"the Flink cluster does not answer on {settings.flink_rest_url} (the JobManager is "
              f"{'running but not answering' if info.running else 'not running'}; `darkpool stack status`)")
    else:
        jobs = flink.list_jobs(settings)
        print(f"{'NAME':28} {'FLINK JOB ID':34} {'STATE':10} {'STARTED (UTC)':20}")
        for job in jobs:
            started = datetime.fromtimestamp(job["start-time"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
            print(f"{job['name'][:28]:28} {job['jid']:34} {job['state']:10} {started:20}")
        if not jobs:
            print("(no jobs on the cluster)")
        lines = stack_jobs.running_job_lines(settings, jobs, int(time.time() * 1000))
        if lines:
            print("\n" + "\n".join(lines))
    lost = stack_jobs.missing_jobs(settings, states)
    if lost:
        print("\nsubmitted from this machine, no longer on the cluster:")
        for fate in lost:
            print(f"  {stack_jobs.fate_line(fate)}")


def forget_lost(settings: Settings, name: str) -> bool:
    """`darkpool jobs cancel NAME` of a job lost with its JobManager: mark its record as given up, so that
    `stack status` and `jobs list` stop listing it (its checkpoints stay; `jobs resume` still works).
    False when NAME is not such a job."""
    states = stack_jobs.cluster_job_states(settings)
    lost = [fate for fate in stack_jobs.missing_jobs(settings, states) if fate.name == name]
    if not lost:
        return False
    record = load_record(settings, name)
    record["given_up_at"] = datetime.now(UTC).isoformat()
    save_record(settings, name, record)
    print(f"{name} ({record['flink_job_id']}) was already gone from the cluster ({lost[0].detail}); it is no "
          "longer listed as lost (its checkpoints are kept: `darkpool jobs resume` still works)")
    return True


def resume(settings: Settings, name: str, from_path: str | None = None, parallelism: int | None = None,
           slot_wait: float = 90.0) -> str:
    """`darkpool jobs resume NAME`: resubmit a recorded job from its savepoint, else its newest complete
    retained checkpoint (after a crash, a cancel or a lost JobManager), else what it was restored from;
    refuses when there is none, or when the job still runs. Returns the new Flink job id."""
    record = load_record(settings, name)
    states = stack_jobs.cluster_job_states(settings) or {}
    if states.get(record["flink_job_id"]) not in (None, *flink.TERMINAL_STATES):
        raise DarkpoolError(f"job {name!r} ({record['flink_job_id']}) is still {states[record['flink_job_id']]} "
                            "on the cluster", hint=f"stop it first: `darkpool jobs stop {name}`")
    if from_path:
        restore, what = from_path, "the given path"
    else:
        point = stack_jobs.restore_point(settings, record)
        restore = point.uri
        what = {"savepoint": "its savepoint", "checkpoint": f"its last retained checkpoint "
                f"{point.checkpoint.label if point.checkpoint else ''}".rstrip(),
                "restored-from": "where it started (it had no checkpoint of its own)"}[point.kind]
    pipeline_args = record["pipeline_args"]
    if parallelism is not None:
        pipeline_args = with_parallelism(pipeline_args, parallelism)
    before = parallelism_of(record["pipeline_args"]) or 1
    after = parallelism_of(pipeline_args) or 1
    scaled = f", parallelism {before} -> {after}" if after != before else f", parallelism {after}"
    print(f"resuming {name} from {what}: {restore}{scaled} ...", flush=True)
    job_id = submit_to_flink(settings, name, pipeline_args, savepoint=restore, slot_wait=slot_wait)
    print(f"resumed {name}: Flink job {job_id}")
    return job_id


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run", help="start the pipeline (detached on the local Flink cluster, or on the DirectRunner)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, add_help=False)
    run.add_argument("--runner", choices=["flink", "direct"], default="flink",
                     help="flink: submit to the local Flink cluster, detached (default); "
                          "direct: run in-process on Beam's DirectRunner (bounded backfill)")
    run.add_argument("--job-name", default=DEFAULT_JOB_NAME, help="the Flink job's name (default %(default)s)")
    run.add_argument("-h", "--help", action="store_true", help="show this help and the pipeline's own flags")
    run.set_defaults(func=dispatch_run, extra_args=True, _run_parser=run)

    jobs = subparsers.add_parser("jobs", help="list, stop (with a savepoint), resume or cancel pipeline jobs",
                                 description="Manage the pipeline's jobs on the local Flink cluster.")
    jobs.add_argument("action", choices=["list", "stop", "resume", "cancel"], nargs="?", default="list")
    jobs.add_argument("job", nargs="?", help="job name (e.g. darkpool-liquidity) or Flink job id")
    jobs.add_argument("--from", dest="from_path", help="resume: a savepoint or checkpoint path to restore")
    jobs.add_argument("--parallelism", type=int, metavar="N",
                      help="resume: run at this parallelism from now on (the state is redistributed; "
                           "1..the fixed max parallelism)")
    jobs.set_defaults(func=_jobs)


def dispatch_run(args: argparse.Namespace, rest: list[str]) -> int:
    """`darkpool run`: the CLI's own flags are parsed; everything else is the pipeline's argv."""
    if args.help:
        args._run_parser.print_help()
        from pipeline.options import build_parser  # noqa: PLC0415

        print("\npipeline flags:")
        build_parser(prog="darkpool run").print_help()
        return 0
    return _run(args, rest)
