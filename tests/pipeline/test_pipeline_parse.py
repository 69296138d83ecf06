"""Parse/validate tests: every dead-letter reason, the fast timestamp path, and ParseTrades in a pipeline."""

from __future__ import annotations

import base64

import apache_beam as beam
import orjson
import pytest
from apache_beam.pvalue import TaggedOutput
from apache_beam.testing.test_stream import TestStream as BeamTestStream  # not collected by pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pipeline_testkit import MINUTE, T0, record, run_analytics

from darkpool.contracts import DEADLETTER_REASONS as REASONS
from darkpool.contracts import TRADES_TOPIC, format_event_time, load_venues, parse_event_time
from pipeline.codec import decode_record_batch, encode_record_batch
from pipeline.options import PipelineConfig
from pipeline.records import SourceRecord, Trade
from pipeline.transforms.lateness import ParseAndFilterPartitionBatchFn
from pipeline.transforms.parse import Rejected, event_time_ms, parse_trade

VENUES = frozenset(load_venues())
DAY = 86_400_000
GOOD = {"trade_id": "T-1", "event_time": format_event_time(T0), "symbol": "AAPL", "venue": "UBSA",
        "price": 189.23, "quantity": 500, "side": "B"}


def parse(value, record_ms=T0):
    return parse_trade(value, record_ms, 7, VENUES, DAY)


def encoded(**changes) -> bytes:
    data = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in data.items() if v is not ...})


def test_valid_trade():
    trade = parse(encoded())
    assert trade == Trade(event_ms=T0, symbol="AAPL", venue="UBSA", price=189.23, quantity=500, side="B",
                          trade_id="T-1", offset=7, record_ms=T0)
    assert type(trade) is Trade
    assert parse(encoded(side=None)).side is None
    assert parse(encoded(price=190)).price == 190.0  # integer price is a number
    assert parse(encoded(quantity=500.0)).quantity == 500  # integral float quantity
    assert parse(encoded(event_time="2026-11-25T09:00:00-05:00")).event_ms == T0


@pytest.mark.parametrize("value,reason", [
    (None, "empty"),
    (b"", "empty"),
    (b"{not json", "bad_json"),
    (b"\xff\xfe garbage", "bad_json"),
    (b"[1, 2, 3]", "not_an_object"),
    (b'"a string"', "not_an_object"),
    (encoded(side=...), "missing_field"),
    (encoded(price=...), "missing_field"),
    (b"{}", "missing_field"),
    (encoded(symbol=42), "bad_type"),
    (encoded(symbol=""), "bad_type"),
    (encoded(trade_id=None), "bad_type"),
    (encoded(venue=None), "bad_type"),
    (encoded(price="189.23"), "bad_type"),
    (encoded(price=True), "bad_type"),
    (encoded(quantity=1.5), "bad_type"),
    (encoded(quantity="500"), "bad_type"),
    (encoded(event_time=1_764_000_000), "bad_type"),
    (encoded(quantity=0), "non_positive_quantity"),
    (encoded(quantity=-100), "non_positive_quantity"),
    (encoded(price=0), "non_positive_price"),
    (encoded(price=-1.5), "non_positive_price"),
    (encoded(quantity=10_000_000_001), "out_of_range"),
    (encoded(quantity=2**64 - 1), "out_of_range"),  # once a valid trade that overflowed the int64 pane sums
    (encoded(quantity=1e30), "out_of_range"),
    (encoded(price=100_000_001.0), "out_of_range"),
    (encoded(symbol="A" * 33), "too_long"),
    (encoded(trade_id="T" * 129), "too_long"),
    (b'{"price": NaN}', "bad_json"),
    (b"[" * 2_000 + b"]" * 2_000, "bad_json"),
    (encoded(venue="NOPE"), "unknown_venue"),
    (encoded(side="X"), "bad_side"),
    (encoded(side="b"), "bad_side"),
    (encoded(event_time="yesterday"), "bad_event_time"),
    (encoded(event_time="2026-13-45T25:61:00.000Z"), "bad_event_time"),
    (encoded(event_time="1999-12-31T23:59:59.999Z"), "absurd_event_time"),
    (encoded(event_time=format_event_time(T0 + DAY + 1)), "absurd_event_time"),
    (encoded(event_time=format_event_time(T0 - DAY - 1)), "absurd_event_time"),
])
def test_every_rejection_reason(value, reason):
    with pytest.raises(Rejected) as caught:
        parse(value)
    assert caught.value.reason == reason
    assert caught.value.reason in REASONS


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.integers(946_684_800_000, 4_102_444_800_000))
def test_fast_event_time_path_equals_the_contract_parser(epoch_ms):
    text = format_event_time(epoch_ms)
    assert event_time_ms(text) == parse_event_time(text) == epoch_ms


