"""CombineFns: per-venue and per-symbol statistics that merge correctly in any order.

Two CombineFns over the two accumulator shapes of :mod:`pipeline.records`:

- :class:`VenueStatsFn`: trades -> :class:`~pipeline.records.VenueStats` (the reference, "simple" shape).
- :class:`SymbolStatsFn`: trades -> {venue: VenueStats} for one symbol, so the
  market rollup (HHI, dark share, top venue) is computed from the same trades
  in the same window, exactly.

``merge_accumulators`` never mutates its inputs except the fresh accumulator it
returns, so any split and merge order gives the same counts and quantities
(and notional up to floating-point summation order). The accumulators' coders
are the registered ones of :mod:`pipeline.codec`.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam import coders

from pipeline.codec import VenueStatsCoder
from pipeline.records import SymbolStats, Trade, VenueStats, merge_symbol_stats_into


class VenueStatsFn(beam.CombineFn):
    """Trades of one (window, symbol, venue) -> count, quantity, notional, min/max, blocks, buy/sell."""

    def create_accumulator(self) -> VenueStats:
        return VenueStats()

    def add_input(self, accumulator: VenueStats, trade: Trade) -> VenueStats:
        accumulator.add(trade.price, trade.quantity, trade.side)
        return accumulator

    def merge_accumulators(self, accumulators) -> VenueStats:
        merged = VenueStats()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator: VenueStats) -> VenueStats:
        return accumulator

    def get_accumulator_coder(self) -> coders.Coder:
        return VenueStatsCoder()


class SymbolStatsFn(beam.CombineFn):
    """Trades of one (window, symbol) -> {venue: VenueStats}."""

    def create_accumulator(self) -> SymbolStats:
        return {}

    def add_input(self, accumulator: SymbolStats, trade: Trade) -> SymbolStats:
        stats = accumulator.get(trade.venue)
        if stats is None:
            stats = accumulator[trade.venue] = VenueStats()
        stats.add(trade.price, trade.quantity, trade.side)
        return accumulator

    def merge_accumulators(self, accumulators) -> SymbolStats:
        merged: SymbolStats = {}
        for accumulator in accumulators:
            merge_symbol_stats_into(merged, accumulator)
        return merged

    def extract_output(self, accumulator: SymbolStats) -> SymbolStats:
        return accumulator

    def get_accumulator_coder(self) -> coders.Coder:
        return coders.MapCoder(coders.StrUtf8Coder(), VenueStatsCoder())
