"""The real Flink Kubernetes Operator (1.7.0, from its Maven classpath) reconciles the project's
FlinkDeployment on the local control plane: the JobManager Deployment, the REST Service, the
ConfigMaps flink-config-<name> and pod-template-<name>; the worker-pool sidecar, the overlay's images
and resources are in the generated pod templates; a spec change is rolled out (the operator deletes
the session cluster and deploys it again). Pods stay Pending: there is no kubelet here.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from k8s_support import in_namespace, wait_until

from darkpool import __version__
from darkpool.stack import jvm
from darkpool.stack.process import java_executable
from deploy import render
from deploy.controlplane import ControlPlane
from deploy.operator import FlinkOperator

pytestmark = pytest.mark.k8s

NAME = "darkpool-flink"
FLINK_KINDS = ("FlinkDeployment", "ServiceAccount", "Role", "RoleBinding")


def get(plane: ControlPlane, namespace: str, *what: str) -> dict | None:
    """An object as JSON, or None while it does not exist."""
    result = plane.kubectl("get", *what, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def deploy_flink(plane: ControlPlane, overlay: str, namespace: str) -> dict:
    """Apply the overlay's FlinkDeployment (and its service account and role) in the namespace."""
    objects = [o for o in render.render_objects(overlay) if o["kind"] in FLINK_KINDS]
    objects = in_namespace(objects, namespace)
    plane.kubectl("apply", "--server-side", "--field-manager=darkpool-tests", "-f", "-",
                  input=render.dump_objects(objects))
    return next(o for o in objects if o["kind"] == "FlinkDeployment")


def reconciled(plane: ControlPlane, namespace: str) -> dict:
    """The JobManager Deployment, the Services and ConfigMaps, once the operator created them all."""
    def everything() -> dict | None:
        found = {
            "deployment": get(plane, namespace, "deployment", NAME),
            "rest": get(plane, namespace, "service", f"{NAME}-rest"),
            "config": get(plane, namespace, "configmap", f"flink-config-{NAME}"),
            "pod_template": get(plane, namespace, "configmap", f"pod-template-{NAME}"),
        }
        return found if all(found.values()) else None
    return wait_until(everything, 120, f"the operator creates Deployment {NAME}, Service {NAME}-rest and ConfigMaps "
                                     f"flink-config-{NAME}, pod-template-{NAME} in {namespace}")


def flink_conf(found: dict) -> dict:
    return yaml.safe_load(found["config"]["data"]["flink-conf.yaml"])


def taskmanager_template(found: dict) -> dict:
    return yaml.safe_load(found["pod_template"]["data"]["taskmanager-pod-template.yaml"])


def containers_by_name(pod_spec: dict) -> dict[str, dict]:
    return {c["name"]: c for c in pod_spec["containers"]}


def mebibytes(quantity: str) -> float:
    """A Kubernetes memory quantity in MiB (the API server may write 2048Mi as 2Gi)."""
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / (1024 * 1024)


def lifecycle(plane: ControlPlane, namespace: str) -> str | None:
    return ((get(plane, namespace, "flinkdeployment", NAME) or {}).get("status") or {}).get("lifecycleState")


