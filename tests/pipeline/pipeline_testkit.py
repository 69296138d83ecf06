"""Helpers for the pipeline's DirectRunner tests: records, running a TestStream, an independent recomputation.

(No __init__.py in tests/pipeline: a package named ``pipeline`` there would
shadow the real one. Pytest puts this folder on sys.path, so tests import
this module as ``pipeline_testkit``.)
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import orjson
import pandas as pd
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.transforms.window import TimestampedValue

from darkpool import market as market_rules
from darkpool.alerts import DetectorSettings
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
from pipeline.transforms.alerts import BLOCK_PANE_FIELDS, BLOCKS, MARKET, MARKET_PANE_FIELDS, DetectAlertsFn, slim
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
    """A ReadModifyWriteState in memory (what a runner gives a stateful DoFn per key and cell), for driving the
    DoFn directly: it holds the written value itself, as the SDK's state cache hands it back."""

    def __init__(self) -> None:
        self.value: Any = None

    def read(self) -> Any:
        return self.value

    def write(self, value: Any) -> None:
        self.value = value


def alert_state_cells() -> dict[str, MemoryState]:
    """One in-memory cell per keyed state cell of DetectAlertsFn, by its process() parameter name."""
    return {name: MemoryState() for name in DetectAlertsFn.STATE_CELLS}


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


def _final_pane(start: int, window_ms: int, symbol: str) -> dict[str, Any]:
    return {"window_start": format_event_time(start), "window_end": format_event_time(start + window_ms),
            "symbol": symbol, "pane_timing": "ON_TIME", "pane_index": 0}


def detector_panes(liquidity: pd.DataFrame, market: pd.DataFrame,
                   window_ms: int) -> Iterator[tuple[int, list[dict], list[dict]]]:
    """Recomputed panes as the alert step sees them: (window start ms, market panes, liquidity panes of the
    venues with blocks) per window in window order, each a final ON_TIME pane with exactly the fields
    DetectAlertsFn reads (MARKET_PANE_FIELDS / BLOCK_PANE_FIELDS; the top venue from the venues' quantities).

    ``liquidity`` / ``market``: per (window_start ms, symbol[, venue]) frames as :func:`recompute` gives them.
    """
    quantities: dict[tuple[int, str], dict[str, int]] = defaultdict(dict)
    for start, symbol, venue, quantity in liquidity[["window_start", "symbol", "venue",
                                                     "share_quantity"]].itertuples(index=False):
        quantities[(int(start), str(symbol))][str(venue)] = int(quantity)
    markets: dict[int, list[dict]] = defaultdict(list)
    for row in market.to_dict("records"):
        start, symbol = int(row["window_start"]), str(row["symbol"])
        top, top_share = market_rules.top_venue(quantities[(start, symbol)])
        markets[start].append(slim({
            **_final_pane(start, window_ms, symbol), "trade_count": int(row["trade_count"]),
            "share_quantity": int(row["share_quantity"]), "dark_share": float(row["dark_share"]),
            "top_venue": top, "top_venue_share": top_share,
        }, MARKET_PANE_FIELDS))
    blocks: dict[int, list[dict]] = defaultdict(list)
    for row in liquidity[liquidity["block_count"] > 0].to_dict("records"):  # as DetectAlerts' VenuesWithBlocks
        start = int(row["window_start"])
        blocks[start].append(slim({
            **_final_pane(start, window_ms, str(row["symbol"])), "venue": str(row["venue"]),
            **{k: int(row[k]) for k in ("trade_count", "share_quantity", "block_count", "block_quantity")},
        }, BLOCK_PANE_FIELDS))
    for start in sorted(markets):
        yield start, markets[start], blocks.get(start, [])


def run_detectors(panes: Iterable[tuple[int, list[dict], list[dict]]], settings: DetectorSettings,
                  period_ms: int, window_ms: int, allowed_lateness_ms: int,
                  now_s: float) -> Iterator[tuple[int, dict]]:
    """The pipeline's DetectAlertsFn driven directly over :func:`detector_panes` (per window: each symbol's
    market pane, then its venues' block panes; its clock fixed at ``now_s``) -> (window start ms, alert
    record), in the order sent."""
    fn = DetectAlertsFn(settings, period_ms=period_ms, window_ms=window_ms,
                        allowed_lateness_ms=allowed_lateness_ms, clock=lambda: now_s)
    states: dict[str, dict[str, MemoryState]] = defaultdict(alert_state_cells)
    for start, markets, blocks in panes:
        by_symbol = defaultdict(list)
        for pane in blocks:
            by_symbol[pane["symbol"]].append(pane)
        for pane in markets:
            symbol = pane["symbol"]
            for element in [(MARKET, pane)] + [(BLOCKS, b) for b in by_symbol.get(symbol, [])]:
                for alert in fn.process((symbol, element), **states[symbol]):
                    yield start, alert
