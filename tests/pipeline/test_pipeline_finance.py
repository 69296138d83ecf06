"""Unit tests of the market definitions (darkpool.market), the event-time rules (pipeline.eventtime) and the
pipeline's rollups (pipeline.records)."""

from __future__ import annotations

import math

import pytest

from darkpool import market
from darkpool.venues import load_venues, venue_types
from pipeline import eventtime, records
from pipeline.records import VenueStats

MIN = 60_000


def test_notional_and_vwap():
    assert market.notional(189.23, 500) == pytest.approx(94_615.0)
    assert market.vwap(100 * 10.0 + 300 * 12.0, 400) == pytest.approx(11.5)
    assert market.vwap(0.0, 0) is None


@pytest.mark.parametrize("price,quantity,expected", [
    (1.0, 10_000, True),      # exactly 10,000 shares
    (1.0, 9_999, False),
    (20.0, 10_000, True),
    (200.0, 1_000, True),     # exactly $200,000
    (199.99, 1_000, False),
    (400.0, 600, True),       # $240,000 with few shares
])
def test_block_threshold(price, quantity, expected):
    assert market.is_block(price, quantity) is expected


def test_average_trade_size():
    assert market.average_trade_size(1_500, 4) == 375.0
    assert market.average_trade_size(0, 0) is None


def test_dark_definitions():
    assert market.is_dark("ATS") and market.is_dark("SDP")
    assert not market.is_dark("EXCHANGE") and not market.is_dark(None)
    assert market.dark_share(450, 1_000) == 0.45
    assert market.dark_share(0, 0) is None


def test_hhi():
    assert market.hhi({"A": 500}) == 10_000.0
    assert market.hhi({"A": 1, "B": 1, "C": 1, "D": 1}) == pytest.approx(2_500.0)
    assert market.hhi({"A": 600, "B": 300, "C": 100}) == pytest.approx(3_600 + 900 + 100)
    assert market.hhi({}) is None
    assert market.hhi({"A": 0}) is None


def test_top_venue_ties_break_alphabetically():
    assert market.top_venue({"UBSA": 300, "MSPL": 300, "XNAS": 100}) == ("MSPL", pytest.approx(300 / 700))
    assert market.top_venue({}) == (None, None)


def test_too_late_rule():
    lateness = 10 * MIN
    event = 14 * 60 * MIN + 50_000  # 14:00:50, first window ends 14:01
    deadline = 14 * 60 * MIN + MIN + lateness  # 14:11
    assert not eventtime.is_too_late(event, None, MIN, lateness)
    assert not eventtime.is_too_late(event, deadline - 1, MIN, lateness)
    assert eventtime.is_too_late(event, deadline, MIN, lateness)
    assert not eventtime.is_too_late(event, event + 5 * MIN, MIN, 10 * MIN)
    assert eventtime.is_too_late(event, event, MIN, 0) is False  # on time with zero lateness


def test_stats_accumulate_and_merge():
    a, b = VenueStats(), VenueStats()
    a.add(10.0, 100, "B")
    a.add(25.0, 10_000, "S")
    b.add(5.0, 50, None)
    merged = VenueStats()
    merged.merge(a)
    merged.merge(b)
    assert merged.count == 3 and merged.block_count == 1
    assert (merged.min_price, merged.max_price) == (5.0, 25.0)
    assert (merged.buy_quantity, merged.sell_quantity) == (100, 10_000)
    assert VenueStats().min_price == math.inf


def test_market_values_dark_lit_hhi_top():
    by_venue = {"UBSA": VenueStats(), "XNAS": VenueStats(), "CDRG": VenueStats()}
    by_venue["UBSA"].add(10.0, 600, "B")   # ATS
    by_venue["CDRG"].add(10.0, 100, "S")   # SDP
    by_venue["XNAS"].add(12.0, 300, None)  # exchange
    rollup = records.market_values("AAPL", by_venue, venue_types(load_venues().values()))
    assert (rollup["share_quantity"], rollup["dark_quantity"], rollup["lit_quantity"]) == (1_000, 700, 300)
    assert rollup["dark_share"] == pytest.approx(0.7)
    assert (rollup["dark_notional"], rollup["lit_notional"]) == (7_000.0, 3_600.0)
    assert (rollup["dark_trade_count"], rollup["lit_trade_count"]) == (2, 1)
    assert rollup["hhi"] == pytest.approx(3_600 + 100 + 900)
    assert (rollup["top_venue"], rollup["top_venue_share"]) == ("UBSA", pytest.approx(0.6))
    assert rollup["venue_count"] == 3
    assert rollup["vwap"] == pytest.approx(10_600 / 1_000)


def test_liquidity_values():
    stats = VenueStats()
    stats.add(100.0, 2_500, "B")
    stats.add(101.0, 500, "S")
    values = records.liquidity_values("MSFT", "JPMX", stats, venue_types(load_venues().values()))
    assert values["venue_type"] == "ATS"
    assert values["avg_trade_size"] == 1_500.0
    assert values["block_count"] == 1 and values["block_quantity"] == 2_500  # $250,000 notional
    assert values["vwap"] == pytest.approx((250_000 + 50_500) / 3_000)
