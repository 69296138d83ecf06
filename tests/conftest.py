"""Shared fixtures: the real local stack, on its own ports and state folder.

The test stack never collides with a running `make demo`: Kafka listens on
19092, Flink on 18081, the Beam job server on 18099, the expansion service on
18097 and the worker pool on 18100, with state in .state-test/. Services are
started on first use and left running for the next test run, unless
DARKPOOL_TEST_STOP_STACK=1 (set by `make test`) asks to stop at the end what
this run started. DARKPOOL_TEST_PORT_OFFSET=N moves every test port by N.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_ENVIRONMENT = {
    "DARKPOOL_STATE_DIR": str(REPO_ROOT / ".state-test"),
    "DARKPOOL_KAFKA_PORT": "19092",
    "DARKPOOL_KAFKA_CONTROLLER_PORT": "19093",
    "DARKPOOL_FLINK_REST_PORT": "18081",
    "DARKPOOL_FLINK_RPC_PORT": "16123",
    "DARKPOOL_JOB_SERVER_PORT": "18099",
    "DARKPOOL_JOB_SERVER_ARTIFACT_PORT": "18098",
    "DARKPOOL_JOB_SERVER_EXPANSION_PORT": "18091",
    "DARKPOOL_EXPANSION_PORT": "18097",
    "DARKPOOL_WORKER_POOL_PORT": "18100",
    "DARKPOOL_SERVE_PORT": "15001",
    # local Kubernetes control plane and Flink operator (tests/k8s)
    "DARKPOOL_ETCD_CLIENT_PORT": "12379",
    "DARKPOOL_ETCD_PEER_PORT": "12380",
    "DARKPOOL_K8S_APISERVER_PORT": "16443",
    "DARKPOOL_K8S_CONTROLLER_MANAGER_PORT": "20257",
    "DARKPOOL_FLINK_OPERATOR_HEALTH_PORT": "18085",
    # a SCRAM-authenticating Kafka broker of the prod overlay's users (tests/k8s/test_k8s_kafka_auth.py)
    "DARKPOOL_TEST_SASL_KAFKA_PORT": "19292",
    "DARKPOOL_TEST_SASL_KAFKA_CONTROLLER_PORT": "19293",
    # object storage: the local S3Proxy on its test port with test credentials (tests/pipeline/test_object_storage.py);
    # state and dataset stay local unless a test puts them on S3
    "DARKPOOL_S3_PORT": "19000",
    "DARKPOOL_S3_ENDPOINT": "",
    "DARKPOOL_S3_ACCESS_KEY": "darkpool-test",
    "DARKPOOL_S3_SECRET_KEY": "darkpool-test-secret",
    "DARKPOOL_FLINK_STATE_URI": "",
    "DARKPOOL_DATASET_URI": "",
    # the shipped venue registry (a user's DARKPOOL_VENUES_FILE would change every venue count); tests of
    # user registries set their own (tests/test_venue_registry.py, tests/pipeline/test_user_registry_end_to_end.py)
    "DARKPOOL_VENUES_FILE": "",
    "DARKPOOL_VENUES_MODE": "extend",
}
# DARKPOOL_TEST_PORT_OFFSET moves every test port (e.g. two checkouts testing at once)
_offset = int(os.environ.get("DARKPOOL_TEST_PORT_OFFSET", "0"))
TEST_ENVIRONMENT = {key: str(int(value) + _offset) if key.endswith("_PORT") else value
                    for key, value in TEST_ENVIRONMENT.items()}
# set before any test module builds Settings, so every part sees the test stack
os.environ.update(TEST_ENVIRONMENT)

from darkpool.config import Settings, load_settings  # noqa: E402
from darkpool.stack import services  # noqa: E402

_started_here: list[str] = []


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings of the test stack (ports and state folder above)."""
    return load_settings()


def _ensure(settings: Settings, names: list[str]) -> None:
    for service in services.stack_services(settings):
        if service.name in names and service.pid() is None:
            service.start()
            _started_here.append(service.name)
        elif service.name in names:
            service.start()  # already running: waits until it answers


@pytest.fixture(scope="session")
def kafka_bootstrap(settings: Settings) -> str:
    """A real Kafka broker (started if needed); returns its bootstrap address."""
    _ensure(settings, ["kafka"])
    return settings.bootstrap_servers


@pytest.fixture(autouse=True)
def _broker_answers(request: pytest.FixtureRequest) -> None:
    """Before every test that uses the broker: the broker answers, restarted if an earlier test left it down.

    Tests of outages stop the shared broker and start it again; a start that fails there (a slow log
    recovery, a port still held) would otherwise fail every later test of the run, each after its own
    timeout. Checking costs one metadata request.
    """
    if "kafka_bootstrap" not in request.fixturenames:
        return
    request.getfixturevalue("kafka_bootstrap")  # the session's first use starts it
    settings = request.getfixturevalue("settings")
    kafka = services.service_by_name(settings, "kafka")
    if kafka.pid() is not None and kafka.ready():
        return
    print(f"\nconftest: the test broker does not answer before {request.node.nodeid}: restarting it")
    kafka.stop()
    kafka.start()


@pytest.fixture(scope="session")
def flink_stack(settings: Settings, kafka_bootstrap: str) -> Settings:
    """The whole local stack: Kafka, Flink JobManager + TaskManager, Beam job server,
    expansion service and Python worker pool."""
    _ensure(settings, [s.name for s in services.stack_services(settings)])
    return settings


@pytest.fixture(scope="session")
def s3_endpoint(settings: Settings) -> Iterator[Settings]:
    """A real S3 API server: the local S3Proxy on the test port (objects in .state-test/s3), started if needed
    and stopped at the end when this run started it and DARKPOOL_TEST_STOP_STACK=1."""
    from darkpool.stack.s3 import s3proxy_service

    service = s3proxy_service(settings)
    started = service.pid() is None
    service.start()
    yield settings
    if started and os.environ.get("DARKPOOL_TEST_STOP_STACK") == "1":
        service.stop()


@pytest.fixture
def unique_topic() -> Iterator[str]:
    """A fresh topic-name prefix per test, so tests never read each other's records."""
    yield f"test.{uuid.uuid4().hex[:10]}"


_run_started = time.monotonic()
_module_seen: set[str] = set()


def pytest_runtest_logstart(nodeid: str, location: tuple) -> None:
    """A time stamp when a test file starts (wall clock and minutes into the run), so a log cut short, or a run
    stopped by its time limit, still shows where the time went."""
    module = nodeid.split("::", 1)[0]
    if module not in _module_seen:
        _module_seen.add(module)
        elapsed = time.monotonic() - _run_started
        print(f"\n[{time.strftime('%H:%M:%S')} +{elapsed / 60:.1f} min] {module}", flush=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("DARKPOOL_TEST_STOP_STACK") != "1" or not _started_here:
        return
    stack = {s.name: s for s in services.stack_services(load_settings())}
    for name in reversed(_started_here):
        stack[name].stop()
