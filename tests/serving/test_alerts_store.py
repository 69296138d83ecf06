"""Serving's alert store and alert records as pure units (no broker): one alert per (symbol, kind, window),
a severity never lowered in any arrival order, retention and the cap, the filters, the newest-first order and
the paging of queries, record validation, and alert events on the SSE hub."""

from __future__ import annotations

import itertools
import queue
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darkpool.contracts import (
    ALERT_FIELDS,
    ALERT_KINDS,
    SEVERITIES,
    alert_key,
    format_event_time,
    severity_rank,
)
from serving.alerts import AlertStore
from serving.records import Alert, InvalidRecord, decode_alert, to_alert
from serving.stream import Hub

BASE_MS = 1_795_000_000_000 - (1_795_000_000_000 % 60_000)  # a minute boundary in 2026
WINDOW_MS, PERIOD_MS = 300_000, 60_000
HOUR = 3_600_000
SURGE, BLOCKS, CONCENTRATION = ALERT_KINDS
LOW, MEDIUM, HIGH = SEVERITIES


def alert_record(w: int, symbol: str = "AAPL", kind: str = SURGE, severity: str = LOW, emitted_s: int = 0,
                 venue: str | None = None, pane_index: int = 0, timing: str = "EARLY") -> dict[str, Any]:
    """A darkpool.alerts record of window ``w`` (5-min windows every minute), emitted ``emitted_s`` seconds
    after the window opened; the score grows with the severity."""
    start = BASE_MS + w * PERIOD_MS
    if venue is None and kind != SURGE:
        venue = "UBSA"
    rank = severity_rank(severity)
    record = {
        "window_start": format_event_time(start), "window_end": format_event_time(start + WINDOW_MS),
        "symbol": symbol, "kind": kind, "venue": venue,
        "observed": 0.6 + 0.1 * rank, "baseline": 0.3, "baseline_spread": 0.02, "baseline_windows": 60,
        "score": 4.0 + 2.5 * rank, "severity": severity,
        "pane_timing": timing, "pane_index": pane_index, "emitted_at": format_event_time(start + 1000 * emitted_s),
    }
    assert tuple(record) == ALERT_FIELDS
    return record


def alert(w: int, **fields: Any) -> Alert:
    return to_alert(alert_record(w, **fields))


def held(store: AlertStore, w: int, symbol: str = "AAPL", kind: str = SURGE) -> Alert:
    return store.snapshot.alerts[alert_key(symbol, kind, format_event_time(BASE_MS + w * PERIOD_MS))]


# -- one alert per key, never lowered --------------------------------------------------------------------
def test_a_higher_severity_replaces_and_a_lower_one_never_does() -> None:
    store = AlertStore(retention_ms=HOUR, max_alerts=1000)
    first = store.apply([alert(0, severity=LOW, emitted_s=10)])
    assert [a.severity for a in first.applied] == [LOW]
    raised = store.apply([alert(0, severity=HIGH, emitted_s=20, pane_index=1)])
    assert [a.severity for a in raised.applied] == [HIGH] and raised.superseded == 0
    lowered = store.apply([alert(0, severity=MEDIUM, emitted_s=90, pane_index=2, timing="LATE")])  # later, lower
    assert lowered.applied == [] and lowered.superseded == 1
    assert held(store, 0).severity == HIGH and held(store, 0).record["pane_index"] == 1
    assert len(store.snapshot.alerts) == 1 and store.snapshot.alerts_ingested == 2


def test_same_severity_newer_emission_replaces_older_or_identical_does_not() -> None:
    store = AlertStore(retention_ms=HOUR, max_alerts=1000)
    store.apply([alert(0, severity=MEDIUM, emitted_s=30)])
    assert store.apply([alert(0, severity=MEDIUM, emitted_s=30)]).superseded == 1  # a re-delivery: no change
    assert store.apply([alert(0, severity=MEDIUM, emitted_s=20)]).superseded == 1  # an older statement of it
    newer = store.apply([alert(0, severity=MEDIUM, emitted_s=40, pane_index=3)])
    assert len(newer.applied) == 1 and held(store, 0).record["pane_index"] == 3


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_the_highest_severity_wins_in_any_arrival_order(order: tuple[int, ...]) -> None:
    """The pipeline sends low, medium, high (each later); whatever order they arrive in (one batch or one by
    one), the store ends with high, and never held a lower one after a higher."""
    sent = [alert(0, severity=s, emitted_s=10 * (i + 1), pane_index=i) for i, s in enumerate(SEVERITIES)]
    one_batch, one_by_one = AlertStore(HOUR, 1000), AlertStore(HOUR, 1000)
    one_batch.apply([sent[i] for i in order])
    ranks = []
    for i in order:
        one_by_one.apply([sent[i]])
        ranks.append(held(one_by_one, 0).rank)
    assert held(one_batch, 0).severity == held(one_by_one, 0).severity == HIGH
    assert ranks == sorted(ranks)  # the held severity only ever rose


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(SEVERITIES), st.integers(0, 600)), min_size=1,
                max_size=12), st.integers(1, 4))
