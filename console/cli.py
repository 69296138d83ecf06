"""The `darkpool` command line: one entry point, one subcommand per capability.

It lives in the top layer (``console/``, above the parts it dispatches to), so
nothing in ``darkpool/`` or in a part imports it.

Each capability's package contributes its subcommands through a
``register(subparsers)`` function listed in ``COMMAND_MODULES``; the CLI only
dispatches. A subcommand that sets ``extra_args=True`` receives the flags the
CLI does not know as a second argument (``darkpool run`` passes them to the
pipeline and Beam). A :class:`~darkpool.errors.DarkpoolError` is printed as a clear
message with a hint and exit status 1, never as a stack trace.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from darkpool import __version__, logs
from darkpool.config import VENUES_MODES
from darkpool.errors import DarkpoolError
from darkpool.venues import export_registry

# module path -> provides register(subparsers)
COMMAND_MODULES = (
    "darkpool.stack.commands",   # kafka, flink, beam, stack, topics
    "darkpool.stack.s3_cli",     # s3 (the local S3Proxy, object listings)
    "darkpool.venues",           # venues (the active venue registry)
    "feed.commands",             # feed
    "pipeline.commands",         # run, jobs
    "serving.commands",          # serve
    "analytics.commands",        # analyze, finra
    "analytics.compact",         # dataset compact
    "console.demo",              # demo
    "deploy.commands",           # k8s (render, validate, submit)
    "deploy.images_commands",    # images
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="darkpool",
        description="Dark Pool Liquidity Dashboard: local stack, feed, pipeline, serving and analytics.",
    )
    parser.add_argument("--version", action="version", version=f"darkpool {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--venues", metavar="FILE",
                        help="a user venue registry CSV for every command (and the processes it starts); "
                             "DARKPOOL_VENUES_FILE; docs/venues.md")
    parser.add_argument("--venues-mode", choices=VENUES_MODES,
                        help="extend (default): the file's venues are added to the shipped registry, a shipped "
                             "MPID's row replaced; replace: the file is the whole registry. DARKPOOL_VENUES_MODE")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that capability is not installed in this checkout
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    # commands with extra_args (e.g. `darkpool run`) pass unknown flags on (to the pipeline / Beam)
    takes_extra = getattr(args, "extra_args", False)
    if rest and not takes_extra:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        job = getattr(args, "job_name", None) or getattr(args, "job", None)  # run --job-name, jobs ACTION NAME
        logs.configure(level=logging.DEBUG if args.verbose else logging.INFO, **logs.command_context(args.command, job))
        if args.venues is not None or args.venues_mode is not None:
            export_registry(args.venues, args.venues_mode)  # before dispatch: children inherit it
        return int((args.func(args, rest) if takes_extra else args.func(args)) or 0)
    except DarkpoolError as exc:
        print(f"darkpool {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"darkpool {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
