"""Publishing to the real broker: delivery accounting, record layout, faults read back exactly, tape-out."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from feed_checks import classify, consume_all, label_counts, validation_error

from darkpool.contracts import format_event_time, load_venues
from darkpool.errors import DarkpoolError
from feed.generator import MALFORMED_KINDS, FaultConfig, FeedConfig, TapeGenerator, generate_batches, generate_tape
from feed.live import live_batches
from feed.parallel import publish_parallel
from feed.producer import ProducerOptions, publish, publish_batches
from feed.tape import read_tape

SESSION = dt.date(2026, 11, 24)
FAULTY = FaultConfig(out_of_order_rate=0.02, late_rate=0.01, malformed_rate=0.03, duplicate_rate=0.02)


def by_key_in_arrival_order(consumed):
    """Records grouped per partition in offset order (a symbol's records keep their send order)."""
    return [(key, ts, value) for _, key, ts, value in sorted(consumed, key=lambda r: r[0])]


@pytest.mark.parametrize("reports", ["all", "errors"])
def test_faults_read_back_from_the_topic_match_the_summary_exactly(
        kafka_bootstrap: str, unique_topic: str, tmp_path: Path, reports: str) -> None:
    config = FeedConfig(seed=13, session_trades=30_000, session_date=SESSION, faults=FAULTY)
    tape = tmp_path / "tape.jsonl"
    summary = publish_batches(generate_batches(config), kafka_bootstrap, unique_topic, tape_out=tape,
                              options=ProducerOptions(delivery_reports=reports))
    assert summary.failed == 0 and summary.unconfirmed == 0
    assert summary.sent == summary.acked > 30_000  # duplicates come on top of the session's prints
    consumed = consume_all(kafka_bootstrap, unique_topic, summary.sent)
    assert len(consumed) == summary.sent

    found = label_counts(classify(by_key_in_arrival_order(consumed)))
    reported = {label: n for label, n in summary.faults.items() if n}
    assert found == reported
    assert {"out_of_order", "late", "duplicate", *(f"malformed:{kind}" for kind in MALFORMED_KINDS)} <= set(found)

    # the tape holds exactly what was sent: same keys, timestamps and value text
    written = list(read_tape(tape))
    assert Counter((r.key, r.timestamp_ms, r.value.encode()) for r in written) == \
        Counter((key, ts, value) for _, key, ts, value in consumed)
    assert label_counts(r.fault for r in written) == reported
    # key = symbol, record timestamp = event time
    checked = 0
    for _, key, ts, value in consumed[:2000]:
        if validation_error(value, ts) is None:  # a valid trade: the malformed ones break these on purpose
            trade = orjson.loads(value)
            assert trade["symbol"] == key
            assert trade["event_time"] == format_event_time(ts)
            checked += 1
    assert checked > 1000


def test_summary_counts_venues_and_dark_share(kafka_bootstrap: str, unique_topic: str) -> None:
    config = FeedConfig(seed=4, session_trades=20_000, session_date=SESSION)
    summary = publish(generate_tape(config), kafka_bootstrap, unique_topic)
    assert summary.sent == summary.acked == summary.valid_trades == 20_000
    assert set(summary.by_venue) <= set(load_venues())
    assert sum(v["trades"] for v in summary.by_venue.values()) == 20_000
    dark = sum(v["shares"] for m, v in summary.by_venue.items() if load_venues()[m].is_dark)
    assert summary.dark_share == pytest.approx(dark / summary.share_volume)
    assert summary.faults and not any(summary.faults.values())
    text = summary.format()
    assert "acknowledged 20,000" in text and "dark share" in text and "injected faults: none" in text
    assert summary.to_dict()["rate"] > 0


def test_live_mode_stamps_trades_now_at_the_rate(kafka_bootstrap: str, unique_topic: str) -> None:
    generator = TapeGenerator(FeedConfig(seed=1, mode="live"))
    started = time.time() * 1000
    summary = publish_batches(live_batches(generator, rate=400.0), kafka_bootstrap, unique_topic, duration=2.5)
    ended = time.time() * 1000
    assert 700 <= summary.sent <= 1100
    consumed = consume_all(kafka_bootstrap, unique_topic, summary.sent)
    stamps = [ts for _, _, ts, _ in consumed]
    assert len(stamps) == summary.sent
    assert started - 100 <= min(stamps) and max(stamps) <= ended


def test_duration_and_count_limits(kafka_bootstrap: str, unique_topic: str) -> None:
    config = FeedConfig(seed=3, session_trades=50_000, session_date=SESSION, count=777)
    assert publish(generate_tape(config), kafka_bootstrap, unique_topic).sent == 777


def test_unreachable_broker_is_a_clear_error(unique_topic: str) -> None:
    with pytest.raises(DarkpoolError) as error:
        publish(generate_tape(FeedConfig(count=10)), "127.0.0.1:1", unique_topic)
    assert "127.0.0.1:1" in str(error.value) and "darkpool kafka start" in str(error.value)


def test_several_processes_send_the_single_process_tape(kafka_bootstrap: str, unique_topic: str,
                                                        tmp_path: Path) -> None:
    """Shards split the symbols; together they send the same records, in the same order per symbol."""
    config = FeedConfig(seed=17, session_trades=20_000, session_date=SESSION, faults=FAULTY)
    tape = tmp_path / "tape.jsonl"
    summary = publish_parallel(lambda shard: generate_batches(config, shard=shard), 2, kafka_bootstrap,
                               unique_topic, tape_out=tape, mode="replay", seed=17)
    single = list(generate_tape(config))
    assert summary.sent == summary.acked == len(single)
    assert {k: v for k, v in summary.faults.items() if v} == label_counts(r.fault for r in single)

    def per_key(records):
        grouped: dict[str, list] = {}
        for key, ts, value in records:
            grouped.setdefault(key, []).append((ts, value if isinstance(value, bytes) else value.encode()))
        return grouped

    consumed = consume_all(kafka_bootstrap, unique_topic, summary.sent)
    assert per_key(by_key_in_arrival_order(consumed)) == per_key((r.key, r.timestamp_ms, r.value) for r in single)
    assert per_key((r.key, r.timestamp_ms, r.value) for r in read_tape(tape)) == \
        per_key((r.key, r.timestamp_ms, r.value) for r in single)
    assert not list(tmp_path.glob("tape.jsonl.part*"))
