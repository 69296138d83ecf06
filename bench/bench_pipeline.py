"""Benchmark: the pipeline on the local Flink runner, end to end, beside the seed project's approach.

1. Throughput, alerts off and on: a backlog of --trades trades (event times
   over the last 8 minutes) in a fresh topic; the pipeline (default settings:
   two-stage shape, checkpoints every 10 s, RocksDB, Kafka + Parquet outputs)
   is submitted to the local Flink cluster twice, one job after the other, on
   the same backlog with the same settings, once with ``--no-alerts`` and once
   with ``--alerts`` (order: --throughput-order, default off then on), each
   with its own consumer group and its own fresh output topics (alerts
   included: never darkpool.alerts). Each job's committed offsets (KafkaIO
   commits them when a checkpoint completes) are sampled until the backlog is
   consumed. Sustained trades/s = records committed between the first commit
   (the first checkpoint after deployment) and the last / the time between
   them; the figure "including start-up" counts from the submission. The rate
   per quarter of that span shows whether a job slows down as the run goes on.
   The ratio on / off is printed against the target (alerts on within 10 % of
   alerts off: ratio >= 0.90). A job is marked *cold* when the Flink cluster
   lists no job before it (a stack just started: JVM and caches cold; Flink
   forgets finished jobs after an hour), *warm* otherwise; alternate the order
   to see how much of a difference is the order, or run the latency phase
   first (--latency-first: on a fresh stack it is then the cold job, and both
   throughput jobs run warm). The machine's load average is printed first
   (other work on the two cores lowers every figure).
2. Side by side, on the same topic and machine: the seed project's approach —
   one Python process consuming the raw topic with a Kafka client and keeping
   5-minute tumbling windows in a dict (no event-time semantics, lateness or
   recovery).
3. Latency, one job with ``--alerts``: the live feed at --rate trades/s (event
   time = production time) into another fresh topic, with injected scenarios
   (--scenario-symbols: one dark_share_surge, block_cluster, venue_takeover
   after the other, on liquid names); a consumer (fetch wait 100 ms) records
   when each liquidity pane, market pane and alert arrives. The detectors need
   --alert-min-baseline-windows earlier, non-overlapping windows before they
   score one (the pipeline's default is 10, ten minutes of trading before the
   first alert; the bench passes 3 by default so the phase stays within a few
   minutes, and says so); the scenarios start --scenario-offset-seconds after
   the feed's first print (default: after the warm-up and after those
   windows). Two figures, both for trades stamped after the warm-up
   (--warmup-seconds: the SDK workers start on the first bundle and the first
   seconds are a catch-up, not the steady state):

   - pane latency: a trade's latency is the arrival time of the first
     liquidity pane of its (symbol, venue, window) whose trade_count covers
     it, minus its event time;
   - alert latency: an alert names the pane that triggered it (window,
     pane_index; docs/alerts.md). For a dark_share_surge or venue_concentration
     that is the symbol's market pane of that window and pane_index; a
     block_cluster can also be triggered by the named venue's liquidity pane of
     that pane_index, which leaves the pipeline with the market pane of the
     same firing (same emitted_at): of the candidates emitted before the alert,
     the latest is the trigger. That market pane's trade_count n counts the
     symbol's first n trades of the window in production order (the tape's),
     so the trade that triggers the alert is the n-th one, and the alert's
     latency = its arrival at the consumer - that trade's event time. Each
     alert record (one per (symbol, kind, window), again per severity raise)
     is one sample; p50 / p99 are printed with the sample size and PASS / FAIL
     against the target p99 < 5 s.

   Both are split at the record's emitted_at (when the pipeline's last Python
   step built it): trade -> record built (read, parse, windows, trigger,
   detectors) and record built -> on the topic (the sink side).

Usage: .venv/bin/python bench/bench_pipeline.py [--trades 4000000] [--rate 5000] [--latency-seconds 420]
       [--warmup-seconds 20] [--throughput-order off-on|on-off] [--latency-first]
       [--alert-min-baseline-windows 3]
       [--scenario-symbols AAPL,NVDA,...] [--scenario-offset-seconds S] [--skip-throughput] [--skip-latency]
       [--skip-seed] [--pipeline-args "..."]
It uses the local stack on the default ports (`darkpool stack up` first, or it starts it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from darkpool.config import load_settings
from darkpool.contracts import ALERT_BLOCK_CLUSTER, parse_event_time
from darkpool.stack import flink
from darkpool.stack.services import stack_services
from darkpool.stack.topics import committed_offset, create_topics, product_topic_specs
from feed.generator import FeedConfig, TapeGenerator
from feed.producer import publish_batches
from feed.scenarios import DEFAULT_DURATION_SECONDS, SCENARIO_KINDS
from pipeline.commands import submit_to_flink

PERIOD_MS = 60_000  # the pipeline's default window period: a trade's last window starts at its minute
ALERT_P99_TARGET_MS = 5_000.0  # issue 13: alert latency p99 under 5 s at 5,000 trades/s
THROUGHPUT_MIN_RATIO = 0.90  # issue 13: alerts on within 10 % of alerts off
DEFAULT_SCENARIO_SYMBOLS = ("AAPL", "NVDA", "TSLA", "AMZN", "AMD", "MSFT")
DEFAULT_MIN_BASELINE_WINDOWS = 3


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bench_topics(settings, tag: str, trades: str | None = None) -> dict[str, str]:
    """Fresh product topics (alerts included) named bench.<tag>.<random>; ``trades``: reuse that trades topic."""
    prefix = f"bench.{tag}.{uuid.uuid4().hex[:6]}"
    names = {k: f"{prefix}.{k}" for k in ("trades", "deadletter", "liquidity", "market", "alerts")}
    if trades is not None:
        names["trades"] = trades
    create_topics(settings.bootstrap_servers, product_topic_specs(**names, partitions=4))
    return names


EXTRA_PIPELINE_ARGS: list[str] = []  # from --pipeline-args
ALERT_PIPELINE_ARGS: list[str] = []  # from --alert-min-baseline-windows (the same in every job of the run)


def pipeline_args(topics: dict[str, str], group: str, output: str, alerts: bool) -> list[str]:
    """The job's flags: its own topics (alerts included), group and output; ``--alerts`` or ``--no-alerts``."""
    return [*EXTRA_PIPELINE_ARGS, *ALERT_PIPELINE_ARGS, "--alerts" if alerts else "--no-alerts",
            f"--trades-topic={topics['trades']}", f"--deadletter-topic={topics['deadletter']}",
            f"--liquidity-topic={topics['liquidity']}", f"--market-topic={topics['market']}",
            f"--alerts-topic={topics['alerts']}", f"--group-id={group}", f"--output={output}"]


