"""The synthetic tape without a broker: contract, market statistics, faults, determinism, calibration."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace

import numpy as np
import orjson
import pytest
from feed_checks import classify, label_counts, validation_error
from hypothesis import given, settings
from hypothesis import strategies as st

from darkpool.contracts import (
    BLOCK_MIN_NOTIONAL,
    BLOCK_MIN_SHARES,
    TRADE_FIELDS,
    VenueProfile,
    format_event_time,
    load_venues,
)
from darkpool.errors import DarkpoolError
from feed.generator import (
    MALFORMED_KINDS,
    FaultConfig,
    FeedConfig,
    TapeGenerator,
    generate_batches,
    generate_tape,
    intraday_intensity,
    malformed_value,
    previous_max_per_key,
)
from feed.universe import DEFAULT_UNIVERSE, clipped_pareto_mean, default_market

SESSION = dt.date(2026, 11, 24)
FAULTY = FaultConfig(out_of_order_rate=0.02, late_rate=0.01, malformed_rate=0.03, duplicate_rate=0.02)


def columns(config: FeedConfig) -> tuple[TapeGenerator, dict[str, np.ndarray]]:
    """Generate a whole replay session and concatenate its batch columns."""
    generator = TapeGenerator(config)
    batches = list(generator.replay_batches())
    names = ("ts", "sym", "venue", "price", "qty", "side", "mid", "half_spread", "fault")
    return generator, {n: np.concatenate([getattr(b, n) for b in batches]) for n in names}


@pytest.fixture(scope="module")
def session() -> tuple[TapeGenerator, dict[str, np.ndarray]]:
    """A full 09:30-16:00 session of 200,000 prints, no faults."""
    return columns(FeedConfig(seed=11, session_trades=200_000, session_date=SESSION))


def test_universe_is_liquid_us_names_at_plausible_prices() -> None:
    assert 30 <= len(DEFAULT_UNIVERSE) <= 40
    market = default_market()
    assert {"AAPL", "MSFT", "NVDA", "SPY"} <= set(market.symbols)
    assert np.all((market.price > 5) & (market.price < 2000))
    assert np.allclose(market.volume_share.sum(axis=1), 1.0)
    assert set(market.venues) == set(load_venues())


def test_valid_records_follow_the_trade_contract() -> None:
    records = list(generate_tape(FeedConfig(seed=3, session_trades=5_000, session_date=SESSION)))
    assert len(records) == 5_000
    venues = load_venues()
    ids = set()
    for record in records:
        trade = orjson.loads(record.value)
        assert tuple(trade) == TRADE_FIELDS
        assert record.key == trade["symbol"]
        assert trade["event_time"] == format_event_time(record.timestamp_ms)
        assert trade["venue"] in venues
        assert isinstance(trade["quantity"], int) and trade["quantity"] > 0
        assert isinstance(trade["price"], float) and trade["price"] > 0
        assert trade["side"] in ("B", "S", None)
        assert validation_error(record.value, record.timestamp_ms) is None
        ids.add(trade["trade_id"])
    assert len(ids) == len(records)
    open_ms, close_ms = FeedConfig(session_date=SESSION).session_bounds_ms()
    assert all(open_ms <= r.timestamp_ms < close_ms for r in records)
    assert [r.timestamp_ms for r in records] == sorted(r.timestamp_ms for r in records)


def test_off_exchange_share_of_volume_is_40_to_50_percent_and_varies_by_symbol(session) -> None:
    generator, c = session
    market = generator.market
    dark = market.venue_is_dark[c["venue"]]
    overall = c["qty"][dark].sum() / c["qty"].sum()
    assert 0.40 <= overall <= 0.50
    assert 0.40 <= market.expected_dark_share() <= 0.50
    assert market.dark_share.max() - market.dark_share.min() >= 0.10
    # the most active names print enough to show their own dark share
    per_symbol = {}
    for s in np.argsort(-market.activity)[:5]:
        mine = c["sym"] == s
        per_symbol[market.symbols[s]] = c["qty"][mine & dark].sum() / c["qty"][mine].sum()
    assert max(per_symbol.values()) - min(per_symbol.values()) >= 0.03
    # every venue type prints
    for kind in ("ATS", "SDP", "EXCHANGE"):
        mpids = [m for m, v in load_venues().items() if v.venue_type == kind]
        assert np.isin(np.array(market.venues)[c["venue"]], mpids).sum() > 1000


def test_sizes_are_heavy_tailed_with_odd_lots_round_lots_and_blocks(session) -> None:
    _, c = session
    qty, notional = c["qty"], c["qty"] * c["price"]
    assert 0.3 <= (qty < 100).mean() <= 0.8  # odd lots
    assert ((qty >= 100) & (qty % 100 == 0)).mean() >= 0.15  # round lots
    share_blocks = (qty >= BLOCK_MIN_SHARES).sum()
    notional_blocks = ((notional >= BLOCK_MIN_NOTIONAL) & (qty < BLOCK_MIN_SHARES)).sum()
    assert share_blocks >= 20 and notional_blocks >= 20
    assert (share_blocks + notional_blocks) / len(qty) < 0.05  # occasional
    # heavy tail: the top 1 % of prints carry far more than 1 % of the volume
    top = np.sort(qty)[-len(qty) // 100:]
    assert top.sum() / qty.sum() > 0.15
    assert np.percentile(qty, 99.9) / np.median(qty) > 50


def test_dark_venues_print_at_or_near_the_midpoint_lit_at_the_quote(session) -> None:
    generator, c = session
    dark = generator.market.venue_is_dark[c["venue"]]
    distance = np.abs(c["price"] - c["mid"])
    assert np.all(distance[dark] <= c["half_spread"][dark] + 1e-9)
    assert (distance[dark] < 1e-9).mean() >= 0.5  # mostly exactly at the midpoint
    lit = ~dark
    at_quote = np.isclose(distance[lit], c["half_spread"][lit], atol=1e-9)
    assert at_quote.all()
    # buyers lift the offer on lit venues
    buys = lit & (c["side"] == 0)
    assert np.all(c["price"][buys] > c["mid"][buys])


def test_prices_random_walk_per_symbol(session) -> None:
    generator, c = session
    for s in range(len(generator.market.symbols)):
        mids = c["mid"][c["sym"] == s]
        start = generator.market.price[s]
        assert len(np.unique(mids)) > 3
        assert np.all(np.abs(mids / start - 1) < 0.2)


def test_intraday_activity_is_u_shaped(session) -> None:
    generator, c = session
    minutes = (c["ts"] - generator.clock.open_ms) / 60_000
    first = (minutes < 30).sum()
    midday = ((minutes >= 180) & (minutes < 210)).sum()
    last = (minutes >= 360).sum()
    assert first > 1.5 * midday and last > 1.5 * midday
    u = np.linspace(0, 1, 101)
    assert intraday_intensity(u).argmin() not in (0, 100)


def test_sides_are_buy_sell_or_unknown(session) -> None:
    _, c = session
    shares = np.bincount(c["side"], minlength=3) / len(c["side"])
    assert shares[0] > 0.3 and shares[1] > 0.3 and 0.02 < shares[2] < 0.3


def test_same_seed_same_tape_other_seed_other_tape() -> None:
    config = FeedConfig(seed=42, session_trades=20_000, session_date=SESSION, faults=FAULTY)
    first = list(generate_tape(config))
    assert first == list(generate_tape(config))
    other = list(generate_tape(replace(config, seed=43)))
    assert [r.value for r in other] != [r.value for r in first]


def test_count_limits_records_including_faults() -> None:
    config = FeedConfig(seed=5, session_trades=50_000, session_date=SESSION, count=12_345, faults=FAULTY)
    assert sum(1 for _ in generate_tape(config)) == 12_345


def test_every_injected_fault_is_labelled_exactly() -> None:
    """An independent classifier (content, key and timestamp only) finds exactly the labelled faults."""
    config = FeedConfig(seed=9, session_trades=60_000, session_date=SESSION, faults=FAULTY)
    records = list(generate_tape(config))
    labels = [r.fault for r in records]
    assert classify((r.key, r.timestamp_ms, r.value) for r in records) == labels
    counts = label_counts(labels)
    for kind in MALFORMED_KINDS:
        assert counts[f"malformed:{kind}"] > 0
    for label, rate in (("out_of_order", 0.02), ("late", 0.01), ("duplicate", 0.02)):
        assert abs(counts[label] / 60_000 - rate) < rate * 0.25


def test_late_and_out_of_order_stay_within_their_bounds() -> None:
    faults = replace(FAULTY, max_delay_seconds=5.0)
    config = FeedConfig(seed=2, session_trades=40_000, session_date=SESSION, faults=faults)
    latest: dict[str, int] = {}
    for record in generate_tape(config):
        top = latest.get(record.key)
        if record.fault == "out_of_order":
            assert 1 <= top - record.timestamp_ms <= 5_000
        elif record.fault == "late":
            assert top - record.timestamp_ms == faults.late_offset_ms == (600 + 300 + 60) * 1000
        latest[record.key] = max(top or 0, record.timestamp_ms)


def test_malformed_kinds_can_be_restricted() -> None:
    faults = FaultConfig(malformed_rate=0.05, malformed_kinds=("bad_json", "unknown_venue"))
    config = FeedConfig(seed=4, session_trades=10_000, session_date=SESSION, faults=faults)
    kinds = {r.fault for r in generate_tape(config) if r.fault}
    assert kinds == {"malformed:bad_json", "malformed:unknown_venue"}


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_each_malformed_kind_fails_validation_for_its_reason(kind: str) -> None:
    trade = {"trade_id": "T-1", "event_time": format_event_time(1_764_081_000_123), "symbol": "AAPL",
             "venue": "UBSA", "price": 189.23, "quantity": 500, "side": "B"}
    for detail in range(12):
        assert validation_error(malformed_value(kind, trade, detail), 1_764_081_000_123) == kind


def test_shift_to_now_keeps_the_gaps() -> None:
    config = FeedConfig(seed=8, session_trades=5_000, session_date=SESSION)
    plain = [r.timestamp_ms for r in generate_tape(config)]
    target = 1_900_000_000_000
    records = [r for batch in generate_batches(config, shift_to_ms=target) for r in batch.records()]
    shifted = [r.timestamp_ms for r in records]
    assert shifted[0] == target
    assert np.array_equal(np.diff(shifted), np.diff(plain))
    assert all(orjson.loads(r.value)["event_time"] == format_event_time(r.timestamp_ms) for r in records)


def test_calibration_sets_universe_venue_shares_and_sizes(caplog: pytest.LogCaptureFixture) -> None:
    calibration = {
        "AAPL": {"UBSA": VenueProfile(0.5, 200.0), "INCR": VenueProfile(0.3, 120.0),
                 "BIDS": VenueProfile(0.2, 2000.0), "NOTAVENUE": VenueProfile(0.1, 100.0)},
        "ZZZQ": {"JPMX": VenueProfile(0.6, 250.0), "SGMT": VenueProfile(0.4, 150.0)},
    }
    with caplog.at_level(logging.WARNING):
        config = FeedConfig(seed=21, session_trades=150_000, session_date=SESSION, calibration=calibration,
                            lit_share=0.5)
        generator, c = columns(config)
    assert "NOTAVENUE" in caplog.text
    market = generator.market
    assert market.symbols == ("AAPL", "ZZZQ")
    assert 5 < market.price[1] < 800
    dark = market.venue_is_dark[c["venue"]]
    for s, symbol in enumerate(market.symbols):
        mine = c["sym"] == s
        dark_volume = c["qty"][mine & dark].sum()
        assert abs(c["qty"][mine & ~dark].sum() / c["qty"][mine].sum() - 0.5) < 0.05
        printed = set(np.array(market.venues)[c["venue"][mine & dark]])
        assert printed == set(calibration[symbol]) - {"NOTAVENUE"}
        for mpid, profile in calibration[symbol].items():
            if mpid == "NOTAVENUE":
                continue
            at = mine & (c["venue"] == market.venues.index(mpid))
            expected_share = profile.share / sum(p.share for m, p in calibration[symbol].items() if m != "NOTAVENUE")
            assert abs(c["qty"][at].sum() / dark_volume - expected_share) < 0.06
            assert abs(c["qty"][at].mean() / profile.avg_trade_size - 1) < 0.25


def test_calibration_errors_are_clear() -> None:
    with pytest.raises(DarkpoolError, match="no symbol"):
        TapeGenerator(FeedConfig(calibration={"AAPL": {"NOPE": VenueProfile(1.0, 100.0)}}))
    with pytest.raises(DarkpoolError, match="lit share"):
        TapeGenerator(FeedConfig(calibration={"AAPL": {"UBSA": VenueProfile(1.0, 100.0)}}, lit_share=1.0))


@pytest.mark.parametrize("faults, message", [
    (FaultConfig(malformed_rate=1.5), "malformed rate"),
    (FaultConfig(late_rate=-0.1), "late rate"),
    (FaultConfig(max_delay_seconds=900.0), "below the allowed lateness"),
    (FaultConfig(malformed_kinds=("nonsense",)), "unknown malformed kind"),
])
def test_bad_fault_settings_are_rejected(faults: FaultConfig, message: str) -> None:
    with pytest.raises(DarkpoolError, match=message):
        TapeGenerator(FeedConfig(faults=faults))


def test_unknown_symbol_is_rejected() -> None:
    with pytest.raises(DarkpoolError, match="unknown symbol"):
        TapeGenerator(FeedConfig(symbols=("AAPL", "NOTASYMBOL")))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10**6), st.booleans()), max_size=60),
       st.lists(st.integers(-1, 10**6), min_size=4, max_size=4))
def test_previous_max_per_key_matches_a_loop(rows, carried) -> None:
    keys = np.array([r[0] for r in rows], dtype=np.int64)
    values = np.array([r[1] for r in rows], dtype=np.int64)
    counts = np.array([r[2] for r in rows], dtype=bool)
    state = np.array(carried, dtype=np.int64)
    expected, running = [], dict(enumerate(carried))
    for key, value, count in rows:
        expected.append(running[key])
        if count:
            running[key] = max(running[key], value)
    assert previous_max_per_key(keys, values, counts, state).tolist() == expected


def test_clipped_pareto_mean_matches_sampling() -> None:
    rng = np.random.default_rng(0)
    samples = np.minimum(200_000, 10_000 * rng.random(2_000_000) ** (-1 / 1.6))
    assert clipped_pareto_mean(1.6, 10_000, 200_000) == pytest.approx(samples.mean(), rel=0.01)