def test_any_order_and_batching_ends_with_the_highest_severity_per_key(
        emissions: list[tuple[int, str, int]], batch: int) -> None:
    """Per key the store holds the highest severity sent, and of those the latest emission; nothing else."""
    alerts = [alert(w, severity=s, emitted_s=e) for w, s, e in emissions]
    store = AlertStore(HOUR, 1000)
    for i in range(0, len(alerts), batch):
        store.apply(alerts[i:i + batch])
    expected = {}
    for a in alerts:
        if a.key not in expected or (a.rank, a.emitted_ms) > (expected[a.key].rank, expected[a.key].emitted_ms):
            expected[a.key] = a
    assert {k: a.record for k, a in store.snapshot.alerts.items()} == {k: a.record for k, a in expected.items()}


def test_a_batch_reports_every_alert_it_took_in_order() -> None:
    """What the stream pushes: an alert raised within one batch is pushed as sent (low, then high); one that
    raised nothing is not."""
    store = AlertStore(HOUR, 1000)
    result = store.apply([alert(0, severity=LOW, emitted_s=1), alert(0, severity=MEDIUM, emitted_s=2),
                          alert(0, severity=LOW, emitted_s=3), alert(1)])
    assert [(a.window_start_ms, a.severity) for a in result.applied] == [(BASE_MS, LOW), (BASE_MS, MEDIUM),
                                                                        (BASE_MS + PERIOD_MS, LOW)]
    assert result.superseded == 1 and len(store.snapshot.alerts) == 2


def test_kinds_symbols_and_windows_are_separate_keys() -> None:
    store = AlertStore(HOUR, 1000)
    store.apply([alert(0), alert(0, kind=BLOCKS), alert(0, symbol="MSFT"), alert(1), alert(0, kind=CONCENTRATION)])
    assert len(store.snapshot.alerts) == 5


def test_snapshots_are_isolated_from_later_batches() -> None:
    store = AlertStore(HOUR, 1000)
    store.apply([alert(0, severity=LOW)])
    before = store.snapshot
    store.apply([alert(0, severity=HIGH, emitted_s=5), alert(1)])
    assert before.version + 1 == store.snapshot.version
    assert len(before.alerts) == 1 and next(iter(before.alerts.values())).severity == LOW
    assert held(store, 0).severity == HIGH


# -- bounded history ----------------------------------------------------------------------------------------
def test_retention_drops_alerts_of_old_windows_relative_to_the_newest() -> None:
    store = AlertStore(retention_ms=3 * PERIOD_MS, max_alerts=1000)  # windows ending within 3 min of the newest
    assert store.apply([alert(w) for w in range(3)]).evicted == 0
    result = store.apply([alert(w) for w in range(3, 6)])  # the newest window moves 3 min on
    assert sorted(a.window_start_ms for a in store.snapshot.alerts.values()) == [BASE_MS + w * PERIOD_MS
                                                                                  for w in (3, 4, 5)]
    assert result.evicted == 3 and store.snapshot.evicted == 3
    in_one_batch = AlertStore(retention_ms=3 * PERIOD_MS, max_alerts=1000).apply([alert(w) for w in range(6)])
    assert in_one_batch.expired == 3 and len(in_one_batch.applied) == 3  # the batch's own newest window counts
    late = store.apply([alert(1, severity=HIGH, emitted_s=999)])  # an alert of a window already past retention
    assert late.expired == 1 and late.applied == [] and len(store.snapshot.alerts) == 3


