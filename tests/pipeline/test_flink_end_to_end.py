"""The pipeline on the local Flink runner, end to end, against an independent recomputation.

A known tape (out-of-order, too-late and malformed records, duplicates) goes
into a fresh trades topic; the real pipeline runs on the local Flink cluster
(submitted through the Beam job server like `darkpool run`); the test reads
both output topics, the dead-letter topic and the Parquet dataset and checks
the final panes against a pandas recomputation of the same tape.

The restart tests build on the same check (``flink_support.PipelineRun``) and live
where they exercise more at once, so each restart costs one job submission only once:
stop with a savepoint and resume (on local files, at parallelism 1 -> 4 -> 1) in
``test_flink_scale_out.py``; a TaskManager SIGKILLed mid-stream recovering from its
last checkpoint, and a savepoint and resume, with checkpoints on S3, in
``test_object_storage.py``. Each must end with exact final panes (nothing lost,
nothing counted twice).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flink_support import PipelineRun, Tape, build_tape

from darkpool.config import Settings

pytestmark = [pytest.mark.stack, pytest.mark.slow]

@pytest.fixture
def pipeline_run(flink_stack: Settings, tmp_path: Path):
    run = PipelineRun(flink_stack, tmp_path)
    yield run
    run.cancel()


def _tape(seed: int, n: int = 24_000) -> Tape:
    """A tape over the 12 minutes that ended 6 minutes ago: once the watermark reaches the present
    (an idle partition's watermark is the wall clock), every window has had its on-time pane."""
    now = int(time.time() * 1000)
    return build_tape(n, seed=seed, end_ms=now - 6 * 60_000, span_ms=12 * 60_000)


def test_final_panes_equal_an_independent_recomputation(pipeline_run: PipelineRun) -> None:
    tape = _tape(seed=11)
    assert tape.count("late") and tape.count("malformed") and tape.count("out_of_order") and tape.count("dup")
    pipeline_run.publish(tape.records)
    pipeline_run.submit()
    pipeline_run.settle(tape)
    figures = pipeline_run.check_against(tape)
    print("end-to-end:", figures)
