"""`darkpool k8s validate`: the policy checks, then every object of every overlay through a real API server.

The API server is the local control plane of deploy/controlplane.py (kube-apiserver v1.34.2 with the
Flink operator's and Strimzi's CRDs installed). Each object goes through
``kubectl apply --server-side --dry-run=server --validate=strict``: the server runs its full
admission and schema validation (unknown or duplicate fields are errors) and stores nothing. The
overlays' namespaces are created for real first (a dry-run object needs its namespace to exist).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from darkpool.config import Settings
from deploy import policy, render
from deploy.controlplane import ControlPlane

FIELD_MANAGER = "darkpool-validate"


@dataclass(frozen=True)
class DryRun:
    """The API server's verdict on one object."""

    ref: str
    ok: bool
    message: str


def namespaces_of(objects: Iterable[dict]) -> list[str]:
    """The namespaces an overlay's objects live in or create, sorted."""
    names = {obj["metadata"]["name"] for obj in objects if obj["kind"] == "Namespace"}
    names |= {obj["metadata"]["namespace"] for obj in objects if (obj.get("metadata") or {}).get("namespace")}
    return sorted(names)


def _first_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[:3]) if lines else "(no message)"


def dry_run(plane: ControlPlane, obj: dict) -> DryRun:
    """Server-side apply of one object with server dry-run and strict field validation."""
    result = plane.kubectl("apply", "--server-side", "--dry-run=server", "--validate=strict",
                           f"--field-manager={FIELD_MANAGER}", "-f", "-",
                           input=render.dump_objects([obj]), check=False, timeout=60)
    ref = render.object_ref(obj)
    if result.returncode == 0:
        warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning")]
        return DryRun(ref, True, result.stdout.strip() + (f" ({'; '.join(warnings)})" if warnings else ""))
    return DryRun(ref, False, _first_error_line(result.stderr or result.stdout))


def dry_run_all(plane: ControlPlane, objects: Sequence[dict], say: Callable[[str], None] = print) -> list[DryRun]:
    """Create the objects' namespaces, then dry-run every object; one printed line per object."""
    for namespace in namespaces_of(objects):
        plane.create_namespace(namespace, wait_for_service_account=False)
    results = []
    for obj in objects:
        outcome = dry_run(plane, obj)
        say(f"  {'ok  ' if outcome.ok else 'FAIL'} {outcome.ref}" + ("" if outcome.ok else f": {outcome.message}"))
        results.append(outcome)
    return results


def validate(settings: Settings, overlays: Sequence[str] = render.OVERLAYS, root: Path = render.K8S_DIR,
             keep_running: bool = False, say: Callable[[str], None] = print) -> bool:
    """Policy checks and server-side validation of the overlays; True when everything passed.

    Starts the local control plane (and installs the CRDs) unless it runs already; stops it at the
    end only if it started it here and ``keep_running`` is false.
    """
    rendered = {}
    passed = True
    for overlay in overlays:
        objects = render.render_objects(overlay, root, settings)
        rendered[overlay] = objects
        violations = policy.check_objects(objects)
        say(f"policy {overlay}: {len(objects)} objects ({policy.describe(objects)}), "
            f"{len(violations)} violation{'s' if len(violations) != 1 else ''}")
        for violation in violations:
            say(f"  FAIL {violation}")
        passed = passed and not violations
    plane = ControlPlane(settings)
    started_here = not plane.running()
    plane.start()
    try:
        plane.install_crds()
        for overlay, objects in rendered.items():
            started = time.monotonic()
            say(f"server-side dry run {overlay} (kube-apiserver {plane.server}, --validate=strict):")
            results = dry_run_all(plane, objects, say)
            failed = [r for r in results if not r.ok]
            say(f"  {overlay}: {len(results) - len(failed)}/{len(results)} objects accepted "
                f"({time.monotonic() - started:.1f} s)")
            passed = passed and not failed
    finally:
        if started_here and not keep_running:
            plane.stop()
    return passed
