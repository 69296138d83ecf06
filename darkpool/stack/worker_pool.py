"""The Python SDK worker pool (EXTERNAL environment) with the user-state cache switched on.

Beam's own ``worker_pool_main`` starts its SDK workers with a state cache of
size 0, so every read of user state (the pipeline's per-partition too-late
watermark, its per-window running totals) is a round trip to the runner.
This entry point starts the same pool with a cache (the size other Beam
environments get by default), and one SDK worker process per request, run
as `python` from PATH (the project's virtual environment goes first).

    python -m darkpool.stack.worker_pool --port 8100 [--state-cache-mb 100]
"""

from __future__ import annotations

import argparse
import logging
import time

from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

from darkpool import logs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True, help="port of the worker pool service")
    parser.add_argument("--state-cache-mb", type=int, default=100, help="user-state cache per SDK worker")
    args = parser.parse_args(argv)
    logs.configure("worker-pool")
    address, server = BeamFnExternalWorkerPoolServicer.start(
        use_process=True, port=args.port, state_cache_size=args.state_cache_mb << 20)
    logging.getLogger(__name__).info("worker pool at %s, state cache %d MB per worker", address, args.state_cache_mb)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop(0)


if __name__ == "__main__":
    main()
