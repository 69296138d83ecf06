"""The dashboard's banner while the server's broker is unreachable (the real test broker, stopped and started).

The server stays up (its live stream stays open), so the page's own connection
is fine: only the server's health (``/api/v1/status`` ``health``) says the
broker is gone. The banner must say the server is degraded, with the figures
left on screen, and go back to ok once the broker answers again. The broker
restart under a live feed and a running pipeline is
tests/pipeline/test_flink_broker_restart.py.
"""

from __future__ import annotations

import pytest
from dashboard_checks import screenshot
from test_dashboard_browser import api, assert_clean, open_dashboard, wait_for_map

from darkpool.config import Settings
from darkpool.stack.services import service_by_name

pytestmark = pytest.mark.browser

BANNER_KIND = "() => document.getElementById('alert-banner').dataset.kind === '{}'"


def test_unreachable_broker_shows_degraded_then_ok(settings: Settings, server_factory, session_topics,
                                                   page_and_log) -> None:
    page, log = page_and_log
    own = server_factory(session_topics, name="serve-degraded")
    open_dashboard(page, own)
    wait_for_map(page, len(api(own, "/api/v1/venues")["venues"]))
    banner = page.locator("#alert-banner")
    assert banner.get_attribute("data-kind") == "ok"
    figure = page.locator("#sym-dark-share").inner_text()

    kafka = service_by_name(settings, "kafka")
    kafka.stop()
    try:
        # the consumer notices within a lag check (5 s); the page polls /api/v1/status every 15 s
        page.wait_for_function(BANNER_KIND.format("degraded"), timeout=40_000)
        text = banner.inner_text().lower()
        assert "degraded" in text and "broker" in text, text
        health = api(own, "/api/v1/status")["health"]
        assert health["state"] == "degraded" and health["reason"], health
        assert page.locator("#stream-status").inner_text().strip().lower().startswith("live")
        assert page.locator("#sym-dark-share").inner_text() == figure, "the figures stay on screen"
        screenshot(page, "dashboard-degraded")
    finally:
        kafka.start()  # the suite shares the broker
    page.wait_for_function(BANNER_KIND.format("ok"), timeout=60_000)
    assert api(own, "/api/v1/status")["health"]["state"] == "ok"
    assert_clean(log)  # the server answered every request throughout: no console error either
