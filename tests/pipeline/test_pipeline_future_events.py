"""A record stamped in the future must not make the trades after it "too late".

KafkaIO's CreateTime watermark never passes the wall clock; the too-late filter's
per-partition watermark follows the same rule.
"""

from __future__ import annotations

import time

from apache_beam.testing.test_stream import TestStream as BeamTestStream  # not collected by pytest
from pipeline_testkit import MINUTE, T0, record, run_analytics

from pipeline.options import PipelineConfig

HOUR = 60 * MINUTE


def test_a_future_stamped_record_does_not_make_current_trades_too_late():
    now = int(time.time() * 1000) // MINUTE * MINUTE
    stream = (
        BeamTestStream()
        .advance_watermark_to(T0 / 1000)
        .add_elements([record(0, now + HOUR), record(1, now - MINUTE), record(2, now - 2 * MINUTE, venue="MSPL")])
        .advance_watermark_to_infinity()
    )
    out, _ = run_analytics(stream, PipelineConfig(shape="simple", early_firing_seconds=2))
    assert out["deadletter"] == []
    aggregated = {(r["venue"], r["window_start"]) for r in out["liquidity"]}
    assert {venue for venue, _ in aggregated} == {"UBSA", "MSPL"}


def test_a_trade_far_behind_the_current_time_is_still_too_late():
    now = int(time.time() * 1000) // MINUTE * MINUTE
    stream = (
        BeamTestStream()
        .advance_watermark_to(T0 / 1000)
        .add_elements([record(0, now + HOUR), record(1, now - HOUR)])
        .advance_watermark_to_infinity()
    )
    out, _ = run_analytics(stream, PipelineConfig(shape="simple", early_firing_seconds=2))
    assert [(d["reason"], d["source_offset"]) for d in out["deadletter"]] == [("too_late", 1)]
