"""The local stack's services, in start order."""

from __future__ import annotations

from darkpool.config import Settings
from darkpool.stack.beam import expansion_service, job_server_service, worker_pool_service
from darkpool.stack.flink import jobmanager_service, taskmanager_service
from darkpool.stack.kafka import broker_service
from darkpool.stack.process import Service


def stack_services(settings: Settings) -> list[Service]:
    """Kafka, Flink JobManager and TaskManager, Beam job server, expansion service, worker pool."""
    return [
        broker_service(settings),
        jobmanager_service(settings),
        taskmanager_service(settings),
        job_server_service(settings),
        expansion_service(settings),
        worker_pool_service(settings),
    ]


def service_by_name(settings: Settings, name: str) -> Service:
    for service in stack_services(settings):
        if service.name == name:
            return service
    raise KeyError(name)
