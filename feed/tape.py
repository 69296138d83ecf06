"""Tape files: every record a feed run sent, as JSON lines (``--tape-out``), and reading them back.

One line per record: ``{"key", "timestamp_ms", "value" (the record's text), "fault"}``
(the injected fault's label, or null for a valid trade).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson

from feed.generator import FAULT_LABELS, EncodedBatch, TapeRecord


class TapeWriter:
    """Writes every record actually sent as JSONL: key, timestamp_ms, value (text), fault."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def write(self, batch: EncodedBatch) -> None:
        dumps = orjson.dumps
        labels = [FAULT_LABELS[c] for c in batch.faults.tolist()]
        self.stream.write(b"".join(
            dumps({"key": k.decode("utf-8"), "timestamp_ms": t, "value": v, "fault": f}) + b"\n"
            for k, t, v, f in zip(batch.keys, batch.timestamps, batch.values, labels, strict=True)))


def read_tape(path: str | Path) -> Iterator[TapeRecord]:
    """Read a tape written with ``--tape-out`` back as TapeRecords."""
    with open(path, "rb") as stream:
        for line in stream:
            row = orjson.loads(line)
            yield TapeRecord(row["key"], row["timestamp_ms"], row["value"], row["fault"])