def test_the_cap_evicts_the_oldest_windows_first() -> None:
    store = AlertStore(retention_ms=24 * HOUR, max_alerts=4)
    for w in range(4):
        store.apply([alert(w), alert(w, kind=BLOCKS)])
    snap = store.snapshot
    assert len(snap.alerts) == 4 and snap.evicted == 4
    assert {a.window_start_ms for a in snap.alerts.values()} == {BASE_MS + 2 * PERIOD_MS, BASE_MS + 3 * PERIOD_MS}


def test_an_evicted_alert_in_its_own_batch_is_not_reported_as_stored() -> None:
    store = AlertStore(retention_ms=24 * HOUR, max_alerts=1)
    result = store.apply([alert(5), alert(0)])  # the older window's alert is stored, then evicted by the cap
    assert [a.window_start_ms for a in result.applied] == [BASE_MS + 5 * PERIOD_MS] and result.evicted == 1


# -- queries: filters, order, paging -------------------------------------------------------------------------
@pytest.fixture
def sample() -> AlertStore:
    """12 alerts: 3 symbols x 2 windows x 2 kinds, severities and emission times varied."""
    store = AlertStore(HOUR, 1000)
    alerts = []
    for i, (symbol, w, kind) in enumerate(itertools.product(("AAPL", "MSFT", "NVDA"), (0, 1), (SURGE, BLOCKS))):
        alerts.append(alert(w, symbol=symbol, kind=kind, severity=SEVERITIES[i % 3], emitted_s=300 + 7 * (i % 5)))
    store.apply(alerts)
    return store


def test_newest_first_is_emitted_at_then_window_then_symbol_and_kind() -> None:
    store = AlertStore(HOUR, 1000)
    at = 600  # seconds after window 0 opened
    store.apply([
        alert(0, symbol="AAPL", emitted_s=at - 60),  # oldest emission: last
        alert(0, symbol="MSFT", kind=BLOCKS, emitted_s=at), alert(0, symbol="MSFT", emitted_s=at),
        alert(0, symbol="AAPL", emitted_s=at, kind=CONCENTRATION),
        alert(2, symbol="NVDA", emitted_s=at - 120),  # window 2 opened 120 s later: the same emitted_at as ...
        alert(1, symbol="ZZZ", emitted_s=at + 1),  # the newest emission: first
    ])
    order = [(r["symbol"], r["kind"], r["window_start"]) for r in store.snapshot.query().rows]
    w = [format_event_time(BASE_MS + i * PERIOD_MS) for i in range(3)]
    assert order == [("ZZZ", SURGE, w[1]), ("NVDA", SURGE, w[2]),  # ... these three; the newer window first
                     ("AAPL", CONCENTRATION, w[0]), ("MSFT", BLOCKS, w[0]), ("MSFT", SURGE, w[0]),
                     ("AAPL", SURGE, w[0])]


@pytest.mark.parametrize("filters", [
    {"symbol": "MSFT"}, {"kind": BLOCKS}, {"min_severity": MEDIUM}, {"min_severity": HIGH}, {"min_severity": LOW},
    {"since": 314}, {"since": 328}, {"since": 329}, {"symbol": "AAPL", "kind": SURGE, "min_severity": MEDIUM},
    {"symbol": "IBM"},
])
def test_filters_keep_exactly_the_matching_alerts(sample: AlertStore, filters: dict[str, Any]) -> None:
    all_rows = sample.snapshot.query(limit=1000).rows
    since_ms = BASE_MS + 1000 * filters["since"] if "since" in filters else None  # of window 0's start
    min_rank = severity_rank(filters["min_severity"]) if "min_severity" in filters else None
    page = sample.snapshot.query(filters.get("symbol"), filters.get("kind"), since_ms, min_rank, limit=1000)
    expected = [r for r in all_rows
                if r["symbol"] == filters.get("symbol", r["symbol"]) and r["kind"] == filters.get("kind", r["kind"])
                and (min_rank is None or severity_rank(r["severity"]) >= min_rank)
                and (since_ms is None or r["emitted_at"] >= format_event_time(since_ms))]  # at or after: inclusive
    assert page.rows == expected and page.total == len(expected)


