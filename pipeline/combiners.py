"""CombineFns: per-venue and per-symbol statistics that merge correctly in any order.

Two CombineFns over two accumulator shapes (layouts in :mod:`pipeline.records`):

- :class:`VenueStatsFn`: trades -> venue statistics (the reference, "simple" shape).
- :class:`SymbolStatsFn`: trades -> {venue: statistics} for one symbol, so the
  market rollup (HHI, dark share, top venue) is computed from the same trades
  in the same window, exactly.

``merge_accumulators`` never mutates its inputs except the fresh accumulator it
returns, so any split and merge order gives the same counts and quantities
(and notional up to floating-point summation order).
"""

from __future__ import annotations

import apache_beam as beam

from pipeline import records
from pipeline.records import T_PRICE, T_QUANTITY, T_SIDE, T_VENUE


class VenueStatsFn(beam.CombineFn):
    """Trades of one (window, symbol, venue) -> count, quantity, notional, min/max, blocks, buy/sell."""

    def create_accumulator(self) -> list:
        return records.new_stats()

    def add_input(self, accumulator: list, trade: tuple) -> list:
        records.add_trade(accumulator, trade[T_PRICE], trade[T_QUANTITY], trade[T_SIDE])
        return accumulator

    def merge_accumulators(self, accumulators) -> list:
        merged = records.new_stats()
        for accumulator in accumulators:
            records.merge_stats_into(merged, accumulator)
        return merged

    def extract_output(self, accumulator: list) -> list:
        return accumulator


class SymbolStatsFn(beam.CombineFn):
    """Trades of one (window, symbol) -> {venue: venue statistics}."""

    def create_accumulator(self) -> dict:
        return {}

    def add_input(self, accumulator: dict, trade: tuple) -> dict:
        venue = trade[T_VENUE]
        stats = accumulator.get(venue)
        if stats is None:
            stats = accumulator[venue] = records.new_stats()
        records.add_trade(stats, trade[T_PRICE], trade[T_QUANTITY], trade[T_SIDE])
        return accumulator

    def merge_accumulators(self, accumulators) -> dict:
        merged: dict = {}
        for accumulator in accumulators:
            records.merge_symbol_stats_into(merged, accumulator)
        return merged

    def extract_output(self, accumulator: dict) -> dict:
        return accumulator

