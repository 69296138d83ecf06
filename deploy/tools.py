"""Where `make setup` (target `k8s-tools`) put the Kubernetes tooling, and versions.

Binaries built from Go modules (tools/k8s, tools/etcd) live in ``.cache/k8s/bin``; the Flink
operator's and Strimzi's CRDs in ``.cache/k8s/crds/{flink,strimzi}``; the Flink Kubernetes
Operator's classpath in ``.cache/k8s/operator/lib``. Every lookup raises a DarkpoolError with
the hint ``make setup`` when the file is missing.
"""

from __future__ import annotations

from pathlib import Path

from darkpool.config import Settings, load_settings
from darkpool.errors import DarkpoolError

K8S_VERSION = "v1.34.2"
ETCD_VERSION = "3.6.5"
FLINK_OPERATOR_VERSION = "1.7.0"
FLINK_OPERATOR_CRD_VERSION = "1.10.0"
STRIMZI_VERSION = "0.51.0"

_SETUP_HINT = "run `make setup` (target k8s-tools builds the Kubernetes tooling into .cache/k8s)"


def k8s_dir(settings: Settings | None = None) -> Path:
    """The folder `make k8s-tools` fills: .cache/k8s."""
    return (settings or load_settings()).cache_dir / "k8s"


def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise DarkpoolError(f"{what} is missing: {path}", hint=_SETUP_HINT)
    return path


def binary(name: str, settings: Settings | None = None) -> Path:
    """One of the built binaries: kubectl, etcd, kube-apiserver, kube-controller-manager."""
    return _existing(k8s_dir(settings) / "bin" / name, name)


def kubectl(settings: Settings | None = None) -> Path:
    """kubectl v1.34.2 (kustomize v5.7.1 inside: ``kubectl kustomize DIR``)."""
    return binary("kubectl", settings)


def etcd(settings: Settings | None = None) -> Path:
    return binary("etcd", settings)


def kube_apiserver(settings: Settings | None = None) -> Path:
    return binary("kube-apiserver", settings)


def kube_controller_manager(settings: Settings | None = None) -> Path:
    return binary("kube-controller-manager", settings)


def _files(folder: Path, pattern: str, what: str) -> list[Path]:
    files = sorted(folder.glob(pattern))
    if not files:
        raise DarkpoolError(f"{what} are missing: no {pattern} in {folder}", hint=_SETUP_HINT)
    return files


def flink_crd_files(settings: Settings | None = None) -> list[Path]:
    """The Flink Kubernetes Operator's CRDs (``*-v1.yml`` of flink-kubernetes-operator-api 1.10.0)."""
    return _files(k8s_dir(settings) / "crds" / "flink", "*-v1.yml", "Flink operator CRDs")


def strimzi_crd_files(settings: Settings | None = None) -> list[Path]:
    """Strimzi 0.51.0's CRDs, generated from io.strimzi:api by Strimzi's crd-generator (10 files)."""
    return _files(k8s_dir(settings) / "crds" / "strimzi", "04*-Crd-*.yaml", "Strimzi CRDs")


def operator_classpath(settings: Settings | None = None) -> Path:
    """The folder of the Flink Kubernetes Operator 1.7.0's runtime jars (use as ``-cp 'DIR/*'``)."""
    lib = k8s_dir(settings) / "operator" / "lib"
    _files(lib, "flink-kubernetes-operator-*.jar", "Flink Kubernetes Operator jars")
    return lib
