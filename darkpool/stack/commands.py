"""CLI: `darkpool kafka|flink|beam|stack ...` and `darkpool topics`."""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Sequence

from darkpool import contracts
from darkpool.config import Settings, load_settings
from darkpool.errors import DarkpoolError
from darkpool.stack import flink
from darkpool.stack import topics as topic_admin
from darkpool.stack.flink import taskmanager_index, taskmanager_services
from darkpool.stack.jobs import job_report
from darkpool.stack.process import Service, ServiceStatus
from darkpool.stack.services import app_services, stack_services

# service group -> the services it covers (in start order)
GROUPS = {
    "kafka": ("kafka",),
    "flink": ("flink-jobmanager", "flink-taskmanager"),
    "beam": ("beam-job-server", "beam-expansion-service", "beam-worker-pool"),
}
GROUP_HELP = {
    "kafka": "the Apache Kafka broker (KRaft, single node)",
    "flink": "the Flink session cluster (JobManager with web UI, N TaskManagers: --taskmanagers)",
    "beam": "Beam's Flink job server, KafkaIO expansion service and Python worker pool",
}


def _services(settings: Settings, names: Sequence[str] | None = None) -> list[Service]:
    """The stack's services, or those of a group (a name covers its numbered siblings: flink-taskmanager-2)."""
    services = stack_services(settings)
    return [s for s in services
            if names is None or s.name in names or any(s.name.startswith(f"{n}-") for n in names)]


def scale_down(settings: Settings) -> None:
    """Stop the TaskManagers numbered above ``settings.taskmanagers`` (after `up --taskmanagers N`).

    A running job loses the slots of a stopped TaskManager and restarts from its last
    checkpoint on the remaining ones (or waits for slots, if too few are left).
    """
    for service in taskmanager_services(settings):
        if taskmanager_index(service.name) > settings.taskmanagers and service.stop():
            print(f"{service.name}: stopped (scaled down to {settings.taskmanagers} TaskManagers)", flush=True)


def stop_orphaned_taskmanagers(settings: Settings) -> None:
    """Stop the TaskManagers that outlived their JobManager (flink.orphaned_taskmanagers): the tasks of the
    jobs it lost would otherwise keep writing outputs until their heartbeat times out. They start again
    with the JobManager."""
    for service in flink.orphaned_taskmanagers(settings):
        print(f"{service.name}: the JobManager is not running; stopping this TaskManager so the tasks of the "
              "jobs it lost stop writing (it starts again with the JobManager)", flush=True)
        service.stop()


def _state(status: ServiceStatus) -> str:
    if status.running and status.answering:
        return "up"
    if status.running:
        return "running, not answering"
    if status.detail:
        return status.detail
    return "stopped"


def print_status(settings: Settings, services: Sequence[Service]) -> bool:
    """Print one line per service; True when all are up."""
    rows = [(s, s.status()) for s in services]
    print(f"{'SERVICE':24} {'PORT':>6} {'PID':>8}  {'STATE':24} LOG")
    for service, status in rows:
        pid = str(status.pid) if status.pid else "-"
        port = str(status.port) if status.port else "-"
        print(f"{service.name:24} {port:>6} {pid:>8}  {_state(status):24} {service.log_file}")
    if any(s.name == "flink-jobmanager" for s in services):
        print(f"\nFlink web UI: {settings.flink_rest_url}   Kafka: {settings.bootstrap_servers}   "
              f"Beam job endpoint: {settings.job_endpoint}")
    return all(status.running and status.answering for _, status in rows)


def start(settings: Settings, services: Sequence[Service]) -> None:
    for service in services:
        print(f"starting {service.name}: {service.description} ...", flush=True)
        status = service.start()
        print(f"  {service.name} up on port {status.port} (pid {status.pid})", flush=True)


def stop(services: Sequence[Service]) -> None:
    for service in reversed(services):
        stopped = service.stop()
        print(f"{service.name}: {'stopped' if stopped else 'was not running'}", flush=True)


def show_logs(services: Sequence[Service], lines: int, follow: bool) -> int:
    files = [str(s.log_file) for s in services if s.log_file.exists()]
    if not files:
        raise DarkpoolError("no log files yet", hint="start the service first")
    argv = ["tail", "-n", str(lines), *(["-F"] if follow else []), *files]
    return subprocess.call(argv)


