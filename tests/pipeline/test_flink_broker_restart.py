"""The Kafka broker restarted under a live feed, with the pipeline on Flink and serving running.

The live feed (``darkpool feed``, a real subprocess) sends 2,000 trades/s into a
fresh trades topic; the pipeline runs on the local Flink cluster; a serving app
(the real consumer thread) follows the pipeline's output topics. The test
stack's broker is stopped for ``OUTAGE_SECONDS`` and started again (it keeps its
data). Required afterwards:

- the feed: acknowledged = sent, nothing failed or left unconfirmed; it logged
  when the broker became unreachable and when it answered again; the trades
  topic read back holds every trade id of the tape exactly once;
- the pipeline: the job is RUNNING at the end, either never restarted or
  restored from a checkpoint on its own (both are reported); its final panes
  equal an independent recomputation of everything the broker stored;
- serving: degraded (with a reason and a since-time) while the broker is down,
  ok afterwards, and its store holds the final pane of every key in the panes
  topics (no pane missing).

It prints how long each part took to recover. The feed runs ``PHASE_SECONDS``
before, during and after the outage (the rate stays at 2,000/s; the duration is
bounded so the test takes 4-5 minutes: it is long because the outage itself,
the catch-up at the pipeline's throughput and the quiet period of the settle
step are real time). ``DARKPOOL_TEST_BROKER_RESTART_PHASE_SECONDS`` lengthens
the phases for a soak-style run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from confluent_kafka import KafkaException
from flink_support import (
    LIQUIDITY_KEY,
    MARKET_KEY,
    PipelineRun,
    Tape,
    epoch_ms,
    final_panes,
    read_topic,
)

from darkpool.config import Settings
from darkpool.errors import DarkpoolError
from darkpool.stack import flink
from darkpool.stack.services import service_by_name
from darkpool.stack.topics import end_offset
from feed.tape import read_tape
from serving import create_app, start_consumer

pytestmark = [pytest.mark.stack, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RATE = 2_000
PHASE_SECONDS = float(os.environ.get("DARKPOOL_TEST_BROKER_RESTART_PHASE_SECONDS", "30"))
OUTAGE_SECONDS = 30.0
BACK_LINE = re.compile(r"broker reachable again at (\d{4}-\d\d-\d\dT[\d:.]+)Z")
DOWN_LINE = re.compile(r"broker unreachable at (\d{4}-\d\d-\d\dT[\d:.]+)Z")


def _epoch(text: str) -> float:
    """'2026-12-01T17:03:04.123' (UTC) -> epoch seconds."""
    return pd.Timestamp(text, tz="UTC").timestamp()


@dataclasses.dataclass
class Watch:
    """Samples serving's health and the Flink job every half second on a thread, from start to stop."""

    settings: Settings
    job_id: str
    consumer: object
    samples: list[tuple[float, dict, str, int]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                state = flink.rest_get(self.settings, f"/jobs/{self.job_id}").get("state", "?")
                count = restarts(self.settings, self.job_id)
            except DarkpoolError as exc:  # the REST API did not answer this time
                state, count = f"unknown ({exc})", -1
            self.samples.append((time.time(), dict(self.consumer.health()), state, count))
            self._stop.wait(0.5)

    def first(self, after: float, predicate) -> tuple[float, dict] | None:
        for stamp, health, state, count in self.samples:
            if stamp >= after and predicate(health, state, count):
                return stamp, health
        return None


def restarts(settings: Settings, job_id: str) -> int:
    """The job's restart count (Flink's numRestarts metric)."""
    metrics = flink.rest_get_list(settings, f"/jobs/{job_id}/metrics?get=numRestarts")
    return int(float(metrics[0]["value"])) if metrics else 0


def feed_command(settings: Settings, run: PipelineRun, tmp_path: Path, seconds: float) -> list[str]:
    return [sys.executable, "-m", "console.cli", "feed", "--mode", "live", "--rate", str(RATE),
            "--duration", str(seconds), "--bootstrap", settings.bootstrap_servers, "--topic", run.topics["trades"],
            "--no-create-topic", "--tape-out", str(tmp_path / "tape.jsonl"),
            "--summary-json", str(tmp_path / "summary.json"), "--progress-interval", "5"]


def serving_final_panes(app) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The store's latest pane per key (liquidity, market) as frames keyed like flink_support's."""
    snap = app.extensions["darkpool"].store.snapshot
    liquidity, market = [], []
    for window in snap.windows.values():
        for venues in window.liquidity.values():
            liquidity.extend(pane.record for pane in venues.values())
        market.extend(pane.record for pane in window.market.values())
    frames = []
    for rows in (liquidity, market):
        frame = pd.DataFrame(rows)
        frame["window_start"] = epoch_ms(frame["window_start"])
        frames.append(frame)
    return frames[0], frames[1]


def assert_serving_holds(actual: pd.DataFrame, topic: pd.DataFrame, key: list[str]) -> None:
    merged = topic.merge(actual, on=key, how="left", suffixes=("_topic", "_serving"), indicator=True)
    missing = merged[merged["_merge"] != "both"]
    assert missing.empty, f"serving lacks {len(missing)} panes of the topic, e.g.\n{missing[key].head()}"
    for column in ("pane_index", "trade_count", "share_quantity"):
        bad = merged[merged[f"{column}_topic"] != merged[f"{column}_serving"]]
        assert bad.empty, f"serving's {column} differs in {len(bad)} panes, e.g.\n{bad[key].head()}"
    assert len(actual) == len(topic)


def compare_serving(app, bootstrap: str, run: PipelineRun, attempts: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Serving's store holds the final pane of every key of both panes topics; returns the topics' final panes."""
    consumer = app.extensions["darkpool"].consumer
    for attempt in range(attempts):
        ends = {topic: end_offset(bootstrap, topic) for topic in (run.topics["liquidity"], run.topics["market"])}
        topic_liquidity = final_panes(read_topic(bootstrap, run.topics["liquidity"]), LIQUIDITY_KEY)
        topic_market = final_panes(read_topic(bootstrap, run.topics["market"]), MARKET_KEY)
        wait_for(lambda ends=ends: all(consumer.position(topic) >= end for topic, end in ends.items()), 60,
                 "serving did not read the panes topics to their end")
        grew = any(end_offset(bootstrap, topic) != end for topic, end in ends.items())
        try:
            serving_liquidity, serving_market = serving_final_panes(app)
            assert_serving_holds(serving_liquidity, topic_liquidity, LIQUIDITY_KEY)
            assert_serving_holds(serving_market, topic_market, MARKET_KEY)
            return topic_liquidity, topic_market
        except AssertionError:
            if not grew or attempt == attempts - 1:
                raise
            time.sleep(2)  # a new pane arrived while comparing: compare again
    raise AssertionError("unreachable")


def served_health(app) -> dict:
    """The health the server states, checked to agree across /api/v1/status, /api/v1/ready and /api/v1/health
    (state and since-time: the reason's text may move on between the three requests during an outage)."""
    client = app.test_client()
    status = client.get("/api/v1/status").get_json()["health"]
    ready = client.get("/api/v1/ready").get_json()["health"]
    live = client.get("/api/v1/health").get_json()
    assert (status["state"], status["since"]) == (ready["state"], ready["since"]), (status, ready)
    assert (live["status"], live["since"]) == (status["state"], status["since"]), (live, status)
    assert all(body["reason"] for body in (status, ready, live)) == (status["state"] == "degraded")
    return status


def ends_when_answered(bootstrap: str, topic: str, timeout: float = 60.0) -> int:
    """The topic's end offset, asked again while the restarted broker is still electing partition leaders."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return end_offset(bootstrap, topic)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5) -> float:
    """Poll until predicate() is true; returns the epoch time it became true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(interval)
    return time.time()


def test_broker_restart_under_a_live_feed_loses_nothing(flink_stack: Settings, tmp_path: Path) -> None:
    settings = flink_stack
    bootstrap = settings.bootstrap_servers
    kafka = service_by_name(settings, "kafka")
    run = PipelineRun(settings, tmp_path)
    app = create_app({"BOOTSTRAP_SERVERS": bootstrap, "LIQUIDITY_TOPIC": run.topics["liquidity"],
                      "MARKET_TOPIC": run.topics["market"], "LAG_CHECK_SECONDS": 1.0})
    consumer = app.extensions["darkpool"].consumer
    started = time.monotonic()
    feed = None
    watch = None

    def phase(name: str) -> None:
        print(f"\n[{time.monotonic() - started:6.1f} s] {name}", flush=True)

    try:
        job_id = run.submit()
        flink.wait_job_running(settings, job_id)
        start_consumer(app)
        wait_for(lambda: consumer.status.ready, 60, "serving did not become ready")
        assert consumer.health()["state"] == "ok"
        phase(f"job {job_id} running, serving ready; feed starts at {RATE:,}/s")

        feed_log = tmp_path / "feed.log"
        with open(feed_log, "wb") as log_file:
            feed = subprocess.Popen(feed_command(settings, run, tmp_path, 3 * PHASE_SECONDS + OUTAGE_SECONDS),
                                    cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
        watch = Watch(settings, job_id, consumer)
        watch.start()
        time.sleep(PHASE_SECONDS)
        wait_for(lambda: end_offset(bootstrap, run.topics["liquidity"]) > 0, 120, "no pane before the outage")
        assert feed.poll() is None, feed_log.read_text()
        restarts_before = restarts(settings, job_id)
        counts_before = flink.rest_get(settings, f"/jobs/{job_id}/checkpoints")["counts"]

        # the outage
        kafka.stop()
        down_at = time.time()
        phase("broker stopped")
        degraded = wait_for(lambda: consumer.health()["state"] == "degraded", OUTAGE_SECONDS,
                            "serving did not notice the broker was gone")
        health = served_health(app)
        assert health["state"] == "degraded" and health["reason"] and health["since"], health
        phase(f"serving degraded {degraded - down_at:.1f} s after the stop: {health['reason']}")
        time.sleep(max(0.0, down_at + OUTAGE_SECONDS - time.time()))
        assert served_health(app)["state"] == "degraded"
        assert feed.poll() is None, "the feed must keep running while the broker is down"
        kafka.start()  # waits until the broker answers a metadata request
        up_at = time.time()
        phase(f"broker started again ({up_at - down_at:.1f} s after the stop)")
        liquidity_end = ends_when_answered(bootstrap, run.topics["liquidity"])

        serving_ok = wait_for(lambda: consumer.health()["state"] == "ok", 60, "serving did not recover")
        new_pane = wait_for(lambda: ends_when_answered(bootstrap, run.topics["liquidity"]) > liquidity_end, 180,
                            "no new pane after the restart")
        phase("serving ok again, new panes written")

        assert feed.wait(timeout=3 * PHASE_SECONDS + 180) == 0, feed_log.read_text()
        feed_text = feed_log.read_text()
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert summary["failed"] == 0 and summary["unconfirmed"] == 0, summary
        assert summary["acked"] == summary["sent"] > 0, summary
        assert DOWN_LINE.search(feed_text), f"the feed did not say the broker was unreachable:\n{feed_text[-3000:]}"
        back = BACK_LINE.search(feed_text)
        assert back, f"the feed did not say the broker was back:\n{feed_text[-3000:]}"
        feed_back = _epoch(back.group(1))
        phase(f"feed done: {summary['sent']:,} sent, {summary['acked']:,} acknowledged")

        # the trades topic holds every trade id of the tape exactly once
        rows = read_topic(bootstrap, run.topics["trades"])
        ids = Counter(row["trade_id"] for row in rows)
        twice = [trade_id for trade_id, n in ids.items() if n > 1]
        assert not twice, f"{len(twice)} trade ids stored more than once, e.g. {twice[:5]}"
        sent = {json.loads(record.value)["trade_id"]: record for record in read_tape(tmp_path / "tape.jsonl")}
        assert len(sent) == summary["sent"], "the live feed's trade ids must be unique"
        assert set(ids) == set(sent), f"lost: {len(set(sent) - set(ids))}, unknown: {len(set(ids) - set(sent))}"
        assert len(rows) == summary["acked"]

        # the pipeline: settled, exact against everything the broker stored (the records it holds, as sent)
        tape = Tape([sent[trade_id] for trade_id in ids])
        run.settle(tape)
        phase("pipeline settled")
        watch.stop()
        details = flink.rest_get(settings, f"/jobs/{job_id}")
        assert details["state"] == "RUNNING", details["state"]
        job_restarts = restarts(settings, job_id) - restarts_before
        checkpoints = flink.rest_get(settings, f"/jobs/{job_id}/checkpoints")
        restored = checkpoints["latest"].get("restored")
        if job_restarts:
            assert restored is not None and checkpoints["counts"]["restored"] >= 1, checkpoints["counts"]
        completed_after = [c for c in checkpoints.get("history", [])
                           if c.get("status") == "COMPLETED" and c["latest_ack_timestamp"] / 1000 > up_at]
        assert completed_after, "no checkpoint completed after the restart"
        first_checkpoint = min(c["latest_ack_timestamp"] for c in completed_after) / 1000
        failed_checkpoints = checkpoints["counts"]["failed"] - counts_before["failed"]
        figures = run.check_against(tape)

        # serving: caught up with no pane missing (on-time panes may still arrive at minute boundaries:
        # compare once serving has read to the end offsets taken just before reading the topics)
        topic_liquidity, topic_market = compare_serving(app, bootstrap, run)
        assert served_health(app)["state"] == "ok" and consumer.status.outages >= 1

        states = sorted({state for _, _, state, _ in watch.samples})
        pipeline = (f"kept running (states seen: {', '.join(states)}; no restart)" if not job_restarts else
                    f"restarted {job_restarts} time(s) and restored checkpoint "
                    f"{restored and restored.get('id')} on its own (states seen: {', '.join(states)})")
        print(f"\nbroker restart: outage {up_at - down_at:.1f} s (stop -> broker answering again); {figures}")
        print(f"  feed:     first acknowledgement {feed_back - up_at:+.1f} s after the broker was back "
              f"({feed_back - down_at:.1f} s after the stop); sent = acknowledged = {summary['acked']:,}, "
              f"each trade id once")
        print(f"  pipeline: {pipeline}; first new pane {new_pane - up_at:.1f} s after the broker was back, "
              f"first checkpoint completed {first_checkpoint - up_at:.1f} s after "
              f"({failed_checkpoints} checkpoint(s) failed meanwhile)")
        print(f"  serving:  degraded {degraded - down_at:.1f} s after the stop, ok again "
              f"{serving_ok - up_at:.1f} s after the broker was back; store = panes topics "
              f"({len(topic_liquidity):,} liquidity + {len(topic_market):,} market panes)")
    finally:
        if watch is not None:
            watch.stop()
        if feed is not None and feed.poll() is None:
            feed.kill()
            feed.wait()
        kafka.start()  # the suite shares the broker: leave it running
        app.extensions["darkpool"].close()
        run.cancel()
