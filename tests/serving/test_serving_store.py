"""The store and record validation as pure units (no broker): pane order, retention, the record cap,
snapshot isolation, and which window is the latest complete one."""

from __future__ import annotations

import orjson
import pytest
from sample_panes import liquidity_record, market_record, venues_of, window_start

from darkpool.contracts import format_event_time
from serving.records import LIQUIDITY, MARKET, InvalidRecord, decode_pane, to_pane
from serving.store import Store

HOUR = 3_600_000


def pane(w: int, index: int = 0, timing: str = "EARLY", symbol: str = "AAPL", venue: str = "UBSA"):
    return to_pane(LIQUIDITY, liquidity_record(w, symbol, venue, index, timing))


def test_higher_pane_index_wins_in_any_arrival_order() -> None:
    store = Store(retention_ms=HOUR, max_records=1000)
    store.apply([pane(0, 2, "LATE"), pane(0, 0, "EARLY"), pane(0, 1, "ON_TIME")])
    window = store.snapshot.windows[window_start(0)]
    assert window.liquidity["AAPL"]["UBSA"].pane_index == 2
    result = store.apply([pane(0, 1, "ON_TIME")])
    assert result.applied == [] and result.superseded == 1
    assert store.snapshot.panes_ingested == 1


def test_same_index_newer_emission_wins() -> None:
    store = Store(retention_ms=HOUR, max_records=1000)
    old = liquidity_record(0, "AAPL", "UBSA", 1, "ON_TIME")
    new = {**old, "emitted_at": format_event_time(window_start(0) + 400_000), "trade_count": 99}
    store.apply([to_pane(LIQUIDITY, new), to_pane(LIQUIDITY, old)])
    assert store.snapshot.windows[window_start(0)].liquidity["AAPL"]["UBSA"].record["trade_count"] == 99


def test_snapshots_are_isolated_from_later_batches() -> None:
    store = Store(retention_ms=HOUR, max_records=1000)
    store.apply([pane(0, 0)])
    before = store.snapshot
    store.apply([pane(0, 1, "ON_TIME"), pane(0, 0, venue="JPMX"), pane(1, 0)])
    assert before.version + 1 == store.snapshot.version
    assert set(before.windows) == {window_start(0)}
    assert set(before.windows[window_start(0)].liquidity["AAPL"]) == {"UBSA"}
    assert before.windows[window_start(0)].liquidity["AAPL"]["UBSA"].pane_index == 0
    assert store.snapshot.windows[window_start(0)].liquidity["AAPL"]["UBSA"].pane_index == 1


def test_retention_drops_old_windows_relative_to_the_newest() -> None:
    store = Store(retention_ms=3 * 60_000, max_records=1000)  # windows ending within 3 min of the newest end
    store.apply([pane(w) for w in range(6)])
    assert [s for s in store.snapshot.order] == [window_start(w) for w in (3, 4, 5)]
    late = store.apply([pane(1, 1, "LATE")])  # a pane for a window already past retention
    assert late.expired == 1 and window_start(1) not in store.snapshot.windows


def test_record_cap_evicts_oldest_windows_first() -> None:
    store = Store(retention_ms=24 * HOUR, max_records=10)
    for w in range(5):
        store.apply([pane(w, venue=v) for v in ("UBSA", "JPMX", "CDRG", "XNAS")])
    snap = store.snapshot
    assert snap.record_count <= 10
    assert snap.order == (window_start(3), window_start(4))
    assert snap.evicted_windows == 3


def test_latest_complete_window() -> None:
    store = Store(retention_ms=24 * HOUR, max_records=1000)
    assert store.snapshot.latest_complete_window() is None
    store.apply([pane(0)])
    assert store.snapshot.latest_complete_window() is None and store.snapshot.current_window().start_ms == \
        window_start(0)
    store.apply([pane(1), pane(2)])  # no final pane yet: the newest window older than the current one
    assert store.snapshot.latest_complete_window().start_ms == window_start(1)
    store.apply([pane(0, 1, "ON_TIME")])  # W0 closed
    assert store.snapshot.latest_complete_window().start_ms == window_start(0)
    store.apply([pane(1, 1, "ON_TIME"), pane(0, 2, "LATE")])
    assert store.snapshot.latest_complete_window().start_ms == window_start(1)
    assert store.snapshot.current_window().start_ms == window_start(2)


def test_market_panes_are_kept_per_symbol() -> None:
    store = Store(retention_ms=HOUR, max_records=1000)
    rows = [liquidity_record(0, "MSFT", v, 0, "EARLY") for v in venues_of(0, "MSFT")]
    store.apply([to_pane(MARKET, market_record(rows, 0, "EARLY")), to_pane(MARKET, market_record(rows, 1, "ON_TIME"))])
    window = store.snapshot.windows[window_start(0)]
    assert window.market["MSFT"].timing == "ON_TIME" and window.count == 1


def test_record_is_projected_and_times_normalised() -> None:
    rec = liquidity_record(0, "AAPL", "UBSA", 0, "EARLY")
    rec = {**rec, "window_start": rec["window_start"].replace(".000Z", "+00:00"), "extra": "dropped", "notional": 5}
    result = to_pane(LIQUIDITY, rec)
    assert "extra" not in result.record and result.record["window_start"].endswith(".000Z")
    assert result.record["notional"] == 5.0 and isinstance(result.record["notional"], float)


@pytest.mark.parametrize("change, reason", [
    ({"trade_count": None}, "field 'trade_count' is null"),
    ({"trade_count": "10"}, "must be an integer"),
    ({"trade_count": True}, "must be an integer"),
    ({"notional": "1.5"}, "must be a number"),
    ({"symbol": 5}, "must be a string"),
    ({"symbol": ""}, "symbol is empty"),
    ({"venue": ""}, "venue is empty"),
    ({"window_start": "yesterday"}, "not an ISO-8601 time"),
    ({"window_end": "2020-01-01T00:00:00Z"}, "is not after window_start"),
    ({"pane_timing": "FINAL"}, "pane_timing must be one of"),
])
def test_invalid_records_are_rejected_with_a_reason(change: dict, reason: str) -> None:
    rec = {**liquidity_record(0, "AAPL", "UBSA", 0, "EARLY"), **change}
    with pytest.raises(InvalidRecord, match=reason.replace("(", r"\(")):
        to_pane(LIQUIDITY, rec)


def test_decode_errors() -> None:
    with pytest.raises(InvalidRecord, match="tombstone"):
        decode_pane(LIQUIDITY, None)
    with pytest.raises(InvalidRecord, match="not JSON"):
        decode_pane(LIQUIDITY, b"{oops")
    with pytest.raises(InvalidRecord, match="JSON object"):
        decode_pane(LIQUIDITY, b"[1, 2]")
    rec = liquidity_record(0, "AAPL", "UBSA", 0, "EARLY")
    del rec["vwap"]
    with pytest.raises(InvalidRecord, match="missing field.*vwap"):
        decode_pane(LIQUIDITY, orjson.dumps(rec))
    nullable = {**liquidity_record(0, "AAPL", "UBSA", 0, "EARLY"), "vwap": None}
    assert decode_pane(LIQUIDITY, orjson.dumps(nullable)).record["vwap"] is None
