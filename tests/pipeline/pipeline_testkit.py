"""Helpers for the pipeline's DirectRunner tests: records, running a TestStream, an independent recomputation.

(No __init__.py in tests/pipeline: a package named ``pipeline`` there would
shadow the real one. Pytest puts this folder on sys.path, so tests import
this module as ``pipeline_testkit``.)
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict

import apache_beam as beam
import orjson
import pandas as pd
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.transforms.window import TimestampedValue

from darkpool.contracts import (
    BLOCK_MIN_NOTIONAL,
    BLOCK_MIN_SHARES,
    DARK_VENUE_TYPES,
    TRADES_TOPIC,
    format_event_time,
    load_venues,
    parse_event_time,
)
from darkpool.market import HHI_SCALE
from pipeline.codec import RECORD_BATCH, encode_record_batch
from pipeline.main import metric_totals
from pipeline.records import SourceRecord
from pipeline.transforms.analytics import LiquidityAnalytics

T0 = parse_event_time("2026-11-25T14:00:00.000Z")  # a multiple of 5 minutes
MINUTE = 60_000
SECOND = 1_000

_collected: dict[str, list] = defaultdict(list)
_lock = threading.Lock()


class Collect(beam.DoFn):
    """Append every element to an in-process list (the DirectRunner runs in this process)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def process(self, element):
        with _lock:
            _collected[self._token].append(element)


class MemoryState:
    """A ReadModifyWriteState in memory (what a runner gives DetectAlertsFn per key), for driving the DoFn
    directly."""

    def __init__(self) -> None:
        self.value: bytes | None = None

    def read(self) -> bytes | None:
        return self.value

    def write(self, value: bytes) -> None:
        self.value = value


def pop_collected(token: str) -> list:
    """What :class:`Collect` gathered under ``token`` (and forget it)."""
    with _lock:
        return _collected.pop(token, [])


def trade_value(offset: int, event_ms: int, symbol: str = "AAPL", venue: str = "UBSA",
                quantity: int = 100, price: float = 10.0, side: str | None = "B") -> bytes:
    return orjson.dumps({"trade_id": f"T-{offset:06d}", "event_time": format_event_time(event_ms),
                         "symbol": symbol, "venue": venue, "price": price, "quantity": quantity, "side": side})


def record(offset: int, event_ms: int, symbol: str = "AAPL", venue: str = "UBSA", quantity: int = 100,
           price: float = 10.0, side: str | None = "B", partition: int = 0, topic: str = TRADES_TOPIC,
           value: bytes | None = None) -> TimestampedValue:
    """A Kafka-like source record (record timestamp = event time), timestamped for a TestStream."""
    if value is None:
        value = trade_value(offset, event_ms, symbol, venue, quantity, price, side)
    return TimestampedValue(SourceRecord(topic, partition, offset, event_ms, symbol.encode(), value),
                            event_ms / 1000.0)


def run_analytics(source, config, streaming: bool = True) -> tuple[dict[str, list], dict[str, int]]:
    """Run LiquidityAnalytics over ``source`` (a TestStream or a Create) -> (outputs, Beam counters).

    outputs: liquidity, market, deadletter (and alerts with ``config.alerts``) records.

    ``source`` yields SourceRecords; with the default Kafka reader each goes in
    as a one-record batch (element timestamp kept), as the Java reader sends them.
    """
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = streaming
    pipeline = beam.Pipeline(options=options)
    token = uuid.uuid4().hex
    records = pipeline | "Source" >> source
    if config.reads_record_batches:
        # what the default (darkpool) Kafka reader hands the pipeline: records in ReadTradeRecords' batch layout
        records = records | "AsRecordBatches" >> beam.Map(
            lambda r: (r.partition, encode_record_batch([r]))).with_output_types(RECORD_BATCH)
    outputs = records | "Analytics" >> LiquidityAnalytics.from_config(config)
    for name in outputs:
        _ = outputs[name] | f"Collect{name}" >> beam.ParDo(Collect(f"{token}/{name}"))
    result = pipeline.run()
    result.wait_until_finish()
    with _lock:
        collected = {name: _collected.pop(f"{token}/{name}", []) for name in outputs}
    return collected, metric_totals(result)


