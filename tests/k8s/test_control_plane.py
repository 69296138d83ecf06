"""The local Kubernetes control plane and the Flink operator, as the other k8s tests use them.

Real processes throughout: etcd 3.6.5, kube-apiserver and kube-controller-manager v1.34.2 built
from Go modules, the CRDs from the operators' own artifacts, the real Flink Kubernetes Operator.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from k8s_support import wait_until

from darkpool.config import Settings
from darkpool.errors import DarkpoolError
from deploy import tools
from deploy.controlplane import ControlPlane
from deploy.operator import FlinkOperator

pytestmark = pytest.mark.k8s


def test_missing_tooling_points_to_make_setup(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, state_dir=tmp_path / "state")
    with pytest.raises(DarkpoolError) as raised:
        ControlPlane(settings).start()
    assert "etcd" in str(raised.value) and "make setup" in (raised.value.hint or "")


def test_api_server_answers_with_its_version(control_plane: ControlPlane) -> None:
    assert control_plane.running()
    assert control_plane.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    server = json.loads(control_plane.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert server["gitVersion"] == tools.K8S_VERSION
    client = json.loads(control_plane.kubectl("version", "--client", "-o", "json").stdout)
    assert client["clientVersion"]["gitVersion"] == tools.K8S_VERSION
    assert client["kustomizeVersion"] == "v5.7.1"
    namespaces = {item["metadata"]["name"] for item in control_plane.get_json("namespaces")["items"]}
    assert {"default", "kube-system"} <= namespaces


def test_api_server_refuses_requests_without_the_admin_token(control_plane: ControlPlane) -> None:
    context = ssl.create_default_context(cafile=str(control_plane.files.ca_file))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{control_plane.server}/api/v1/namespaces/kube-system/secrets",  # noqa: S310
                               timeout=5, context=context)
    assert refused.value.code == 403  # anonymous: authenticated as system:anonymous, denied by RBAC
    forged = urllib.request.Request(f"{control_plane.server}/api/v1/namespaces",
                                    headers={"Authorization": "Bearer not-the-token"})
    with pytest.raises(urllib.error.HTTPError) as unauthorized:
        urllib.request.urlopen(forged, timeout=5, context=context)  # noqa: S310
    assert unauthorized.value.code == 401


@pytest.fixture(scope="module")
def crds(control_plane: ControlPlane) -> dict[str, dict]:
    """Every CRD in the cluster by name (one request: the Strimzi CRDs alone are 1.6 MB)."""
    return {crd["metadata"]["name"]: crd for crd in control_plane.get_json("customresourcedefinitions")["items"]}


def _established(crd: dict) -> bool:
    return any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])


@pytest.mark.parametrize(("name", "served", "storage"), [
    ("flinkdeployments.flink.apache.org", {"v1beta1"}, "v1beta1"),
    ("flinksessionjobs.flink.apache.org", {"v1beta1"}, "v1beta1"),
    ("kafkas.kafka.strimzi.io", {"v1beta2", "v1"}, "v1beta2"),
    ("kafkanodepools.kafka.strimzi.io", {"v1beta2", "v1"}, "v1beta2"),
    ("kafkatopics.kafka.strimzi.io", {"v1alpha1", "v1beta1", "v1beta2", "v1"}, "v1beta2"),
    ("kafkausers.kafka.strimzi.io", {"v1alpha1", "v1beta1", "v1beta2", "v1"}, "v1beta2"),
    ("kafkaconnects.kafka.strimzi.io", {"v1beta2", "v1"}, "v1beta2"),
    ("strimzipodsets.core.strimzi.io", {"v1beta2", "v1"}, "v1beta2"),
])
def test_operator_crds_are_established_with_their_versions(crds: dict[str, dict], name: str, served: set[str],
                                                           storage: str) -> None:
    crd = crds[name]
    assert _established(crd)
    assert {v["name"] for v in crd["spec"]["versions"] if v["served"]} == served
    assert [v["name"] for v in crd["spec"]["versions"] if v["storage"]] == [storage]
    assert crd["metadata"].get("labels", {}).get("app") == ("strimzi" if "strimzi" in name else None)


def test_every_generated_crd_is_installed(control_plane: ControlPlane, crds: dict[str, dict]) -> None:
    files = [*tools.flink_crd_files(control_plane.settings), *tools.strimzi_crd_files(control_plane.settings)]
    names = [yaml.load(path.read_text(), Loader=yaml.CSafeLoader)["metadata"]["name"] for path in files]
    assert len(names) == 13  # Flink: 3 (1.10.0 adds FlinkStateSnapshot); Strimzi: 10
    for name in names:
        assert _established(crds[name]), name
    resources = control_plane.kubectl("api-resources", "--api-group=kafka.strimzi.io", "-o", "name").stdout.split()
    assert {"kafkas.kafka.strimzi.io", "kafkanodepools.kafka.strimzi.io", "kafkatopics.kafka.strimzi.io",
            "kafkausers.kafka.strimzi.io"} <= set(resources)


def test_crd_schemas_are_enforced_with_strict_field_validation(control_plane: ControlPlane,
                                                              k8s_namespace: str) -> None:
    deployment = {
        "apiVersion": "flink.apache.org/v1beta1", "kind": "FlinkDeployment",
        "metadata": {"name": "schema-check", "namespace": k8s_namespace},
        "spec": {"image": "flink:1.19.3", "flinkVersion": "v1_19",
                 "jobManager": {"resource": {"memory": "1600m", "cpu": 0.5}},
                 "taskManager": {"resource": {"memory": "2048m", "cpu": 1}}},
    }
    dry_run = ("apply", "--dry-run=server", "--validate=strict", "-f", "-")
    control_plane.kubectl(*dry_run, input=yaml.safe_dump(deployment))
    deployment["spec"]["jobManager"]["replicaCount"] = 1  # not a field of the CRD's schema
    rejected = control_plane.kubectl(*dry_run, input=yaml.safe_dump(deployment), check=False)
    assert rejected.returncode != 0 and 'unknown field "spec.jobManager.replicaCount"' in rejected.stderr


def test_controller_manager_turns_a_deployment_into_a_replica_set_and_a_pending_pod(
        control_plane: ControlPlane, k8s_namespace: str) -> None:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": k8s_namespace},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1.0"}]}}},
    }
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(deployment))

    def replica_sets() -> list[dict]:
        return control_plane.get_json("replicasets", "-n", k8s_namespace, "-l", "app=web")["items"]

    replica_set = wait_until(replica_sets, 60, "a ReplicaSet for Deployment web")[0]
    assert replica_set["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert replica_set["metadata"]["ownerReferences"][0]["name"] == "web"

    def pods() -> list[dict]:
        items = control_plane.get_json("pods", "-n", k8s_namespace, "-l", "app=web")["items"]
        return items if len(items) == 2 else []

    for pod in wait_until(pods, 60, "two Pods from ReplicaSet " + replica_set["metadata"]["name"]):
        assert pod["metadata"]["ownerReferences"][0]["name"] == replica_set["metadata"]["name"]
        assert pod["status"]["phase"] == "Pending"  # no scheduler, no kubelet
        assert "nodeName" not in pod["spec"]
        assert pod["spec"]["serviceAccountName"] == "default"


def test_flink_operator_is_healthy_and_reconciles(control_plane: ControlPlane, flink_operator: FlinkOperator,
                                                  k8s_namespace: str) -> None:
    assert flink_operator.running()
    session = {
        "apiVersion": "flink.apache.org/v1beta1", "kind": "FlinkDeployment",
        "metadata": {"name": "smoke", "namespace": k8s_namespace},
        "spec": {"image": "flink:1.19.3", "flinkVersion": "v1_19", "serviceAccount": "default",
                 "flinkConfiguration": {"taskmanager.numberOfTaskSlots": "1"},
                 "jobManager": {"resource": {"memory": "1600m", "cpu": 0.5}},
                 "taskManager": {"resource": {"memory": "2048m", "cpu": 1}}},
    }
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(session))

    def lifecycle() -> str | None:
        status = control_plane.get_json("flinkdeployment", "smoke", "-n", k8s_namespace).get("status", {})
        return status.get("lifecycleState") if status.get("lifecycleState") == "DEPLOYED" else None

    wait_until(lifecycle, 90, f"FlinkDeployment smoke DEPLOYED (operator log: {flink_operator.log_file})")
    jobmanager = control_plane.get_json("deployment", "smoke", "-n", k8s_namespace)
    assert jobmanager["metadata"]["ownerReferences"][0]["kind"] == "FlinkDeployment"
    assert jobmanager["spec"]["template"]["spec"]["containers"][0]["image"] == "flink:1.19.3"
