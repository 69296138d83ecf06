"""Live mode's --history-minutes: the span before now first, as fast as possible, then live from its end."""

from __future__ import annotations

import time

import orjson
import pytest

from darkpool.contracts import parse_event_time
from darkpool.errors import DarkpoolError
from feed.generator import FeedConfig, TapeGenerator
from feed.live import live_batches
from feed.scenarios import DARK_SHARE_SURGE, Scenario


def test_history_covers_the_span_before_now_at_the_rate_then_live_goes_on():
    generator = TapeGenerator(FeedConfig(seed=3, mode="live"))
    before = int(time.time() * 1000)
    records = [r for b in live_batches(generator, rate=500, count=500 * 120 + 400, history_seconds=120)
               for r in b.records()]
    after = time.time() * 1000
    assert len(records) == 60_400
    history, live = records[:60_000], records[60_000:]
    times = [parse_event_time(orjson.loads(r.value)["event_time"]) for r in history]
    assert times == sorted(times)
    assert before - 120_000 <= times[0] <= before - 119_000  # the first print opens the span
    assert before <= times[-1] <= after  # the last one is "now" when the history began
    per_minute = [sum(1 for t in times if t < times[0] + 60_000), sum(1 for t in times if t >= times[0] + 60_000)]
    assert abs(per_minute[0] - per_minute[1]) <= 2  # evenly at the rate
    live_times = [parse_event_time(orjson.loads(r.value)["event_time"]) for r in live]
    assert times[-1] <= min(live_times) and max(live_times) <= after
    assert len({orjson.loads(r.value)["trade_id"] for r in records}) == len(records)


def test_a_scenario_offset_counts_from_the_historys_first_print():
    now = int(time.time() * 1000)
    surge = Scenario(DARK_SHARE_SURGE, "AAPL", offset_seconds=30, duration_seconds=60)
    generator = TapeGenerator(FeedConfig(seed=4, mode="live", scenarios=(surge,)))
    records = [r for b in live_batches(generator, rate=2_000, count=2_000 * 180, history_seconds=180)
               for r in b.records()]
    made = [r for r in records if r.scenario == DARK_SHARE_SURGE]
    # 30 s after the first print (now - 180 s), from the next whole minute, for a minute: inside the history
    assert made and all(now - 150_000 <= r.timestamp_ms <= now - 30_000 for r in made)


def test_negative_history_is_refused():
    with pytest.raises(DarkpoolError, match="history"):
        next(live_batches(TapeGenerator(FeedConfig(seed=1, mode="live")), rate=10, history_seconds=-1))
