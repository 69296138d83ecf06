"""Format aggregates as contract records, and contract records as Kafka key/value bytes.

:class:`FormatLiquidity` / :class:`FormatMarket` turn ``(key, VenueStats)`` /
``(symbol, {venue: VenueStats})`` panes into the dicts of contracts.LIQUIDITY_FIELDS / MARKET_FIELDS, adding
the window bounds (ISO-8601 UTC), the pane's timing (EARLY / ON_TIME / LATE)
and index from its PaneInfo, and ``emitted_at`` (wall clock).
:func:`liquidity_kv` / :func:`market_kv` / :func:`alert_kv` / :func:`deadletter_kv` give the
Kafka key and JSON value bytes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import apache_beam as beam
import orjson
from apache_beam.utils.windowed_value import PaneInfoTiming

from darkpool.contracts import alert_key, format_event_time, liquidity_key, market_key
from pipeline.records import liquidity_values, market_values, window_fields


def pane_fields(pane) -> dict:
    """pane_timing / pane_index / emitted_at of an output record."""
    return {
        "pane_timing": PaneInfoTiming.to_string(pane.timing),
        "pane_index": pane.index,
        "emitted_at": format_event_time(int(time.time() * 1000)),
    }


def _window_bounds(win) -> tuple[int, int]:
    return int(win.start.micros // 1000), int(win.end.micros // 1000)


class FormatLiquidityFn(beam.DoFn):
    """((symbol, venue), VenueStats) in a window pane -> a darkpool.liquidity record."""

    def __init__(self, venue_types: Mapping[str, str]) -> None:
        self._venue_types = dict(venue_types)

    def process(self, element, win=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        (symbol, venue), stats = element
        record = window_fields(*_window_bounds(win))
        record.update(liquidity_values(symbol, venue, stats, self._venue_types))
        record.update(pane_fields(pane))
        yield record


class FormatMarketFn(beam.DoFn):
    """(symbol, {venue: VenueStats}) in a window pane -> a darkpool.market record."""

    def __init__(self, venue_types: Mapping[str, str]) -> None:
        self._venue_types = dict(venue_types)

    def process(self, element, win=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        symbol, by_venue = element
        record = window_fields(*_window_bounds(win))
        record.update(market_values(symbol, by_venue, self._venue_types))
        record.update(pane_fields(pane))
        yield record


class FormatLiquidity(beam.PTransform):
    """Venue-statistics panes -> darkpool.liquidity records (dicts); ``venue_types`` {MPID: type} of the registry."""

    def __init__(self, venue_types: Mapping[str, str]) -> None:
        super().__init__()
        self._venue_types = dict(venue_types)

    def expand(self, panes):
        return panes | "LiquidityRecord" >> beam.ParDo(FormatLiquidityFn(self._venue_types))


class FormatMarket(beam.PTransform):
    """Symbol-statistics panes -> darkpool.market records (dicts); ``venue_types`` {MPID: type} of the registry."""

    def __init__(self, venue_types: Mapping[str, str]) -> None:
        super().__init__()
        self._venue_types = dict(venue_types)

    def expand(self, panes):
        return panes | "MarketRecord" >> beam.ParDo(FormatMarketFn(self._venue_types))


def liquidity_kv(record: dict) -> tuple[bytes, bytes]:
    """Kafka (key, value) of a liquidity record: key symbol|venue|window_start."""
    key = liquidity_key(record["symbol"], record["venue"], record["window_start"])
    return key.encode(), orjson.dumps(record)


def market_kv(record: dict) -> tuple[bytes, bytes]:
    """Kafka (key, value) of a market record: key symbol|window_start."""
    return market_key(record["symbol"], record["window_start"]).encode(), orjson.dumps(record)


def alert_kv(record: dict) -> tuple[bytes, bytes]:
    """Kafka (key, value) of an alert: key symbol|kind|window_start (compaction keeps the highest severity)."""
    return alert_key(record["symbol"], record["kind"], record["window_start"]).encode(), orjson.dumps(record)


def deadletter_kv(record: dict) -> tuple[bytes, bytes]:
    """Kafka (key, value) of a dead letter: key = the source record's key, else the reason."""
    key = record.get("raw_key") or record["reason"]
    return key.encode(), orjson.dumps(record)
