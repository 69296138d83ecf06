"""Render the k8s/ overlays through the real kustomize (``kubectl kustomize``, v5.7.1 inside kubectl v1.34.2).

The manifests live in ``k8s/`` (a base, the overlays ``dev`` and ``prod``, and components); an overlay
is what gets applied. :func:`render` returns the YAML kustomize prints, :func:`render_objects` the
objects in it. ``root`` points at another copy of the ``k8s/`` folder (the tests render deliberately
broken copies).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

import yaml

from darkpool.config import REPO_ROOT, Settings
from darkpool.errors import DarkpoolError
from deploy import tools

OVERLAYS = ("dev", "prod")
K8S_DIR = REPO_ROOT / "k8s"


def overlay_dir(overlay: str, root: Path = K8S_DIR) -> Path:
    """The kustomization folder of an overlay (``<root>/overlays/<overlay>``)."""
    if overlay not in OVERLAYS:
        raise DarkpoolError(f"unknown overlay {overlay!r}", hint=f"choose one of {', '.join(OVERLAYS)}")
    folder = root / "overlays" / overlay
    if not (folder / "kustomization.yaml").is_file():
        raise DarkpoolError(f"no kustomization.yaml in {folder}")
    return folder


def render(overlay: str, root: Path = K8S_DIR, settings: Settings | None = None) -> str:
    """The overlay rendered by kustomize, as YAML text (a stream of documents)."""
    folder = overlay_dir(overlay, root)
    argv = [str(tools.kubectl(settings)), "kustomize", str(folder)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise DarkpoolError(f"kustomize could not render {folder}:\n{result.stderr.strip()}",
                            hint="fix the kustomization (`kubectl kustomize` prints the same error)")
    return result.stdout


def parse_objects(text: str) -> list[dict]:
    """The objects of a YAML stream (empty documents dropped)."""
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    for obj in objects:
        if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
            raise DarkpoolError(f"not a Kubernetes object: {str(obj)[:200]}")
    return objects


def render_objects(overlay: str, root: Path = K8S_DIR, settings: Settings | None = None) -> list[dict]:
    """The overlay's objects, as kustomize renders them."""
    return parse_objects(render(overlay, root, settings))


def dump_objects(objects: Iterable[dict]) -> str:
    """Objects back to one YAML stream (for ``kubectl apply -f -``)."""
    return yaml.safe_dump_all(list(objects), sort_keys=False)


def object_ref(obj: dict) -> str:
    """``Kind/name`` (``Kind/namespace/name`` for namespaced objects): how the checks name an object."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    name = meta.get("name", "?")
    return f"{obj['kind']}/{namespace}/{name}" if namespace else f"{obj['kind']}/{name}"
