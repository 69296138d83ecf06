"""Soak: the demo (broker, live feed, pipeline on Flink, serving) for a long run, sampled every minute.

    make soak                                  # 30 minutes, the demo's ports and state (.state/)
    .venv/bin/python bench/soak.py --minutes 5 --fresh --compact-every 2

It brings the demo up the way `darkpool demo --no-watch` does (the stack, the
product topics, the live feed at --rate trades/s, the pipeline on Flink, the
serving API), then every --interval seconds samples:

- the resident memory (RSS, MB) of each process: Kafka, the Flink JobManager,
  each TaskManager, the Beam job server, the expansion service, the worker pool
  and (summed, with their count) its SDK worker processes, the feed and serving;
- each JVM's live heap: `jcmd <pid> GC.run` (a full collection), then the heap
  `jstat -gc` reports in use (MB) -- what the JVM still holds (--no-gc skips it);
- serving's store: the panes it holds (`/api/v1/status`);
- the latest completed checkpoint's size (Flink REST: full state size and the
  bytes that checkpoint wrote) and the checkpoint counts;
- the broker's disk use (its log dirs: everything, and the product topics);
- the Parquet dataset: visible files (analytics.compact's reader rule), total
  and median size;
- trades published, the pipeline group's committed offset and the lag;
- the CPU each process used since the last sample (in the CSV; the verdict
  prints each one's mean: who shares the two cores with the pipeline).

Each sample is printed as a table row and appended to samples.csv in the output
folder (default .state/soak/<UTC timestamp>/, git-ignored), with soak.png (one
panel per measure) and verdict.txt written at the end. Every --compact-every
minutes (0: never), and once more after the last sample, it runs the dataset
compaction (`darkpool dataset compact`'s function) and prints the file count
and median size before and after.

The verdict: over the second half of the run (after warm-up), the slope of a
least-squares line through each process's RSS, each JVM's live heap and the
checkpoint size must project less than max(--flat-percent of the level,
--flat-mb) of growth per hour: FLAT, else GROWING (a falling line is flat).
A JVM's RSS is the exception: it grows while the JVM commits heap it was
allowed (and Flink's RocksDB its managed memory), so a JVM whose live heap is
FLAT passes on RSS while its RSS stays within what its configuration allows --
the configured process size of a Flink JobManager or TaskManager, else the
maximum heap (-XX:MaxHeapSize) + 256 MB for code cache, metaspace and thread
stacks: BOUNDED.
Serving holds the panes of --serving-retention-minutes (set for the soak so
that the store is full before the second half; the product's default is 24 h,
the same store with more panes); its pane count is printed. The broker's disk and the dataset's bytes grow
with the data by design (their rates are printed, not judged); the dataset's
file count right after each compaction must not grow (at most 1.5x the first
one's plus 10: the files younger than --compact-min-age). The job must have kept up (lag at the end below
--max-lag trades).

At the end it stops everything it started (services that already ran before
are left running, and a pipeline job that already ran is not cancelled), unless
--keep-running. --fresh first cancels the demo's job, stops the feed and
serving, and deletes the product topics, the pipeline's consumer group and the
Parquet dataset (the demo's data, not the stack), so the figures start from zero.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from analytics import compact
from darkpool import contracts
from darkpool.config import Settings, load_settings
from darkpool.errors import DarkpoolError
from darkpool.kafka_client import client_config
from darkpool.stack import flink
from darkpool.stack.commands import start
from darkpool.stack.process import Service
from darkpool.stack.services import app_services, stack_services
from darkpool.stack.topics import committed_offset, end_offset
from pipeline.commands import DEFAULT_JOB_NAME
from pipeline.options import PipelineConfig

PRODUCT_TOPICS = contracts.ALL_TOPICS
MB = 1 << 20
SDK_WORKERS = "sdk-workers"
DELETED_SUFFIX = "-delete"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CHECKPOINT_FLAT_MB = 10.0  # the checkpoint's floor for "flat": its size swings by MBs between checkpoints (RocksDB)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- /proc --------------------------------------------------------------------------------
def rss_bytes(pid: int) -> int:
    """A process's resident set size (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def children_of() -> dict[int, list[int]]:
    """parent pid -> child pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int, tree: dict[int, list[int]]) -> list[int]:
    found, todo = [], list(tree.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(tree.get(child, []))
    return found


def folder_bytes(folder: Path, prefix: str = "") -> int:
    """Bytes on disk under a folder (only entries directly under it whose name starts with prefix; a deleted
    topic's partition folders, renamed ``...-delete`` until the broker removes them, are not counted)."""
    if not folder.is_dir():
        return 0
    total = 0
    for top in folder.iterdir():
        if not top.name.startswith(prefix) or top.name.endswith(DELETED_SUFFIX):
            continue
        paths = [top] if top.is_file() else top.rglob("*")
        for path in paths:
            try:
                if path.is_file():
                    total += path.stat().st_blocks * 512
            except OSError:
                continue
    return total


def is_java(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "java"
    except OSError:
        return False


def live_heap_mb(pid: int, collect: bool) -> float:
    """The heap a JVM has in use (survivors + eden + old, from `jstat -gc`), in MB, after a full collection
    (`jcmd <pid> GC.run`) when collect; nan when the JVM does not answer."""
    try:
        if collect:
            subprocess.run(["jcmd", str(pid), "GC.run"], check=True, capture_output=True, timeout=60)
        out = subprocess.run(["jstat", "-gc", str(pid)], check=True, capture_output=True, text=True,
                             timeout=30).stdout.split("\n")
        values = dict(zip(out[0].split(), out[1].split(), strict=True))
        used_kb = sum(float(values[column]) for column in ("S0U", "S1U", "EU", "OU"))
    except (OSError, subprocess.SubprocessError, IndexError, KeyError, ValueError):
        return float("nan")
    return used_kb / 1024


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# --- samples -----------------------------------------------------------------------------
def process_groups(services: list[Service], tree: dict[int, list[int]]) -> dict[str, list[int]]:
    """Service name -> its process and descendants; the worker pool's SDK workers as their own group."""
    groups: dict[str, list[int]] = {}
    for service in services:
        pid = service.pid()
        if pid is None:
            groups[service.name] = []
        elif service.name == "beam-worker-pool":
            groups[service.name] = [pid]
            groups[SDK_WORKERS] = descendants(pid, tree)
        else:
            groups[service.name] = [pid, *descendants(pid, tree)]
    return groups


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process, in clock ticks (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return 0


def memory_by_process(groups: dict[str, list[int]]) -> dict[str, float]:
    """RSS in MB per group, and how many SDK workers run."""
    memory = {name: sum(rss_bytes(p) for p in pids) / MB for name, pids in groups.items()}
    memory["sdk-worker-count"] = float(len([p for p in groups.get(SDK_WORKERS, []) if rss_bytes(p) > 20 * MB]))
    return memory


HEAP_PREFIX = "heap "
MAX_HEAP_PREFIX = "maxheap "
NON_HEAP_MB = 256.0  # a JVM's memory beyond its heap: JIT code cache (240 MB at most), metaspace, thread stacks


def max_heap_mb(pid: int) -> float:
    """A JVM's maximum heap (-XX:MaxHeapSize, from `jcmd <pid> VM.flags`), in MB; nan when it does not answer."""
    try:
        flags = subprocess.run(["jcmd", str(pid), "VM.flags"], check=True, capture_output=True, text=True,
                               timeout=30).stdout.split()
        size = next(f for f in flags if f.startswith("-XX:MaxHeapSize=")).split("=", 1)[1]
        return int(size) / MB
    except (OSError, subprocess.SubprocessError, StopIteration, ValueError):
        return float("nan")


def heap_by_jvm(groups: dict[str, list[int]], collect: bool) -> dict[str, float]:
    """Live heap and maximum heap in MB of each group's JVM (the group's largest java process):
    "heap <group>", "maxheap <group>"."""
    heaps = {}
    for name, pids in groups.items():
        java = sorted((p for p in pids if is_java(p)), key=rss_bytes, reverse=True)
        if java:
            heaps[HEAP_PREFIX + name] = live_heap_mb(java[0], collect)
            heaps[MAX_HEAP_PREFIX + name] = max_heap_mb(java[0])
    return heaps


def jvm_ceilings(rows: list[dict[str, float]], memory_columns: list[str], settings: Settings) -> dict[str, float]:
    """The RSS a JVM may reach by its configuration, in MB, by process group: a Flink process's configured
    process size; any other JVM's maximum heap + NON_HEAP_MB."""
    ceilings = {}
    for name in memory_columns:
        if name == "flink-jobmanager":
            ceilings[name] = memory_mb(settings.jobmanager_process_memory)
        elif name.startswith("flink-taskmanager"):
            ceilings[name] = memory_mb(settings.taskmanager_process_memory)
        else:
            heaps = [r.get(MAX_HEAP_PREFIX + name, np.nan) for r in rows]
            if np.isfinite(heaps).any():
                ceilings[name] = float(np.nanmax(heaps)) + NON_HEAP_MB
    return ceilings


def serving_panes(settings: Settings) -> float:
    """The panes serving's store holds (nan when serving does not answer)."""
    try:
        with urllib.request.urlopen(f"http://{settings.host}:{settings.serve_port}/api/v1/status",
                                    timeout=10) as response:
            return float(json.load(response)["records"])
    except (OSError, ValueError, KeyError):
        return float("nan")


def checkpoint_figures(settings: Settings, job_id: str | None) -> dict[str, float]:
    if not job_id:
        return {"checkpoint_state_mb": float("nan"), "checkpoint_written_mb": float("nan"),
                "checkpoints_completed": 0.0, "checkpoints_failed": 0.0, "job_restarts": 0.0}
    try:
        stats = flink.rest_get(settings, f"/jobs/{job_id}/checkpoints")
        metrics = flink.rest_get(settings, f"/jobs/{job_id}/metrics?get=numRestarts")
    except DarkpoolError as exc:
        log(f"Flink REST: {exc}")
        return checkpoint_figures(settings, None)
    latest = (stats.get("latest") or {}).get("completed") or {}
    counts = stats.get("counts", {})
    restarts = next((float(m.get("value", 0)) for m in metrics if m.get("id") == "numRestarts"), 0.0)
    return {"checkpoint_state_mb": latest.get("state_size", float("nan")) / MB if latest else float("nan"),
            "checkpoint_written_mb": latest.get("checkpointed_size", float("nan")) / MB if latest else float("nan"),
            "checkpoints_completed": float(counts.get("completed", 0)),
            "checkpoints_failed": float(counts.get("failed", 0)),
            "job_restarts": float(restarts or 0)}


@dataclass
class Sampler:
    settings: Settings
    services: list[Service]
    job_id: str | None
    group: str
    collect: bool = True
    started: float = field(default_factory=time.monotonic)
    _cpu: tuple[int, int] = field(default_factory=cpu_times)
    _ticks: dict[int, int] = field(default_factory=dict)
    _last: float = field(default_factory=time.monotonic)

    def sample(self) -> dict[str, float]:
        now = time.monotonic()
        row: dict[str, float] = {"minute": (now - self.started) / 60}
        busy, total = cpu_times()
        row["cpu_busy_pct"] = 100.0 * (busy - self._cpu[0]) / max(1, total - self._cpu[1])
        self._cpu = (busy, total)
        groups = process_groups(self.services, children_of())
        row.update(memory_by_process(groups))
        row.update(heap_by_jvm(groups, self.collect))
        row["serving_panes"] = serving_panes(self.settings)
        # CPU per group since the last sample, in % of one core (a process new since then counts from 0)
        ticks = {pid: cpu_ticks(pid) for pids in groups.values() for pid in pids}
        seconds = max(1e-6, now - self._last)
        for name, pids in groups.items():
            used = sum(max(0, ticks[p] - self._ticks.get(p, 0)) for p in pids)
            row[f"cpu_{name}"] = 100.0 * used / CLOCK_TICKS / seconds if self._ticks else 0.0
        self._ticks, self._last = ticks, now
        row.update(checkpoint_figures(self.settings, self.job_id))
        kafka_data = self.settings.state_dir / "kafka" / "data"
        row["broker_disk_mb"] = folder_bytes(kafka_data) / MB
        row["broker_product_topics_mb"] = folder_bytes(kafka_data, "darkpool.") / MB
        stats = compact.dataset_stats(self.settings.dataset_location, self.settings)
        row["parquet_files"] = float(stats.files)
        row["parquet_mb"] = stats.total_bytes / MB
        row["parquet_median_kb"] = stats.median_bytes / 1024
        trades = end_offset(self.settings.bootstrap_servers, contracts.TRADES_TOPIC)
        committed = committed_offset(self.settings.bootstrap_servers, self.group, contracts.TRADES_TOPIC)
        row["trades"] = float(trades)
        row["committed"] = float(committed)
        row["lag"] = float(trades - committed)
        return row


# --- the table ---------------------------------------------------------------------------
SHORT = {"kafka": "kafka", "flink-jobmanager": "jm", "beam-job-server": "jobsrv", "beam-expansion-service": "expand",
         "beam-worker-pool": "pool", SDK_WORKERS: "sdk", "feed": "feed", "serve": "serve"}


JVM_COLUMNS = ("kafka", "flink-jobmanager", "flink-taskmanager")  # the table's heap columns (all JVMs are judged)


def short_name(column: str) -> str:
    if column.startswith("flink-taskmanager"):
        return "tm" + column.removeprefix("flink-taskmanager").replace("-", "")
    return SHORT.get(column, column)


def table_header(memory_columns: list[str]) -> str:
    mem = " ".join(f"{short_name(c):>6}" for c in memory_columns)
    heap = " ".join(f"{short_name(c):>5}" for c in JVM_COLUMNS)
    return (f"{'min':>5} {'cpu%':>4} | RSS MB: {mem} (n) | heap MB: {heap} | ckpt MB {'state':>6} {'wrote':>5} | "
            f"{'kafka MB':>8} | parquet {'files':>5} {'MB':>6} {'med kB':>6} | {'panes':>7} | {'trades':>10} "
            f"{'lag':>7}")


def table_row(row: dict[str, float], memory_columns: list[str]) -> str:
    mem = " ".join(f"{row.get(c, 0):>6.0f}" for c in memory_columns)
    heap = " ".join(f"{row.get(HEAP_PREFIX + c, np.nan):>5.0f}" for c in JVM_COLUMNS)
    return (f"{row['minute']:>5.1f} {row['cpu_busy_pct']:>4.0f} | RSS MB: {mem} ({row.get('sdk-worker-count', 0):.0f})"
            f" | heap MB: {heap} | ckpt MB {row['checkpoint_state_mb']:>6.1f} {row['checkpoint_written_mb']:>5.1f} | "
            f"{row['broker_disk_mb']:>8.0f} | parquet {row['parquet_files']:>5.0f} {row['parquet_mb']:>6.1f} "
            f"{row['parquet_median_kb']:>6.0f} | {row.get('serving_panes', np.nan):>7,.0f} | {row['trades']:>10,.0f} "
            f"{row['lag']:>7,.0f}")


# --- verdict (pure) ----------------------------------------------------------------------------
def slope_per_hour(minutes: list[float], values: list[float]) -> float:
    """Least-squares slope of values over time, per hour (nan with fewer than 2 finite points)."""
    points = [(m, v) for m, v in zip(minutes, values, strict=True) if np.isfinite(v)]
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return float("nan")
    x, y = np.array(points).T
    return float(np.polyfit(x, y, 1)[0] * 60)


def second_half(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    """The samples taken in the second half of the run (the first half is the warm-up)."""
    if not rows:
        return []
    middle = rows[-1]["minute"] / 2
    return [r for r in rows if r["minute"] >= middle]


@dataclass(frozen=True)
class Judgement:
    name: str
    first: float
    last: float
    slope_per_hour: float
    limit_per_hour: float
    verdict: str  # FLAT, GROWING, INFO, BOUNDED, UNBOUNDED, OK, BEHIND

    def line(self, unit: str) -> str:
        return (f"{self.name:<28} first {self.first:>9.1f} {unit:<5} last {self.last:>9.1f} {unit:<5} "
                f"slope (2nd half) {self.slope_per_hour:>+9.1f} {unit}/h  limit {self.limit_per_hour:>7.1f}  "
                f"{self.verdict}")


def judge_flat(name: str, rows: list[dict[str, float]], flat_percent: float, flat_abs: float) -> Judgement:
    """FLAT when the second half's slope projects at most max(flat_percent of the level, flat_abs) of growth per
    hour (a falling line is flat: what must not happen is growth)."""
    half = second_half(rows)
    minutes = [r["minute"] for r in half]
    values = [r.get(name, float("nan")) for r in half]
    slope = slope_per_hour(minutes, values)
    level = float(np.nanmean(values)) if values and np.isfinite(values).any() else 0.0
    limit = max(flat_percent / 100 * abs(level), flat_abs)
    verdict = "FLAT" if np.isfinite(slope) and slope <= limit else "GROWING"
    return Judgement(name, rows[0].get(name, float("nan")), rows[-1].get(name, float("nan")), slope, limit, verdict)


def judge_rate(name: str, rows: list[dict[str, float]]) -> Judgement:
    half = second_half(rows)
    slope = slope_per_hour([r["minute"] for r in half], [r.get(name, float("nan")) for r in half])
    return Judgement(name, rows[0].get(name, float("nan")), rows[-1].get(name, float("nan")), slope, float("nan"),
                     "INFO")


def judge_files(rows: list[dict[str, float]], after_compaction: list[float]) -> Judgement:
    """BOUNDED when the file count right after each compaction does not grow from the first compaction on
    (at most half as many again plus 10 files: the files younger than --compact-min-age); INFO without
    compaction (the count then grows with the run, by design of the sink)."""
    half = second_half(rows)
    slope = slope_per_hour([r["minute"] for r in half], [r["parquet_files"] for r in half])
    if not after_compaction:
        return Judgement("parquet_files", rows[0]["parquet_files"], rows[-1]["parquet_files"], slope,
                         float("nan"), "INFO")
    limit = after_compaction[0] * 1.5 + 10
    verdict = "BOUNDED" if max(after_compaction) <= limit else "UNBOUNDED"
    return Judgement("files after each compaction", after_compaction[0], after_compaction[-1], slope, limit, verdict)


def judge_jvm_rss(rss: Judgement, heap: Judgement, ceiling_mb: float | None, peak_mb: float) -> Judgement:
    """A JVM's growing RSS is BOUNDED when its live heap is FLAT and the RSS's peak stays within what the JVM's
    configuration allows (``ceiling_mb``, see jvm_ceilings); otherwise GROWING."""
    if heap.verdict == "FLAT" and ceiling_mb is not None and peak_mb <= ceiling_mb:
        return Judgement(rss.name, rss.first, rss.last, rss.slope_per_hour, ceiling_mb, "BOUNDED")
    return rss


def verdict_lines(rows: list[dict[str, float]], memory_columns: list[str], flat_percent: float, flat_mb: float,
                  after_compaction: list[float], max_lag: float, ceilings: dict[str, float] | None = None,
                  serving_retention_minutes: float = float("nan")) -> tuple[list[str], bool]:
    """The verdict table and whether everything judged passed (ceilings: the RSS each JVM's configuration
    allows, in MB, by process group; see jvm_ceilings and judge_jvm_rss)."""
    ceilings = ceilings or {}
    lines, ok = [], True
    lines.append(f"memory and checkpoint size, flat = slope over the second half <= max({flat_percent:g}% of "
                 f"the level, {flat_mb:g} MB; checkpoint {CHECKPOINT_FLAT_MB:g} MB) per hour; a JVM's RSS is "
                 f"BOUNDED when its live heap (after a full GC) is flat and the RSS within what its configuration "
                 f"allows (the limit column: a Flink process's process size, else max heap + {NON_HEAP_MB:g} MB):")
    heaps = [HEAP_PREFIX + name for name in memory_columns if any(np.isfinite(r.get(HEAP_PREFIX + name, np.nan))
                                                                  for r in rows)]
    for name in [*memory_columns, *heaps, "checkpoint_state_mb"]:
        if all(r.get(name, 0) == 0 for r in rows):
            continue
        floor = CHECKPOINT_FLAT_MB if name == "checkpoint_state_mb" else flat_mb
        judgement = judge_flat(name, rows, flat_percent, floor)
        if judgement.verdict == "GROWING" and HEAP_PREFIX + name in heaps:
            judgement = judge_jvm_rss(judgement, judge_flat(HEAP_PREFIX + name, rows, flat_percent, floor),
                                      ceilings.get(name), float(np.nanmax([r.get(name, np.nan) for r in rows])))
        ok &= judgement.verdict in ("FLAT", "BOUNDED")
        lines.append("  " + judgement.line("MB"))
    panes = [r.get("serving_panes", np.nan) for r in rows]
    if np.isfinite(panes).any():
        lines.append(f"serving's store: {np.nanmax(panes):,.0f} panes at most, {panes[-1]:,.0f} at the end "
                     f"(retention {serving_retention_minutes:g} min)")
    lines.append("grow with the data by design (rates only):")
    for name in ("broker_disk_mb", "broker_product_topics_mb", "parquet_mb"):
        lines.append("  " + judge_rate(name, rows).line("MB"))
    lines.append("  " + judge_rate("lag", rows).line("tr"))
    files = judge_files(rows, after_compaction)
    ok &= files.verdict != "UNBOUNDED"
    lines.append("  " + files.line("files"))
    cpu = [(name, float(np.mean([r.get(f"cpu_{name}", 0.0) for r in rows[1:]] or [0.0])))
           for name in memory_columns]
    lines.append("CPU per process, mean % of one core over the run: "
                 + ", ".join(f"{short_name(name)} {value:.0f}" for name, value in cpu)
                 + f" (machine busy {np.mean([r['cpu_busy_pct'] for r in rows[1:]] or [0.0]):.0f}% of all cores)")
    lag = rows[-1]["lag"]
    keeps_up = lag <= max_lag
    ok &= keeps_up
    lines.append(f"pipeline lag at the end: {lag:,.0f} trades ({'OK' if keeps_up else 'BEHIND'}: limit "
                 f"{max_lag:,.0f}); restarts {rows[-1]['job_restarts']:.0f}, checkpoints "
                 f"{rows[-1]['checkpoints_completed']:.0f} completed / {rows[-1]['checkpoints_failed']:.0f} failed")
    lines.append(f"VERDICT: {'PASS' if ok else 'FAIL'}")
    return lines, ok


# --- plot ------------------------------------------------------------------------------------
def plot(rows: list[dict[str, float]], memory_columns: list[str], compactions: list[float], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    minutes = [r["minute"] for r in rows]
    fig, axes = plt.subplots(3, 2, figsize=(14, 13), sharex=True)
    ax = axes[0][0]
    for name in memory_columns:
        ax.plot(minutes, [r.get(name, 0) for r in rows], marker=".", label=short_name(name))
    ax.set_title("resident memory per process (MB)")
    ax.legend(fontsize=8, ncol=2)
    ax = axes[0][1]
    ax.plot(minutes, [r["checkpoint_state_mb"] for r in rows], marker=".", label="state size")
    ax.plot(minutes, [r["checkpoint_written_mb"] for r in rows], marker=".", label="written by the checkpoint")
    ax.set_title("latest checkpoint (MB)")
    ax.legend(fontsize=8)
    ax = axes[1][0]
    ax.plot(minutes, [r["broker_disk_mb"] for r in rows], marker=".", label="broker log dirs")
    ax.plot(minutes, [r["broker_product_topics_mb"] for r in rows], marker=".", label="broker: product topics")
    ax.plot(minutes, [r["parquet_mb"] for r in rows], marker=".", label="Parquet dataset")
    ax.set_title("disk (MB)")
    ax.legend(fontsize=8)
    ax = axes[1][1]
    ax.plot(minutes, [r["parquet_files"] for r in rows], marker=".", color="tab:red", label="files")
    ax.set_ylabel("Parquet files")
    twin = ax.twinx()
    twin.plot(minutes, [r["parquet_median_kb"] for r in rows], marker=".", color="tab:gray", label="median kB")
    twin.set_ylabel("median file size (kB)")
    for minute in compactions:
        ax.axvline(minute, color="tab:green", alpha=0.3)
    ax.set_title("Parquet dataset (green: compaction)")
    ax = axes[2][0]
    for name in memory_columns:
        values = [r.get(HEAP_PREFIX + name, np.nan) for r in rows]
        if np.isfinite(values).any():
            ax.plot(minutes, values, marker=".", label=short_name(name))
    ax.set_title("JVM live heap after a full GC (MB)")
    ax.legend(fontsize=8, ncol=2)
    ax = axes[2][1]
    ax.plot(minutes, [r.get("serving_panes", np.nan) for r in rows], marker=".", label="serving's panes")
    ax.set_ylabel("panes in serving's store")
    twin = ax.twinx()
    twin.plot(minutes, [r["lag"] for r in rows], marker=".", color="tab:gray", label="pipeline lag")
    twin.set_ylabel("pipeline lag (trades)")
    ax.set_title("serving's store and the pipeline's lag (gray)")
    for ax in axes[2]:
        ax.set_xlabel("minutes")
    fig.suptitle(f"soak: demo at the live feed rate, {minutes[-1]:.0f} min")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- the run ----------------------------------------------------------------------------------
def memory_mb(size: str) -> float:
    """A Flink memory size ("1600m", "6g", "2048k") in MB."""
    units = {"k": 1 / 1024, "m": 1.0, "g": 1024.0}
    size = size.strip().lower().removesuffix("b")
    return float(size[:-1]) * units[size[-1]] if size[-1] in units else float(size) / MB
def make_fresh(settings: Settings, group: str) -> None:
    """Cancel the demo's job, stop feed and serving, delete the product topics, the group and the dataset."""
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    for job_id in flink.running_job_ids(settings, DEFAULT_JOB_NAME):
        log(f"--fresh: cancelling the demo's job {job_id}")
        flink.cancel_job(settings, job_id)
        flink.wait_job_ended(settings, job_id)
    for service in app_services(settings):
        if service.stop():
            log(f"--fresh: stopped {service.name}")
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers, **client_config(settings)})
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [t for t in PRODUCT_TOPICS if t in existing]
    if doomed:
        for topic, future in admin.delete_topics(doomed, operation_timeout=30).items():
            future.result()
            log(f"--fresh: deleted topic {topic}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and set(doomed) & set(admin.list_topics(timeout=10).topics):
            time.sleep(1)
    try:
        for name, future in admin.delete_consumer_groups([group], request_timeout=30).items():
            future.result()
            log(f"--fresh: deleted consumer group {name}")
    except Exception as exc:  # noqa: BLE001 - a group that does not exist is fine
        log(f"--fresh: consumer group {group}: {exc}")
    dataset = settings.dataset_location
    if not str(dataset).startswith("s3://") and Path(dataset).exists():
        shutil.rmtree(dataset)
        log(f"--fresh: deleted the Parquet dataset {dataset}")


def bring_up(settings: Settings, rate: int) -> None:
    """`darkpool demo --no-watch` (the real command): stack, topics, feed, pipeline, serving."""
    argv = [sys.executable, "-m", "console.cli", "demo", "--no-watch", "--rate", str(rate)]
    log(f"bringing the demo up: {' '.join(argv[1:])}")
    result = subprocess.run(argv, check=False, text=True, capture_output=True)
    if result.returncode != 0:
        raise DarkpoolError(f"`darkpool demo` failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    for line in result.stdout.splitlines():
        if line.startswith(("==", "  job ")):
            log(line.strip())


def run_soak(args: argparse.Namespace) -> int:
    settings = load_settings()
    group = PipelineConfig.__dataclass_fields__["group_id"].default
    out = Path(args.out) if args.out else settings.state_dir / "soak" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    services = [*stack_services(settings), *app_services(settings, feed_rate=args.rate)]
    running_before = {s.name for s in services if s.pid() is not None}
    job_before = flink.running_job_ids(settings, DEFAULT_JOB_NAME) if "flink-jobmanager" in running_before else []
    ok = False
    try:
        if args.fresh:
            log("--fresh: starting the stack first (the broker and Flink must answer)")
            start(settings, stack_services(settings))
            make_fresh(settings, group)
            job_before = []
        if args.serving_retention_minutes > 0:
            os.environ["DARKPOOL_RETENTION_HOURS"] = f"{args.serving_retention_minutes / 60:.6f}"
            log(f"serving keeps {args.serving_retention_minutes:g} min of windows (DARKPOOL_RETENTION_HOURS)")
        if "serve" in running_before and args.serving_retention_minutes > 0 and not args.fresh:
            log("serving already runs: it keeps its own retention (--fresh restarts it with the soak's)")
        bring_up(settings, args.rate)
        services = [*stack_services(settings), *app_services(settings, feed_rate=args.rate)]
        job_ids = flink.running_job_ids(settings, DEFAULT_JOB_NAME)
        job_id = job_ids[0] if job_ids else None
        log(f"soak for {args.minutes:g} min, a sample every {args.interval:g} s, into {out}; job {job_id}")
        memory_columns = [s.name for s in services if s.name != "beam-worker-pool"]
        memory_columns.insert(memory_columns.index("feed"), "beam-worker-pool")
        memory_columns.insert(memory_columns.index("feed"), SDK_WORKERS)
        sampler = Sampler(settings, services, job_id, group, collect=not args.no_gc)
        rows: list[dict[str, float]] = []
        compactions: list[float] = []
        compaction_lines: list[str] = []
        after_counts: list[float] = []
        csv_path = out / "samples.csv"
        writer = None
        next_compaction = args.compact_every * 60 if args.compact_every > 0 else float("inf")
        with open(csv_path, "w", newline="") as handle:
            end = time.monotonic() + args.minutes * 60
            next_sample = time.monotonic()
            while True:
                row = sampler.sample()
                rows.append(row)
                if writer is None:
                    writer = csv.DictWriter(handle, fieldnames=list(row), extrasaction="ignore")
                    writer.writeheader()
                    print(table_header(memory_columns), flush=True)
                writer.writerow(row)
                handle.flush()
                print(table_row(row, memory_columns), flush=True)
                if time.monotonic() >= end:
                    if args.compact_every > 0:
                        compactions.append(row["minute"])
                        compaction_lines.append(
                            run_compaction(settings, row["minute"], args.compact_min_age, after_counts))
                    break
                if row["minute"] * 60 >= next_compaction:
                    compactions.append(row["minute"])
                    compaction_lines.append(run_compaction(settings, row["minute"], args.compact_min_age, after_counts))
                    next_compaction += args.compact_every * 60
                next_sample += args.interval
                time.sleep(max(0.0, min(next_sample, end) - time.monotonic()))
        lines, ok = verdict_lines(rows, memory_columns, args.flat_percent, args.flat_mb, after_counts,
                                  args.max_lag, jvm_ceilings(rows, memory_columns, settings),
                                  args.serving_retention_minutes)
        report = [f"soak {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {rows[-1]['minute']:.1f} min at {args.rate:,} "
                  f"trades/s, {len(rows)} samples, job {job_id}", *compaction_lines, *lines]
        print("\n".join(report), flush=True)
        (out / "verdict.txt").write_text("\n".join(report) + "\n")
        plot(rows, memory_columns, compactions, out / "soak.png")
        log(f"samples {csv_path}, plot {out / 'soak.png'}, verdict {out / 'verdict.txt'}")
    finally:
        if not args.keep_running:
            stop_what_we_started(settings, services, running_before, job_before)
    return 0 if ok else 1


def rejudge(args: argparse.Namespace) -> int:
    """--rejudge DIR: the verdict (and plot) of an earlier run again, from its samples.csv (and the compactions'
    file counts in its verdict.txt), with this version's rules; --max-heap NAME=MB supplies a JVM's maximum
    heap for a run whose samples predate that column. Writes verdict-rejudged.txt next to the samples."""
    folder = Path(args.rejudge)
    with open(folder / "samples.csv", newline="") as handle:
        rows = [{k: float(v) if v not in ("", None) else float("nan") for k, v in row.items()}
                for row in csv.DictReader(handle)]
    if not rows:
        raise DarkpoolError(f"{folder / 'samples.csv'}: no samples")
    for item in args.max_heap:
        name, _, megabytes = item.partition("=")
        for row in rows:
            row.setdefault(MAX_HEAP_PREFIX + name, float(megabytes))
    memory_columns = [c for c in rows[0] if c in SHORT or c.startswith("flink-taskmanager")]
    old = (folder / "verdict.txt").read_text().splitlines() if (folder / "verdict.txt").exists() else []
    compaction_lines = [line for line in old if line.startswith("compaction at minute")]
    after_counts = [float(line.rsplit("; after ", 1)[1].split()[0]) for line in compaction_lines]
    settings = load_settings()
    lines, ok = verdict_lines(rows, memory_columns, args.flat_percent, args.flat_mb, after_counts, args.max_lag,
                              jvm_ceilings(rows, memory_columns, settings), args.serving_retention_minutes)
    report = [f"soak {folder.name} rejudged {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {rows[-1]['minute']:.1f} min, "
              f"{len(rows)} samples" + (f"; max heap given: {', '.join(args.max_heap)}" if args.max_heap else ""),
              *compaction_lines, *lines]
    print("\n".join(report), flush=True)
    (folder / "verdict-rejudged.txt").write_text("\n".join(report) + "\n")
    plot(rows, memory_columns, [float(line.split()[3].rstrip(":")) for line in compaction_lines],
         folder / "soak.png")
    return 0 if ok else 1


def run_compaction(settings: Settings, minute: float, min_age: float, after_counts: list[float]) -> str:
    log("compacting the Parquet dataset ...")
    result = compact.compact(settings.dataset_location, min_age=min_age, settings=settings)
    after_counts.append(float(result.after.files))
    line = (f"compaction at minute {minute:.1f}: {result.inputs:,} files -> {result.compactions:,} in "
            f"{result.seconds:.1f} s; before {result.before.describe()}; after {result.after.describe()}")
    log(line)
    return line


def stop_what_we_started(settings: Settings, services: list[Service], running_before: set[str],
                         job_before: list[str]) -> None:
    try:
        for job_id in flink.running_job_ids(settings, DEFAULT_JOB_NAME):
            if job_id not in job_before:
                log(f"cancelling job {job_id}")
                flink.cancel_job(settings, job_id)
                flink.wait_job_ended(settings, job_id, timeout=60)
    except DarkpoolError as exc:
        log(f"could not cancel the job: {exc}")
    for service in reversed(services):
        if service.name not in running_before and service.stop():
            log(f"stopped {service.name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to run (default %(default)g)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples (default %(default)g)")
    parser.add_argument("--rate", type=int, default=2000, help="live feed rate, trades/s (default %(default)s)")
    parser.add_argument("--compact-every", type=float, default=10.0, metavar="MINUTES",
                        help="compact the Parquet dataset every N minutes, 0 = never (default %(default)g)")
    parser.add_argument("--compact-min-age", type=float, default=compact.DEFAULT_MIN_AGE_SECONDS,
                        metavar="SECONDS", help="compact only files at least this old (default %(default)g)")
    parser.add_argument("--flat-percent", type=float, default=10.0,
                        help="flat: projected growth per hour within this percentage of the level "
                             "(default %(default)g)")
    parser.add_argument("--flat-mb", type=float, default=25.0,
                        help="... or within this many MB per hour (default %(default)g)")
    parser.add_argument("--max-lag", type=float, default=60_000,
                        help="the job keeps up: lag at the end at most this many trades (default %(default)g)")
    parser.add_argument("--serving-retention-minutes", type=float, default=10.0, metavar="MINUTES",
                        help="serving keeps this many minutes of windows, so that its store is full before the "
                             "second half; 0 = serving's own setting (default %(default)g)")
    parser.add_argument("--no-gc", action="store_true",
                        help="do not force a full GC in each JVM before reading its heap (the heap read is then "
                             "whatever the collector left)")
    parser.add_argument("--rejudge", metavar="DIR",
                        help="judge an earlier run again from DIR/samples.csv (nothing is started)")
    parser.add_argument("--max-heap", action="append", default=[], metavar="NAME=MB",
                        help="with --rejudge: a JVM's maximum heap for samples that lack it (e.g. kafka=1024)")
    parser.add_argument("--out", help="output folder (default .state/soak/<UTC timestamp>)")
    parser.add_argument("--fresh", action="store_true",
                        help="start from empty product topics, consumer group and dataset (deletes the demo's data)")
    parser.add_argument("--keep-running", action="store_true", help="leave everything running at the end")
    args = parser.parse_args(argv)
    try:
        return rejudge(args) if args.rejudge else run_soak(args)
    except DarkpoolError as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