def submit_job(settings, tag: str, topics: dict[str, str], alerts: bool) -> tuple[str, str]:
    """Submit one bench job on ``topics``; returns (Flink job id, consumer group)."""
    group = f"bench-{uuid.uuid4().hex[:6]}"
    output = str(settings.state_dir / "bench" / group / "parquet")
    job_id = submit_to_flink(settings, f"bench-{tag}-{group}", pipeline_args(topics, group, output, alerts))
    log(f"submitted job {job_id} ({tag}, alerts {'on' if alerts else 'off'})")
    return job_id, group


def stop_job(settings, job_id: str, timeout: float = 120.0) -> None:
    """Cancel a job and wait until it has ended (the next job then has the machine to itself)."""
    flink.cancel_job(settings, job_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if flink.rest_get(settings, f"/jobs/{job_id}")["state"] in flink.TERMINAL_STATES:
            time.sleep(3.0)  # the SDK worker's bundle teardown
            return
        time.sleep(1.0)
    log(f"job {job_id} did not end within {timeout:.0f} s of its cancellation")


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


def measure_throughput(settings, trades_topic: str, total: int, alerts: bool) -> dict:
    """One job on the backlog in ``trades_topic`` (``total`` trades): its committed offsets until all are read."""
    cold = not flink.list_jobs(settings)
    topics = bench_topics(settings, f"tput-{'on' if alerts else 'off'}", trades=trades_topic)
    submitted = time.monotonic()
    job_id, group = submit_job(settings, "throughput", topics, alerts)
    samples: list[tuple[float, int]] = []
    try:
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            done = committed_offset(settings.bootstrap_servers, group, trades_topic)
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
        stop_job(settings, job_id)
    # steady state: from the first commit (the first checkpoint, after deployment) to the last
    moving = [sample for sample in samples if sample[1] > 0]
    first_t, first_n = moving[0]
    last_t, last_n = moving[-1]
    sustained = (last_n - first_n) / (last_t - first_t) if last_t > first_t else float("nan")
    return {"alerts": alerts, "cold": cold, "trades": total, "sustained_trades_per_s": sustained,
            "phases": phase_rates(moving), "wall_seconds_from_submit": last_t - submitted,
            "overall_trades_per_s_incl_startup": total / (last_t - submitted),
            "checkpoints_completed": checkpoints.get("completed"), "checkpoints_failed": checkpoints.get("failed")}


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


# --- latency: what the consumer saw, the tape, and the pure matching ---------------------------------------


@dataclass
class Arrivals:
    """What the latency consumer received, slimmed to what the matching reads (epoch ms throughout).

    ``liquidity``: (symbol, venue, window_start) -> [(trade_count, received, emitted_at, pane_index)];
    ``market``: (symbol, window_start) -> [(pane_index, trade_count, emitted_at)];
    ``alerts``: [(received, alert record)], in arrival order.
    """

    liquidity: dict[tuple[str, str, int], list[tuple[int, float, int, int]]] = field(
        default_factory=lambda: defaultdict(list))
    market: dict[tuple[str, int], list[tuple[int, int, int]]] = field(default_factory=lambda: defaultdict(list))
    alerts: list[tuple[float, dict]] = field(default_factory=list)

    def add(self, kind: str, received_ms: float, record: Mapping) -> None:
        """One record of the liquidity, market or alerts topic (``kind``), received at ``received_ms``."""
        if kind == "alerts":
            self.alerts.append((received_ms, dict(record)))
            return
        symbol = sys.intern(record["symbol"])
        start = parse_event_time(record["window_start"])
        emitted = parse_event_time(record["emitted_at"])
        if kind == "liquidity":
            self.liquidity[(symbol, sys.intern(record["venue"]), start)].append(
                (record["trade_count"], received_ms, emitted, record["pane_index"]))
        else:
            self.market[(symbol, start)].append((record["pane_index"], record["trade_count"], emitted))


@dataclass
class Tape:
    """The feed's tape: event times (epoch ms) in production order, by (symbol, venue, minute) and by
    (symbol, minute) (``minute``: the event time's whole minute, epoch ms)."""

    by_venue: dict[tuple[str, str, int], list[int]] = field(default_factory=lambda: defaultdict(list))
    by_symbol: dict[tuple[str, int], list[int]] = field(default_factory=lambda: defaultdict(list))

    def add(self, symbol: str, venue: str, ts: int) -> None:
        minute = ts // PERIOD_MS * PERIOD_MS
        self.by_venue[(symbol, venue, minute)].append(ts)
        self.by_symbol[(symbol, minute)].append(ts)

    @classmethod
    def read(cls, path) -> Tape:
        """A ``darkpool feed --tape-out`` file (JSONL: timestamp_ms = the event time in live mode)."""
        tape = cls()
        with open(path, "rb") as handle:
            for line in handle:
                record = orjson.loads(line)
                trade = orjson.loads(record["value"])
                tape.add(sys.intern(trade["symbol"]), sys.intern(trade["venue"]), record["timestamp_ms"])
        return tape

    def nth_in_window(self, symbol: str, window_start_ms: int, window_end_ms: int, n: int) -> int | None:
        """The event time of the symbol's n-th trade (1-based, production order) in the window, None when the
        tape holds fewer (the window's minutes are taken in order: a trade is produced at its event time)."""
        for minute in range(window_start_ms, window_end_ms, PERIOD_MS):
            times = self.by_symbol.get((symbol, minute), ())
            if n <= len(times):
                return times[n - 1]
            n -= len(times)
        return None


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / max (ms) of a sample; NaN for an empty one."""
    if not len(values):
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    array = np.asarray(values, dtype=float)
    return {"p50_ms": float(np.percentile(array, 50)), "p99_ms": float(np.percentile(array, 99)),
            "max_ms": float(array.max())}


def split_summary(total: Sequence[float], to_emitted: Sequence[float], to_topic: Sequence[float]) -> dict:
    """The latency summary and its split at emitted_at (trade -> record built, record built -> on the topic)."""
    return {**summary_ms(total), **{f"to_emitted_{k}": v for k, v in summary_ms(to_emitted).items()},
            **{f"to_topic_{k}": v for k, v in summary_ms(to_topic).items()}}


def latency_from(tape: Tape, arrivals: Arrivals, measured_from_ms: int = 0) -> dict:
    """Per trade: first liquidity pane of its (symbol, venue, last window) whose trade_count covers it.

    Only trades stamped at or after ``measured_from_ms`` are measured (the
    warm-up before it covers the workers' start and the first checkpoint; its
    trades still count towards the panes' trade_count). The i-th trade of a
    (symbol, venue) in a minute is the i-th of the window starting at that minute.

    Also splits each latency at the pane's ``emitted_at`` (when the pipeline's
    last Python step built the record): trade -> emitted (read, parse, windows,
    trigger) and emitted -> on the topic (the sink side).
    """
    latencies, to_emitted, to_topic = [], [], []
    total = 0
    for key, times in tape.by_venue.items():
        key_panes = sorted(arrivals.liquidity.get(key, []), key=lambda p: p[1])
        for i, ts in enumerate(times, start=1):
            if ts < measured_from_ms:
                continue
            total += 1
            first = next(((received, emitted) for count, received, emitted, _ in key_panes if count >= i), None)
            if first is not None:
                latencies.append(first[0] - ts)
                to_emitted.append(first[1] - ts)
                to_topic.append(first[0] - first[1])
    return {"trades": total, "measured": len(latencies), **split_summary(latencies, to_emitted, to_topic)}


def trigger_pane(alert: Mapping, arrivals: Arrivals) -> tuple[int, int] | None:
    """(trade_count, emitted_at ms) of the market pane of the firing that triggered ``alert``, or None.

    Candidates: the symbol's market pane of the alert's window and pane_index; for a block_cluster also
    the named venue's liquidity pane of that pane_index, through the market pane of the same firing (same
    emitted_at). Of the candidates built at or before the alert's emitted_at, the latest.
    """
    symbol, start = alert["symbol"], parse_event_time(alert["window_start"])
    index, emitted = alert["pane_index"], parse_event_time(alert["emitted_at"])
    market = arrivals.market.get((symbol, start), [])
    candidates = [(count, built) for pane_index, count, built in market if pane_index == index]
    if alert["kind"] == ALERT_BLOCK_CLUSTER and alert.get("venue"):
        by_emitted = {built: count for _, count, built in market}
        for _, _, built, pane_index in arrivals.liquidity.get((symbol, alert["venue"], start), []):
            if pane_index == index and built in by_emitted:
                candidates.append((by_emitted[built], built))
    candidates = [c for c in candidates if c[1] <= emitted]
    return max(candidates, key=lambda c: c[1]) if candidates else None


def alert_latency_from(tape: Tape, arrivals: Arrivals, measured_from_ms: int = 0) -> dict:
    """Per alert record: its arrival at the consumer - the event time of the trade that triggered it (the
    last trade of the symbol in the window that the triggering market pane counts); alerts whose trade is
    stamped before ``measured_from_ms`` are left out, those whose pane or trade is not found counted.
    Split at the alert's emitted_at (trade -> alert built, alert built -> on the topic) and, for the part
    before the detectors, trade -> triggering pane built (``to_pane_*``)."""
    latencies, to_emitted, to_topic, to_pane, kinds = [], [], [], [], defaultdict(int)
    unmatched = warmup = 0
    for received, alert in arrivals.alerts:
        trigger = trigger_pane(alert, arrivals)
        ts = None if trigger is None else tape.nth_in_window(
            alert["symbol"], parse_event_time(alert["window_start"]), parse_event_time(alert["window_end"]),
            trigger[0])
        if ts is None:
            unmatched += 1
            continue
        if ts < measured_from_ms:
            warmup += 1
            continue
        emitted = parse_event_time(alert["emitted_at"])
        latencies.append(received - ts)
        to_emitted.append(emitted - ts)
        to_topic.append(received - emitted)
        to_pane.append(trigger[1] - ts)
        kinds[alert["kind"]] += 1
    return {"alerts": len(arrivals.alerts), "measured": len(latencies), "unmatched": unmatched,
            "before_warmup": warmup, "kinds": dict(sorted(kinds.items())),
            **split_summary(latencies, to_emitted, to_topic),
            **{f"to_pane_{k}": v for k, v in summary_ms(to_pane).items()}}


def scenario_specs(symbols: Iterable[str], offset_seconds: float) -> list[str]:
    """``--scenario`` specs: the kinds in turn (surge, cluster, takeover, surge, ...) on ``symbols``, all
    starting ``offset_seconds`` after the feed's first print (the venues the feed's own choice)."""
    return [f"{SCENARIO_KINDS[i % len(SCENARIO_KINDS)]}:{symbol}@+{offset_seconds:g}s"
            for i, symbol in enumerate(symbols)]


def default_scenario_offset(warmup_seconds: float, min_baseline_windows: int) -> float:
    """Seconds after the first print at which the scenarios start: after the warm-up, and one minute after
    the first window the detectors can score (``min_baseline_windows`` windows ended before its start; the
    first window with trades ends within a minute of the first print)."""
    return float(max(warmup_seconds, (min_baseline_windows + 1) * PERIOD_MS // 1000))


def collect(settings, topics: dict[str, str], arrivals: Arrivals, stop: threading.Event, group: str) -> None:
    """Consume the job's liquidity, market and alerts topics into ``arrivals`` until ``stop``."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"lat-{group}",
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100})
    kinds = {topics["liquidity"]: "liquidity", topics["market"]: "market", topics["alerts"]: "alerts"}
    consumer.subscribe(list(kinds))
    while not stop.is_set():
        for message in consumer.consume(1000, timeout=0.1):
            if message.error() is None:
                arrivals.add(kinds[message.topic()], time.time() * 1000, orjson.loads(message.value()))
    consumer.close()


