"""Fixtures of the Kubernetes tests: a real control plane (etcd, kube-apiserver, kube-controller-manager
v1.34.2, built by `make setup`) with the Flink operator's and Strimzi's CRDs installed, and the real
Flink Kubernetes Operator 1.7.0 running against it.

The control plane is started once per session on the test ports (tests/conftest.py) and stopped at
the end of the session when this session started it; the operator likewise. Each test that creates
objects gets its own namespace (``k8s_namespace``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from darkpool.config import Settings
from deploy.controlplane import ControlPlane
from deploy.operator import FlinkOperator


@pytest.fixture(scope="session")
def control_plane(settings: Settings) -> Iterator[ControlPlane]:
    """The running control plane, CRDs of both operators Established."""
    plane = ControlPlane(settings)
    started_here = not plane.running()
    plane.start()
    try:
        plane.install_crds()
        yield plane
    finally:
        if started_here:
            plane.stop()


@pytest.fixture(scope="session")
def flink_operator(control_plane: ControlPlane) -> Iterator[FlinkOperator]:
    """The real Flink Kubernetes Operator, healthy, watching every namespace."""
    operator = FlinkOperator(control_plane)
    started_here = operator.service.pid() is None
    operator.start()
    try:
        yield operator
    finally:
        if started_here:
            operator.stop()


@pytest.fixture
def k8s_namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace (with its default service account) for one test; deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    control_plane.create_namespace(name)
    yield name
    control_plane.delete_namespace(name, wait=False)
