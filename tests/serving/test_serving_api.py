"""The REST API against the real broker: every endpoint's results on the sample tape, and every error."""

from __future__ import annotations

import pytest
from sample_panes import N_WINDOWS, PERIOD_MS, SYMBOLS, VENUES, Tape, window_start

from darkpool.contracts import LIQUIDITY_FIELDS, MARKET_FIELDS, MAX_SYMBOL_LENGTH, format_event_time, load_venues

LATEST, CURRENT = 2, N_WINDOWS - 1  # W2 has the newest ON_TIME pane; W4 is the newest window


def iso(w: int, end: bool = False) -> str:
    return format_event_time(window_start(w) + (300_000 if end else 0))


def test_health_and_ready(client) -> None:
    health = client.get("/api/v1/health").get_json()
    assert health["status"] == "ok" and health["reason"] is None and health["since"] is not None
    ready = client.get("/api/v1/ready")
    assert ready.status_code == 200
    body = ready.get_json()
    assert body["ready"] is True and body["consumer"]["connected"] is True
    assert body["rebuild"]["read"] >= body["rebuild"]["total"] > 0
    assert body["health"]["state"] == "ok" and body["health"]["reason"] is None


def test_status(client, tape: Tape) -> None:
    body = client.get("/api/v1/status").get_json()
    newest_emitted = max(r["emitted_at"] for r in tape.liquidity + tape.market)
    assert body["last_update"] == newest_emitted
    assert body["latest_window_end"] == iso(LATEST, end=True)
    assert body["current_window_end"] == iso(CURRENT, end=True)
    assert body["symbols"] == len(SYMBOLS) + 1  # + IBM in W0
    assert body["venues"] == len(VENUES)
    assert body["windows"] == N_WINDOWS
    assert body["window_period_ms"] == PERIOD_MS
    assert body["records"] == len(tape.final_liquidity) + len(tape.final_market)
    # every valid record changed the store except the stale re-sent pane
    assert body["panes_ingested"] == len(tape.liquidity) + len(tape.market) - 1
    assert body["consumer"] == {"connected": True, "lag": 0}
    assert body["ready"] is True and body["stale"] is False
    assert body["health"]["state"] == "ok"


def test_windows_latest_is_the_newest_window_with_a_final_pane(client, tape: Tape) -> None:
    body = client.get("/api/v1/windows/latest").get_json()
    assert (body["window_start"], body["window_end"], body["complete"]) == (iso(LATEST), iso(LATEST, True), True)
    assert body["rows"] == tape.window_rows(LATEST)
    assert all(tuple(row) == LIQUIDITY_FIELDS for row in body["rows"])
    assert {row["pane_timing"] for row in body["rows"]} == {"ON_TIME"}


def test_windows_current_is_the_newest_window(client, tape: Tape) -> None:
    body = client.get("/api/v1/windows/current").get_json()
    assert (body["window_start"], body["window_end"], body["complete"]) == (iso(CURRENT), iso(CURRENT, True), False)
    assert body["rows"] == tape.window_rows(CURRENT)
    assert {(row["pane_timing"], row["pane_index"]) for row in body["rows"]} == {("EARLY", 1)}


@pytest.mark.parametrize("query, symbol, venue", [
    ("symbol=MSFT", "MSFT", None), ("symbol=msft", "MSFT", None), ("venue=XNAS", None, "XNAS"),
    ("symbol=NVDA&venue=jpmx", "NVDA", "JPMX"), ("symbol=AAPL&venue=IEXG", "AAPL", "IEXG"),
    ("", None, None),  # no filter: leave the parameters out (an empty value is a 400)
])
def test_windows_filters(client, tape: Tape, query: str, symbol: str | None, venue: str | None) -> None:
    for which, w in (("latest", LATEST), ("current", CURRENT)):
        body = client.get(f"/api/v1/windows/{which}?{query}").get_json()
        assert body["rows"] == tape.window_rows(w, symbol, venue)
    # IEXG is a registry venue without prints here: a valid filter with no rows
    if venue == "IEXG":
        assert body["rows"] == []


def test_latest_pane_wins_over_a_stale_resend(client, tape: Tape) -> None:
    body = client.get("/api/v1/symbols/AAPL/timeseries?venue=UBSA").get_json()
    w1 = next(p for p in body["venues"]["UBSA"] if p["window_start"] == iso(1))
    expected = tape.final_liquidity[(iso(1), "AAPL", "UBSA")]
    assert expected["pane_timing"] == "LATE"
    assert w1["trade_count"] == expected["trade_count"] and w1["share_quantity"] == expected["share_quantity"]


@pytest.mark.parametrize("sort", ["dark_share", "hhi", "notional", "share_quantity", "venue_count", "symbol"])
@pytest.mark.parametrize("order", ["desc", "asc"])
def test_market_ranking(client, tape: Tape, sort: str, order: str) -> None:
    body = client.get(f"/api/v1/market?sort={sort}&order={order}").get_json()
    expected = sorted(tape.market_rows(LATEST), key=lambda r: r["symbol"])
    expected.sort(key=lambda r: r[sort], reverse=order == "desc")
    assert body["rows"] == expected
    assert (body["window_start"], body["window_end"]) == (iso(LATEST), iso(LATEST, True))
    assert (body["sort"], body["order"], body["total"], body["offset"]) == (sort, order, len(expected), 0)
    assert all(tuple(row) == MARKET_FIELDS for row in body["rows"])


