"""Property tests: every CombineFn gives the same result however its inputs are split and merged; the
registered coders of trades and statistics round-trip them."""

from __future__ import annotations

import random

import pytest
from apache_beam import coders
from apache_beam.typehints.native_type_compatibility import convert_to_beam_type
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import records
from pipeline.codec import SYMBOL_PARTIAL, TRADE_BATCH, VenueStatsCoder
from pipeline.combiners import SymbolStatsFn, VenueStatsFn
from pipeline.records import Trade, VenueStats

VENUES = ["UBSA", "MSPL", "XNAS", "CDRG", "IEXG"]

trades_strategy = st.lists(
    st.builds(
        Trade,
        st.integers(1_700_000_000_000, 1_700_000_600_000),  # event_ms
        st.just("AAPL"),
        st.sampled_from(VENUES),
        st.floats(0.01, 5_000, allow_nan=False, allow_infinity=False),  # price
        st.integers(1, 50_000),  # quantity
        st.sampled_from(["B", "S", None]),
        st.just("T"), st.just(0), st.just(0),
    ),
    min_size=1, max_size=60,
)


def combine_split(fn, inputs: list, cuts: list[int], order_seed: int):
    """Split inputs at ``cuts``, accumulate each part, merge the parts in a shuffled, nested order."""
    bounds = sorted({0, len(inputs), *[c % (len(inputs) + 1) for c in cuts]})
    parts = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        acc = fn.create_accumulator()
        for item in inputs[lo:hi]:
            acc = fn.add_input(acc, item)
        parts.append(acc)
    parts.append(fn.create_accumulator())  # an empty accumulator must be neutral
    random.Random(order_seed).shuffle(parts)
    while len(parts) > 1:  # merge pairwise, like a tree of workers
        merged = fn.merge_accumulators(parts[:2])
        parts = parts[2:] + [merged]
    return fn.extract_output(parts[0])


def single_pass(fn, inputs: list):
    acc = fn.create_accumulator()
    for item in inputs:
        acc = fn.add_input(acc, item)
    return fn.extract_output(acc)


def assert_stats_equal(a: VenueStats, b: VenueStats) -> None:
    exact = [name for name in VenueStats.__dataclass_fields__ if name != "notional"]
    assert [getattr(a, name) for name in exact] == [getattr(b, name) for name in exact]
    assert a.notional == pytest.approx(b.notional, rel=1e-12)


@settings(max_examples=150, deadline=None)
@given(trades_strategy, st.lists(st.integers(0, 100), max_size=6), st.integers(0, 1_000))
def test_venue_stats_any_split_and_merge_order(trades, cuts, seed):
    assert_stats_equal(combine_split(VenueStatsFn(), trades, cuts, seed), single_pass(VenueStatsFn(), trades))


@settings(max_examples=150, deadline=None)
@given(trades_strategy, st.lists(st.integers(0, 100), max_size=6), st.integers(0, 1_000))
def test_symbol_stats_any_split_and_merge_order(trades, cuts, seed):
    got = combine_split(SymbolStatsFn(), trades, cuts, seed)
    want = single_pass(SymbolStatsFn(), trades)
    assert set(got) == set(want)
    for venue in want:
        assert_stats_equal(got[venue], want[venue])


@settings(max_examples=100, deadline=None)
@given(trades_strategy, st.lists(st.integers(0, 100), max_size=6), st.integers(0, 1_000), st.integers(0, 1_000))
def test_partials_merged_pane_by_pane_equal_direct_combination(trades, cuts, partial_cuts, seed):
    """Partials (as the two-stage shape makes them), arriving in any order and grouped into any panes,
    merged into a pane delta and the delta into running totals (as AccumulatePanesFn does) = combining the trades."""
    rng = random.Random(partial_cuts)
    partials, start = [], 0
    while start < len(trades):
        end = start + rng.randint(1, 8)
        partials.append(single_pass(SymbolStatsFn(), trades[start:end]))
        start = end
    random.Random(seed).shuffle(partials)
    bounds = sorted({0, len(partials), *(c % (len(partials) + 1) for c in cuts)})
    got: dict = {}
    for low, high in zip(bounds, bounds[1:], strict=False):
        delta: dict = {}
        for partial in partials[low:high]:
            records.merge_symbol_stats_into(delta, partial)
        records.merge_symbol_stats_into(got, delta)
    want = single_pass(SymbolStatsFn(), trades)
    assert set(got) == set(want)
    for venue in want:
        assert_stats_equal(got[venue], want[venue])


def test_merge_does_not_mutate_inputs():
    fn = SymbolStatsFn()
    a = fn.add_input(fn.create_accumulator(), Trade(0, "AAPL", "UBSA", 10.0, 100, "B", "T", 0, 0))
    b = fn.add_input(fn.create_accumulator(), Trade(0, "AAPL", "UBSA", 11.0, 200, "S", "T", 0, 0))
    before = (a["UBSA"].copy(), b["UBSA"].copy())
    fn.merge_accumulators([a, b])
    assert (a["UBSA"], b["UBSA"]) == before


def registered_coder(hint):
    return coders.registry.get_coder(convert_to_beam_type(hint))


@settings(max_examples=50, deadline=None)
@given(trades_strategy)
def test_registered_coders_round_trip_trade_batches_and_partials(trades):
    """The coders Beam picks for the steps' element types: keys StrUtf8, values back with their named types."""
    batch_coder = registered_coder(TRADE_BATCH)
    assert batch_coder.key_coder() == coders.StrUtf8Coder()
    decoded = batch_coder.decode(batch_coder.encode(("darkpool.trades/0", trades)))
    assert decoded == ("darkpool.trades/0", trades) and all(type(t) is Trade for t in decoded[1])
    partial_coder = registered_coder(SYMBOL_PARTIAL)
    assert partial_coder.key_coder().is_deterministic()
    partial = single_pass(SymbolStatsFn(), trades)
    assert partial_coder.decode(partial_coder.encode(("AAPL", partial))) == ("AAPL", partial)


def test_venue_stats_coder_empty_and_oversized():
    coder = VenueStatsCoder()
    assert coder.decode(coder.encode(VenueStats())) == VenueStats()  # min/max price +-inf
    huge = VenueStats(count=1, quantity=2**70, notional=1e25, min_price=1.0, max_price=1.0)
    assert coder.decode(coder.encode(huge)) == huge  # beyond 64 bits: still exact
