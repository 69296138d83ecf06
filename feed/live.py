"""Live mode: batches of prints stamped with the current time, at a steady rate (what ``--mode live`` sends)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from darkpool.errors import DarkpoolError
from feed.generator import EncodedBatch, TapeGenerator


def live_batches(generator: TapeGenerator, rate: float, count: int | None = None,
                 tick: float = 0.05) -> Iterator[EncodedBatch]:
    """Live mode: prints stamped with the current time, ``rate`` per second, until ``count`` records.

    Every ``tick`` seconds the prints due since the last tick are generated,
    their event times spread evenly over that interval (never in the future).
    """
    if rate <= 0:
        raise DarkpoolError(f"--rate must be > 0, got {rate}")
    start = time.time()
    last_ms = int(start * 1000)
    due_total = 0
    produced = 0
    cap = generator.config.batch_size
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