def test_market_defaults_paging_and_current(client, tape: Tape) -> None:
    body = client.get("/api/v1/market").get_json()
    assert (body["sort"], body["order"], body["limit"]) == ("dark_share", "desc", 100)
    shares = [r["dark_share"] for r in body["rows"]]
    assert shares == sorted(shares, reverse=True) and len(shares) == len(SYMBOLS)
    page = client.get("/api/v1/market?sort=symbol&limit=1&offset=1").get_json()
    assert [r["symbol"] for r in page["rows"]] == ["MSFT"] and page["total"] == 3
    by_symbol = client.get("/api/v1/market?sort=symbol").get_json()
    assert [r["symbol"] for r in by_symbol["rows"]] == ["AAPL", "MSFT", "NVDA"]  # symbol defaults to asc
    current = client.get("/api/v1/market?window=current&sort=symbol").get_json()
    assert current["rows"] == sorted(tape.market_rows(CURRENT), key=lambda r: r["symbol"])


def test_market_symbol(client, tape: Tape) -> None:
    assert client.get("/api/v1/market/NVDA").get_json() == tape.final_market[(iso(LATEST), "NVDA")]
    assert client.get("/api/v1/market/nvda?window=current").get_json() == tape.final_market[(iso(CURRENT), "NVDA")]
    # IBM is known (it printed in W0) but has no record in the latest window
    missing = client.get("/api/v1/market/IBM")
    assert missing.status_code == 404 and "no market record for IBM" in missing.get_json()["error"]["message"]


def test_timeseries(client, tape: Tape) -> None:
    body = client.get("/api/v1/symbols/NVDA/timeseries").get_json()
    assert body["symbol"] == "NVDA" and sorted(body["venues"]) == sorted(VENUES)
    for venue, points in body["venues"].items():
        expected = [r for (ws, s, v), r in sorted(tape.final_liquidity.items()) if s == "NVDA" and v == venue]
        assert [p["window_start"] for p in points] == [r["window_start"] for r in expected]
        assert [(p["share_quantity"], p["notional"], p["vwap"], p["block_count"]) for p in points] == \
            [(r["share_quantity"], r["notional"], r["vwap"], r["block_count"]) for r in expected]
    # CDRG printed NVDA only in even windows: one point per window it printed in
    assert len(body["venues"]["CDRG"]) == 3 and len(body["venues"]["UBSA"]) == N_WINDOWS
    assert body["market"] == [tape.final_market[(iso(w), "NVDA")] for w in range(N_WINDOWS)]


def test_timeseries_filters(client) -> None:
    body = client.get(f"/api/v1/symbols/AAPL/timeseries?venue=JPMX&since={iso(1)}&until={iso(3, True)}").get_json()
    assert list(body["venues"]) == ["JPMX"]
    assert [p["window_start"] for p in body["venues"]["JPMX"]] == [iso(1), iso(2), iso(3)]
    assert [m["window_start"] for m in body["market"]] == [iso(1), iso(2), iso(3)]
    empty = client.get("/api/v1/symbols/AAPL/timeseries?since=2030-01-01T00:00:00Z").get_json()
    assert empty == {"symbol": "AAPL", "venues": {}, "market": []}
    backwards = client.get("/api/v1/symbols/AAPL/timeseries?since=2026-11-25T10:00:00Z&until=2026-11-25T09:00:00Z")
    assert backwards.status_code == 200 and backwards.get_json() == empty  # an empty range


def test_timeseries_step_keeps_the_windows_on_its_multiples(client) -> None:
    every = client.get("/api/v1/symbols/AAPL/timeseries?venue=JPMX").get_json()
    assert client.get("/api/v1/symbols/AAPL/timeseries?venue=JPMX&step=60").get_json() == every
    starts = [window_start(w) for w in range(N_WINDOWS)]
    assert any(s % 120_000 for s in starts) and any(s % 120_000 == 0 for s in starts)
    for step_s in (120, 180, 300, 86_400):
        body = client.get(f"/api/v1/symbols/AAPL/timeseries?venue=JPMX&step={step_s}").get_json()
        wanted = [format_event_time(s) for s in starts if s % (step_s * 1000) == 0]
        assert [p["window_start"] for p in body["venues"].get("JPMX", [])] == wanted
        assert [m["window_start"] for m in body["market"]] == wanted


def test_venues_and_symbols(client) -> None:
    venues = client.get("/api/v1/venues").get_json()["venues"]
    registry = load_venues()
    assert [v["mpid"] for v in venues] == list(registry)
    ubsa = next(v for v in venues if v["mpid"] == "UBSA")
    assert (ubsa["latitude"], ubsa["longitude"], ubsa["is_dark"]) == (registry["UBSA"].latitude,
                                                                      registry["UBSA"].longitude, True)
    assert next(v for v in venues if v["mpid"] == "XNAS")["is_dark"] is False
    assert client.get("/api/v1/symbols").get_json() == {"symbols": ["AAPL", "IBM", "MSFT", "NVDA"]}