def _lifecycle(args: argparse.Namespace, names: Sequence[str] | None) -> int:
    taskmanagers = getattr(args, "taskmanagers", None)
    settings = load_settings(taskmanagers=taskmanagers)
    services = _services(settings, names)
    # the whole-stack view also covers the demo's feed and serving processes
    apps = app_services(settings) if names is None else []
    if args.action in ("start", "up"):
        if taskmanagers is not None:
            scale_down(settings)
            services = _services(settings, names)
        if any(s.name == "flink-jobmanager" for s in services):
            stop_orphaned_taskmanagers(settings)
        start(settings, services)
        print()
        print_status(settings, services)
        return 0
    if args.action in ("stop", "down"):
        stop([*services, *apps])
        return 0
    if args.action == "restart":
        stop(services)
        start(settings, services)
        return 0
    if args.action == "status":
        stack_up = print_status(settings, [*services, *apps])
        if any(s.name == "flink-jobmanager" for s in services):
            print("\nFlink jobs:")
            print("\n".join(f"  {line}" for line in job_report(settings)))
        return 0 if stack_up or all(s.status().answering for s in services) else 3
    if args.action == "logs":
        if args.service:
            services = [s for s in [*services, *apps] if s.name == args.service]
            if not services:
                raise DarkpoolError(f"no service named {args.service!r}",
                                    hint="names: " + ", ".join(s.name for s in _services(settings)))
        return show_logs(services, args.lines, args.follow)
    raise DarkpoolError(f"unknown action {args.action!r}")


def _topics(args: argparse.Namespace) -> int:
    settings = load_settings()
    bootstrap = args.bootstrap or settings.bootstrap_servers
    specs = topic_admin.product_topic_specs(args.trades_topic, args.deadletter_topic, args.liquidity_topic,
                                            args.market_topic, partitions=args.partitions,
                                            alerts=args.alerts_topic)
    if args.action == "create":
        for name, outcome in topic_admin.create_topics(bootstrap, specs).items():
            print(f"{name}: {outcome}")
    rows = topic_admin.describe_topics(bootstrap, list(specs))
    print(f"\n{'TOPIC':24} {'PARTITIONS':>10} {'RECORDS':>12}  {'CLEANUP':10} RETENTION(ms)")
    for row in rows:
        if not row["exists"]:
            print(f"{row['topic']:24} {'(missing: run `darkpool topics create`)'}")
            continue
        print(f"{row['topic']:24} {row['partitions']:>10} {row['records']:>12}  {row['cleanup.policy']:10} "
              f"{row['retention.ms']}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _taskmanagers_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--taskmanagers", type=_positive_int, metavar="N",
                        help="start/up: run N Flink TaskManagers (default: DARKPOOL_TASKMANAGERS, else 1); "
                             "with fewer than run now, the extra ones are stopped")


def register(subparsers: argparse._SubParsersAction) -> None:
    for group, names in GROUPS.items():
        parser = subparsers.add_parser(group, help=f"start/stop/status/logs of {GROUP_HELP[group]}",
                                       description=f"Manage {GROUP_HELP[group]} as local processes.")
        parser.add_argument("action", choices=["start", "stop", "restart", "status", "logs"])
        parser.add_argument("service", nargs="?", help="for logs: one service of the group")
        parser.add_argument("-n", "--lines", type=int, default=40, help="log lines to show (default %(default)s)")
        parser.add_argument("-f", "--follow", action="store_true", help="follow the log")
        if group == "flink":
            _taskmanagers_flag(parser)
        parser.set_defaults(func=lambda args, names=names: _lifecycle(args, names))

    stack = subparsers.add_parser(
        "stack", help="the whole local stack: Kafka, Flink, Beam job server, expansion service, worker pool",
        description="Bring the whole local stack up or down, show its status or a service's log. "
                    "Each service is a local process on loopback with its log and data under .state/.")
    stack.add_argument("action", choices=["up", "down", "restart", "status", "logs"])
    stack.add_argument("service", nargs="?", help="for logs: the service (e.g. kafka, flink-taskmanager)")
    stack.add_argument("-n", "--lines", type=int, default=40, help="log lines to show (default %(default)s)")
    stack.add_argument("-f", "--follow", action="store_true", help="follow the log")
    _taskmanagers_flag(stack)
    stack.set_defaults(func=lambda args: _lifecycle(args, None))

    topics = subparsers.add_parser("topics", help="create or describe the product's Kafka topics",
                                   description="Create (if missing) and describe the product's topics.")
    topics.add_argument("action", nargs="?", choices=["create", "describe"], default="create")
    topics.add_argument("--bootstrap", help="Kafka bootstrap servers (default: the local broker)")
    topics.add_argument("--partitions", type=int, default=4, help="partitions of the trades and output topics")
    topics.add_argument("--trades-topic", default=contracts.TRADES_TOPIC)
    topics.add_argument("--deadletter-topic", default=contracts.DEADLETTER_TOPIC)
    topics.add_argument("--liquidity-topic", default=contracts.LIQUIDITY_TOPIC)
    topics.add_argument("--market-topic", default=contracts.MARKET_TOPIC)
    topics.add_argument("--alerts-topic", default=contracts.ALERTS_TOPIC)
    topics.set_defaults(func=_topics)
