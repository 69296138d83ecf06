"""`darkpool demo`: the whole product, live, on this machine.

1. the local stack (Kafka, Flink JobManager + TaskManager, Beam job server,
   expansion service, Python worker pool), each waiting until ready;
2. the product's topics;
3. the live feed (a background process publishing a realistic tape): for a job
   that starts now, first 15 minutes of history, then live, with one injected
   scenario of each alert kind 1-2 minutes into the live tape;
4. the pipeline on the local Flink runner with its alert detectors (`--alerts`;
   submitted detached, unless it already runs);
5. the serving API and dashboard (http://HOST:SERVE_PORT, from the settings:
   DARKPOOL_HOST, DARKPOOL_SERVE_PORT; http://127.0.0.1:5001 by default);
then it prints where to look and a progress line every few seconds (trades/s
into Kafka, panes/s out of the pipeline, alerts, the job's state and last checkpoint)
until Ctrl-C. Everything keeps running after Ctrl-C; `darkpool stack down`
stops it all.
"""

from __future__ import annotations

import argparse
import time

from confluent_kafka import KafkaException

from darkpool import contracts
from darkpool.config import Settings, load_settings
from darkpool.errors import DarkpoolError
from darkpool.stack import flink
from darkpool.stack.commands import print_status, start
from darkpool.stack.process import Service, http_ok
from darkpool.stack.services import app_services, stack_services
from darkpool.stack.topics import create_topics, end_offset, product_topic_specs
from pipeline.commands import DEFAULT_JOB_NAME as PIPELINE_JOB_NAME
from pipeline.commands import submit_to_flink

# what the demo shows: the pipeline with its alert detectors, and a feed that first sends DEMO_HISTORY_MINUTES
# of history (the detectors compare a window with the earlier windows that end before it starts: 10 of them
# by default) and then injects one scenario of each kind 1-2 minutes into the live tape
DEMO_PIPELINE_ARGS = ("--alerts",)
DEMO_HISTORY_MINUTES = 15
# (spec, live minute, options): MSFT's block cluster is sized explicitly, 8 blocks of 200,000 shares in one
# minute (about half a window's volume): a venue's largest block quantity per window is heavy-tailed, and a
# cluster sized from the rate alone (30 % of a window's volume) scored 8, just below the threshold of 9
DEMO_SCENARIOS = (("dark_share_surge:AAPL", 1, ""), ("block_cluster:MSFT", 2, "blocks=8,block_shares=200000"),
                  ("venue_takeover:NVDA:UBSA", 2, ""))


def demo_feed_args(history_minutes: float, scenarios: bool) -> list[str]:
    """The demo feed's flags: the history (0: none) and, unless off, the scenarios at their live minute
    (their offsets count from the feed's first print, the history's first when there is one)."""
    args = ["--history-minutes", f"{history_minutes:g}"] if history_minutes > 0 else []
    if scenarios:
        for spec, live_minute, options in DEMO_SCENARIOS:
            when = f"@+{history_minutes * 60 + live_minute * 60:g}s"
            args += ["--scenario", spec + when + (f",{options}" if options else "")]
    return args


def ensure_pipeline(settings: Settings, extra_args: list[str]) -> str:
    """Submit the pipeline to the local Flink cluster unless a job of that name already runs."""
    running = flink.running_job_ids(settings, PIPELINE_JOB_NAME)
    if running:
        print(f"pipeline already running on Flink (job {running[0]})", flush=True)
        return running[0]
    print("submitting the pipeline to the local Flink cluster (first submission stages ~200 jars) ...",
          flush=True)
    return submit_to_flink(settings, PIPELINE_JOB_NAME, extra_args)


