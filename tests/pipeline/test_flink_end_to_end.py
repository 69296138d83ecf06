"""The pipeline on the local Flink runner, end to end, against an independent recomputation.

A known tape (out-of-order, too-late and malformed records, duplicates) goes
into a fresh trades topic; the real pipeline runs on the local Flink cluster
(submitted through the Beam job server like `darkpool run`); the test reads
both output topics, the dead-letter topic and the Parquet dataset and checks
the final panes against a pandas recomputation of the same tape. The restart
tests stop the job with a savepoint and resume it, and SIGKILL the
TaskManager so Flink recovers from its last checkpoint; both must end with the
same final panes (nothing lost, nothing counted twice).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import duckdb
import pytest
from flink_support import (
    Tape,
    assert_panes_match,
    build_tape,
    expected_panes,
    final_panes,
    read_topic,
    wait_until_consumed,
    wait_until_stable,
)

from darkpool.config import Settings
from darkpool.stack import flink
from darkpool.stack.services import service_by_name
from darkpool.stack.topics import TopicSpec, create_topics
from feed.publisher import publish
from pipeline.commands import submit_to_flink

pytestmark = [pytest.mark.stack, pytest.mark.slow]

LIQUIDITY_KEY = ["window_start", "symbol", "venue"]
MARKET_KEY = ["window_start", "symbol"]


class PipelineRun:
    """One pipeline job on unique topics, its Parquet folder, and how to check its outputs."""

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.settings = settings
        prefix = f"e2e.{uuid.uuid4().hex[:8]}"
        self.topics = {name: f"{prefix}.{name}" for name in ("trades", "deadletter", "liquidity", "market")}
        create_topics(settings.bootstrap_servers, {
            self.topics["trades"]: TopicSpec(2), self.topics["deadletter"]: TopicSpec(1),
            self.topics["liquidity"]: TopicSpec(2), self.topics["market"]: TopicSpec(2)})
        self.parquet = tmp_path / "parquet"
        self.job_name = f"e2e-{prefix.split('.')[1]}"
        self.args = [
            f"--trades-topic={self.topics['trades']}", f"--deadletter-topic={self.topics['deadletter']}",
            f"--liquidity-topic={self.topics['liquidity']}", f"--market-topic={self.topics['market']}",
            f"--group-id={self.job_name}", f"--output={self.parquet}", "--parquet-flush-seconds=3",
        ]

    def publish(self, records) -> None:
        summary = publish(records, self.settings.bootstrap_servers, self.topics["trades"], create_topic=False)
        assert summary.failed == 0 and summary.acked == summary.sent

    def submit(self, savepoint: str | None = None) -> str:
        return submit_to_flink(self.settings, self.job_name, self.args, savepoint=savepoint)

    def settle(self, tape: Tape) -> None:
        """Wait until every trade went through a checkpoint, then until the outputs stop changing."""
        wait_until_consumed(self.settings.bootstrap_servers, self.job_name, self.topics["trades"], timeout=420)
        dead = tape.count("malformed") + tape.count("late")
        wait_until_stable(self.settings.bootstrap_servers,
                          [self.topics["liquidity"], self.topics["market"], self.topics["deadletter"]],
                          quiet_seconds=20, timeout=420, minimum={self.topics["deadletter"]: dead})

    def cancel(self) -> None:
        for job_id in flink.running_job_ids(self.settings, self.job_name):
            flink.cancel_job(self.settings, job_id)

    def check_against(self, tape: Tape, check_parquet: bool = True) -> dict[str, int]:
        bootstrap = self.settings.bootstrap_servers
        expected_liquidity, expected_market, aggregated = expected_panes(tape)

        liquidity = final_panes(read_topic(bootstrap, self.topics["liquidity"]), LIQUIDITY_KEY)
        assert_panes_match(liquidity, expected_liquidity, LIQUIDITY_KEY,
                           exact=["trade_count", "share_quantity", "block_count", "block_quantity",
                                  "buy_quantity", "sell_quantity"],
                           relative=["notional", "vwap", "min_price", "max_price"])
        market = final_panes(read_topic(bootstrap, self.topics["market"]), MARKET_KEY)
        assert_panes_match(market, expected_market, MARKET_KEY,
                           exact=["trade_count", "share_quantity", "dark_quantity", "venue_count"],
                           relative=["notional", "hhi", "dark_share"])

        # the Kafka sinks are at-least-once: after a recovery, records replayed from the last checkpoint are
        # dead-lettered again; a dead letter is identified by its source position
        dead = {(row["source_partition"], row["source_offset"]): row
                for row in read_topic(bootstrap, self.topics["deadletter"])}.values()
        reasons = [row["reason"] for row in dead]
        too_late = reasons.count("too_late")
        assert too_late == tape.count("late")
        assert len(reasons) - too_late == tape.count("malformed")
        assert all(row["source_topic"] == self.topics["trades"] for row in dead)

        # every trade lands in exactly window/period = 5 windows: in = aggregated + dead-lettered + too late
        assert int(liquidity["trade_count"].sum()) == 5 * aggregated
        assert len(tape.records) == aggregated + (len(reasons) - too_late) + too_late

        if check_parquet:
            self._check_parquet(liquidity, market)
        return {"in": len(tape.records), "aggregated": aggregated, "dead_lettered": len(reasons) - too_late,
                "too_late": too_late, "liquidity_panes": len(liquidity), "market_panes": len(market)}

    def _check_parquet(self, liquidity, market) -> None:
        deadline = time.monotonic() + 60
        while True:  # the sink writes a file per flush interval: wait for the last one
            try:
                rows = duckdb.sql(f"""
                    SELECT epoch_ms(window_start) AS window_start, symbol, venue, trade_count, share_quantity
                    FROM read_parquet('{self.parquet}/liquidity/*/*.parquet', hive_partitioning = true)
                    QUALIFY row_number() OVER (PARTITION BY window_start, symbol, venue
                                               ORDER BY pane_index DESC, emitted_at DESC) = 1""").df()
            except duckdb.IOException:
                rows = None
            if rows is not None and len(rows) == len(liquidity):
                break
            assert time.monotonic() < deadline, "the Parquet dataset did not catch up with the topic"
            time.sleep(2)
        merged = rows.merge(liquidity, on=LIQUIDITY_KEY, suffixes=("_parquet", "_kafka"))
        assert len(merged) == len(liquidity)
        assert (merged["trade_count_parquet"] == merged["trade_count_kafka"]).all()
        assert (merged["share_quantity_parquet"] == merged["share_quantity_kafka"]).all()
        markets = duckdb.sql(f"SELECT count(DISTINCT (window_start, symbol)) AS n FROM read_parquet("
                             f"'{self.parquet}/market/*/*.parquet', hive_partitioning = true)").fetchall()[0][0]
        assert markets == len(market)
        assert not list(self.parquet.rglob("*.tmp*")), "a half-written file is visible"


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


def _current_tape(seed: int, n: int = 12_000) -> Tape:
    """A tape over the last 2 minutes, for a stream that continues across a restart: a part published
    after a pause must still be current, or the live watermark (the wall clock, once a partition is
    idle) would already have closed its windows."""
    now = int(time.time() * 1000)
    return build_tape(n, seed=seed, end_ms=now, span_ms=2 * 60_000)


def test_stop_with_savepoint_and_resume_loses_and_double_counts_nothing(pipeline_run: PipelineRun) -> None:
    settings = pipeline_run.settings
    first = _current_tape(seed=12)
    pipeline_run.publish(first.records)
    job_id = pipeline_run.submit()
    wait_until_consumed(settings.bootstrap_servers, pipeline_run.job_name, pipeline_run.topics["trades"],
                        timeout=300)
    savepoint = flink.stop_with_savepoint(settings, job_id)
    assert Path(savepoint.removeprefix("file:")).exists()
    assert not flink.running_job_ids(settings, pipeline_run.job_name)

    resumed = pipeline_run.submit(savepoint=savepoint)
    flink.wait_job_running(settings, resumed)
    second = _current_tape(seed=22)
    pipeline_run.publish(second.records)
    whole = Tape(first.records + second.records)
    pipeline_run.settle(whole)
    pipeline_run.check_against(whole, check_parquet=False)


def test_taskmanager_killed_mid_stream_recovers_from_checkpoint(pipeline_run: PipelineRun) -> None:
    settings = pipeline_run.settings
    first = _current_tape(seed=13)
    pipeline_run.publish(first.records)
    job_id = pipeline_run.submit()
    wait_until_consumed(settings.bootstrap_servers, pipeline_run.job_name, pipeline_run.topics["trades"],
                        timeout=300)  # offsets are committed when a checkpoint completes

    taskmanager = service_by_name(settings, "flink-taskmanager")
    taskmanager.kill()
    second = _current_tape(seed=23)
    pipeline_run.publish(second.records)  # while the job has no TaskManager
    taskmanager.start()
    whole = Tape(first.records + second.records)
    pipeline_run.settle(whole)
    assert flink.rest_get(settings, f"/jobs/{job_id}/checkpoints")["counts"]["restored"] >= 1
    pipeline_run.check_against(whole, check_parquet=False)