def test_parse_trades_in_a_pipeline_routes_every_record_once():
    config = PipelineConfig(source="file", shape="simple")  # a bounded run
    bad_bytes = b"\xff\x00binary"
    records = [
        record(0, T0 + 1_000),
        record(1, T0 + 2_000, value=b"{oops"),
        record(2, T0 + 3_000, value=bad_bytes, partition=3),
        record(3, T0 + 4_000, venue="NOPE"),
        record(4, T0 + 5_000, quantity=-1),
    ]
    out, counters = run_analytics(beam.Create([r.value for r in records]), config, streaming=False)
    dead = sorted(out["deadletter"], key=lambda d: d["source_offset"])
    assert [(d["reason"], d["source_partition"], d["source_offset"]) for d in dead] == [
        ("bad_json", 0, 1), ("bad_json", 3, 2), ("unknown_venue", 0, 3), ("non_positive_quantity", 0, 4)]
    assert dead[0]["raw_value"] == "{oops" and dead[0]["raw_encoding"] == "utf-8"
    assert base64.b64decode(dead[1]["raw_value"]) == bad_bytes and dead[1]["raw_encoding"] == "base64"
    assert dead[2]["raw_key"] == "AAPL" and dead[2]["source_topic"] == TRADES_TOPIC
    assert all(d["rejected_at"].endswith("Z") for d in dead)
    assert counters["records_in"] == 5
    assert counters["trades_valid"] == 1
    assert counters["deadletter_bad_json"] == 2
    assert counters["deadletter_unknown_venue"] == 1 and counters["deadletter_non_positive_quantity"] == 1
    # the valid trade is aggregated into its 5 windows, once each (bounded run: one ON_TIME pane)
    assert sorted({r["pane_timing"] for r in out["market"]}) == ["ON_TIME"]
    assert sum(r["trade_count"] for r in out["market"]) == 5


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(st.lists(st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1),
                          st.none() | st.binary(max_size=40), st.none() | st.binary(max_size=400)), max_size=30))
def test_record_batch_layout_round_trips(rows):
    """The darkpool reader's batch layout: every record back in order, null keys/values kept apart from empty ones."""
    records = [SourceRecord(TRADES_TOPIC, *row) for row in rows]
    decoded = list(decode_record_batch(encode_record_batch(records)))
    assert decoded == [(r.partition, r.offset, r.timestamp, r.key, r.value) for r in records]


class _WatermarkState:
    """A ReadModifyWrite state cell for calling the keyed DoFn directly."""

    def __init__(self, value=None) -> None:
        self.value = value

    def read(self):
        return self.value

    def write(self, value) -> None:
        self.value = value


def test_a_partition_batch_is_parsed_and_checked_against_the_partition_watermark_in_one_step():
    """A Java reader batch of one partition -> its trades (arrival order), dead letters, the watermark advanced."""
    records = [record(0, T0 + 1_000, partition=1).value, record(1, T0 + 3_000, partition=1, value=b"{oops").value,
               record(2, T0 + 20 * MINUTE, partition=1).value, record(3, T0 + 2_000, partition=1).value,
               SourceRecord(TRADES_TOPIC, 1, 4, T0 + 5_000, None, None)]
    fn = ParseAndFilterPartitionBatchFn(TRADES_TOPIC, VENUES, max_skew_ms=3_600_000, period_ms=MINUTE,
                                        allowed_lateness_ms=10 * MINUTE)
    fn.setup()
    state = _WatermarkState()
    emitted = list(fn.process((1, encode_record_batch(records)), watermark_state=state))
    dead = sorted((o.value["reason"], o.value["source_partition"], o.value["source_offset"], o.value["raw_value"])
                  for o in emitted if isinstance(o, TaggedOutput))
    # offset 3 (14:00:02) arrives after 14:20 moved the partition watermark past 14:01 + 10 min: too late
    assert [d[:3] for d in dead] == [("bad_json", 1, 1), ("empty", 1, 4), ("too_late", 1, 3)]
    assert dead[0][3] == "{oops" and dead[1][3] is None
    [(key, trades)] = [o for o in emitted if not isinstance(o, TaggedOutput)]
    assert key == f"{TRADES_TOPIC}/1"
    assert [t.offset for t in trades] == [0, 2]
    assert state.value == T0 + 20 * MINUTE


def stream_of_mixed_records() -> BeamTestStream:
    return (
        BeamTestStream()
        .advance_watermark_to(T0 / 1000)
        .add_elements([record(0, T0 + 1_000), record(1, T0 + 20 * MINUTE, partition=1),
                       record(2, T0 + 2_000, venue="NOPE")])
        .add_elements([record(3, T0 + 3_000), record(4, T0 + 4_000, value=b"{bad")])
        .advance_watermark_to_infinity()
    )


def without_times(rows: list[dict]) -> list[tuple]:
    return sorted(tuple(sorted((k, v) for k, v in row.items() if k not in ("emitted_at", "rejected_at")))
                  for row in rows)


def test_beam_reader_rows_and_darkpool_batches_give_the_same_outputs():
    """--kafka-reader beam (one metadata Row per record) and the default batches: identical records."""
    batched, _ = run_analytics(stream_of_mixed_records(), PipelineConfig(kafka_reader="darkpool"))
    rows, _ = run_analytics(stream_of_mixed_records(), PipelineConfig(kafka_reader="beam"))
    for name in ("liquidity", "market", "deadletter"):
        assert without_times(batched[name]) == without_times(rows[name])
    assert sorted((d["reason"], d["source_offset"]) for d in batched["deadletter"]) == [
        ("bad_json", 4), ("unknown_venue", 2)]
    assert sum(r["trade_count"] for r in batched["market"] if r["pane_timing"] == "ON_TIME") == 3 * 5


def test_kafka_range_keeps_only_records_before_its_end():
    """--source kafka-range: records stamped at/after --range-end are skipped and counted as outside_range."""
    config = PipelineConfig(source="kafka-range", range_start=T0, range_end=T0 + 2 * MINUTE)
    records = [record(0, T0 + 1_000), record(1, T0 + 2 * MINUTE - 1), record(2, T0 + 2 * MINUTE),
               record(3, T0 + 3 * MINUTE)]
    out, counters = run_analytics(beam.Create([r.value for r in records]), config, streaming=False)
    assert counters["records_in"] == 2 and counters["outside_range"] == 2
    finals = [r for r in out["market"] if r["window_start"].endswith("14:00:00.000Z")]
    assert [r["trade_count"] for r in finals] == [2]

