"""One vocabulary: the feed's injected faults are named by the dead-letter reason each one produces.

A tape with every malformed kind is written by the feed's tape writer (what ``darkpool feed
--tape-out`` writes), read back, and run through the pipeline as the bounded Kafka read
(``--source kafka-range``, the default darkpool reader's record batches) on the DirectRunner. For
every injectable reason R, "injected N records labelled malformed:R" must equal "dead-lettered N
records with reason R", record by record (partition and offset), and nothing else is dead-lettered.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest
from pipeline_testkit import run_analytics

from darkpool.contracts import DEADLETTER_FIELDS, DEADLETTER_REASONS, TRADES_TOPIC
from feed.generator import MALFORMED_KINDS, FaultConfig, FeedConfig, generate_batches
from feed.tape import TapeWriter, read_tape
from pipeline.options import PipelineConfig
from pipeline.records import SourceRecord

PARTITIONS = 4
MALFORMED = "malformed:"


def write_tape(path: Path) -> None:
    """A replay tape with every malformed kind (and out-of-order records and duplicates, which are valid)."""
    faults = FaultConfig(malformed_rate=0.25, out_of_order_rate=0.02, duplicate_rate=0.02)
    config = FeedConfig(seed=11, session_trades=4_000, count=4_000, symbols=("AAPL", "MSFT", "NVDA", "JPM"),
                        session_date=dt.date(2026, 11, 24), faults=faults)
    with path.open("wb") as stream:
        writer = TapeWriter(stream)
        for batch in generate_batches(config):
            writer.write(batch)


def as_kafka_records(path: Path) -> tuple[list[SourceRecord], dict[tuple[int, int], str | None]]:
    """The tape as the broker would hold it: partition by key, offsets in send order; and each record's label."""
    offsets = [0] * PARTITIONS
    records, labels = [], {}
    for tape_record in read_tape(path):
        key = tape_record.key.encode()
        partition = zlib.crc32(key) % PARTITIONS
        offset = offsets[partition]
        offsets[partition] += 1
        records.append(SourceRecord(TRADES_TOPIC, partition, offset, tape_record.timestamp_ms, key,
                                    tape_record.value.encode()))
        labels[(partition, offset)] = tape_record.fault
    return records, labels


def test_every_injectable_fault_is_a_dead_letter_reason() -> None:
    assert set(MALFORMED_KINDS) <= set(DEADLETTER_REASONS)
    assert len(set(MALFORMED_KINDS)) == len(MALFORMED_KINDS)


@pytest.mark.slow
def test_injected_faults_are_dead_lettered_with_their_reason_exactly(tmp_path: Path) -> None:
    tape = tmp_path / "tape.jsonl"
    write_tape(tape)
    records, labels = as_kafka_records(tape)
    injected = Counter(label.removeprefix(MALFORMED) for label in labels.values()
                       if label and label.startswith(MALFORMED))
    assert set(injected) == set(MALFORMED_KINDS), "the tape must hold every injectable kind"
    assert min(injected.values()) >= 20

    times = [r.timestamp for r in records]
    config = PipelineConfig(source="kafka-range", range_start=min(times), range_end=max(times) + 1)
    out, counters = run_analytics(beam.Create(records), config, streaming=False)

    assert all(set(d) == {*DEADLETTER_FIELDS, "detail"} for d in out["deadletter"])  # the contract's record
    dead_lettered = Counter(d["reason"] for d in out["deadletter"])
    assert dead_lettered == injected
    for reason in MALFORMED_KINDS:
        assert counters.get(f"deadletter_{reason}", 0) == injected[reason], reason
    # record by record: each dead letter is the record injected with that reason
    by_position = {(d["source_partition"], d["source_offset"]): d["reason"] for d in out["deadletter"]}
    assert by_position == {position: label.removeprefix(MALFORMED) for position, label in labels.items()
                           if label and label.startswith(MALFORMED)}
    assert counters["records_in"] == len(records)
    assert counters["trades_valid"] == len(records) - sum(injected.values())
