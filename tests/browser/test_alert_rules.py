"""The dashboard's alert rules (dashboard/src/alerts.js, pure functions) run with node against
darkpool.contracts: the same kinds, severities and key, and the serving store's rule (one alert per
key, never lowered), the feed's order, the chart's markers and the map's alerted venues."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from darkpool.contracts import ALERT_KINDS, SEVERITIES, alert_key

ALERTS_JS = Path(__file__).resolve().parents[2] / "dashboard" / "src" / "alerts.js"

SCRIPT = """
import * as A from %s;
const input = JSON.parse(await new Promise((done) => {
  let text = ''; process.stdin.on('data', (c) => { text += c; }); process.stdin.on('end', () => done(text));
}));
const out = { severities: A.SEVERITIES, kinds: Object.keys(A.ALERT_KINDS), keys: input.alerts.map(A.alertKey) };
const store = new Map();
out.kept = input.alerts.map((a) => A.mergeAlert(store, a));
out.held = [...store.values()].map((a) => `${A.alertKey(a)}=${a.severity}@${a.emitted_at}`);
out.feed = A.feedRows(store.values(), 10).map(A.alertKey);
out.markers = A.alertMarkers(store.values(), 'AAPL', input.labels).map((m) => [m.index, A.alertKey(m.alert)]);
out.venues = A.alertedVenues(store.values(), input.window_end, 15).map((v) => [v.mpid, v.severity, v.alerts.length]);
out.labels = input.alerts.map((a) => A.kindLabel(a.kind));
out.figures = input.alerts.map(A.alertFigures);
process.stdout.write(JSON.stringify(out));
"""


def alert(symbol: str, kind: str, severity: str, start: str, emitted: str, venue: str | None = None,
          observed: float = 0.8) -> dict:
    end = start[:14] + f"{int(start[14:16]) + 5:02d}" + start[16:]
    return {"window_start": start, "window_end": end, "symbol": symbol, "kind": kind, "venue": venue,
            "observed": observed, "baseline": 0.4, "score": 7.25, "severity": severity, "emitted_at": emitted}


def run_rules(payload: dict) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing (make setup installs it for the dashboard build)")
    script = SCRIPT % json.dumps(ALERTS_JS.as_uri())
    done = subprocess.run([node, "--input-type=module", "-e", script], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_alert_rules_follow_the_contract_and_the_store():
    t = "2026-12-01T14:%s:00Z"
    alerts = [
        alert("AAPL", "dark_share_surge", "low", t % "10", t % "16"),
        alert("AAPL", "dark_share_surge", "high", t % "10", t % "17"),     # raised: replaces
        alert("AAPL", "dark_share_surge", "medium", t % "10", t % "18"),   # lower, later: ignored
        alert("AAPL", "dark_share_surge", "high", t % "10", t % "17"),     # the same again: ignored
        alert("MSFT", "block_cluster", "medium", t % "11", t % "19", "CDRG", 52_000),
        alert("AAPL", "venue_concentration", "low", t % "12", t % "19", "XNAS", 0.712),
        alert("NVDA", "block_cluster", "high", "2026-12-01T13:30:00Z", t % "20", "CDRG"),  # old window
    ]
    out = run_rules({"alerts": alerts, "labels": [t % m for m in ("09", "10", "11", "12")],
                     "window_end": t % "17"})
    assert out["severities"] == list(SEVERITIES)
    assert out["kinds"] == list(ALERT_KINDS)
    assert out["keys"] == [alert_key(a["symbol"], a["kind"], a["window_start"]) for a in alerts]
    assert out["kept"] == [True, True, False, False, True, True, True]
    aapl_surge = alert_key("AAPL", "dark_share_surge", t % "10")
    assert f"{aapl_surge}=high@{t % '17'}" in out["held"] and len(out["held"]) == 4
    # newest emitted first, then the later window, then symbol
    assert out["feed"] == [
        alert_key("NVDA", "block_cluster", "2026-12-01T13:30:00Z"),
        alert_key("AAPL", "venue_concentration", t % "12"),
        alert_key("MSFT", "block_cluster", t % "11"),
        aapl_surge,
    ]
    # AAPL's alerts on the chart's window starts, the highest severity first
    assert out["markers"] == [[1, aapl_surge], [3, alert_key("AAPL", "venue_concentration", t % "12")]]
    # venue alerts whose window ended within 15 minutes of the window end (NVDA's 13:30 window did not)
    assert out["venues"] == [["CDRG", "medium", 1], ["XNAS", "low", 1]]
    assert out["labels"][:1] == ["Dark-share surge"] and out["labels"][4] == "Block cluster"
    assert out["figures"][0] == {"observed": "80.0%", "baseline": "40.0%", "score": "7.3"}
    assert out["figures"][4]["observed"] == "52,000 sh"
    assert out["figures"][5]["observed"] == "71.2%"
