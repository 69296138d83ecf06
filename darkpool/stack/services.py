"""The local stack's services, in start order."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from darkpool.config import Settings
from darkpool.stack.beam import expansion_service, job_server_service, worker_pool_service
from darkpool.stack.flink import jobmanager_service, taskmanager_services
from darkpool.stack.kafka import broker_service
from darkpool.stack.process import Service, http_ok
from darkpool.stack.s3 import s3_services


def _darkpool_cli() -> list[str]:
    return [sys.executable, "-m", "console.cli"]


def stack_services(settings: Settings) -> list[Service]:
    """(S3Proxy, when state or dataset are on the local S3 endpoint), Kafka, Flink JobManager and
    TaskManagers, Beam job server, expansion service, worker pool."""
    return [
        *s3_services(settings),
        broker_service(settings),
        jobmanager_service(settings),
        *taskmanager_services(settings),
        job_server_service(settings),
        expansion_service(settings),
        worker_pool_service(settings),
    ]


def service_by_name(settings: Settings, name: str) -> Service:
    for service in stack_services(settings):
        if service.name == name:
            return service
    raise KeyError(name)


def app_services(settings: Settings, feed_rate: int = 2000, feed_args: Sequence[str] = ()) -> list[Service]:
    """The product's own long-running processes in the demo: the live feed (with ``feed_args`` after its own
    flags, e.g. scenarios) and the serving API."""
    feed = Service(
        name="feed", port=0, settings=settings, owns_port=False, settle_seconds=3.0,
        command=lambda: [*_darkpool_cli(), "feed", "--mode", "live", "--rate", str(feed_rate),
                         "--bootstrap", settings.bootstrap_servers, *feed_args],
        ready=lambda: True, description=f"live trade feed ({feed_rate:,} trades/s) into Kafka",
    )
    serve = Service(
        name="serve", port=settings.serve_port, settings=settings,
        command=lambda: [*_darkpool_cli(), "serve", "--port", str(settings.serve_port), "--host", settings.host,
                         "--bootstrap", settings.bootstrap_servers],
        ready=lambda: http_ok(f"http://{settings.host}:{settings.serve_port}/api/v1/health"),
        description=f"serving API + dashboard on http://{settings.host}:{settings.serve_port}/",
    )
    return [feed, serve]
