"""Replay with several producer processes (``darkpool feed --processes N``).

Python spends most of a record's cost in formatting and in the producer call,
so one process tops out at one core. With N processes, shard i of N
(:class:`~feed.generator.Shard`) generates the whole tape — generation is
vectorised and cheap — but encodes and sends only the records of symbols
``i, i+N, i+2N, ...``. Together the shards send exactly the single-process
tape, each symbol's records in the same order (Kafka orders per key only), so
faults, counts and ``--tape-out`` mean the same thing.

The parent process shows one progress line for all shards (from shared
counters), forwards SIGTERM/Ctrl-C to the shards, merges their summaries and
concatenates their tape parts.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path
from types import FrameType
from typing import Any

from darkpool.errors import DarkpoolError
from feed.generator import EncodedBatch, Shard
from feed.producer import ProducerOptions, Progress, publish_batches
from feed.summary import FeedSummary, merge_scenario_rows, registry_dark_share
from feed.topic_admin import ensure_topic

log = logging.getLogger(__name__)

BatchFactory = Callable[[Shard], Iterator[EncodedBatch]]


class SharedProgress(Progress):
    """A shard's progress: written into a shared array slot (sent, acked, failed, queued) instead of printed."""

    def __init__(self, counters: SynchronizedArray, slot: int) -> None:
        super().__init__(enabled=True, interval=0.2)
        self.counters, self.slot = counters, slot

    def update(self, sent: int, acked: int, failed: int, queued: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.interval
        base = 4 * self.slot
        self.counters[base:base + 4] = [sent, acked, failed, queued]

    def close(self) -> None:
        return None


class _InterruptOnce:
    """Signal handler: the first SIGTERM/SIGINT raises KeyboardInterrupt (flush and summarise), later ones wait."""

    def __init__(self) -> None:
        self.fired = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if not self.fired:
            self.fired = True
            raise KeyboardInterrupt


def _shard_main(factory: BatchFactory, shard: Shard, bootstrap: str, topic: str, options: ProducerOptions,
                duration: float | None, pace: bool, tape_part: str | None, counters: SynchronizedArray,
                results: multiprocessing.Queue, meta: dict[str, Any]) -> None:
    handler = _InterruptOnce()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    try:
        summary = publish_batches(factory(shard), bootstrap, topic, duration=duration, pace=pace,
                                  tape_out=tape_part, options=options,
                                  progress=SharedProgress(counters, shard.index), create_topic=False, **meta)
        results.put((shard.index, summary, None))
    except DarkpoolError as exc:
        results.put((shard.index, None, str(exc)))


def merge_summaries(parts: list[FeedSummary], elapsed: float, **meta: Any) -> FeedSummary:
    """One summary for all shards (counts and per-venue figures summed; elapsed is the parent's)."""
    first = parts[0]
    merged = FeedSummary(topic=first.topic, bootstrap=first.bootstrap, elapsed_seconds=elapsed, **meta)
    for part in parts:
        merged.sent += part.sent
        merged.acked += part.acked
        merged.failed += part.failed
        merged.unconfirmed += part.unconfirmed
        merged.valid_trades += part.valid_trades
        merged.share_volume += part.share_volume
        merged.interrupted |= part.interrupted
        merged.first_error = merged.first_error or part.first_error
        for mpid, stats in part.by_venue.items():
            into = merged.by_venue.setdefault(mpid, {"trades": 0, "shares": 0})
            into["trades"] += stats["trades"]
            into["shares"] += stats["shares"]
        for label, n in part.faults.items():
            merged.faults[label] = merged.faults.get(label, 0) + n
        for name, pick in (("first_event_time_ms", min), ("last_event_time_ms", max)):
            values = [v for v in (getattr(merged, name), getattr(part, name)) if v is not None]
            setattr(merged, name, pick(values) if values else None)
    merged.dark_share = registry_dark_share({m: s["shares"] for m, s in merged.by_venue.items()})
    merged.scenarios = merge_scenario_rows(part.scenarios for part in parts)
    return merged


def _concatenate(parts: list[Path], target: Path) -> None:
    with open(target, "wb") as out:
        for part in parts:
            if part.exists():
                with open(part, "rb") as stream:
                    while chunk := stream.read(1 << 20):
                        out.write(chunk)
                part.unlink()


def publish_parallel(factory: BatchFactory, processes: int, bootstrap: str, topic: str, *,
                     duration: float | None = None, pace: bool = False, tape_out: str | Path | None = None,
                     options: ProducerOptions | None = None, progress: bool | Progress = False,
                     create_topic: bool = True, partitions: int = 4, **meta: Any) -> FeedSummary:
    """Publish the batches ``factory(shard)`` makes, one shard per process; returns the merged summary.

    ``factory`` must build the *whole* tape's batches for a shard (e.g.
    ``lambda shard: generate_batches(config, shard=shard)``); it runs in the
    forked child, so it may be a closure.
    """
    if processes < 1:
        raise DarkpoolError(f"--processes must be >= 1, got {processes}")
    if create_topic:
        ensure_topic(bootstrap, topic, partitions)
    if processes == 1:
        return publish_batches(factory(Shard()), bootstrap, topic, duration=duration, pace=pace,
                               tape_out=tape_out, options=options, progress=progress, create_topic=False, **meta)
    reporter = progress if isinstance(progress, Progress) else Progress(enabled=bool(progress))
    context = multiprocessing.get_context("fork")
    counters = context.Array("q", 4 * processes)
    results: multiprocessing.Queue = context.Queue()
    tape_parts = [Path(f"{tape_out}.part{i}") for i in range(processes)] if tape_out else []
    if tape_out:
        Path(tape_out).parent.mkdir(parents=True, exist_ok=True)
    options = options or ProducerOptions()
    started = time.monotonic()
    children = [context.Process(
        target=_shard_main, name=f"feed-shard-{i}",
        args=(factory, Shard(i, processes), bootstrap, topic, options, duration, pace,
              str(tape_parts[i]) if tape_parts else None, counters, results, meta))
        for i in range(processes)]
    for child in children:
        child.start()
    collected: dict[int, tuple[FeedSummary | None, str | None]] = {}
    interrupted = False
    while len(collected) < processes:
        try:
            while not results.empty() and len(collected) < processes:
                index, summary, error = results.get()
                collected[index] = (summary, error)
            if len(collected) < processes and not any(c.is_alive() for c in children) and results.empty():
                break
            time.sleep(0.1)
            totals = [sum(counters[4 * i + k] for i in range(processes)) for k in range(4)]
            reporter.update(*totals)
        except KeyboardInterrupt:
            if not interrupted:
                interrupted = True
                log.info("interrupted: stopping %d feed processes", processes)
                for child in children:
                    if child.is_alive() and child.pid:
                        os.kill(child.pid, signal.SIGTERM)
    for child in children:
        child.join(timeout=30)
    totals = [sum(counters[4 * i + k] for i in range(processes)) for k in range(4)]
    reporter.update(*totals, force=True)
    reporter.close()
    if tape_out:
        _concatenate(tape_parts, Path(tape_out))
    errors = [error for _, error in collected.values() if error]
    if errors:
        raise DarkpoolError(errors[0])
    missing = [i for i in range(processes) if i not in collected]
    if missing:
        raise DarkpoolError(f"feed process(es) {missing} ended without a summary (see the log above)")
    summaries = [collected[i][0] for i in range(processes)]
    merged = merge_summaries([s for s in summaries if s is not None], time.monotonic() - started,
                             tape_out=str(tape_out) if tape_out else None, **meta)
    merged.interrupted |= interrupted
    return merged
