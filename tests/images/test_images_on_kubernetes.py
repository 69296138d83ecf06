"""The Flink image's JobManager in native-Kubernetes mode against a real API server.

The JobManager is started inside the darkpool-flink image exactly as the Flink Kubernetes
Operator starts it (`/docker-entrypoint.sh bash -c "kubernetes-jobmanager.sh kubernetes-session"`),
pointed at the local kube-apiserver v1.34.2 (the tests' control plane, built by `make setup`)
with the admin kubeconfig mounted into the container. Asked for one slot at start
(`slotmanager.number-of-slots.min: 1`), Flink's Kubernetes resource manager creates a TaskManager
Pod through the API server: the test checks that Pod runs the same image with the entrypoint and
`kubernetes-taskmanager.sh`, owned by the cluster's Deployment. (No kubelet: the Pod stays Pending.)
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import pytest
import yaml
from image_support import free_port, stop, wait_until

from darkpool.config import Settings
from deploy import images
from deploy.controlplane import ControlPlane

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def control_plane(settings: Settings) -> Iterator[ControlPlane]:
    plane = ControlPlane(settings)
    started_here = not plane.running()
    plane.start()
    try:
        yield plane
    finally:
        if started_here:
            plane.stop()


def embedded_kubeconfig(plane: ControlPlane, namespace: str) -> dict:
    """The admin kubeconfig with the CA inline (the container does not see the host's file)."""
    ca = base64.b64encode(plane.files.ca_file.read_bytes()).decode()
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "local",
        "clusters": [{"name": "local", "cluster": {"server": plane.server, "certificate-authority-data": ca}}],
        "users": [{"name": "admin", "user": {"token": plane.token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin", "namespace": namespace}}],
    }


def jobmanager_deployment(cluster_id: str, namespace: str) -> dict:
    """Stands in for the JobManager Deployment the operator would create (Flink owns its TaskManager Pods by it)."""
    labels = {"app": cluster_id, "component": "jobmanager", "type": "flink-native-kubernetes"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": cluster_id, "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "flink-main-container",
                                                       "image": images.image_ref("darkpool-flink")}]}}},
    }


def test_native_jobmanager_creates_taskmanager_pods_with_the_image(built, flink_image, control_plane, tmp_path):
    namespace = f"img-{uuid.uuid4().hex[:6]}"
    cluster_id = f"dp-{uuid.uuid4().hex[:6]}"
    control_plane.create_namespace(namespace)
    kube = tmp_path / "kube"
    kube.mkdir()
    (kube / "config").write_text(yaml.safe_dump(embedded_kubeconfig(control_plane, namespace)))
    kube.chmod(0o755)
    (kube / "config").chmod(0o644)
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(jobmanager_deployment(cluster_id, namespace)))
    rest = free_port()
    properties = "\n".join([
        f"kubernetes.cluster-id: {cluster_id}", f"kubernetes.namespace: {namespace}",
        "kubernetes.config.file: /tmp/kube/config",
        f"kubernetes.container.image.ref: {images.image_ref('darkpool-flink')}",
        "slotmanager.number-of-slots.min: 1", "taskmanager.memory.process.size: 1024m",
        "taskmanager.rpc.port: 6122",  # set by the operator (Flink's native client): the Pods' fixed port
        "jobmanager.memory.process.size: 768m", f"rest.port: {rest}", f"jobmanager.rpc.port: {free_port()}",
        f"blob.server.port: {free_port()}"])
    log = tmp_path / "jobmanager.log"
    jobmanager = flink_image.popen(
        ["/docker-entrypoint.sh", "bash", "-c", "kubernetes-jobmanager.sh kubernetes-session"],
        env={"FLINK_PROPERTIES": properties}, log=log, volumes={str(kube): "/tmp/kube"})
    try:
        def taskmanager_pods() -> list[dict]:
            pods = control_plane.get_json("pods", "-n", namespace, "-l", f"app={cluster_id},component=taskmanager")
            return pods["items"]

        [pod] = wait_until(taskmanager_pods, 150, "no TaskManager Pod was created through the API server", log)
        [container] = pod["spec"]["containers"]
        assert container["image"] == images.image_ref("darkpool-flink")
        assert container["command"] == ["/docker-entrypoint.sh"]
        assert container["args"][:2] == ["bash", "-c"] and "kubernetes-taskmanager.sh" in container["args"][2]
        owners = {(ref["kind"], ref["name"]) for ref in pod["metadata"].get("ownerReferences", [])}
        assert ("Deployment", cluster_id) in owners, json.dumps(pod["metadata"], indent=1)
        assert "Starting KubernetesSessionClusterEntrypoint" in log.read_text(errors="replace")
    finally:
        stop(jobmanager)
        control_plane.delete_namespace(namespace, wait=False)
