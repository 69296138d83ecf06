"""The dashboard's live alerts in a real browser (Debian's Chromium via Playwright) against the real
serving app reading panes and darkpool.alerts records from fresh topics on the real broker.

Checks: the alert feed lists the API's alerts newest first, with the severity as text and shape
besides its colour, the kind's human label, window, venue and figures; clicking a row (or Enter on
it) selects its symbol; the selected symbol's alerts are drawn as markers on the liquidity-over-time
chart at their windows, in their severity's colour; the venues of venue alerts are ringed on the
kepler.gl map; a raised alert pushed on the stream (`event: alert`) replaces its lower row, and a
new venue alert rings its venue, without reload and without the page asking /api/v1/alerts again.
With DARKPOOL_UPDATE_DOC_SCREENSHOT=1 the feed's screenshot refreshes docs/img/alerts.png.
"""

from __future__ import annotations

import io
import json
import os
import time

import pytest
from browser_panes import (
    MINUTE_MS,
    WINDOW_MS,
    Topics,
    alert_record,
    build_session,
    make_topics,
    produce,
)
from dashboard_checks import REPO_ROOT, save_doc_screenshot, screenshot
from PIL import Image
from test_dashboard_browser import api, assert_clean, open_dashboard, wait_for_map

from darkpool.contracts import alert_key

pytestmark = pytest.mark.browser

DOC_ALERTS_SCREENSHOT = REPO_ROOT / "docs" / "img" / "alerts.png"
# dashboard/src/alerts.js SEVERITY_LOOK (Okabe-Ito colours) and the kinds' labels
SEVERITY_RGB = {"low": (0x56, 0xB4, 0xE9), "medium": (0xF0, 0xE4, 0x42), "high": (0xD5, 0x5E, 0x00)}
SEVERITY_TEXT = {"low": "● LOW", "medium": "◆ MEDIUM", "high": "▲ HIGH"}
KIND_LABEL = {"dark_share_surge": "Dark-share surge", "block_cluster": "Block cluster",
              "venue_concentration": "Venue concentration"}
ROWS = "#alerts-table tbody tr[data-key]"


def window_start(now_ms: int, k: int) -> int:
    """Start of build_session's complete window k minutes before the newest complete one (k = 0)."""
    return now_ms - now_ms % MINUTE_MS - k * MINUTE_MS - WINDOW_MS


def feed_keys(page) -> list[str]:
    return page.locator(ROWS).evaluate_all("rows => rows.map(r => r.dataset.key)")


def markers(page) -> list[dict]:
    return json.loads(page.locator("#chart-over-time").get_attribute("data-alert-markers") or "[]")


def wait_for_markers(page, keys: set[str]) -> list[dict]:
    page.wait_for_function(
        "keys => { const m = JSON.parse(document.getElementById('chart-over-time').dataset.alertMarkers || '[]');"
        " return m.length === keys.length && keys.every(k => m.some(x => x.key === k)); }",
        arg=sorted(keys), timeout=15_000,
    )
    return markers(page)


