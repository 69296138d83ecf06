"""CLI: `darkpool s3 start|stop|status|logs|ls` — the local S3Proxy and what object storage holds.

`darkpool stack up` starts S3Proxy by itself when the configuration puts state or
the dataset on the local endpoint (DARKPOOL_FLINK_STATE_URI / DARKPOOL_DATASET_URI
= s3://..., DARKPOOL_S3_ENDPOINT unset); `darkpool s3 start` starts it on demand.
`darkpool s3 ls [URI]` lists objects on the configured endpoint (local or remote).
"""

from __future__ import annotations

import argparse

from darkpool.config import Settings, load_settings
from darkpool.errors import DarkpoolError
from darkpool.stack.commands import print_status, show_logs, start, stop
from darkpool.stack.s3 import s3proxy_service
from darkpool.storage import buckets_of, fs_path, is_s3, s3_client


def default_uris(settings: Settings) -> list[str]:
    """What `ls` lists without an argument: the state and dataset URIs, else the configured buckets."""
    uris = [uri for uri in (settings.flink_state_uri, settings.dataset_uri) if is_s3(uri)]
    return uris or [f"s3://{bucket}" for bucket in buckets_of(settings)]


def list_objects(settings: Settings, uri: str) -> list[tuple[str, int]]:
    """(s3:// URI, size) of every object under a URI, sorted."""
    from pyarrow import fs as pafs  # noqa: PLC0415

    selector = pafs.FileSelector(fs_path(uri), allow_not_found=True, recursive=True)
    try:
        infos = s3_client(settings).filesystem().get_file_info(selector)
    except OSError as exc:
        raise DarkpoolError(f"cannot list {uri} on {settings.s3_endpoint_url}: {exc}",
                            hint="`darkpool s3 status`; credentials: DARKPOOL_S3_ACCESS_KEY/SECRET_KEY") from exc
    return sorted((f"s3://{info.path}", info.size) for info in infos if info.type == pafs.FileType.File)


def _s3(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.action == "ls":
        for uri in args.uri or default_uris(settings):
            if not is_s3(uri):
                raise DarkpoolError(f"{uri} is not an s3:// URI")
            objects = list_objects(settings, uri)
            total = sum(size for _, size in objects)
            print(f"{uri}: {len(objects)} objects, {total / 1e6:.1f} MB")
            for name, size in objects[:args.limit]:
                print(f"{size:>12,}  {name}")
            if len(objects) > args.limit:
                print(f"  ... {len(objects) - args.limit} more (--limit)")
        return 0
    service = s3proxy_service(settings)
    if args.action == "start":
        start(settings, [service])
        print(f"S3 endpoint {settings.s3_endpoint_url}, buckets: {', '.join(buckets_of(settings))}")
        print(f"put state and dataset on it: export DARKPOOL_FLINK_STATE_URI=s3://{settings.s3_bucket}/flink "
              f"DARKPOOL_DATASET_URI=s3://{settings.s3_bucket}/parquet")
        return 0
    if args.action == "stop":
        stop([service])
        return 0
    if args.action == "status":
        return 0 if print_status(settings, [service]) else 3
    if args.action == "logs":
        return show_logs([service], args.lines, args.follow)
    raise DarkpoolError(f"unknown action {args.action!r}")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "s3", help="the local S3Proxy (S3 API server) and listings of object storage",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status", "logs", "ls"])
    parser.add_argument("uri", nargs="*", help="ls: s3:// URIs to list (default: the configured state and dataset)")
    parser.add_argument("--limit", type=int, default=50, help="ls: objects to show per URI (default %(default)s)")
    parser.add_argument("-n", "--lines", type=int, default=40, help="logs: lines to show (default %(default)s)")
    parser.add_argument("-f", "--follow", action="store_true", help="logs: follow the log")
    parser.set_defaults(func=_s3)
