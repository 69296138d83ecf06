"""Support for the end-to-end tests of the pipeline on the local Flink stack.

- :func:`build_tape`: a known tape from the feed's generator, its event times
  spread over the last minutes (so the live watermark treats it as current),
  with out-of-order, too-late and malformed records and duplicates injected;
- :func:`expected_panes`: an *independent* recomputation of the final panes
  from the tape with pandas (it shares no code with the pipeline: parsing,
  validation, window assignment and the market math are re-done here, by the
  rules and limits of docs/market-rules.md);
- :func:`read_topic` / :func:`final_panes`: what the pipeline wrote;
- :class:`PipelineRun`: one job on its own topics, and the check of its outputs.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from pipeline_testkit import detector_panes, run_detectors

from darkpool.alerts import DetectorSettings
from darkpool.config import Settings
from darkpool.contracts import (
    ALERT_BLOCK_CLUSTER,
    ALERT_DARK_SHARE_SURGE,
    ALERT_FIELDS,
    ALERT_VENUE_CONCENTRATION,
    BLOCK_MIN_NOTIONAL,
    BLOCK_MIN_SHARES,
    DARK_VENUE_TYPES,
    alert_key,
    load_venues,
    parse_event_time,
    severity_rank,
)
from darkpool.stack import flink
from darkpool.stack.topics import TopicSpec, committed_offset, create_topics, end_offset
from feed.generator import FaultConfig, FeedConfig, TapeGenerator, TapeRecord
from feed.producer import publish
from feed.scenarios import EXPECTED_ALERT, Scenario, ScenarioWindow
from pipeline.commands import submit_to_flink

LIQUIDITY_KEY = ["window_start", "symbol", "venue"]
MARKET_KEY = ["window_start", "symbol"]
WINDOW_MS = 5 * 60_000
PERIOD_MS = 60_000
ALLOWED_LATENESS_MS = 10 * 60_000


def epoch_ms(texts: pd.Series) -> pd.Series:
    """ISO-8601 UTC texts -> epoch milliseconds."""
    return pd.to_datetime(texts, utc=True, format="ISO8601").dt.as_unit("ms").astype("int64")


@dataclass
class Tape:
    records: list[TapeRecord]
    scenarios: list[ScenarioWindow] = field(default_factory=list)  # the injected scenarios' resolved windows

    @functools.cached_property
    def expected(self) -> tuple[pd.DataFrame, pd.DataFrame, int]:
        """:func:`expected_panes` of this tape, computed once (the panes' and the alerts' checks read it)."""
        return expected_panes(self)

    def labels(self) -> pd.Series:
        return pd.Series([r.fault or "valid" for r in self.records])

    def count(self, prefix: str) -> int:
        return sum(1 for r in self.records if (r.fault or "valid").startswith(prefix))


def build_tape(n: int, seed: int, end_ms: int, span_ms: int, *, out_of_order: float = 0.02, late: float = 0.01,
               malformed: float = 0.01, duplicate: float = 0.005, scenarios: tuple[Scenario, ...] = ()) -> Tape:
    """n prints with event times spread evenly over [end_ms - span_ms, end_ms], faults injected, and the
    trades of ``scenarios`` (feed.scenarios; offsets from the first print) added."""
    faults = FaultConfig(out_of_order_rate=out_of_order, max_delay_seconds=20.0, late_rate=late,
                         malformed_rate=malformed, duplicate_rate=duplicate)
    generator = TapeGenerator(FeedConfig(seed=seed, faults=faults, id_prefix=f"E{seed}-", scenarios=scenarios))
    times = np.linspace(end_ms - span_ms, end_ms, n).astype(np.int64)
    records: list[TapeRecord] = []
    for start in range(0, n, 4096):
        batch = generator.batch(times[start:start + 4096])
        records.extend(generator.encoder.encode(batch).records())
    return Tape(records, list(generator.scenarios.windows) if generator.scenarios is not None else [])


# --- the independent recomputation --------------------------------------------------
def _valid_trades(tape: Tape) -> pd.DataFrame:
    """The records the pipeline must aggregate: everything but malformed and too-late ones."""
    rows = []
    for record in tape.records:
        label = record.fault or "valid"
        if label.startswith("malformed") or label == "late":
            continue
        trade = json.loads(record.value)
        rows.append(trade)
    frame = pd.DataFrame(rows)
    frame["ts"] = epoch_ms(frame["event_time"])
    return frame


def expected_panes(tape: Tape) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(liquidity, market, aggregated trade count) recomputed from the tape."""
    trades = _valid_trades(tape)
    venue_types = {m: v.venue_type for m, v in load_venues().items()}
    trades["venue_type"] = trades["venue"].map(venue_types)
    trades["notional"] = trades["price"] * trades["quantity"]
    trades["block"] = (trades["quantity"] >= BLOCK_MIN_SHARES) | (trades["notional"] >= BLOCK_MIN_NOTIONAL)
    trades["dark"] = trades["venue_type"].isin(sorted(DARK_VENUE_TYPES))
    last_start = (trades["ts"] // PERIOD_MS) * PERIOD_MS
    expanded = pd.concat([trades.assign(window_start=last_start - k * PERIOD_MS)
                          for k in range(WINDOW_MS // PERIOD_MS)], ignore_index=True)
    expanded["buy_q"] = np.where(expanded["side"] == "B", expanded["quantity"], 0)
    expanded["sell_q"] = np.where(expanded["side"] == "S", expanded["quantity"], 0)
    expanded["block_q"] = np.where(expanded["block"], expanded["quantity"], 0)
    liquidity = expanded.groupby(["window_start", "symbol", "venue"]).agg(
        trade_count=("quantity", "size"), share_quantity=("quantity", "sum"), notional=("notional", "sum"),
        min_price=("price", "min"), max_price=("price", "max"), block_count=("block", "sum"),
        block_quantity=("block_q", "sum"), buy_quantity=("buy_q", "sum"), sell_quantity=("sell_q", "sum"),
    ).reset_index()
    liquidity["vwap"] = liquidity["notional"] / liquidity["share_quantity"]

    expanded["dark_q"] = np.where(expanded["dark"], expanded["quantity"], 0)
    market = expanded.groupby(["window_start", "symbol"]).agg(
        trade_count=("quantity", "size"), share_quantity=("quantity", "sum"), notional=("notional", "sum"),
        dark_quantity=("dark_q", "sum"), venue_count=("venue", "nunique"),
    ).reset_index()
    venue_q = liquidity.groupby(["window_start", "symbol"])["share_quantity"]
    shares = liquidity["share_quantity"] / venue_q.transform("sum") * 100.0
    hhi = (shares ** 2).groupby([liquidity["window_start"], liquidity["symbol"]]).sum().rename("hhi")
    market = market.merge(hhi.reset_index(), on=["window_start", "symbol"])
    market["dark_share"] = market["dark_quantity"] / market["share_quantity"]
    return liquidity, market, len(trades)


def expected_alerts(liquidity: pd.DataFrame, market: pd.DataFrame,
                    settings: DetectorSettings) -> dict[tuple[str, str, int], dict]:
    """{(symbol, kind, window start ms): alert} that the recomputed final panes give: the pipeline's
    DetectAlertsFn over one final pane per window, in window order, each key at its highest severity.
    A live job sees these panes last (after any early ones), so it must send each of these alerts at
    least at this severity; an early pane can add an alert or send one higher, never less."""
    found: dict[tuple[str, str, int], dict] = {}
    for start, alert in run_detectors(detector_panes(liquidity, market, WINDOW_MS), settings, PERIOD_MS, WINDOW_MS,
                                      ALLOWED_LATENESS_MS, now_s=time.time()):
        found[(alert["symbol"], alert["kind"], start)] = alert  # only a raise is sent again
    return found


# --- reading what the pipeline wrote --------------------------------------------------
def wait_until_consumed(bootstrap: str, group: str, topic: str, timeout: float) -> None:
    """Wait until the group has committed the topic's end: every record went through a checkpoint."""
    end = end_offset(bootstrap, topic)
    deadline = time.monotonic() + timeout
    while (done := committed_offset(bootstrap, group, topic)) < end:
        assert time.monotonic() < deadline, f"the pipeline consumed {done} of {end} records of {topic}"
        time.sleep(2.0)


def wait_until_stable(bootstrap: str, topics: list[str], quiet_seconds: float, timeout: float,
                      minimum: dict[str, int] | None = None) -> dict[str, int]:
    """Wait until none of the topics grew for quiet_seconds (and each reached its minimum)."""
    minimum = minimum or {}
    deadline = time.monotonic() + timeout
    last = {t: end_offset(bootstrap, t) for t in topics}
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(2.0)
        now = {t: end_offset(bootstrap, t) for t in topics}
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif (time.monotonic() - quiet_since >= quiet_seconds
              and all(now[t] >= minimum.get(t, 1) for t in topics)):
            return now
    raise AssertionError(f"outputs did not settle within {timeout:.0f} s: {last} (minimum {minimum})")


def read_topic(bootstrap: str, topic: str) -> list[dict]:
    """Every record of a topic up to its current end, with partition and offset, decoded from JSON."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p, end in ends.items() if end > 0])
        rows: list[dict] = []
        remaining = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + 120
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(5000, timeout=1.0):
                if message.error() is not None or message.offset() >= ends[message.partition()]:
                    continue
                row = json.loads(message.value())
                row["_key"] = message.key().decode()
                row["_partition"], row["_offset"] = message.partition(), message.offset()
                rows.append(row)
                if message.offset() == ends[message.partition()] - 1:
                    remaining.discard(message.partition())
    finally:
        consumer.close()
    assert not remaining, f"could not read {topic} to its end"
    return rows


def final_panes(rows: list[dict], key: list[str]) -> pd.DataFrame:
    """The last pane per key: the highest pane_index, the latest write breaking ties (replays)."""
    frame = pd.DataFrame(rows)
    frame["window_start"] = epoch_ms(frame["window_start"])
    frame = frame.sort_values(["pane_index", "_offset"]).groupby(key, as_index=False).tail(1)
    return frame.reset_index(drop=True)


def assert_panes_match(actual: pd.DataFrame, expected: pd.DataFrame, key: list[str],
                       exact: list[str], relative: list[str]) -> None:
    """Same keys; exact columns equal; relative columns within 1e-9."""
    merged = expected.merge(actual, on=key, how="outer", suffixes=("_expected", "_actual"), indicator=True)
    missing = merged[merged["_merge"] != "both"]
    assert missing.empty, f"{len(missing)} keys differ, e.g.\n{missing[key + ['_merge']].head(10)}"
    for column in exact:
        bad = merged[merged[f"{column}_expected"].astype("int64") != merged[f"{column}_actual"].astype("int64")]
        shown = bad[[*key, f"{column}_expected", f"{column}_actual"]].head()
        assert bad.empty, f"{column} differs in {len(bad)} panes, e.g.\n{shown}"
    for column in relative:
        e, a = merged[f"{column}_expected"].astype(float), merged[f"{column}_actual"].astype(float)
        rel = ((e - a).abs() / e.abs().clip(lower=1e-12))
        assert (rel <= 1e-9).all(), f"{column} differs beyond 1e-9 in {(rel > 1e-9).sum()} panes (max {rel.max()})"


class PipelineRun:
    """One pipeline job on unique topics, its Parquet folder, and how to check its outputs."""

    def __init__(self, settings: Settings, tmp_path: Path, partitions: int = 2) -> None:
        self.settings = settings
        prefix = f"e2e.{uuid.uuid4().hex[:8]}"
        self.topics = {name: f"{prefix}.{name}" for name in ("trades", "deadletter", "liquidity", "market", "alerts")}
        # the alerts topic is not compacted here (the product's is): a test reads every alert sent
        create_topics(settings.bootstrap_servers, {
            self.topics["trades"]: TopicSpec(partitions), self.topics["deadletter"]: TopicSpec(1),
            self.topics["liquidity"]: TopicSpec(partitions), self.topics["market"]: TopicSpec(partitions),
            self.topics["alerts"]: TopicSpec(1)})
        self.parquet = tmp_path / "parquet"
        self.job_name = f"e2e-{prefix.split('.')[1]}"
        self.args = [
            f"--trades-topic={self.topics['trades']}", f"--deadletter-topic={self.topics['deadletter']}",
            f"--liquidity-topic={self.topics['liquidity']}", f"--market-topic={self.topics['market']}",
            f"--alerts-topic={self.topics['alerts']}", f"--group-id={self.job_name}", f"--output={self.parquet}",
            "--parquet-flush-seconds=3",
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
                          [self.topics["liquidity"], self.topics["market"], self.topics["deadletter"],
                           self.topics["alerts"]],
                          quiet_seconds=20, timeout=420,
                          minimum={self.topics["deadletter"]: dead, self.topics["alerts"]: 0})

    def cancel(self) -> None:
        for job_id in flink.running_job_ids(self.settings, self.job_name):
            flink.cancel_job(self.settings, job_id)

    def check_against(self, tape: Tape, check_parquet: bool = True) -> dict[str, int]:
        bootstrap = self.settings.bootstrap_servers
        expected_liquidity, expected_market, aggregated = tape.expected

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

    def check_alerts(self, tape: Tape, settings: DetectorSettings) -> dict[str, int]:
        """The alerts topic against the recomputed final panes (:func:`expected_alerts`), record by record.

        - every record is a contract record under its contract key; per key, each record raises the severity
          (an alert is sent once per symbol, kind and window, again only when its severity rises);
        - every expected alert was sent, at least at its expected severity;
        - every record names a pane the pipeline wrote, and its observed figure is that pane's;
        - a share alert sent on its window's final market pane is exactly the expected one (severity,
          venue, figure, score): any alert beyond the expected ones, or above its expected severity, came
          from an earlier pane;
        - each scenario of the tape is among the expected alerts: its kind, on its symbol (and venue), in a
          window overlapping the scenario;
        - the Parquet alerts table holds the same records.
        Returns the counts."""
        bootstrap = self.settings.bootstrap_servers
        liquidity_frame, market_frame, _ = tape.expected
        expected = expected_alerts(liquidity_frame, market_frame, settings)
        rows = sorted(read_topic(bootstrap, self.topics["alerts"]), key=lambda r: (r["_partition"], r["_offset"]))
        sent: dict[tuple[str, str, int], list[dict]] = {}
        for row in rows:
            assert tuple(k for k in row if not k.startswith("_")) == ALERT_FIELDS, row
            assert row["_key"] == alert_key(row["symbol"], row["kind"], row["window_start"]), row
            sent.setdefault((row["symbol"], row["kind"], parse_event_time(row["window_start"])), []).append(row)
        for key, records in sent.items():
            ranks = [severity_rank(r["severity"]) for r in records]
            assert ranks == sorted(set(ranks)), f"{key}: severities sent {[r['severity'] for r in records]}"
        for key, alert in expected.items():
            assert key in sent, f"expected alert not sent: {key} {alert['severity']} score {alert['score']:.2f}"
            last = sent[key][-1]
            assert severity_rank(last["severity"]) >= severity_rank(alert["severity"]), (key, last, alert)

        # a pane is named by its timing and index; the runner can emit a window's ON_TIME pane twice (the
        # second time with index 0, after ON_TIME 1, the same figures), so a name can stand for several records
        market_panes: dict[tuple[str, str, str, int], list[dict]] = {}
        for r in read_topic(bootstrap, self.topics["market"]):
            market_panes.setdefault((r["symbol"], r["window_start"], r["pane_timing"], r["pane_index"]), []).append(r)
        final_market: dict[tuple[str, str], tuple[int, str]] = {}  # (symbol, window) -> (index, timing) of its last
        for symbol, start, timing, index in market_panes:
            final_market[(symbol, start)] = max((index, timing), final_market.get((symbol, start), (-1, "")))
        block_quantities: dict[tuple[str, str, str], set[int]] = {}
        for r in read_topic(bootstrap, self.topics["liquidity"]):
            block_quantities.setdefault((r["symbol"], r["venue"], r["window_start"]), set()).add(r["block_quantity"])
        early = 0
        for key, records in sent.items():
            symbol, kind, _ = key
            for record in records:
                start = record["window_start"]
                if kind == ALERT_BLOCK_CLUSTER:
                    assert record["observed"] in block_quantities.get((symbol, record["venue"], start), ()), record
                else:
                    named = (symbol, start, record["pane_timing"], record["pane_index"])
                    panes = market_panes.get(named, [])
                    assert panes, f"no market pane {named}: {record}"
                    figure = "dark_share" if kind == ALERT_DARK_SHARE_SURGE else "top_venue_share"
                    assert any(record["observed"] == pane[figure] and (kind != ALERT_VENUE_CONCENTRATION
                                                                     or record["venue"] == pane["top_venue"])
                               for pane in panes), (record, panes)
                wanted = expected.get(key)
                final = final_market.get((symbol, start))
                if kind != ALERT_BLOCK_CLUSTER and (record["pane_index"], record["pane_timing"]) == final:
                    # sent on the window's final market pane: exactly the recomputation's alert
                    assert wanted is not None, f"an alert the final panes do not give, from a final pane: {record}"
                    assert (record["severity"], record["venue"], record["observed"]) == (
                        wanted["severity"], wanted["venue"], wanted["observed"]), (record, wanted)
                    assert record["score"] == pytest.approx(wanted["score"], rel=1e-9), (record, wanted)
                elif wanted is None or severity_rank(record["severity"]) > severity_rank(wanted["severity"]):
                    early += 1

        for window in tape.scenarios:
            kind = EXPECTED_ALERT[window.name]
            hits = [a for (symbol, k, start), a in expected.items() if symbol == window.symbol and k == kind
                    and start < window.end_ms and window.start_ms < start + WINDOW_MS
                    and (kind == ALERT_DARK_SHARE_SURGE or a["venue"] == window.venue)]
            assert hits, f"scenario {window.spec} gives no {kind} alert"

        parquet = self._parquet_rows(f"""
            SELECT symbol, kind, epoch_ms(window_start) AS ws, severity, pane_index
            FROM read_parquet('{self.parquet}/alerts/*/*.parquet', hive_partitioning = true)""", len(rows))
        topic_rows = [(r["symbol"], r["kind"], k[2], r["severity"], r["pane_index"])
                      for k, records in sent.items() for r in records]
        assert sorted(parquet.itertuples(index=False, name=None)) == sorted(topic_rows)
        return {"alerts_expected": len(expected), "alert_keys_sent": len(sent), "alert_records": len(rows),
                "alert_records_from_early_panes": early, "scenarios": len(tape.scenarios)}

    @staticmethod
    def _parquet_rows(sql: str, count: int) -> pd.DataFrame:
        """The rows a query over the Parquet dataset gives, once there are ``count`` of them (the sink writes a
        file per flush interval: wait for the last one; no file yet reads as no row)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                rows = duckdb.sql(sql).df()
            except duckdb.IOException:
                rows = pd.DataFrame()
            if len(rows) == count:
                return rows
            assert time.monotonic() < deadline, f"the Parquet dataset has {len(rows)} of {count} rows: {sql}"
            time.sleep(2)

    def _check_parquet(self, liquidity, market) -> None:
        rows = self._parquet_rows(f"""
            SELECT epoch_ms(window_start) AS window_start, symbol, venue, trade_count, share_quantity
            FROM read_parquet('{self.parquet}/liquidity/*/*.parquet', hive_partitioning = true)
            QUALIFY row_number() OVER (PARTITION BY window_start, symbol, venue
                                       ORDER BY pane_index DESC, emitted_at DESC) = 1""", len(liquidity))
        merged = rows.merge(liquidity, on=LIQUIDITY_KEY, suffixes=("_parquet", "_kafka"))
        assert len(merged) == len(liquidity)
        assert (merged["trade_count_parquet"] == merged["trade_count_kafka"]).all()
        assert (merged["share_quantity_parquet"] == merged["share_quantity_kafka"]).all()
        markets = duckdb.sql(f"SELECT count(DISTINCT (window_start, symbol)) AS n FROM read_parquet("
                             f"'{self.parquet}/market/*/*.parquet', hive_partitioning = true)").fetchall()[0][0]
        assert markets == len(market)
        assert not list(self.parquet.rglob("*.tmp*")), "a half-written file is visible"
