"""ComputeLiquidity: per (window, symbol, venue) liquidity and per (window, symbol) market rollup.

Input: batches of on-time-enough trades ``(partition key, [trade, ...])``
(global window). Output: ``{"liquidity": records, "market": records}``.

Two shapes, same results (tests hold them to it):

- ``simple`` (the reference): every trade is windowed into the sliding windows
  and combined per (symbol, venue) and per symbol. Each trade is aggregated
  size/period times; every trade crosses the runner's shuffle.
- ``two-stage`` (the fast one): trades are first summed inside each bundle per
  (symbol, period slot) into ``{venue: statistics}`` partials (no trade leaves
  the Python step one by one; a partial is stamped inside its period, so it
  lands in exactly the size/period windows of its trades). The partials go
  into the sliding windows with *discarding* panes, grouped per symbol (one
  shuffle, a few elements per symbol and bundle; a GroupByKey, not a
  CombinePerKey, so the stateful step below consumes the grouping directly and
  a pane crosses one Python stage fewer on its way to Kafka), and
  :class:`~pipeline.transforms.accumulate.AccumulatePanes` merges each pane's
  partials into a delta, adds it to running totals in keyed state and emits
  the market record and the per-venue liquidity records. Each trade is aggregated once, and each firing
  costs one state read and write per (symbol, window) instead of re-merging
  everything the window received.

The market rollup is combined from the same trades (or deltas) in the same
window as the venue records, never from already-emitted venue panes: its
accumulator holds every venue's statistics, so HHI and the top venue are exact.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow, TimestampedValue
from apache_beam.utils.windowed_value import WindowedValue

from pipeline import records
from pipeline.combiners import SymbolStatsFn, VenueStatsFn
from pipeline.options import PipelineConfig
from pipeline.records import T_EVENT_MS, T_PRICE, T_QUANTITY, T_SIDE, T_SYMBOL, T_VENUE
from pipeline.transforms.accumulate import AccumulatePanes
from pipeline.transforms.format import FormatLiquidity, FormatMarket
from pipeline.transforms.windowing import SlidingEventTimeWindows


class PreAggregateFn(beam.DoFn):
    """Trade batches -> one (symbol, {venue: statistics}) partial per (symbol, period slot) per bundle.

    Partials are summed over every batch of the bundle (all source partitions)
    and emitted when the bundle finishes: the runner ships a stage's outputs at
    the end of its bundle anyway, so this costs no latency, and it makes each
    bundle send one partial per (symbol, slot) instead of one per batch. Each
    partial is stamped with the latest event time it holds (inside its slot),
    so windowing puts it exactly where its trades belong.
    """

    def __init__(self, period_ms: int) -> None:
        self._period_ms = period_ms

    def start_bundle(self) -> None:
        self._partials: dict[tuple[str, int], list] = {}

    def process(self, element):
        _, trades = element
        period = self._period_ms
        partials = self._partials
        add_trade, new_stats = records.add_trade, records.new_stats
        for trade in trades:
            event_ms = trade[T_EVENT_MS]
            slot_key = (trade[T_SYMBOL], event_ms - event_ms % period)
            entry = partials.get(slot_key)
            if entry is None:
                entry = partials[slot_key] = [event_ms, {}]
            elif event_ms > entry[0]:
                entry[0] = event_ms
            by_venue = entry[1]
            stats = by_venue.get(trade[T_VENUE])
            if stats is None:
                stats = by_venue[trade[T_VENUE]] = new_stats()
            add_trade(stats, trade[T_PRICE], trade[T_QUANTITY], trade[T_SIDE])

    def finish_bundle(self):
        for (symbol, _), (latest_ms, by_venue) in self._partials.items():
            yield WindowedValue((symbol, by_venue), latest_ms / 1000.0, (GlobalWindow(),))
        self._partials = {}


def explode_trades(element):
    """A batch of trades -> each trade, stamped with its event time."""
    _, trades = element
    for trade in trades:
        yield TimestampedValue(trade, trade[T_EVENT_MS] / 1000.0)


def venue_key(trade: tuple) -> tuple[tuple[str, str], tuple]:
    """Key a trade by (symbol, venue)."""
    return (trade[T_SYMBOL], trade[T_VENUE]), trade


def symbol_key(trade: tuple) -> tuple[str, tuple]:
    """Key a trade by symbol."""
    return trade[T_SYMBOL], trade


class ComputeLiquidity(beam.PTransform):
    """Trade batches -> liquidity and market records, in the configured shape."""

    def __init__(self, config: PipelineConfig) -> None:
        super().__init__()
        self._config = config

    def expand(self, batches):
        if self._config.shape == "simple":
            return self._simple(batches)
        return self._two_stage(batches)

    def _simple(self, batches):
        windowed = (
            batches
            | "EachTrade" >> beam.FlatMap(explode_trades)
            | "Windows" >> SlidingEventTimeWindows(self._config)
        )
        liquidity = (
            windowed
            | "KeyBySymbolVenue" >> beam.Map(venue_key)
            | "VenueStats" >> beam.CombinePerKey(VenueStatsFn())
            | "FormatLiquidity" >> FormatLiquidity()
        )
        market = (
            windowed
            | "KeyBySymbol" >> beam.Map(symbol_key)
            | "SymbolStats" >> beam.CombinePerKey(SymbolStatsFn())
            | "FormatMarket" >> FormatMarket()
        )
        return {"liquidity": liquidity, "market": market}

    def _two_stage(self, batches):
        deltas = (
            batches
            | "PreAggregate" >> beam.ParDo(PreAggregateFn(self._config.period_ms))
            | "Windows" >> SlidingEventTimeWindows(self._config, deltas=True)
            | "SymbolDeltas" >> beam.GroupByKey()
        )
        return deltas | "AccumulatePanes" >> AccumulatePanes(self._config.accumulating)