def test_operator_reconciles_the_dev_session_cluster(control_plane: ControlPlane, flink_operator: FlinkOperator,
                                                     k8s_namespace: str) -> None:
    flink = deploy_flink(control_plane, "dev", k8s_namespace)
    found = reconciled(control_plane, k8s_namespace)

    # the JobManager: owned by the FlinkDeployment, the overlay's image, resources and pod settings
    deployment = found["deployment"]
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("FlinkDeployment", NAME)
    pod = deployment["spec"]["template"]
    selected = {"app": NAME, "component": "jobmanager", "type": "flink-native-kubernetes",
                "darkpool.io/kafka-client": "true"}  # what the NetworkPolicies and Kafka's peers select
    assert pod["metadata"]["labels"].items() >= selected.items()
    main = containers_by_name(pod["spec"])["flink-main-container"]
    assert main["image"] == f"darkpool-flink:{__version__}" == flink["spec"]["image"]
    limits = main["resources"]["limits"]  # jobManager.resource: cpu 0.5, memory 1600m
    assert (limits["cpu"], mebibytes(limits["memory"])) == ("500m", 1600)
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert {m["mountPath"] for m in main["volumeMounts"]} >= {"/tmp", "/opt/flink/log", "/opt/flink/conf"}
    assert {e["name"]: e.get("value") for e in main["env"]}["FLINK_CONF_DIR"] == "/tmp/flink-conf"
    init = containers_by_name({"containers": pod["spec"]["initContainers"]})["flink-s3-conf"]
    assert init["image"] == f"darkpool-flink:{__version__}"
    assert "flink-config-volume" in {v["name"] for v in pod["spec"]["volumes"]}  # what the init container reads
    assert pod["spec"]["serviceAccountName"] == "darkpool-flink"
    assert {p["port"] for p in found["rest"]["spec"]["ports"]} == {8081}

    # the cluster's configuration: the FlinkDeployment's flinkConfiguration and resources
    conf = flink_conf(found)
    for key, value in flink["spec"]["flinkConfiguration"].items():
        assert str(conf[key]).lower() == str(value).lower(), key
    assert conf["kubernetes.cluster-id"] == NAME and conf["kubernetes.namespace"] == k8s_namespace
    assert conf["kubernetes.container.image.ref"] == f"darkpool-flink:{__version__}"
    assert conf["taskmanager.memory.process.size"] == "4 gb" and conf["kubernetes.taskmanager.cpu.amount"] == 1.0

    # the TaskManagers' pod template: Flink's container with the pod settings, and the worker-pool sidecar
    template = taskmanager_template(found)
    tm_containers = containers_by_name(template["spec"])
    assert list(tm_containers) == ["flink-main-container", "python-worker-pool"]
    sidecar = tm_containers["python-worker-pool"]
    assert sidecar["image"] == f"darkpool-python:{__version__}"
    assert sidecar["command"] == ["/usr/bin/tini", "--", "python", "-m", "darkpool.stack.worker_pool", "--port=50000"]
    assert sidecar["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                    "limits": {"cpu": "1", "memory": "2Gi"}}
    assert [p["containerPort"] for p in sidecar["ports"]] == [50000]
    assert {e["name"]: e.get("value") for e in sidecar["env"]}["DARKPOOL_DATASET_URI"] == "s3://darkpool/parquet"
    tm_main = tm_containers["flink-main-container"]
    assert tm_main["securityContext"]["readOnlyRootFilesystem"] is True
    assert "FLINK_CONF_DIR" in {e["name"] for e in tm_main["env"]}  # not mixed into the sidecar
    assert "FLINK_CONF_DIR" not in {e["name"] for e in sidecar["env"]}
    assert [c["name"] for c in template["spec"]["initContainers"]] == ["flink-s3-conf"]
    assert template["metadata"]["labels"]["darkpool.io/kafka-client"] == "true"
    wait_until(lambda: lifecycle(control_plane, k8s_namespace) == "DEPLOYED", 60, "lifecycleState DEPLOYED")

    # a spec change: more JobManager memory and a larger worker-pool limit -> deleted and deployed again
    old_uid = deployment["metadata"]["uid"]
    containers = flink["spec"]["taskManager"]["podTemplate"]["spec"]["containers"]
    containers[1]["resources"]["limits"]["memory"] = "3Gi"
    patch = {"spec": {"jobManager": {"resource": {"cpu": 0.5, "memory": "2048m"}},
                      "taskManager": {"podTemplate": {"spec": {"containers": containers}}}}}
    control_plane.kubectl("patch", "flinkdeployment", NAME, "-n", k8s_namespace, "--type=merge",
                          "-p", json.dumps(patch))

    def redeployed() -> dict | None:
        current = get(control_plane, k8s_namespace, "deployment", NAME)
        if not current or current["metadata"]["uid"] == old_uid:
            return None
        main = containers_by_name(current["spec"]["template"]["spec"])["flink-main-container"]
        return current if mebibytes(main["resources"]["limits"]["memory"]) == 2048 else None

    wait_until(redeployed, 180, "the operator rolls out the changed spec (a new JobManager Deployment with 2048Mi)")
    found = reconciled(control_plane, k8s_namespace)
    sidecar = containers_by_name(taskmanager_template(found)["spec"])["python-worker-pool"]
    assert mebibytes(sidecar["resources"]["limits"]["memory"]) == 3072
    assert flink_conf(found)["jobmanager.memory.process.size"] == "2 gb"
    wait_until(lambda: lifecycle(control_plane, k8s_namespace) == "DEPLOYED", 120, "DEPLOYED after the upgrade")
    status = get(control_plane, k8s_namespace, "flinkdeployment", NAME)["status"]
    assert "2048m" in status["reconciliationStatus"]["lastReconciledSpec"]


LOAD_CONF = r"""
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.GlobalConfiguration;

/** Flink 1.19's own reading of a configuration folder: print the keys asked for. */
public class LoadConf {
    public static void main(String[] args) {
        Configuration conf = GlobalConfiguration.loadConfiguration(args[0]);
        for (int i = 1; i < args.length; i++) {
            System.out.println(args[i] + "=" + conf.toMap().get(args[i]));
        }
    }
}
"""


def test_flink_reads_the_s3_settings_the_init_container_writes(control_plane: ControlPlane,
                                                               flink_operator: FlinkOperator,
                                                               k8s_namespace: str, tmp_path: Path) -> None:
    deploy_flink(control_plane, "dev", k8s_namespace)
    found = reconciled(control_plane, k8s_namespace)
    pod = found["deployment"]["spec"]["template"]["spec"]
    init = containers_by_name({"containers": pod["initContainers"]})["flink-s3-conf"]
    # the operator's real configuration, where the ConfigMap mount would put it
    source = tmp_path / "conf"
    source.mkdir()
    for key, text in found["config"]["data"].items():
        (source / key).write_text(text)
    env = {e["name"]: e["value"] for e in init["env"] if "value" in e}
    target = tmp_path / env["FLINK_CONF_DIR"].lstrip("/")
    run = subprocess.run(init["command"], capture_output=True, text=True, timeout=60, env={
        "PATH": os.environ["PATH"], "FLINK_CONF_SOURCE": str(source), "FLINK_CONF_DIR": str(target),
        "S3_ENDPOINT": "http://minio.storage:9000", "S3_ACCESS_KEY": "AKIAEXAMPLE", "S3_SECRET_KEY": "s3cr3t"})
    assert run.returncode == 0, run.stderr
    java = (tmp_path / "LoadConf.java")
    java.write_text(LOAD_CONF)
    keys = ["s3.endpoint", "s3.ssl.enabled", "s3.access-key", "s3.secret-key", "s3.path.style.access",
            "state.checkpoints.dir", "pipeline.max-parallelism"]
    loaded = subprocess.run([java_executable(), "-cp", jvm.flink_classpath(), str(java), str(target), *keys],
                            capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    values = dict(line.split("=", 1) for line in loaded.stdout.split())
    assert values == {"s3.endpoint": "http://minio.storage:9000", "s3.ssl.enabled": "false",
                      "s3.access-key": "AKIAEXAMPLE", "s3.secret-key": "s3cr3t", "s3.path.style.access": "true",
                      "state.checkpoints.dir": "s3://darkpool/flink/checkpoints", "pipeline.max-parallelism": "128"}


def test_operator_reconciles_the_prod_cluster_with_kubernetes_ha(control_plane: ControlPlane,
                                                                 flink_operator: FlinkOperator,
                                                                 k8s_namespace: str) -> None:
    flink = deploy_flink(control_plane, "prod", k8s_namespace)
    found = reconciled(control_plane, k8s_namespace)
    assert found["deployment"]["spec"]["replicas"] == 2  # an active and a standby JobManager
    conf = flink_conf(found)
    assert conf["high-availability.type"] == "kubernetes"
    assert conf["high-availability.storageDir"] == "s3://darkpool/flink/ha"
    main = containers_by_name(found["deployment"]["spec"]["template"]["spec"])["flink-main-container"]
    assert (main["resources"]["limits"]["cpu"], mebibytes(main["resources"]["limits"]["memory"])) == ("1", 2048)
    assert conf["taskmanager.memory.process.size"] == "8 gb" and conf["kubernetes.taskmanager.cpu.amount"] == 4.0
    sidecar = containers_by_name(taskmanager_template(found)["spec"])["python-worker-pool"]
    assert sidecar["image"] == f"darkpool-python:{__version__}"
    assert flink["spec"]["flinkVersion"] == "v1_19"
    wait_until(lambda: lifecycle(control_plane, k8s_namespace) == "DEPLOYED", 60, "lifecycleState DEPLOYED")