def has_colour_near(png: bytes, x: int, y: int, rgb: tuple[int, int, int], radius: int = 3, tol: int = 40) -> bool:
    """Whether a pixel within `radius` of (x, y) of an element screenshot has (about) the colour rgb."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    for dx in range(-radius, radius + 1):
        for dy in range(-radius, radius + 1):
            px, py = x + dx, y + dy
            inside = 0 <= px < image.width and 0 <= py < image.height
            if inside and all(abs(c - w) <= tol for c, w in zip(image.getpixel((px, py)), rgb, strict=True)):
                return True
    return False


def white_pixels(png: bytes) -> int:
    """Near-white pixels of an element screenshot (the map's alert rings are white)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(1 for r, g, b in image.get_flattened_data() if r > 225 and g > 225 and b > 225)


def assert_marker_colours(page, drawn: list[dict]) -> None:
    png = page.locator("#chart-over-time").screenshot()
    for m in drawn:
        assert has_colour_near(png, m["x"], m["y"], SEVERITY_RGB[m["severity"]]), f"marker not drawn: {m}"


def watch_refresh_failures(page) -> list[str]:
    """The page's 'refresh failed' warnings (main.js logs a failed REST refresh, e.g. a refused alerts query)."""
    failures: list[str] = []
    page.on("console", lambda msg: failures.append(msg.text) if "refresh failed" in msg.text else None)
    return failures


def serve_with_alerts(kafka_bootstrap: str, server_factory, alerts: list[dict], now_ms: int, name: str):
    """Fresh topics with build_session's panes and `alerts`, and a server reading them."""
    topics: Topics = make_topics(kafka_bootstrap, alerts=True)
    liquidity, market = build_session(now_ms)
    produce(kafka_bootstrap, topics, liquidity, market, alerts)
    return topics, server_factory(topics, name=name)


def test_alert_feed_rows_select_markers_and_map(kafka_bootstrap, server_factory, page_and_log):
    page, log = page_and_log
    failures = watch_refresh_failures(page)
    now = int(time.time() * 1000)
    surge = alert_record("AAPL", "dark_share_surge", "high", window_start(now, 3), emitted_ms=now - 40_000,
                         observed=0.82, baseline=0.45, score=9.6)
    cluster = alert_record("NVDA", "block_cluster", "medium", window_start(now, 2), emitted_ms=now - 30_000,
                           venue="CDRG", observed=60_000, baseline=0, score=6.0)
    takeover = alert_record("MSFT", "venue_concentration", "low", window_start(now, 1), emitted_ms=now - 20_000,
                            venue="XNAS", observed=0.71, baseline=0.3, score=4.2)
    older = alert_record("AAPL", "block_cluster", "low", window_start(now, 6), emitted_ms=now - 50_000,
                         venue="UBSA", observed=52_000, baseline=0, score=4.4, timing="ON_TIME", pane_index=2)
    _, own = serve_with_alerts(kafka_bootstrap, server_factory, [surge, cluster, takeover, older], now,
                               "serve-alerts")
    served = api(own, "/api/v1/alerts")["rows"]
    expected = [alert_key(a["symbol"], a["kind"], a["window_start"]) for a in (takeover, cluster, surge, older)]
    assert [alert_key(a["symbol"], a["kind"], a["window_start"]) for a in served] == expected

    open_dashboard(page, own, "?symbol=TSLA")  # a symbol without alerts
    page.wait_for_function("n => document.querySelectorAll('#alerts-table tbody tr[data-key]').length === n",
                           arg=len(expected), timeout=15_000)
    assert feed_keys(page) == expected, "the feed is not newest first"
    rows = page.locator(ROWS)
    for i, a in enumerate((takeover, cluster, surge, older)):
        row = rows.nth(i)
        assert row.get_attribute("data-severity") == a["severity"]
        assert row.locator(".sev-badge").inner_text().strip() == SEVERITY_TEXT[a["severity"]]
        cells = row.locator("td").all_inner_texts()
        assert cells[2] == a["symbol"] and cells[3] == KIND_LABEL[a["kind"]]
        assert cells[4] == f"{a['window_start'][11:16]}–{a['window_end'][11:16]}"
        assert cells[5] == (a["venue"] or "—")
        assert cells[8] == f"{a['score']:.1f}"
        assert row.get_attribute("tabindex") == "0"
    assert rows.nth(2).locator("td").nth(6).inner_text() == "82.0%"  # the surge's dark share vs baseline
    assert rows.nth(2).locator("td").nth(7).inner_text() == "45.0%"
    assert rows.nth(1).locator("td").nth(6).inner_text() == "60,000 sh"
    assert markers(page) == [], "TSLA has no alerts, yet markers are drawn"

    # a click selects the row's symbol like the rest of the page; its alerts become markers at their windows
    rows.nth(2).click()
    page.wait_for_selector("body[data-symbol='AAPL']", timeout=15_000)
    assert page.locator("#symbol-select").input_value() == "AAPL"
    assert "symbol=AAPL" in page.url
    drawn = wait_for_markers(page, {expected[2], expected[3]})
    assert {m["window_start"] for m in drawn} == {surge["window_start"], older["window_start"]}
    assert_marker_colours(page, drawn)
    assert all(r == "AAPL" for r in page.locator(f"{ROWS}.selected").evaluate_all(
        "rows => rows.map(r => r.dataset.symbol)"))

    # the keyboard: the NVDA row is reachable with Tab focus, Enter selects it
    nvda = page.locator(f"{ROWS}[data-symbol='NVDA']")
    nvda.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-symbol='NVDA']", timeout=15_000)
    drawn = wait_for_markers(page, {expected[1]})
    assert drawn[0]["severity"] == "medium"
    assert_marker_colours(page, drawn)
    assert page.locator("#sym-dark-share").inner_text() != "—"

    # the map rings the venues of the venue alerts (CDRG in Aurora IL stands alone)
    wait_for_map(page, len(api(own, "/api/v1/venues")["venues"]))
    page.wait_for_function("() => document.getElementById('venue-map').dataset.highlighted === 'CDRG,UBSA,XNAS'",
                           timeout=15_000)
    page.wait_for_timeout(1500)
    assert white_pixels(page.locator("#venue-map").screenshot()) > 150, "no alert rings drawn on the map"

    page.evaluate("window.scrollTo(0, 0)")
    shot = screenshot(page, "dashboard-alerts-feed", clip=page.locator("#alert-feed").bounding_box())
    screenshot(page, "dashboard-alerts", full_page=True)
    if os.environ.get("DARKPOOL_UPDATE_DOC_SCREENSHOT") == "1":
        save_doc_screenshot(shot, max_bytes=300_000, target=DOC_ALERTS_SCREENSHOT)
    assert not failures, failures
    assert_clean(log)


