"""Property tests: every CombineFn gives the same result however its inputs are split and merged."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import records
from pipeline.combiners import SymbolStatsFn, VenueStatsFn
from pipeline.records import S_NOTIONAL

VENUES = ["UBSA", "MSPL", "XNAS", "CDRG", "IEXG"]

trades_strategy = st.lists(
    st.tuples(
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


def assert_stats_equal(a: list, b: list) -> None:
    assert a[:S_NOTIONAL] == b[:S_NOTIONAL] and a[S_NOTIONAL + 1:] == b[S_NOTIONAL + 1:]
    assert a[S_NOTIONAL] == pytest.approx(b[S_NOTIONAL], rel=1e-12)


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
    a = fn.add_input(fn.create_accumulator(), (0, "AAPL", "UBSA", 10.0, 100, "B", "T", 0, 0))
    b = fn.add_input(fn.create_accumulator(), (0, "AAPL", "UBSA", 11.0, 200, "S", "T", 0, 0))
    before = (list(a["UBSA"]), list(b["UBSA"]))
    fn.merge_accumulators([a, b])
    assert (a["UBSA"], b["UBSA"]) == before