def test_legacy_heatmap_data(client, tape: Tape) -> None:
    body = client.get("/api/heatmap_data").get_json()
    rows = tape.window_rows(LATEST)
    assert len(body) == len(rows)
    for got, rec in zip(body, rows, strict=True):
        venue = load_venues()[rec["venue"]]
        assert got == {
            "window_start": rec["window_start"], "window_end": rec["window_end"], "venue": rec["venue"],
            "symbol": rec["symbol"], "total_trade_value": rec["notional"], "total_quantity": rec["share_quantity"],
            "num_trades": rec["trade_count"], "avg_price": rec["vwap"],
            "latitude": venue.latitude, "longitude": venue.longitude,
        }
    assert len(client.get("/api/heatmap_data?window=current").get_json()) == len(tape.window_rows(CURRENT))


ERROR_CASES = [
    ("/api/v1/windows/latest?symbol=ZZZZ", 404, "unknown symbol"),
    ("/api/v1/windows/latest?symbol=1BAD", 400, "symbol must be a ticker"),
    ("/api/v1/windows/latest?symbol=" + "A" * (MAX_SYMBOL_LENGTH + 1), 400, "symbol must be a ticker"),
    ("/api/v1/windows/current?venue=NOPE", 404, "unknown venue"),
    ("/api/v1/windows/current?venue=no-pe", 400, "venue must be a venue MPID"),
    ("/api/v1/windows/latest?sybmol=AAPL", 400, "unknown query parameter(s): sybmol"),
    ("/api/v1/market?window=yesterday", 400, "window must be one of latest, current"),
    ("/api/v1/market?sort=price", 400, "sort must be one of"),
    ("/api/v1/market?order=up", 400, "order must be one of desc, asc"),
    ("/api/v1/market?limit=0", 400, "limit must be between 1 and 1000"),
    ("/api/v1/market?limit=1001", 400, "limit must be between 1 and 1000"),
    ("/api/v1/market?limit=ten", 400, "limit must be an integer"),
    ("/api/v1/market?offset=-1", 400, "offset must be at least 0"),
    ("/api/v1/market/ZZZZ", 404, "unknown symbol"),
    ("/api/v1/market/%20", 400, "symbol in the path is empty"),
    ("/api/v1/market/AAPL?window=old", 400, "window must be one of"),
    ("/api/v1/symbols/ZZZZ/timeseries", 404, "unknown symbol"),
    ("/api/v1/symbols/AAPL/timeseries?venue=NOPE", 404, "unknown venue"),
    ("/api/v1/symbols/AAPL/timeseries?since=yesterday", 400, "since must be an RFC 3339 date-time"),
    ("/api/v1/symbols/AAPL/timeseries?until=2026-13-01", 400, "until must be an RFC 3339 date-time"),
    ("/api/v1/windows/latest?venue=", 400, "venue is empty"),
    ("/api/v1/windows/latest?symbol=", 400, "symbol is empty"),
    ("/api/v1/market?limit=5&limit=6", 400, "given more than once: limit"),
    ("/api/v1/stream?symbol=%24%24", 400, "symbol must be a ticker"),
    ("/api/heatmap_data?window=all", 400, "window must be one of"),
    ("/api/v1/health?x=1", 400, "unknown query parameter"),
    ("/api/v1/no-such-endpoint", 404, "not found"),
    ("/api/v2/windows/latest", 404, "not found"),
]


@pytest.mark.parametrize("url, status, message", ERROR_CASES)
def test_errors_are_json(client, url: str, status: int, message: str) -> None:
    response = client.get(url)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == status and message.lower() in error["message"].lower()


def test_method_not_allowed_is_json(client) -> None:
    response = client.post("/api/v1/windows/latest")
    assert response.status_code == 405 and response.get_json()["error"]["code"] == 405
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_security_headers_and_no_cors_by_default(client) -> None:
    for url in ("/api/v1/status", "/", "/api/v1/market/ZZZZ", "/metrics"):
        response = client.get(url, headers={"Origin": "http://evil.example"})
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "Access-Control-Allow-Origin" not in response.headers


def test_metrics(client, tape: Tape) -> None:
    client.get("/api/v1/windows/latest")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'darkpool_http_requests_total{endpoint="api.windows_latest",status="200"}' in text
    assert "darkpool_serving_ready 1.0" in text
    assert "darkpool_serving_consumer_connected 1.0" in text
    stored = sum(float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith("darkpool_serving_panes_total{") and 'outcome="stored"' in line)
    assert stored == len(tape.liquidity) + len(tape.market) - 1
    assert 'darkpool_serving_invalid_records_total{kind="liquidity"} 3.0' in text
    assert 'darkpool_serving_panes_total{kind="any",outcome="superseded"} 1.0' in text