def test_since_is_inclusive_on_emitted_at() -> None:
    store = AlertStore(HOUR, 1000)
    store.apply([alert(0, emitted_s=10), alert(1, emitted_s=20)])
    at = BASE_MS + 1 * PERIOD_MS + 20_000  # exactly the second alert's emitted_at
    assert [r["emitted_at"] for r in store.snapshot.query(since_ms=at).rows] == [format_event_time(at)]
    assert store.snapshot.query(since_ms=at + 1).rows == []


def test_pages_cover_the_list_once(sample: AlertStore) -> None:
    full = sample.snapshot.query(limit=1000).rows
    pages = [sample.snapshot.query(limit=5, offset=offset) for offset in (0, 5, 10, 15)]
    assert [len(p.rows) for p in pages] == [5, 5, 2, 0] and {p.total for p in pages} == {12}
    assert [r for p in pages for r in p.rows] == full


def test_a_raised_alert_moves_to_the_top() -> None:
    store = AlertStore(HOUR, 1000)
    store.apply([alert(0, emitted_s=10), alert(1, emitted_s=20)])
    store.apply([alert(0, severity=HIGH, emitted_s=400)])
    rows = store.snapshot.query().rows
    assert [(r["window_start"], r["severity"]) for r in rows] == [(format_event_time(BASE_MS), HIGH),
                                                                  (format_event_time(BASE_MS + PERIOD_MS), LOW)]


# -- records -------------------------------------------------------------------------------------------------
def test_a_record_is_projected_and_its_times_normalised() -> None:
    rec = alert_record(0, kind=BLOCKS, venue="JPMX")
    rec = {**rec, "window_start": rec["window_start"].replace(".000Z", "+00:00"), "extra": 1, "score": 7}
    result = to_alert(rec)
    assert tuple(result.record) == ALERT_FIELDS and result.record["window_start"].endswith(".000Z")
    assert result.record["score"] == 7.0 and isinstance(result.record["score"], float)
    assert result.key == alert_key("AAPL", BLOCKS, format_event_time(BASE_MS)) and result.rank == 0
    assert to_alert(alert_record(0, kind=SURGE)).record["venue"] is None  # venue is nullable


@pytest.mark.parametrize("change, reason", [
    ({"kind": "surge"}, "kind must be one of"),
    ({"severity": "critical"}, "severity must be one of"),
    ({"severity": "HIGH"}, "severity must be one of"),
    ({"pane_timing": "FINAL"}, "pane_timing must be one of"),
    ({"score": None}, "field 'score' is null"),
    ({"baseline_windows": 1.5}, "must be an integer"),
    ({"observed": "0.5"}, "must be a number"),
    ({"symbol": ""}, "symbol is empty"),
    ({"venue": ""}, "venue is empty"),
    ({"emitted_at": "soon"}, "not an ISO-8601 time"),
    ({"window_end": "2020-01-01T00:00:00Z"}, "is not after window_start"),
])
def test_invalid_records_are_rejected_with_a_reason(change: dict, reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        to_alert({**alert_record(0), **change})


def test_decode_errors() -> None:
    with pytest.raises(InvalidRecord, match="tombstone"):
        decode_alert(None)
    with pytest.raises(InvalidRecord, match="not JSON"):
        decode_alert(b"{oops")
    with pytest.raises(InvalidRecord, match="JSON object"):
        decode_alert(b"[1]")
    rec = alert_record(0)
    del rec["severity"]
    with pytest.raises(InvalidRecord, match="missing field.*severity"):
        decode_alert(orjson.dumps(rec))
    assert decode_alert(orjson.dumps(alert_record(0, severity=HIGH))).severity == HIGH


# -- the SSE hub ---------------------------------------------------------------------------------------------
def events_of(sub) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sub.queue.get_nowait())
        except queue.Empty:
            return out


def test_the_hub_pushes_alert_events_to_subscribers_of_their_symbol() -> None:
    hub = Hub(queue_size=10, max_clients=4)
    every, msft = hub.subscribe(), hub.subscribe("MSFT")
    alerts = [alert(0, symbol="AAPL"), alert(0, symbol="MSFT", kind=BLOCKS, severity=HIGH)]
    hub.publish_alerts(alerts)
    assert events_of(every) == [b"event: alert\ndata: " + orjson.dumps(a.record) + b"\n\n" for a in alerts]
    (only,) = events_of(msft)
    assert orjson.loads(only.split(b"data: ", 1)[1]) == alerts[1].record
