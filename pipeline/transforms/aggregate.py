"""ComputeLiquidity: per (window, symbol, venue) liquidity and per (window, symbol) market rollup.

Input: batches of on-time-enough trades ``(partition key, [Trade, ...])``
(global window). Output: ``{"liquidity": records, "market": records}``.

Two shapes, same results (tests hold them to it):

- ``simple`` (the reference): every trade is windowed into the sliding windows
  and combined per (symbol, venue) and per symbol. Each trade is aggregated
  size/period times; every trade crosses the runner's shuffle.
- ``two-stage`` (the fast one): trades are first summed inside each bundle per
  (symbol, period slot) into ``{venue: VenueStats}`` partials (no trade leaves
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

from collections.abc import Mapping

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow, TimestampedValue
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.codec import SYMBOL_PARTIAL
from pipeline.combiners import SymbolStatsFn, VenueStatsFn
from pipeline.options import SHAPES
from pipeline.records import Trade, VenueStats
from pipeline.transforms.accumulate import AccumulatePanes
from pipeline.transforms.format import FormatLiquidity, FormatMarket
from pipeline.transforms.windowing import SlidingEventTimeWindows, Windowing


class _SlotPartial:
    """PreAggregateFn's sums of one (symbol, period slot) in a bundle, and the latest event time they hold."""

    __slots__ = ("by_venue", "latest_ms")

    def __init__(self, event_ms: int) -> None:
        self.latest_ms = event_ms
        self.by_venue: dict[str, VenueStats] = {}


class PreAggregateFn(beam.DoFn):
    """Trade batches -> one (symbol, {venue: VenueStats}) partial per (symbol, period slot) per bundle.

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
        self._partials: dict[tuple[str, int], _SlotPartial] = {}  # key: (symbol, slot start)

    def process(self, element: tuple[str, list[Trade]]):
        _, trades = element
        period = self._period_ms
        partials = self._partials
        for trade in trades:
            event_ms = trade.event_ms
            slot_key = (trade.symbol, event_ms - event_ms % period)
            partial = partials.get(slot_key)
            if partial is None:
                partial = partials[slot_key] = _SlotPartial(event_ms)
            elif event_ms > partial.latest_ms:
                partial.latest_ms = event_ms
            by_venue = partial.by_venue
            stats = by_venue.get(trade.venue)
            if stats is None:
                stats = by_venue[trade.venue] = VenueStats()
            stats.add(trade.price, trade.quantity, trade.side)
        return ()  # the partials leave in finish_bundle

    def finish_bundle(self):
        for (symbol, _), partial in self._partials.items():
            yield WindowedValue((symbol, partial.by_venue), partial.latest_ms / 1000.0, (GlobalWindow(),))
        self._partials = {}


def explode_trades(element: tuple[str, list[Trade]]):
    """A batch of trades -> each trade, stamped with its event time."""
    _, trades = element
    for trade in trades:
        yield TimestampedValue(trade, trade.event_ms / 1000.0)


def venue_key(trade: Trade) -> tuple[tuple[str, str], Trade]:
    """Key a trade by (symbol, venue)."""
    return (trade.symbol, trade.venue), trade


def symbol_key(trade: Trade) -> tuple[str, Trade]:
    """Key a trade by symbol."""
    return trade.symbol, trade


class ComputeLiquidity(beam.PTransform):
    """Trade batches -> liquidity and market records, in the given shape (``two-stage`` or ``simple``).

    ``windowing``: the windows and triggers; ``venue_types``: {MPID: venue type}
    of the job's registry (the records' venue_type, dark vs lit).
    """

    def __init__(self, shape: str, windowing: Windowing, venue_types: Mapping[str, str]) -> None:
        super().__init__()
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r}; use one of {SHAPES}")
        self._shape = shape
        self._windowing = windowing
        self._venue_types = dict(venue_types)

    def expand(self, batches):
        if self._shape == "simple":
            return self._simple(batches)
        return self._two_stage(batches)

    def _simple(self, batches):
        windowed = (
            batches
            | "EachTrade" >> beam.FlatMap(explode_trades).with_output_types(Trade)
            | "Windows" >> SlidingEventTimeWindows(self._windowing)
        )
        liquidity = (
            windowed
            | "KeyBySymbolVenue" >> beam.Map(venue_key).with_output_types(tuple[tuple[str, str], Trade])
            | "VenueStats" >> beam.CombinePerKey(VenueStatsFn())
            | "FormatLiquidity" >> FormatLiquidity(self._venue_types)
        )
        market = (
            windowed
            | "KeyBySymbol" >> beam.Map(symbol_key).with_output_types(tuple[str, Trade])
            | "SymbolStats" >> beam.CombinePerKey(SymbolStatsFn())
            | "FormatMarket" >> FormatMarket(self._venue_types)
        )
        return {"liquidity": liquidity, "market": market}

    def _two_stage(self, batches):
        deltas = (
            batches
            | "PreAggregate" >> beam.ParDo(PreAggregateFn(self._windowing.period_ms)).with_output_types(
                SYMBOL_PARTIAL)
            | "Windows" >> SlidingEventTimeWindows(self._windowing, deltas=True)
            | "SymbolDeltas" >> beam.GroupByKey()
        )
        return deltas | "AccumulatePanes" >> AccumulatePanes(self._windowing.accumulating, self._venue_types)

