"""Benchmark: the pipeline on the local Flink runner, end to end, beside the seed project's approach.

1. Throughput: a backlog of --trades trades (event times over the last minutes)
   in a fresh topic; the pipeline (default settings: two-stage shape,
   checkpoints every 10 s, RocksDB, Kafka + Parquet outputs) is submitted to the
   local Flink cluster and its consumer group's committed offsets (KafkaIO
   commits them when a checkpoint completes) are sampled until the backlog is
   consumed. Sustained trades/s = records committed between the first commit
   (the first checkpoint after deployment) and the last / the time between
   them; the figure "including start-up" counts from the submission. The rate
   per quarter of that span shows whether the job slows down as the run goes
   on, and the machine's load average is printed first (other work on the two
   cores lowers every figure).
2. Side by side, on the same topic and machine: the seed project's approach —
   one Python process consuming the raw topic with a Kafka client and keeping
   5-minute tumbling windows in a dict (no event-time semantics, lateness or
   recovery).
3. Latency: the live feed at --rate trades/s (event time = production time)
   into another fresh topic with the pipeline running; a consumer records when
   each liquidity pane arrives. A trade's latency is the arrival time of the
   first pane of its (symbol, venue, window) whose trade_count covers it, minus
   its event time. p50 and p99 are printed for the trades after a warm-up
   (--warmup-seconds: the SDK workers start on the first bundle and the first
   seconds are a catch-up, not the steady state), split at the pane's
   emitted_at (trade -> record built, record built -> on the topic).

Usage: .venv/bin/python bench/bench_pipeline.py [--trades 4000000] [--rate 5000] [--latency-seconds 60]
       [--warmup-seconds 20] [--skip-throughput] [--skip-latency] [--pipeline-args "..."]
It uses the local stack on the default ports (`darkpool stack up` first, or it starts it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from darkpool.config import load_settings
from darkpool.stack import flink
from darkpool.stack.services import stack_services
from darkpool.stack.topics import committed_offset, create_topics, product_topic_specs
from feed.generator import FeedConfig, TapeGenerator
from feed.producer import publish_batches
from pipeline.commands import submit_to_flink


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bench_topics(settings, tag: str) -> dict[str, str]:
    prefix = f"bench.{tag}.{uuid.uuid4().hex[:6]}"
    names = {k: f"{prefix}.{k}" for k in ("trades", "deadletter", "liquidity", "market")}
    create_topics(settings.bootstrap_servers, product_topic_specs(**names, partitions=4))
    return names


EXTRA_PIPELINE_ARGS: list[str] = []  # from --pipeline-args


def pipeline_args(topics: dict[str, str], group: str, output: str) -> list[str]:
    return [*EXTRA_PIPELINE_ARGS, f"--trades-topic={topics['trades']}", f"--deadletter-topic={topics['deadletter']}",
            f"--liquidity-topic={topics['liquidity']}", f"--market-topic={topics['market']}",
            f"--group-id={group}", f"--output={output}"]


def preload(settings, topic: str, n: int) -> float:
    """n valid trades with event times over the last 8 minutes, as fast as the feed sends them."""
    now = int(time.time() * 1000)
    generator = TapeGenerator(FeedConfig(seed=42, id_prefix="B-"))
    times = np.linspace(now - 8 * 60_000, now - 1_000, n).astype(np.int64)

    def batches():
        for start in range(0, n, 65_536):
            yield generator.encoder.encode(generator.batch(times[start:start + 65_536]))

    summary = publish_batches(batches(), settings.bootstrap_servers, topic, create_topic=False, progress=True)
    log(f"preloaded {summary.acked:,} trades at {summary.rate:,.0f}/s")
    return summary.acked


def measure_throughput(settings, n_trades: int) -> dict:
    topics = bench_topics(settings, "tput")
    total = preload(settings, topics["trades"], n_trades)
    group = f"bench-{uuid.uuid4().hex[:6]}"
    job_name = f"bench-throughput-{group}"
    output = str(settings.state_dir / "bench" / group / "parquet")
    submitted = time.monotonic()
    job_id = submit_to_flink(settings, job_name, pipeline_args(topics, group, output))
    log(f"submitted job {job_id}; sampling committed offsets")
    samples: list[tuple[float, int]] = []
    try:
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            done = committed_offset(settings.bootstrap_servers, group, topics["trades"])
            if not samples or done != samples[-1][1]:
                samples.append((time.monotonic(), done))
                rate = ((done - samples[0][1]) / (samples[-1][0] - samples[0][0])
                        if len(samples) > 1 and samples[-1][0] > samples[0][0] else 0.0)
                log(f"committed {done:,}/{total:,} ({rate:,.0f} trades/s sustained so far)")
            if done >= total:
                break
            time.sleep(1.0)
        checkpoints = flink.rest_get(settings, f"/jobs/{job_id}/checkpoints")["counts"]
    finally:
        flink.cancel_job(settings, job_id)
    # steady state: from the first commit (the first checkpoint, after deployment) to the last
    moving = [sample for sample in samples if sample[1] > 0]
    first_t, first_n = moving[0]
    last_t, last_n = moving[-1]
    sustained = (last_n - first_n) / (last_t - first_t) if last_t > first_t else float("nan")
    return {"trades": total, "sustained_trades_per_s": sustained, "phases": phase_rates(moving),
            "wall_seconds_from_submit": last_t - submitted,
            "overall_trades_per_s_incl_startup": total / (last_t - submitted),
            "checkpoints_completed": checkpoints.get("completed"), "checkpoints_failed": checkpoints.get("failed"),
            "topic": topics["trades"]}


def phase_rates(samples: list[tuple[float, int]], parts: int = 4) -> list[float]:
    """Committed trades/s in each of ``parts`` equal spans of time between the first and the last sample
    (a rate that falls from span to span is a pipeline slowing down as the run goes on)."""
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return []
    t0, t1 = samples[0][0], samples[-1][0]
    edges = [t0 + (t1 - t0) * i / parts for i in range(parts + 1)]

    def committed_at(t: float) -> float:
        before = [s for s in samples if s[0] <= t][-1]
        after = next((s for s in samples if s[0] >= t), samples[-1])
        if after[0] == before[0]:
            return float(before[1])
        return before[1] + (after[1] - before[1]) * (t - before[0]) / (after[0] - before[0])

    return [(committed_at(b) - committed_at(a)) / (b - a) for a, b in zip(edges, edges[1:], strict=False)]


def machine_load() -> str:
    """The 1-minute load average against the core count: other work on the cores lowers every figure."""
    import os  # noqa: PLC0415

    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    return f"load average {load:.1f} on {cores} cores" + (" (other work is running: figures will be low)"
                                                         if load > 0.5 * cores else "")


def seed_baseline(settings, topic: str, total: int) -> dict:
    """The seed project's loop: consume, json.loads, 5-minute tumbling windows in a dict."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"seed-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    windows: dict[tuple, list] = defaultdict(lambda: [0.0, 0, 0])
    seen, eof = 0, set()
    started = time.monotonic()
    while len(eof) < len(parts):
        for message in consumer.consume(10_000, timeout=1.0):
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(message.partition())
                continue
            trade = json.loads(message.value())
            ts = message.timestamp()[1]
            key = (ts // 300_000 * 300_000, trade["symbol"], trade["venue"])
            w = windows[key]
            w[0] += trade["price"] * trade["quantity"]
            w[1] += trade["quantity"]
            w[2] += 1
            seen += 1
    elapsed = time.monotonic() - started
    consumer.close()
    return {"trades": seen, "trades_per_s": seen / elapsed, "windows": len(windows), "seconds": elapsed}


def measure_latency(settings, rate: int, seconds: int, warmup: int) -> dict:
    topics = bench_topics(settings, "lat")
    group = f"bench-{uuid.uuid4().hex[:6]}"
    job_name = f"bench-latency-{group}"
    output = str(settings.state_dir / "bench" / group / "parquet")
    job_id = submit_to_flink(settings, job_name, pipeline_args(topics, group, output))
    flink.wait_job_running(settings, job_id)
    arrivals: list[tuple[float, dict]] = []
    stop = threading.Event()

    def collect() -> None:
        consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"lat-{group}",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe([topics["liquidity"]])
        while not stop.is_set():
            for message in consumer.consume(1000, timeout=0.2):
                if message.error() is None:
                    arrivals.append((time.time() * 1000, json.loads(message.value())))
        consumer.close()

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    tape = settings.state_dir / "bench" / group / "tape.jsonl"
    log(f"live feed at {rate:,} trades/s for {warmup} s of warm-up + {seconds} s measured into {topics['trades']}")
    measured_from_ms = int(time.time() * 1000) + warmup * 1000
    try:
        subprocess.run([sys.executable, "-m", "console.cli", "feed", "--mode", "live", "--rate", str(rate),
                        "--duration", str(warmup + seconds), "--topic", topics["trades"], "--tape-out", str(tape),
                        "--bootstrap", settings.bootstrap_servers, "--quiet", "--seed", "5"], check=True,
                       stdout=subprocess.DEVNULL)
        time.sleep(15)  # the last early panes
    finally:
        stop.set()
        collector.join()
        flink.cancel_job(settings, job_id)
    return latency_from(tape, arrivals, measured_from_ms)


def latency_from(tape_path, arrivals: list[tuple[float, dict]], measured_from_ms: int = 0) -> dict:
    """Per trade: first pane of its (symbol, venue, last window) whose trade_count covers it.

    Only trades stamped at or after ``measured_from_ms`` are measured (the
    warm-up before it covers the workers' start and the first checkpoint; its
    trades still count towards the panes' trade_count).

    Also splits each latency at the pane's ``emitted_at`` (when the pipeline's
    last Python step built the record): trade -> emitted (read, parse, windows,
    trigger) and emitted -> on the topic (the sink side).
    """
    from darkpool.contracts import parse_event_time

    trades: dict[tuple, list[int]] = defaultdict(list)
    with open(tape_path, "rb") as handle:
        for line in handle:
            record = json.loads(line)
            trade = json.loads(record["value"])
            ts = record["timestamp_ms"]
            trades[(trade["symbol"], trade["venue"], ts // 60_000 * 60_000)].append(ts)
    panes: dict[tuple, list[tuple[int, float, int]]] = defaultdict(list)
    for received, pane in arrivals:
        key = (pane["symbol"], pane["venue"], parse_event_time(pane["window_start"]))
        panes[key].append((pane["trade_count"], received, parse_event_time(pane["emitted_at"])))
    latencies, to_emitted, to_topic = [], [], []
    total = 0
    for key, times in trades.items():
        times.sort()
        key_panes = sorted(panes.get(key, []), key=lambda p: p[1])
        for i, ts in enumerate(times, start=1):
            if ts < measured_from_ms:
                continue
            total += 1
            first = next(((received, emitted) for count, received, emitted in key_panes if count >= i), None)
            if first is not None:
                latencies.append(first[0] - ts)
                to_emitted.append(first[1] - ts)
                to_topic.append(first[0] - first[1])
    values = np.array(latencies)
    return {"trades": total, "measured": len(values), "p50_ms": float(np.percentile(values, 50)),
            "p99_ms": float(np.percentile(values, 99)), "max_ms": float(values.max()),
            "to_emitted_p50_ms": float(np.percentile(to_emitted, 50)),
            "to_emitted_p99_ms": float(np.percentile(to_emitted, 99)),
            "to_topic_p50_ms": float(np.percentile(to_topic, 50)),
            "to_topic_p99_ms": float(np.percentile(to_topic, 99))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=4_000_000, help="backlog size for the throughput run")
    parser.add_argument("--rate", type=int, default=5_000, help="live feed rate for the latency run")
    parser.add_argument("--latency-seconds", type=int, default=60, help="measured seconds of the latency run")
    parser.add_argument("--warmup-seconds", type=int, default=20,
                        help="seconds of live feed before the measured part (workers start, first checkpoint)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--pipeline-args", default="", help="extra pipeline flags, e.g. '--shape simple'")
    args = parser.parse_args()
    EXTRA_PIPELINE_ARGS.extend(args.pipeline_args.split())
    settings = load_settings()
    for service in stack_services(settings):
        service.start()
    AdminClient({"bootstrap.servers": settings.bootstrap_servers}).list_topics(timeout=10)

    log(machine_load())
    if not args.skip_throughput:
        throughput(settings, args.trades)
    if not args.skip_latency:
        log(f"== latency at {args.rate:,} trades/s")
        latency = measure_latency(settings, args.rate, args.latency_seconds, args.warmup_seconds)
        print(f"latency trade -> first pane on the output topic at {args.rate:,} trades/s: "
              f"p50 {latency['p50_ms']:,.0f} ms, p99 {latency['p99_ms']:,.0f} ms, max {latency['max_ms']:,.0f} ms "
              f"({latency['measured']:,} of {latency['trades']:,} trades matched to a pane)")
        print(f"  of which trade -> pane emitted: p50 {latency['to_emitted_p50_ms']:,.0f} ms, "
              f"p99 {latency['to_emitted_p99_ms']:,.0f} ms; emitted -> on the topic: "
              f"p50 {latency['to_topic_p50_ms']:,.0f} ms, p99 {latency['to_topic_p99_ms']:,.0f} ms", flush=True)
    return 0


def throughput(settings, n_trades: int) -> None:
    log("== throughput: pipeline on the local Flink runner")
    pipeline = measure_throughput(settings, n_trades)
    log("== the seed project's approach on the same topic")
    seed = seed_baseline(settings, pipeline["topic"], pipeline["trades"])
    print(f"pipeline on Flink : {pipeline['sustained_trades_per_s']:>10,.0f} trades/s sustained "
          f"({pipeline['trades']:,} trades; {pipeline['overall_trades_per_s_incl_startup']:,.0f}/s including the "
          f"{pipeline['wall_seconds_from_submit']:.0f} s from submission; checkpoints "
          f"{pipeline['checkpoints_completed']} completed, {pipeline['checkpoints_failed']} failed)")
    print("  committed trades/s per quarter of the run: "
          + " -> ".join(f"{rate:,.0f}" for rate in pipeline["phases"]), flush=True)
    print(f"seed consumer loop: {seed['trades_per_s']:>10,.0f} trades/s ({seed['trades']:,} trades, "
          f"{seed['windows']:,} windows, no event time / lateness / recovery)")
    print(f"ratio pipeline / seed: {pipeline['sustained_trades_per_s'] / seed['trades_per_s']:.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
