"""`darkpool images prepare|build|smoke|list`: the project's container images (deploy/images.py)."""

from __future__ import annotations

import argparse

from deploy import images

KEYS = tuple(images.IMAGES)


def _keys(args: argparse.Namespace) -> list[str]:
    return list(args.image) if args.image else list(KEYS)


def _prepare(args: argparse.Namespace) -> int:
    images.prepare()
    images.progress("inputs cached under .cache/images")
    return 0


def _build(args: argparse.Namespace) -> int:
    results = images.build(_keys(args), force=args.force, s3_plugin=args.s3_plugin)
    print()
    for result in results:
        state = "built" if result.built else "up to date"
        print(f"{result.ref:28} {state:11} {result.size_mib:8.0f} MiB  {result.seconds:6.1f} s  {result.archive}")
    return 0


def _smoke(args: argparse.Namespace) -> int:
    failed = 0
    for key in _keys(args):
        for result in images.smoke(key):
            if not result.ok:
                failed += 1
                print(f"  {' '.join(result.check.argv)} -> exit {result.returncode}, expected "
                      f"{result.check.expect!r} in:\n    " + "\n    ".join(result.output.strip().splitlines()[-10:]))
    return 1 if failed else 0


def _list(args: argparse.Namespace) -> int:
    print(f"{'IMAGE':28} {'SIZE':>9}  {'BUILT':25} {'BUILD':>7}  ARCHIVE")
    for row in images.list_images():
        if not row["exists"]:
            print(f"{row['ref']:28} {'-':>9}  (not built: `make images`)")
            continue
        seconds = f"{row['build_seconds']:.0f} s" if row["build_seconds"] is not None else "-"
        print(f"{row['ref']:28} {row['size_mib']:5.0f} MiB  {row['built_at']:25} {seconds:>7}  {row['archive']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "images", help="build the container images (buildah, OCI archives) and run smoke checks inside them",
        description="The darkpool-flink and darkpool-python images, tagged with the project version, built "
                    "with buildah from Debian packages into OCI archives under .cache/images (docs/images.md).")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    prepare = actions.add_parser("prepare", help="cache the images' inputs (root filesystems, wheels, hadolint)")
    prepare.set_defaults(func=_prepare)
    build = actions.add_parser("build", help="build the images whose inputs changed")
    build.add_argument("image", nargs="*", choices=[*KEYS, []], help="flink and/or python (default: both)")
    build.add_argument("--force", action="store_true", help="rebuild even when the inputs are unchanged")
    build.add_argument("--s3-plugin", choices=["auto", "required", "none"], default="auto",
                       help="Flink's S3 plugin from .cache/jvm/flink-plugins: include when present (auto), "
                            "fail without it (required) or leave it out (none)")
    build.set_defaults(func=_build)
    smoke = actions.add_parser("smoke", help="run the smoke commands inside the built images")
    smoke.add_argument("image", nargs="*", choices=[*KEYS, []], help="flink and/or python (default: both)")
    smoke.set_defaults(func=_smoke)
    listing = actions.add_parser("list", help="the built OCI archives, their size and build time")
    listing.set_defaults(func=_list)
