"""Support for the end-to-end tests of the pipeline on the local Flink stack.

- :func:`build_tape`: a known tape from the feed's generator, its event times
  spread over the last minutes (so the live watermark treats it as current),
  with out-of-order, too-late and malformed records and duplicates injected;
- :func:`expected_panes`: an *independent* recomputation of the final panes
  from the tape with pandas (it shares no code with the pipeline: parsing,
  validation, window assignment and the finance math are re-done here);
- :func:`read_topic` / :func:`final_panes`: what the pipeline wrote.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from darkpool.contracts import load_venues
from darkpool.stack.topics import committed_offset, end_offset
from feed.generator import FaultConfig, FeedConfig, TapeGenerator, TapeRecord

WINDOW_MS = 5 * 60_000
PERIOD_MS = 60_000


def epoch_ms(texts: pd.Series) -> pd.Series:
    """ISO-8601 UTC texts -> epoch milliseconds."""
    return pd.to_datetime(texts, utc=True, format="ISO8601").dt.as_unit("ms").astype("int64")


@dataclass
class Tape:
    records: list[TapeRecord]

    def labels(self) -> pd.Series:
        return pd.Series([r.fault or "valid" for r in self.records])

    def count(self, prefix: str) -> int:
        return sum(1 for r in self.records if (r.fault or "valid").startswith(prefix))


def build_tape(n: int, seed: int, end_ms: int, span_ms: int, *, out_of_order: float = 0.02, late: float = 0.01,
               malformed: float = 0.01, duplicate: float = 0.005) -> Tape:
    """n prints with event times spread evenly over [end_ms - span_ms, end_ms], faults injected."""
    faults = FaultConfig(out_of_order_rate=out_of_order, max_delay_seconds=20.0, late_rate=late,
                         malformed_rate=malformed, duplicate_rate=duplicate)
    generator = TapeGenerator(FeedConfig(seed=seed, faults=faults, id_prefix=f"E{seed}-"))
    times = np.linspace(end_ms - span_ms, end_ms, n).astype(np.int64)
    records: list[TapeRecord] = []
    for start in range(0, n, 4096):
        batch = generator.batch(times[start:start + 4096])
        records.extend(generator.encoder.encode(batch).records())
    return Tape(records)


def split_batches(tape: Tape, parts: int) -> list[list[TapeRecord]]:
    size = math.ceil(len(tape.records) / parts)
    return [tape.records[i:i + size] for i in range(0, len(tape.records), size)]


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
    trades["block"] = (trades["quantity"] >= 10_000) | (trades["notional"] >= 200_000)
    trades["dark"] = trades["venue_type"].isin(["ATS", "SDP"])
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
