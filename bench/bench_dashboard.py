"""Dashboard load-time benchmark: time to the first drawn charts and to the venue map, cold and warm.

What it does, all on loopback:
  1. makes sure a Kafka broker answers (starts the local one if needed, stops it again at the end);
  2. loads --history-minutes windows of panes for --symbols symbols x every venue into fresh topics
     (the demo's scale: 38 symbols, 23 venues), and starts `darkpool serve` on them;
  3. opens the page --runs times in Debian's Chromium (Playwright): each run in a new browser context
     (cold: empty cache), then reloads it in the same context (warm: the bundles cached), and reads the
     page's own marks: body[data-first-chart-ms] (charts drawn from the first REST refresh) and
     #venue-map[data-first-drawn-ms] (the kepler.gl map holding its points), plus when the kepler.gl
     bundle was requested;
  4. prints median and max per figure, cold vs warm, side by side.

Targets (the analyst dashboard issue): first charts under 1.5 s, the map under 4 s; kepler.gl loaded
after the charts.

    .venv/bin/python bench/bench_dashboard.py
    .venv/bin/python bench/bench_dashboard.py --runs 10 --history-minutes 240
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

from bench_serving import PERIOD_MS, SYMBOLS, WINDOW_MS, PaneWriter, ensure_broker, start_server, stop_server

from darkpool.contracts import load_venues
from darkpool.stack.topics import TopicSpec, create_topics

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
LOAD_TIMEOUT_MS = 60_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default: the local stack's broker)")
    p.add_argument("--symbols", type=int, default=38, help="symbols (the demo's 38 by default)")
    p.add_argument("--history-minutes", type=int, default=120, help="windows of history loaded, one per minute")
    p.add_argument("--runs", type=int, default=5, help="cold loads, each followed by a warm reload")
    return p.parse_args(argv)


def measure(page) -> dict[str, float]:
    """The marks of one page load (ms since navigation start)."""
    page.wait_for_selector("body[data-first-chart-ms]", timeout=LOAD_TIMEOUT_MS)
    page.wait_for_selector("#venue-map[data-first-drawn-ms]", timeout=LOAD_TIMEOUT_MS)
    kepler = page.evaluate("""() => performance.getEntriesByType('resource')
      .filter(e => e.name.includes('/assets/venue-map-')).map(e => e.startTime)[0] ?? null""")
    return {"first charts": float(page.get_attribute("body", "data-first-chart-ms")),
            "map": float(page.get_attribute("#venue-map", "data-first-drawn-ms")),
            "kepler.gl requested": kepler if kepler is not None else float("nan")}


def load_history(bootstrap: str, symbols: list[str], minutes: int) -> tuple[tuple[str, str], int]:
    suffix = uuid.uuid4().hex[:8]
    topics = (f"bench.dashboard.liquidity.{suffix}", f"bench.dashboard.market.{suffix}")
    create_topics(bootstrap, {t: TopicSpec(4, {"cleanup.policy": "compact"}) for t in topics})
    venues = [(m, v.venue_type) for m, v in load_venues().items()]
    now_ms = int(time.time() * 1000)
    first = now_ms - now_ms % PERIOD_MS - minutes * PERIOD_MS
    print(f"bench: loading {minutes} windows ({len(symbols)} symbols x {len(venues)} venues) into {topics[0]}",
          flush=True)
    writer = PaneWriter(bootstrap, topics, symbols, venues)
    for w in range(minutes):
        start = first + w * PERIOD_MS
        writer.window(start, 1, "ON_TIME", min(now_ms, start + WINDOW_MS + 1000))
        if (w + 1) % 30 == 0:
            writer.producer.flush(120)  # the producer's queue holds 100,000 records
            print(f"bench: {w + 1}/{minutes} windows, {writer.count:,} records", flush=True)
    writer.producer.flush(120)
    return topics, writer.count


def report(cold: list[dict[str, float]], warm: list[dict[str, float]]) -> None:
    print(f"\n{'figure (ms)':<22}{'cold median':>12}{'cold max':>10}{'warm median':>13}{'warm max':>10}"
          f"{'warm/cold':>11}")
    for key in cold[0]:
        c = [r[key] for r in cold]
        w = [r[key] for r in warm]
        cm, wm = statistics.median(c), statistics.median(w)
        print(f"{key:<22}{cm:>12.0f}{max(c):>10.0f}{wm:>13.0f}{max(w):>10.0f}{wm / cm if cm else float('nan'):>11.2f}")
    ok_charts = max(r["first charts"] for r in cold) < 1500
    ok_map = max(r["map"] for r in cold) < 4000
    after = all(r["kepler.gl requested"] >= r["first charts"] - 1 for r in cold + warm)
    print(f"\ntargets: first charts < 1,500 ms {'met' if ok_charts else 'MISSED'} (cold max); map < 4,000 ms "
          f"{'met' if ok_map else 'MISSED'} (cold max); kepler.gl requested after the first charts: "
          f"{'yes' if after else 'NO'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"bench: {CHROMIUM} is missing (make setup installs it)", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    bootstrap, started_broker = ensure_broker(args.bootstrap)
    server = None
    try:
        topics, records = load_history(bootstrap, list(SYMBOLS[: args.symbols]), args.history_minutes)
        server, base, ready_s = start_server("granian", bootstrap, topics, 16)
        print(f"bench: darkpool serve ready in {ready_s:.1f} s with {records:,} records at {base}", flush=True)
        cold, warm = [], []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for run in range(args.runs):
                    context = browser.new_context(viewport={"width": 1440, "height": 1000})
                    page = context.new_page()
                    page.goto(f"{base}/")
                    cold.append(measure(page))
                    page.reload()
                    warm.append(measure(page))
                    context.close()
                    print(f"bench: run {run + 1}/{args.runs}: cold first charts {cold[-1]['first charts']:.0f} ms, "
                          f"map {cold[-1]['map']:.0f} ms; warm {warm[-1]['first charts']:.0f} / "
                          f"{warm[-1]['map']:.0f} ms", flush=True)
            finally:
                browser.close()
        report(cold, warm)
        return 0
    finally:
        if server is not None:
            stop_server(server)
        if started_broker is not None:
            started_broker.stop()


if __name__ == "__main__":
    sys.exit(main())