def test_raised_alert_on_the_stream_replaces_its_row(kafka_bootstrap, server_factory, page_and_log):
    page, log = page_and_log
    failures = watch_refresh_failures(page)
    now = int(time.time() * 1000)
    low = alert_record("AAPL", "dark_share_surge", "low", window_start(now, 2), emitted_ms=now - 30_000,
                       observed=0.62, baseline=0.45, score=4.1)
    topics, own = serve_with_alerts(kafka_bootstrap, server_factory, [low], now, "serve-alerts-live")
    key = alert_key("AAPL", "dark_share_surge", low["window_start"])

    open_dashboard(page, own, "?symbol=AAPL")
    page.wait_for_selector(f"{ROWS}[data-key='{key}'][data-severity='low']", timeout=15_000)
    assert_marker_colours(page, wait_for_markers(page, {key}))
    wait_for_map(page, len(api(own, "/api/v1/venues")["venues"]))
    assert (page.locator("#venue-map").get_attribute("data-highlighted") or "") == ""
    white_before = white_pixels(page.locator("#venue-map").screenshot())

    # from here the page's own alert requests answer nothing new: what changes comes over the stream
    asked: list[str] = []

    def no_news(route) -> None:
        asked.append(route.request.url)
        route.fulfill(status=200, content_type="application/json",
                      body=json.dumps({"total": 0, "offset": 0, "limit": 200, "rows": []}))

    page.route("**/api/v1/alerts*", no_news)
    raised = alert_record("AAPL", "dark_share_surge", "high", window_start(now, 2), emitted_ms=now + 1_000,
                          observed=0.9, baseline=0.45, score=9.8, pane_index=1)
    takeover = alert_record("AAPL", "venue_concentration", "medium", window_start(now, 1), emitted_ms=now + 2_000,
                            venue="CDRG", observed=0.74, baseline=0.3, score=6.3)
    produce(kafka_bootstrap, topics, [], [], [raised, takeover])

    page.wait_for_selector(f"{ROWS}[data-key='{key}'][data-severity='high']", timeout=15_000)
    page.wait_for_function("n => document.querySelectorAll('#alerts-table tbody tr[data-key]').length === n",
                           arg=2, timeout=15_000)
    take_key = alert_key("AAPL", "venue_concentration", takeover["window_start"])
    assert feed_keys(page) == [take_key, key], "the raised alert and the new one are not newest first"
    row = page.locator(f"{ROWS}[data-key='{key}']")
    assert row.count() == 1
    assert row.locator(".sev-badge").inner_text().strip() == SEVERITY_TEXT["high"]
    assert row.locator("td").nth(8).inner_text() == "9.8"
    assert row.locator("td").nth(9).inner_text() == "EARLY #1"

    drawn = wait_for_markers(page, {key, take_key})
    assert {m["key"]: m["severity"] for m in drawn} == {key: "high", take_key: "medium"}
    assert_marker_colours(page, drawn)
    page.wait_for_function("() => document.getElementById('venue-map').dataset.highlighted === 'CDRG'",
                           timeout=15_000)
    page.wait_for_timeout(1500)
    white_after = white_pixels(page.locator("#venue-map").screenshot())
    assert white_after > white_before + 150, f"no ring around CDRG: {white_before} -> {white_after} white pixels"
    screenshot(page, "dashboard-alert-raised", full_page=True)
    page.unroute("**/api/v1/alerts*")
    assert not failures, failures
    assert_clean(log)


def test_no_alerts_topic_says_no_alerts_yet(kafka_bootstrap, server_factory, page_and_log):
    page, log = page_and_log
    topics = make_topics(kafka_bootstrap)  # the alerts topic named is never created
    liquidity, market = build_session(int(time.time() * 1000), symbols=("AAPL", "MSFT"), windows=5)
    produce(kafka_bootstrap, topics, liquidity, market)
    own = server_factory(topics, name="serve-no-alerts")
    assert api(own, "/api/v1/status")["alerts"]["available"] is False

    open_dashboard(page, own)
    empty = page.locator("#alerts-table tbody td.empty")
    assert empty.inner_text() == f"No alerts yet: the server has no alerts topic ({topics.alerts}) yet"
    assert "not found" in empty.get_attribute("title")
    assert page.locator(ROWS).count() == 0
    assert markers(page) == []
    wait_for_map(page, len(api(own, "/api/v1/venues")["venues"]))
    assert (page.locator("#venue-map").get_attribute("data-highlighted") or "") == ""
    assert_clean(log)
