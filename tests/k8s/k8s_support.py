"""Helpers shared by the Kubernetes tests."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable

import pytest

from deploy.policy import ARGS_KEY, pipeline_configmap
from deploy.submit import read_args


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.3) -> object:
    """Poll until condition() is truthy; its value, or a failed test naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"within {timeout:.0f} s: {what}")


def in_namespace(objects: Iterable[dict], namespace: str) -> list[dict]:
    """Copies of namespaced objects moved to another namespace (RoleBinding subjects follow); the
    Namespace objects themselves are dropped. (to reconcile an overlay's objects in a fresh namespace)."""
    moved = []
    for obj in objects:
        if obj["kind"] == "Namespace":
            continue
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})["namespace"] = namespace
        for subject in obj.get("subjects") or []:
            if subject.get("kind") == "ServiceAccount":
                subject["namespace"] = namespace
        moved.append(obj)
    return moved


def pipeline_argv(objects: list[dict]) -> list[str] | None:
    """The pipeline's arguments as the submission Job reads them from the ConfigMap."""
    config_map = pipeline_configmap(objects)
    return read_args(config_map["data"][ARGS_KEY]) if config_map else None
