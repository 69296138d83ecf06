"""Every object of both overlays through a real kube-apiserver (v1.34.2, local control plane) with the
Flink operator's and Strimzi's CRDs installed: server-side apply, server dry-run, strict field
validation. Deliberately broken variants are rejected by the API server itself (the CRDs' schemas and
the built-in validation), and `darkpool k8s validate` reports both and exits non-zero.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy import render
from deploy.controlplane import ControlPlane
from deploy.validate import dry_run, dry_run_all

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {overlay: render.render_objects(overlay) for overlay in render.OVERLAYS}


def find(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_every_object_passes_server_side_dry_run(control_plane: ControlPlane, rendered: dict[str, list[dict]],
                                                 overlay: str) -> None:
    lines: list[str] = []
    results = dry_run_all(control_plane, rendered[overlay], say=lines.append)
    failed = [r for r in results if not r.ok]
    assert not failed, "\n".join(f"{r.ref}: {r.message}" for r in failed)
    assert len(results) == len(rendered[overlay]) == len(lines)
    # server-side apply answered for each object, and stored nothing (dry run)
    assert all("serverside-applied (server dry run)" in r.message for r in results)
    namespace = "darkpool-dev" if overlay == "dev" else "darkpool"
    stored = control_plane.get_json("flinkdeployments,kafkas,deployments,jobs", "-n", namespace)["items"]
    assert stored == []


def _flink_version(o: list[dict]) -> dict:
    flink = find(o, "FlinkDeployment", "darkpool-flink")
    flink["spec"]["flinkVersion"] = "v1_99"
    return flink


def _flink_cpu(o: list[dict]) -> dict:
    flink = find(o, "FlinkDeployment", "darkpool-flink")
    flink["spec"]["taskManager"]["resource"]["cpu"] = "two"
    return flink


def _container_cpu(o: list[dict]) -> dict:
    serving = find(o, "Deployment", "darkpool-serving")
    serving["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "lots"
    return serving


def _listener_type(o: list[dict]) -> dict:
    kafka = find(o, "Kafka", "darkpool")
    kafka["spec"]["kafka"]["listeners"][0]["type"] = "public"
    return kafka


def _unknown_field(o: list[dict]) -> dict:
    job = find(o, "Job", "darkpool-submit")
    job["spec"]["template"]["spec"]["containers"][0]["argz"] = ["k8s", "submit"]
    return job


def _topic_partitions(o: list[dict]) -> dict:
    topic = find(o, "KafkaTopic", "darkpool-trades")
    topic["spec"]["partitions"] = "four"
    return topic


def _acl_operation(o: list[dict]) -> dict:
    user = find(o, "KafkaUser", "darkpool-serving")
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Consume"]
    return user


def _policy_port(o: list[dict]) -> dict:
    policy = find(o, "NetworkPolicy", "darkpool-serving")
    policy["spec"]["ingress"][0]["ports"][0]["port"] = 70000
    return policy


BROKEN = [
    # (overlay, mutation, text the API server's error must contain)
    ("dev", _flink_version, "spec.flinkVersion"),
    ("dev", _flink_cpu, "spec.taskManager.resource.cpu"),
    ("dev", _container_cpu, "quantities must match the regular expression"),
    ("prod", _listener_type, "spec.kafka.listeners[0].type"),
    ("dev", _unknown_field, '.spec.template.spec.containers[name="submit"].argz: field not declared in schema'),
    ("prod", _topic_partitions, "spec.partitions"),
    ("prod", _acl_operation, "operations"),
    ("dev", _policy_port, "port"),
]


@pytest.mark.parametrize(("overlay", "mutate", "text"), BROKEN, ids=[b[1].__name__.strip("_") for b in BROKEN])
def test_broken_variant_is_rejected_by_the_api_server(control_plane: ControlPlane, rendered: dict[str, list[dict]],
                                                      overlay: str, mutate: Callable[[list[dict]], dict],
                                                      text: str) -> None:
    objects = copy.deepcopy(rendered[overlay])
    namespace = "darkpool-dev" if overlay == "dev" else "darkpool"
    control_plane.create_namespace(namespace, wait_for_service_account=False)
    original = find(rendered[overlay], mutate(objects)["kind"], mutate(objects)["metadata"]["name"])
    assert dry_run(control_plane, original).ok  # the unbroken object is accepted ...
    outcome = dry_run(control_plane, mutate(objects))
    assert not outcome.ok, f"accepted: {outcome.message}"  # ... the broken one is not
    assert text in outcome.message, outcome.message


def _darkpool(*args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, in a subprocess, against the test control plane (its ports are in the environment)."""
    return subprocess.run([sys.executable, "-m", "console.cli", *args], capture_output=True, text=True,
                          timeout=600, env=os.environ.copy())


def test_cli_validate_prints_a_line_per_object_and_passes(control_plane: ControlPlane,
                                                          rendered: dict[str, list[dict]]) -> None:
    result = _darkpool("k8s", "validate", "--overlay", "dev")
    assert result.returncode == 0, result.stdout + result.stderr
    for obj in rendered["dev"]:
        assert f"ok   {render.object_ref(obj)}" in result.stdout
    assert "policy dev: " in result.stdout and ", 0 violations" in result.stdout
    assert "k8s validate: all checks passed (dev)" in result.stdout
    assert control_plane.running()  # it was running before: the command leaves it running


def test_cli_validate_fails_on_a_broken_overlay(control_plane: ControlPlane, tmp_path: Path) -> None:
    root = tmp_path / "k8s"
    shutil.copytree(render.K8S_DIR, root)
    flink = root / "base" / "flink" / "flinkdeployment.yaml"
    flink.write_text(flink.read_text().replace("flinkVersion: v1_19", "flinkVersion: v1_99"))
    result = _darkpool("k8s", "validate", "--overlay", "dev", "--k8s-dir", str(root))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL FlinkDeployment/darkpool-dev/darkpool-flink: [flink] flinkVersion v1_99" in result.stdout
    assert "FAIL FlinkDeployment/darkpool-dev/darkpool-flink: " in result.stdout.split("server-side dry run")[1]
    assert "ok   Kafka/darkpool-dev/darkpool" in result.stdout
    assert "k8s validate: FAILED (dev)" in result.stdout


def test_cli_render_writes_the_overlay(tmp_path: Path) -> None:
    out = tmp_path / "prod.yaml"
    result = _darkpool("k8s", "render", "--overlay", "prod", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert render.parse_objects(out.read_text()) == render.render_objects("prod")
    assert f"rendered overlay prod: {len(render.render_objects('prod'))} objects" in result.stderr
