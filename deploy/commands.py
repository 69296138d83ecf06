"""CLI: `darkpool k8s render|validate|submit` — the Kubernetes deployment in k8s/ (see k8s/README.md).

- ``darkpool k8s render [--overlay dev|prod] [-o FILE]``: the overlay through kustomize (the YAML
  to ``kubectl apply``).
- ``darkpool k8s validate [--overlay dev|prod]``: the policy checks (deploy/policy.py), then every
  object of every overlay (or the one given) through server-side dry-run with strict validation on
  the local control plane (deploy/controlplane.py), one line per object; non-zero exit on any failure.
- ``darkpool k8s submit --args-file FILE``: what the submission Job runs in the cluster
  (deploy/submit.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from darkpool.config import load_settings
from darkpool.errors import DarkpoolError
from deploy import render


def _render(args: argparse.Namespace) -> int:
    text = render.render(args.overlay, args.k8s_dir)
    if args.output:
        Path(args.output).write_text(text)
        count = len(render.parse_objects(text))
        print(f"rendered overlay {args.overlay}: {count} objects -> {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from deploy.validate import validate  # noqa: PLC0415 (the control plane only when validating)

    overlays = [args.overlay] if args.overlay else list(render.OVERLAYS)
    passed = validate(load_settings(), overlays, args.k8s_dir, keep_running=args.keep_running)
    print(f"k8s validate: {'all checks passed' if passed else 'FAILED'} ({', '.join(overlays)})")
    return 0 if passed else 1


def _submit(args: argparse.Namespace) -> int:
    from deploy.submit import submit  # noqa: PLC0415

    if not args.args_file.is_file():
        raise DarkpoolError(f"no args file {args.args_file}", hint="the Job mounts the ConfigMap darkpool-pipeline")
    submit(args.args_file, args.flink_rest_url, timeout=args.timeout,
           say=lambda line: print(line, flush=True))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    k8s = subparsers.add_parser("k8s", help="render and validate the Kubernetes deployment (k8s/)",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = k8s.add_subparsers(dest="k8s_action", metavar="ACTION")
    actions.required = True

    def overlay_args(parser: argparse.ArgumentParser, default: str | None) -> None:
        parser.add_argument("--overlay", choices=render.OVERLAYS, default=default,
                            help="the overlay" + (f" (default {default})" if default else " (default: all)"))
        parser.add_argument("--k8s-dir", type=Path, default=render.K8S_DIR, help=argparse.SUPPRESS)

    rendering = actions.add_parser("render", help="print an overlay as kustomize renders it")
    overlay_args(rendering, "dev")
    rendering.add_argument("-o", "--output", help="write the YAML to this file instead of stdout")
    rendering.set_defaults(func=_render)

    validating = actions.add_parser("validate", help="policy checks + server-side dry run of every object")
    overlay_args(validating, None)
    validating.add_argument("--keep-running", action="store_true",
                            help="leave the local control plane running afterwards")
    validating.set_defaults(func=_validate)

    submitting = actions.add_parser("submit", help="submit the pipeline from an args file (the submission Job)")
    submitting.add_argument("--args-file", type=Path, required=True,
                            help="the pipeline's arguments, one per line (the ConfigMap darkpool-pipeline)")
    submitting.add_argument("--flink-rest-url", default="http://darkpool-flink-rest:8081",
                            help="the session cluster's REST API (default %(default)s)")
    submitting.add_argument("--timeout", type=float, default=600.0,
                            help="seconds to wait for each service and for the job (default %(default)s)")
    submitting.set_defaults(func=_submit)
