"""Live mode: batches of prints stamped with the current time, at a steady rate (what ``--mode live`` sends)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from darkpool.errors import DarkpoolError
from feed.generator import EncodedBatch, TapeGenerator


def live_batches(generator: TapeGenerator, rate: float, count: int | None = None,
                 tick: float = 0.05, history_seconds: float = 0.0) -> Iterator[EncodedBatch]:
    """Live mode: prints stamped with the current time, ``rate`` per second, until ``count`` records.

    Every ``tick`` seconds the prints due since the last tick are generated,
    their event times spread evenly over that interval (never in the future).
    ``history_seconds`` > 0 first sends the history of that span before now, as
    fast as it can: ``rate`` prints per second of it, stamped evenly over
    [now - history_seconds, now] (so a pipeline started with the feed has
    earlier windows to compare the live ones with); live mode then goes on from
    the history's end, catching up the seconds the history took to send.
    """
    if rate <= 0:
        raise DarkpoolError(f"--rate must be > 0, got {rate}")
    if history_seconds < 0:
        raise DarkpoolError(f"--history-minutes must be >= 0, got {history_seconds / 60:g}")
    start = time.time()
    last_ms = int(start * 1000)
    cap = generator.config.batch_size
    produced = 0
    history = int(rate * history_seconds)
    if count is not None:
        history = min(history, count)
    first_ms = last_ms - int(history_seconds * 1000)
    for offset in range(0, history, cap):
        index = np.arange(offset + 1, min(offset + cap, history) + 1, dtype=np.int64)
        batch = generator.batch(first_ms + (index * (last_ms - first_ms)) // history)
        produced += len(batch)
        yield generator.encode(batch)
    due_total = 0
    while count is None or produced < count:
        now = time.time()
        due = min(int(rate * (now - start)) - due_total, cap)
        if count is not None:
            due = min(due, count - produced)
        if due <= 0:
            time.sleep(min(tick, max(0.001, (due_total + 1) / rate - (now - start))))
            continue
        now_ms = max(int(now * 1000), last_ms)
        times = last_ms + (np.arange(1, due + 1, dtype=np.int64) * (now_ms - last_ms)) // due
        last_ms = now_ms
        due_total += due
        batch = generator.batch(times)
        if count is not None and len(batch) > count - produced:
            batch = batch.take(slice(0, count - produced))
        produced += len(batch)
        yield generator.encode(batch)