def watch(settings: Settings, interval: float) -> None:
    """Print one progress line per interval: tape in, panes out, job state, checkpoints."""
    topics = (contracts.TRADES_TOPIC, contracts.LIQUIDITY_TOPIC, contracts.MARKET_TOPIC, contracts.DEADLETTER_TOPIC,
              contracts.ALERTS_TOPIC)
    previous = {t: end_offset(settings.bootstrap_servers, t) for t in topics}
    last = time.monotonic()
    try:
        while True:
            time.sleep(interval)
            now = time.monotonic()
            current = {t: end_offset(settings.bootstrap_servers, t) for t in topics}
            rates = {t: (current[t] - previous[t]) / (now - last) for t in topics}
            previous, last = current, now
            job = "no job"
            job_ids = flink.running_job_ids(settings, PIPELINE_JOB_NAME)
            if job_ids:
                counts = flink.rest_get(settings, f"/jobs/{job_ids[0]}/checkpoints").get("counts", {})
                job = f"job RUNNING, {counts.get('completed', 0)} checkpoints"
            dashboard = "up" if http_ok(f"http://{settings.host}:{settings.serve_port}/api/v1/health") else "down"
            print(f"[{time.strftime('%H:%M:%S')}] trades {current[contracts.TRADES_TOPIC]:>9,} "
                  f"({rates[contracts.TRADES_TOPIC]:>7,.0f}/s) | liquidity panes "
                  f"{current[contracts.LIQUIDITY_TOPIC]:>8,} ({rates[contracts.LIQUIDITY_TOPIC]:>5,.0f}/s) | "
                  f"market panes {current[contracts.MARKET_TOPIC]:>7,} | dead letters "
                  f"{current[contracts.DEADLETTER_TOPIC]:>6,} | alerts {current[contracts.ALERTS_TOPIC]:>4,} | {job} | "
                  f"dashboard {dashboard}", flush=True)
    except KafkaException as exc:
        raise DarkpoolError(f"lost the broker: {exc}", hint="`darkpool stack status`") from exc


def run_demo(args: argparse.Namespace) -> int:
    settings = load_settings()
    print("== 1/5 local stack", flush=True)
    start(settings, stack_services(settings))
    print("== 2/5 topics", flush=True)
    for name, outcome in create_topics(settings.bootstrap_servers, product_topic_specs()).items():
        print(f"  {name}: {outcome}", flush=True)
    # history only for a job that starts now: a running job's watermark is past it (its trades would be too late)
    history = 0.0 if flink.running_job_ids(settings, PIPELINE_JOB_NAME) else args.history_minutes
    feed_args = demo_feed_args(history, not args.no_scenarios)
    apps: dict[str, Service] = {s.name: s for s in app_services(settings, feed_rate=args.rate, feed_args=feed_args)}
    print(f"== 3/5 live feed at {args.rate:,} trades/s"
          + (f", after {history:g} minutes of history" if history else "")
          + ("" if args.no_scenarios else f"; scenarios {', '.join(s for s, _, _ in DEMO_SCENARIOS)}"), flush=True)
    start(settings, [apps["feed"]])
    print("== 4/5 pipeline on Flink (with alerts)", flush=True)
    job_id = ensure_pipeline(settings, list(DEMO_PIPELINE_ARGS))
    print(f"  job {job_id}: {settings.flink_rest_url}/#/job/running/{job_id}/overview", flush=True)
    print("== 5/5 serving API + dashboard", flush=True)
    start(settings, [apps["serve"]])
    print()
    print_status(settings, [*stack_services(settings), *apps.values()])
    print(f"""
Where to look:
  dashboard        http://{settings.host}:{settings.serve_port}/
  API (OpenAPI)    http://{settings.host}:{settings.serve_port}/api/v1/openapi.json
  Flink web UI     {settings.flink_rest_url}   (job '{PIPELINE_JOB_NAME}': graph, checkpoints)
  Parquet output   {settings.dataset_location}
  logs             {settings.log_dir}/
Ctrl-C stops this progress display only; `darkpool stack down` stops everything.
""", flush=True)
    if args.no_watch:
        return 0
    try:
        watch(settings, args.interval)
    except KeyboardInterrupt:
        print("\nleft running: `darkpool stack status`, `darkpool stack down`", flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the whole product live: stack, feed, pipeline on Flink, dashboard",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=2000, help="live feed rate in trades/s (default %(default)s)")
    parser.add_argument("--interval", type=float, default=5.0,
                        help="seconds between progress lines (default %(default)s)")
    parser.add_argument("--no-watch", action="store_true", help="bring everything up, then return")
    parser.add_argument("--history-minutes", type=float, default=DEMO_HISTORY_MINUTES,
                        help="minutes of history the feed sends first when the pipeline starts with it, so alerts "
                             "can fire within the first minutes (default %(default)g; 0: none)")
    parser.add_argument("--no-scenarios", action="store_true",
                        help="no injected scenarios (by default one of each alert kind, 1-2 minutes into the live "
                             "tape)")
    parser.set_defaults(func=run_demo)