def measure_latency(settings, rate: int, seconds: int, warmup: int, scenarios: Sequence[str]) -> dict:
    """The live feed at ``rate`` for ``warmup`` + ``seconds`` with ``scenarios`` into one job with alerts on:
    pane latency and alert latency."""
    cold = not flink.list_jobs(settings)
    topics = bench_topics(settings, "lat")
    job_id, group = submit_job(settings, "latency", topics, alerts=True)
    flink.wait_job_running(settings, job_id)
    arrivals = Arrivals()
    stop = threading.Event()
    collector = threading.Thread(target=collect, args=(settings, topics, arrivals, stop, group), daemon=True)
    collector.start()
    tape_path = settings.state_dir / "bench" / group / "tape.jsonl"
    log(f"live feed at {rate:,} trades/s for {warmup} s of warm-up + {seconds} s measured into {topics['trades']}; "
        f"scenarios {', '.join(scenarios) or 'none'}")
    measured_from_ms = int(time.time() * 1000) + warmup * 1000
    try:
        subprocess.run([sys.executable, "-m", "console.cli", "feed", "--mode", "live", "--rate", str(rate),
                        "--duration", str(warmup + seconds), "--topic", topics["trades"], "--tape-out", str(tape_path),
                        "--bootstrap", settings.bootstrap_servers, "--quiet", "--seed", "5",
                        *(arg for spec in scenarios for arg in ("--scenario", spec))],
                       check=True, stdout=subprocess.DEVNULL)
        log("feed done; 15 s for the last early panes and alerts")
        time.sleep(15)
    finally:
        stop.set()
        collector.join()
        stop_job(settings, job_id)
    log(f"received {sum(map(len, arrivals.liquidity.values())):,} liquidity panes, "
        f"{sum(map(len, arrivals.market.values())):,} market panes, {len(arrivals.alerts):,} alerts; matching")
    tape = Tape.read(tape_path)
    return {"cold": cold, "panes": latency_from(tape, arrivals, measured_from_ms),
            "alerts": alert_latency_from(tape, arrivals, measured_from_ms)}


