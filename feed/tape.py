"""Tape files: every record a feed run sent, as JSON lines (``--tape-out``), and reading them back.

One line per record: ``{"key", "timestamp_ms", "value" (the record's text), "fault"}``
(the injected fault's label, or null for a valid trade); a trade an injected scenario made also
carries ``"scenario"`` (its name) and ``"scenario_index"`` (its index in the run's summary).
The line format is :meth:`feed.generator.TapeRecord.to_json` / :meth:`~feed.generator.EncodedBatch.tape_lines`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson

from feed.generator import EncodedBatch, TapeRecord


class TapeWriter:
    """Writes every record actually sent as JSONL: key, timestamp_ms, value (text), fault (and scenario)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def write(self, batch: EncodedBatch) -> None:
        self.stream.write(batch.tape_lines())


def read_tape(path: str | Path) -> Iterator[TapeRecord]:
    """Read a tape written with ``--tape-out`` back as TapeRecords."""
    with open(path, "rb") as stream:
        for line in stream:
            row = orjson.loads(line)
            yield TapeRecord(row["key"], row["timestamp_ms"], row["value"], row["fault"], row.get("scenario"),
                             row.get("scenario_index"))
