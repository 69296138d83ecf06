"""The pipeline on the local Flink runner, end to end, against an independent recomputation.

A known tape (out-of-order, too-late and malformed records, duplicates) goes
into a fresh trades topic; the real pipeline runs on the local Flink cluster
(submitted through the Beam job server like `darkpool run`); the test reads
both output topics, the dead-letter topic and the Parquet dataset and checks
the final panes against a pandas recomputation of the same tape. The tape carries one scenario of each
alert kind (feed.scenarios); the alerts topic is checked against the pipeline's detectors run over the
recomputed final panes (``PipelineRun.check_alerts``: every expected alert sent, nothing more but what an
early pane adds, each record tied to the pane it names, the Parquet table the same), and the serving
API, reading the job's topics, answers the same alerts.

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
from flink_support import PipelineRun, Tape, build_tape, read_topic

from darkpool.alerts import DetectorSettings
from darkpool.config import Settings
from feed.scenarios import SCENARIO_KINDS, parse_scenario
from serving import create_app, start_consumer

pytestmark = [pytest.mark.stack, pytest.mark.slow]

@pytest.fixture
def pipeline_run(flink_stack: Settings, tmp_path: Path):
    run = PipelineRun(flink_stack, tmp_path)
    yield run
    run.cancel()


SCENARIOS = ("dark_share_surge:AAPL@+660s", "block_cluster:MSFT@+840s,blocks=10,block_shares=50000",
             "venue_takeover:NVDA:UBSA@+960s")


def _tape(seed: int, n: int, span_minutes: int, scenarios: tuple[str, ...] = ()) -> Tape:
    """A tape over the ``span_minutes`` that ended 6 minutes ago: once the watermark reaches the present
    (an idle partition's watermark is the wall clock), every window has had its on-time pane."""
    now = int(time.time() * 1000)
    return build_tape(n, seed=seed, end_ms=now - 6 * 60_000, span_ms=span_minutes * 60_000,
                      scenarios=tuple(parse_scenario(spec) for spec in scenarios))


def served_alerts(settings: Settings, topics: dict[str, str]) -> dict[tuple[str, str, str], str]:
    """{(symbol, kind, window_start): severity} that the serving API answers, reading the job's topics."""
    app = create_app({"BOOTSTRAP_SERVERS": settings.bootstrap_servers, "LIQUIDITY_TOPIC": topics["liquidity"],
                      "MARKET_TOPIC": topics["market"], "ALERTS_TOPIC": topics["alerts"],
                      "STALE_AFTER_SECONDS": 1e9})
    start_consumer(app)
    try:
        consumer = app.extensions["darkpool"].consumer
        deadline = time.monotonic() + 60
        while not consumer.status.ready:
            assert time.monotonic() < deadline, "serving did not catch up with the job's topics"
            time.sleep(0.1)
        answer = app.test_client().get("/api/v1/alerts?limit=1000").get_json()
    finally:
        app.extensions["darkpool"].close()
    assert answer["total"] == len(answer["rows"]), answer["total"]
    return {(r["symbol"], r["kind"], r["window_start"]): r["severity"] for r in answer["rows"]}


def test_final_panes_and_alerts_equal_an_independent_recomputation(pipeline_run: PipelineRun) -> None:
    tape = _tape(seed=12, n=60_000, span_minutes=20, scenarios=SCENARIOS)
    assert tape.count("late") and tape.count("malformed") and tape.count("out_of_order") and tape.count("dup")
    assert sorted(w.name for w in tape.scenarios) == sorted(SCENARIO_KINDS)
    pipeline_run.publish(tape.records)
    pipeline_run.submit()
    pipeline_run.settle(tape)
    figures = pipeline_run.check_against(tape)
    figures |= pipeline_run.check_alerts(tape, DetectorSettings())  # the job runs at the default thresholds
    print("end-to-end:", figures)

    # serving holds the latest record per alert key: the topic's, compacted
    latest = {(r["symbol"], r["kind"], r["window_start"]): r["severity"]
              for r in read_topic(pipeline_run.settings.bootstrap_servers, pipeline_run.topics["alerts"])}
    assert served_alerts(pipeline_run.settings, pipeline_run.topics) == latest