# --- the run -----------------------------------------------------------------------------------------------


def throughput(settings, n_trades: int, order: Sequence[bool], seed: bool) -> dict:
    """The backlog once; one job per alerts setting in ``order``; then the seed consumer on the same topic."""
    log("== throughput: pipeline on the local Flink runner, alerts " + " then ".join(
        "on" if alerts else "off" for alerts in order))
    trades_topic = bench_topics(settings, "tput")["trades"]
    total = preload(settings, trades_topic, n_trades)
    runs = {}
    for alerts in order:
        log(f"-- alerts {'on' if alerts else 'off'}")
        runs[alerts] = measure_throughput(settings, trades_topic, total, alerts)
    for alerts in order:
        run = runs[alerts]
        print(f"pipeline on Flink, alerts {'on ' if alerts else 'off'} ({'cold' if run['cold'] else 'warm'}): "
              f"{run['sustained_trades_per_s']:>10,.0f} trades/s sustained ({run['trades']:,} trades; "
              f"{run['overall_trades_per_s_incl_startup']:,.0f}/s including the "
              f"{run['wall_seconds_from_submit']:.0f} s from submission; checkpoints "
              f"{run['checkpoints_completed']} completed, {run['checkpoints_failed']} failed)")
        print("  committed trades/s per quarter of the run: "
              + " -> ".join(f"{rate:,.0f}" for rate in run["phases"]), flush=True)
    ratio = runs[True]["sustained_trades_per_s"] / runs[False]["sustained_trades_per_s"]
    first = runs[order[0]]
    print(f"ratio alerts on / off: {ratio:.3f} (target >= {THROUGHPUT_MIN_RATIO:.2f}: "
          f"{'PASS' if ratio >= THROUGHPUT_MIN_RATIO else 'FAIL'}; the first job, alerts "
          f"{'on' if order[0] else 'off'}, was {'cold' if first['cold'] else 'warm'})", flush=True)
    result = {"runs": runs, "ratio": ratio}
    if seed:
        log("== the seed project's approach on the same topic")
        seed_run = seed_baseline(settings, trades_topic, total)
        off = runs[False]["sustained_trades_per_s"]
        print(f"seed consumer loop: {seed_run['trades_per_s']:>10,.0f} trades/s ({seed_run['trades']:,} trades, "
              f"{seed_run['windows']:,} windows, no event time / lateness / recovery)")
        print(f"ratio pipeline (alerts off) / seed: {off / seed_run['trades_per_s']:.2f}", flush=True)
        result["seed"] = seed_run
    return result