def panes(records: list[dict], symbol: str = "AAPL", venue: str | None = None) -> list[tuple]:
    """(window_start HH:MM, pane_timing, pane_index, trade_count, share_quantity), sorted."""
    rows = [r for r in records if r["symbol"] == symbol and (venue is None or r.get("venue") == venue)]
    return sorted((r["window_start"][11:16], r["pane_timing"], r["pane_index"], r["trade_count"],
                   r["share_quantity"]) for r in rows)


def final_panes(records: list[dict], key_fields: tuple[str, ...]) -> dict[tuple, dict]:
    """The last pane (highest pane_index) per key."""
    latest: dict[tuple, dict] = {}
    for r in records:
        key = tuple(r[f] for f in key_fields)
        if key not in latest or r["pane_index"] > latest[key]["pane_index"]:
            latest[key] = r
    return latest


def recompute(trades: pd.DataFrame, size_ms: int, period_ms: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Independent recomputation with pandas: (liquidity, market) per sliding window.

    ``trades`` has columns event_ms, symbol, venue, price, quantity, side. The
    arithmetic is redone here, vectorised, but by the same rules and limits as
    darkpool.market (docs/market-rules.md): blocks at BLOCK_MIN_SHARES /
    BLOCK_MIN_NOTIONAL, dark = DARK_VENUE_TYPES, HHI on HHI_SCALE.
    """
    venues = load_venues()
    rows = []
    for shift in range(0, size_ms, period_ms):
        frame = trades.copy()
        frame["window_start"] = frame["event_ms"] - frame["event_ms"] % period_ms - shift
        rows.append(frame)
    exploded = pd.concat(rows, ignore_index=True)
    exploded["notional"] = exploded["price"] * exploded["quantity"]
    exploded["block"] = (exploded["quantity"] >= BLOCK_MIN_SHARES) | (exploded["notional"] >= BLOCK_MIN_NOTIONAL)
    exploded["block_qty"] = exploded["quantity"].where(exploded["block"], 0)
    exploded["buy"] = exploded["quantity"].where(exploded["side"] == "B", 0)
    exploded["sell"] = exploded["quantity"].where(exploded["side"] == "S", 0)
    exploded["dark"] = exploded["venue"].map(lambda v: venues[v].venue_type in DARK_VENUE_TYPES)
    liquidity = exploded.groupby(["window_start", "symbol", "venue"]).agg(
        trade_count=("quantity", "size"), share_quantity=("quantity", "sum"), notional=("notional", "sum"),
        min_price=("price", "min"), max_price=("price", "max"), block_count=("block", "sum"),
        block_quantity=("block_qty", "sum"), buy_quantity=("buy", "sum"), sell_quantity=("sell", "sum"),
    ).reset_index()
    liquidity["vwap"] = liquidity["notional"] / liquidity["share_quantity"]
    per_venue = liquidity.groupby(["window_start", "symbol"])
    market = per_venue.agg(trade_count=("trade_count", "sum"), share_quantity=("share_quantity", "sum"),
                           notional=("notional", "sum"), venue_count=("venue", "nunique")).reset_index()
    dark = exploded[exploded["dark"]].groupby(["window_start", "symbol"])["quantity"].sum().rename("dark_quantity")
    market = market.merge(dark, on=["window_start", "symbol"], how="left").fillna({"dark_quantity": 0})
    liquidity["share2"] = (liquidity["share_quantity"]
                           / liquidity.groupby(["window_start", "symbol"])["share_quantity"].transform("sum")) ** 2
    hhi = (liquidity.groupby(["window_start", "symbol"])["share2"].sum() * HHI_SCALE).rename("hhi")
    market = market.merge(hhi, on=["window_start", "symbol"])
    market["dark_share"] = market["dark_quantity"] / market["share_quantity"]
    market["vwap"] = market["notional"] / market["share_quantity"]
    return liquidity.drop(columns="share2"), market