def print_latency(rate: int, seconds: int, latency: dict, min_baseline_windows: int, scenarios: Sequence[str]) -> None:
    panes, alerts = latency["panes"], latency["alerts"]
    print(f"live feed at --rate {rate:,}: {panes['trades'] / seconds:,.0f} trades/s on average after the warm-up "
          f"(the scenarios' trades come on top of the rate, in their minutes)")
    print(f"latency trade -> first pane on the output topic at {rate:,} trades/s (alerts on, "
          f"{'cold' if latency['cold'] else 'warm'} job): "
          f"p50 {panes['p50_ms']:,.0f} ms, p99 {panes['p99_ms']:,.0f} ms, max {panes['max_ms']:,.0f} ms "
          f"({panes['measured']:,} of {panes['trades']:,} trades matched to a pane)")
    print(f"  of which trade -> pane emitted: p50 {panes['to_emitted_p50_ms']:,.0f} ms, "
          f"p99 {panes['to_emitted_p99_ms']:,.0f} ms; emitted -> on the topic: "
          f"p50 {panes['to_topic_p50_ms']:,.0f} ms, p99 {panes['to_topic_p99_ms']:,.0f} ms", flush=True)
    verdict = "PASS" if alerts["p99_ms"] < ALERT_P99_TARGET_MS else "FAIL"
    print(f"alert latency trade -> alert on the alerts topic at {rate:,} trades/s: p50 {alerts['p50_ms']:,.0f} ms, "
          f"p99 {alerts['p99_ms']:,.0f} ms, max {alerts['max_ms']:,.0f} ms over {alerts['measured']} alerts "
          f"({', '.join(f'{k} {v}' for k, v in alerts['kinds'].items()) or 'none'}; {alerts['alerts']} received, "
          f"{alerts['unmatched']} not matched to their pane, {alerts['before_warmup']} in the warm-up); "
          f"target p99 < {ALERT_P99_TARGET_MS / 1000:.0f} s: {verdict if alerts['measured'] else 'FAIL (no alert)'}")
    print(f"  of which trade -> alert emitted: p50 {alerts['to_emitted_p50_ms']:,.0f} ms, "
          f"p99 {alerts['to_emitted_p99_ms']:,.0f} ms; emitted -> on the topic: "
          f"p50 {alerts['to_topic_p50_ms']:,.0f} ms, p99 {alerts['to_topic_p99_ms']:,.0f} ms "
          f"(trade -> triggering pane built: p50 {alerts['to_pane_p50_ms']:,.0f} ms, "
          f"p99 {alerts['to_pane_p99_ms']:,.0f} ms)")
    print(f"  detectors with --alert-min-baseline-windows {min_baseline_windows} (pipeline default 10) so that they "
          f"score windows within minutes of a fresh job; scenarios: {', '.join(scenarios) or 'none'}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=4_000_000, help="backlog size for the throughput run")
    parser.add_argument("--rate", type=int, default=5_000, help="live feed rate for the latency run")
    parser.add_argument("--latency-seconds", type=int, default=420,
                        help="measured seconds of the latency run (after the warm-up)")
    parser.add_argument("--warmup-seconds", type=int, default=20,
                        help="seconds of live feed before the measured part (workers start, first checkpoint)")
    parser.add_argument("--throughput-order", choices=("off-on", "on-off"), default="off-on",
                        help="which throughput job runs first (the first one on a fresh stack is the cold one)")
    parser.add_argument("--alert-min-baseline-windows", type=int, default=DEFAULT_MIN_BASELINE_WINDOWS,
                        help="passed to every job: earlier windows the detectors need before they score one")
    parser.add_argument("--scenario-symbols", default=",".join(DEFAULT_SCENARIO_SYMBOLS),
                        help="one scenario per symbol, the kinds in turn (dark_share_surge, block_cluster, "
                             "venue_takeover, ...); empty: none")
    parser.add_argument("--scenario-offset-seconds", type=float, default=None,
                        help="scenario start after the feed's first print [default: after the warm-up and the "
                             "detectors' baseline windows]")
    parser.add_argument("--latency-first", action="store_true",
                        help="run the latency phase before the throughput jobs (on a fresh stack it is then the "
                             "cold job, and both throughput jobs run warm)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-seed", action="store_true", help="no seed consumer loop after the throughput jobs")
    parser.add_argument("--pipeline-args", default="", help="extra pipeline flags, e.g. '--shape simple'")
    args = parser.parse_args()
    EXTRA_PIPELINE_ARGS.extend(args.pipeline_args.split())
    ALERT_PIPELINE_ARGS.extend(["--alert-min-baseline-windows", str(args.alert_min_baseline_windows)])
    offset = (args.scenario_offset_seconds if args.scenario_offset_seconds is not None
              else default_scenario_offset(args.warmup_seconds, args.alert_min_baseline_windows))
    symbols = [s.strip() for s in args.scenario_symbols.split(",") if s.strip()]
    scenarios = scenario_specs(symbols, offset)
    run_seconds = args.warmup_seconds + args.latency_seconds
    if scenarios and not args.skip_latency and offset + max(DEFAULT_DURATION_SECONDS.values()) > run_seconds:
        log(f"warning: the scenarios run from +{offset:g}s to +{offset + max(DEFAULT_DURATION_SECONDS.values()):g}s, "
            f"the feed only {run_seconds} s (--latency-seconds)")
    settings = load_settings()
    started = time.monotonic()
    for service in stack_services(settings):
        service.start()
    AdminClient({"bootstrap.servers": settings.bootstrap_servers}).list_topics(timeout=10)

    load = machine_load()
    log(load)
    phases = []
    if not args.skip_throughput:
        order = (False, True) if args.throughput_order == "off-on" else (True, False)
        phases.append(lambda: throughput(settings, args.trades, order, seed=not args.skip_seed))
    if not args.skip_latency:
        def latency_phase() -> None:
            log(f"== latency at {args.rate:,} trades/s, alerts on")
            latency = measure_latency(settings, args.rate, args.latency_seconds, args.warmup_seconds, scenarios)
            print_latency(args.rate, args.latency_seconds, latency, args.alert_min_baseline_windows, scenarios)
        phases.insert(0 if args.latency_first else len(phases), latency_phase)
    for phase in phases:
        phase()
    print(f"machine at the start: {load}; whole run {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
