"""Benchmark: the alert detectors' false-positive rate and recall at their default thresholds.

Per seed, the feed's own generator (``feed.generator.TapeGenerator``, live mode, numpy, no Kafka) makes a
tape at ``--rate`` trades/s (the demo's 2,000 by default) over the default universe (38 symbols), with
``--scenarios`` random scenarios (``feed.generator.feed_random_scenarios``: kinds in turn, distinct
symbols, placed within the measured hour). A warm-up of ``min_baseline_windows`` minutes (no window can
alert before its baseline has that many earlier windows) is followed by the measured hour: the windows
starting in it are counted; the tape runs one window further so the last of them is complete.

1. **False positives**, on the symbols without a scenario: a scenario only adds trades (from its own
   random stream, on its own symbol), so their trades are exactly those of the tape without scenarios
   (``--plain-tapes`` also scores each seed's tape without scenarios, all symbols, and checks that).
   Every alert there is a false positive (the tape has no unusual activity by construction): alerts (one
   per symbol, kind and window, as the compacted topic keeps them) per kind and severity, per
   symbol-hour, and *episodes* (a symbol's alerts of one kind in overlapping windows count once: what a
   user sees as one event).
2. **Recall**: a scenario is detected when its expected alert kind (``feed.scenarios.EXPECTED_ALERT``)
   fired for its symbol in a window overlapping the scenario's window; for venue kinds, also whether
   an alert named the scenario's venue.

How the alerts are found, without restating the pipeline's rules: the panes are the independent pandas
recomputation of the pipeline's tests (``tests/pipeline/pipeline_testkit.recompute``; 5-minute windows
every minute, the product's defaults), with each window's top venue from ``darkpool.market.top_venue``;
each window's final (ON_TIME) market pane and the liquidity panes of its venues with blocks go, in window
order, into the pipeline's own :class:`pipeline.transforms.alerts.DetectAlertsFn` (its ``process`` with
an in-memory keyed state per symbol, as a runner would call it). EARLY panes are not simulated: the
figures are those of a job that only fires on time. ``--variant`` scores the same panes at other
settings too.

Usage: .venv/bin/python bench/bench_alerts_quality.py [--seeds 1 2 3 4 5] [--rate 2000] [--minutes 60]
       [--scenarios 15] [--jobs 2] [--plain-tapes] [--variant 'block_thresholds=12,18,27' ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "pipeline"))

from pipeline_testkit import detector_panes, recompute, run_detectors  # noqa: E402

from darkpool.alerts import DEFAULT_SETTINGS, DetectorSettings  # noqa: E402
from darkpool.contracts import ALERT_KINDS, SEVERITIES, SIDES, format_event_time, severity_rank  # noqa: E402
from feed.generator import F_NONE, FeedConfig, TapeGenerator, feed_random_scenarios  # noqa: E402
from feed.scenarios import EXPECTED_ALERT, SCENARIO_KINDS, ScenarioWindow  # noqa: E402
from feed.universe import DEFAULT_UNIVERSE  # noqa: E402

MINUTE_MS = 60_000
WINDOW_MS = 5 * MINUTE_MS  # the pipeline's defaults: 5-minute windows every minute
PERIOD_MS = MINUTE_MS
ALLOWED_LATENESS_MS = 10 * MINUTE_MS
SESSION_START_MS = 1_795_532_400_000  # 2026-11-24 14:40 UTC (09:40 New York), a whole minute
CHUNK_MS = 15 * MINUTE_MS  # window starts recomputed per chunk (bounds the exploded frame's memory)
SIDE_TEXT = np.array([*SIDES, None], dtype=object)  # generator side codes 0 buy, 1 sell, 2 unknown


@dataclass(frozen=True)
class Session:
    """The measured session's layout: warm-up, the measured hour(s) of window starts, the tape's span."""

    first_ms: int  # the first print
    scored_from_ms: int  # windows starting here ...
    scored_to_ms: int  # ... up to (excluded) here are counted
    end_ms: int  # the tape's end (the last counted window is complete)

    @classmethod
    def layout(cls, minutes: float, settings: DetectorSettings = DEFAULT_SETTINGS,
               start_ms: int = SESSION_START_MS) -> Session:
        """A warm-up of ``min_baseline_windows`` periods (a window starting m periods after the first print
        has m earlier, non-overlapping windows), then ``minutes`` of window starts, then one window."""
        scored_from = start_ms + settings.min_baseline_windows * PERIOD_MS
        scored_to = scored_from + int(round(minutes * MINUTE_MS))
        return cls(start_ms, scored_from, scored_to, scored_to - PERIOD_MS + WINDOW_MS)

    @property
    def hours(self) -> float:
        return (self.scored_to_ms - self.scored_from_ms) / 3_600_000


@dataclass
class Run:
    """One tape's alerts (the highest severity per symbol, kind and window) and what it was made of."""

    seed: int
    symbols: tuple[str, ...]
    trades: int
    alerts: dict[tuple[str, str, int], dict[str, Any]]  # (symbol, kind, window start ms) -> its last record
    records: int  # alert records sent (an alert raised within its window sends more than one)
    windows: list[ScenarioWindow] = field(default_factory=list)
    seconds: float = 0.0


def universe_rate(symbols: Sequence[str] | None, rate: float) -> float:
    """The rate that gives each of ``symbols`` the prints per second it has in the whole default universe
    at ``rate`` (the generator draws symbols by activity)."""
    if not symbols:
        return rate
    activity = {spec.symbol: spec.activity for spec in DEFAULT_UNIVERSE}
    return rate * sum(activity[s] for s in symbols) / sum(activity.values())


def tape(config: FeedConfig, rate: float, session: Session) -> tuple[pd.DataFrame, TapeGenerator]:
    """The live-mode tape from the session's first print to its end at ``rate`` prints/s, as the trades
    frame ``recompute`` reads (event_ms, symbol, venue, price, quantity, side)."""
    generator = TapeGenerator(config)
    n = int(round(rate * (session.end_ms - session.first_ms) / 1000))
    times = session.first_ms + np.arange(n, dtype=np.int64) * (session.end_ms - session.first_ms) // n
    batches = [generator.batch(times[i:i + config.batch_size]) for i in range(0, n, config.batch_size)]
    cols = {k: np.concatenate([getattr(b, k) for b in batches]) for k in ("ts", "sym", "venue", "price", "qty",
                                                                        "side", "fault")}
    if not (cols["fault"] == F_NONE).all():  # no faults configured: every print counts
        raise AssertionError("the quality tape must be fault-free")
    m = generator.market
    frame = pd.DataFrame({
        # categoricals: recompute maps each venue to dark/lit once per category and groups on codes (the
        # same panes as with strings, about 7x faster; tests/pipeline/test_alert_quality.py checks it)
        "event_ms": cols["ts"], "symbol": pd.Categorical(np.asarray(m.symbols, dtype=object)[cols["sym"]]),
        "venue": pd.Categorical(np.asarray(m.venues, dtype=object)[cols["venue"]]),
        "price": cols["price"], "quantity": cols["qty"], "side": SIDE_TEXT[cols["side"]],
    })
    return frame, generator


def window_panes(trades: pd.DataFrame, session: Session) -> Iterator[tuple[int, list[dict], list[dict]]]:
    """(window start ms, market panes, liquidity panes of venues with blocks) per window, in window order,
    from the first window holding a print to the last counted one; each pane has exactly the fields
    DetectAlertsFn reads (MARKET_PANE_FIELDS / BLOCK_PANE_FIELDS), as a final ON_TIME pane."""
    first = session.first_ms - session.first_ms % PERIOD_MS - WINDOW_MS + PERIOD_MS
    for lo in range(first, session.scored_to_ms, CHUNK_MS):
        hi = min(lo + CHUNK_MS, session.scored_to_ms)
        # every print of the windows starting in [lo, hi) lies in [lo, hi + window)
        part = trades[(trades["event_ms"] >= lo) & (trades["event_ms"] < hi - PERIOD_MS + WINDOW_MS)]
        liquidity, market = recompute(part, WINDOW_MS, PERIOD_MS)
        liquidity = liquidity[(liquidity["window_start"] >= lo) & (liquidity["window_start"] < hi)]
        market = market[(market["window_start"] >= lo) & (market["window_start"] < hi)]
        yield from detector_panes(liquidity, market, WINDOW_MS)


def detect(panes: Iterable[tuple[int, list[dict], list[dict]]], session: Session,
           settings: DetectorSettings = DEFAULT_SETTINGS) -> tuple[dict[tuple[str, str, int], dict], int]:
    """The pipeline's DetectAlertsFn over the panes (per window: each symbol's market pane, then its
    venues' block panes) -> ({(symbol, kind, window start ms): its highest-severity record} of the counted
    windows, records sent there)."""
    found: dict[tuple[str, str, int], dict] = {}
    records = 0
    for start, alert in run_detectors(panes, settings, PERIOD_MS, WINDOW_MS, ALLOWED_LATENESS_MS,
                                      now_s=session.end_ms / 1000):
        if not session.scored_from_ms <= start < session.scored_to_ms:
            continue
        records += 1
        key = (alert["symbol"], alert["kind"], start)
        seen = found.get(key)
        if seen is None or severity_rank(alert["severity"]) > severity_rank(seen["severity"]):
            found[key] = alert
    return found, records


def seed_panes(seed: int, rate: float, session: Session, scenarios: int = 0,
               symbols: Sequence[str] | None = None) -> tuple[list, tuple[str, ...], int, list[ScenarioWindow]]:
    """One seed's tape (with ``scenarios`` random scenarios placed within the measured hour) -> (its panes in
    window order, its symbols, its trades, the scenarios' windows)."""
    config = FeedConfig(seed=seed, mode="live", symbols=tuple(symbols) if symbols else None)
    if scenarios:
        # random_scenarios places them from 2 minutes into its horizon: shifted past the warm-up, the
        # measured span is their horizon
        warmup_s = (session.scored_from_ms - session.first_ms) / 1000
        drawn = feed_random_scenarios(config, scenarios, horizon_seconds=session.hours * 3600)
        config = replace(config, scenarios=tuple(replace(s, offset_seconds=s.offset_seconds + warmup_s)
                                                 for s in drawn))
    trades, generator = tape(config, universe_rate(symbols, rate), session)
    windows = list(generator.scenarios.windows) if generator.scenarios is not None else []
    return list(window_panes(trades, session)), tuple(generator.market.symbols), len(trades), windows


def run(seed: int, rate: float, session: Session, scenarios: int = 0, symbols: Sequence[str] | None = None,
        settings: Sequence[DetectorSettings] = (DEFAULT_SETTINGS,)) -> list[Run]:
    """One seed's tape -> its alerts at each of ``settings`` (the panes made once)."""
    began = time.perf_counter()
    panes, names, trades, windows = seed_panes(seed, rate, session, scenarios, symbols)
    made = time.perf_counter() - began
    print(f"  seed {seed}: {trades:,} trades, {len(panes)} windows of panes in {made:.0f} s", flush=True)
    runs = []
    for index, variant in enumerate(settings, 1):
        began = time.perf_counter()
        alerts, records = detect(panes, session, variant)
        runs.append(Run(seed, names, trades, alerts, records, windows, made + time.perf_counter() - began))
        print(f"  seed {seed}: settings {index}/{len(settings)} scored in {time.perf_counter() - began:.0f} s",
              flush=True)
    return runs


# --- the figures -------------------------------------------------------------------------------------
def episodes(alerts: Iterable[tuple[str, str, int]]) -> int:
    """A symbol's alerts of one kind in overlapping windows (starts less than a window apart) count once."""
    starts: dict[tuple[str, str], list[int]] = defaultdict(list)
    for symbol, kind, start in alerts:
        starts[(symbol, kind)].append(start)
    count = 0
    for values in starts.values():
        values.sort()
        count += 1 + sum(1 for a, b in zip(values, values[1:], strict=False) if b - a >= WINDOW_MS)
    return count


def clean_symbols(r: Run) -> set[str]:
    """The run's symbols no scenario touched (their trades are those of the tape without scenarios: a
    scenario only adds trades, from its own random stream, on its own symbol)."""
    return set(r.symbols) - {window.symbol for window in r.windows}


def false_positives(runs: Sequence[Run], session: Session) -> dict[str, Any]:
    """Alerts per kind and severity, per symbol-hour, and episodes, on the symbols without a scenario."""
    alerts = [(key, alert) for r in runs for key, alert in r.alerts.items() if key[0] in clean_symbols(r)]
    per = Counter((key[1], alert["severity"]) for key, alert in alerts)
    symbol_hours = sum(len(clean_symbols(r)) for r in runs) * session.hours
    return {"symbol_hours": symbol_hours, "alerts": len(alerts), "per_kind_severity": per,
            "per_symbol_hour": len(alerts) / symbol_hours if symbol_hours else 0.0,
            "episodes": episodes(key for key, _ in alerts),
            "per_kind_per_symbol_hour": {k: sum(n for (kind, _), n in per.items() if kind == k) / symbol_hours
                                         for k in ALERT_KINDS}}


def scenario_outcomes(mixed: Run) -> list[tuple[ScenarioWindow, bool, bool]]:
    """(scenario, detected: its expected kind fired for its symbol in a window overlapping it, and named its
    venue where the kind names one)."""
    outcomes = []
    for window in mixed.windows:
        kind = EXPECTED_ALERT[window.name]
        hits = [alert for (symbol, k, start), alert in mixed.alerts.items()
                if symbol == window.symbol and k == kind and start < window.end_ms
                and start + WINDOW_MS > window.start_ms]
        outcomes.append((window, bool(hits), any(window.venue in (None, a["venue"]) for a in hits)))
    return outcomes


def recall(mixed: Sequence[Run]) -> dict[str, tuple[int, int, int]]:
    """Scenario kind -> (detected, detected naming the venue, injected)."""
    counts = {kind: [0, 0, 0] for kind in SCENARIO_KINDS}
    for r in mixed:
        for window, hit, venue_hit in scenario_outcomes(r):
            counts[window.name][0] += hit
            counts[window.name][1] += venue_hit
            counts[window.name][2] += 1
    return {kind: (d, v, n) for kind, (d, v, n) in counts.items()}


def print_false_positives(title: str, figures: dict[str, Any]) -> None:
    per = figures["per_kind_severity"]
    cells = ", ".join(f"{kind} {'/'.join(str(per[(kind, s)]) for s in SEVERITIES)}" for kind in ALERT_KINDS)
    print(f"  {title}: {figures['symbol_hours']:.0f} symbol-hours, {figures['alerts']} alerts "
          f"({figures['per_symbol_hour']:.3f} per symbol-hour; {figures['episodes']} episodes); "
          f"per kind low/medium/high: {cells}", flush=True)


def print_recall(title: str, counts: dict[str, tuple[int, int, int]]) -> None:
    detected = sum(d for d, _, _ in counts.values())
    injected = sum(n for _, _, n in counts.values())
    cells = ", ".join(f"{kind} {d}/{n} (venue named {v}/{n})" for kind, (d, v, n) in counts.items())
    share = f"{detected / injected:.0%}" if injected else "n/a"
    print(f"  {title}: recall {detected}/{injected} = {share}; {cells}", flush=True)


def settings_with(changes: Sequence[str]) -> DetectorSettings:
    """DetectorSettings with ``SETTING=VALUE`` changes (a threshold triple as three comma-separated scores)."""
    values: dict[str, Any] = {}
    for change in changes:
        name, _, text = change.partition("=")
        default = getattr(DEFAULT_SETTINGS, name, None)
        if default is None:
            raise SystemExit(f"--set: unknown setting {name!r}")
        if isinstance(default, tuple):
            values[name] = tuple(float(v) for v in text.split(","))
        else:
            values[name] = type(default)(text)
    return replace(DEFAULT_SETTINGS, **values)


def print_quality(runs: Sequence[Run], session: Session) -> None:
    figures = false_positives(runs, session)
    print_false_positives("false positives", figures)
    print("    per kind per symbol-hour: " + ", ".join(f"{k} {v:.3f}"
                                                       for k, v in figures["per_kind_per_symbol_hour"].items()))
    print_recall("scenarios", recall(runs))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--rate", type=float, default=2000.0, help="trades/s over the whole universe (the demo's)")
    parser.add_argument("--minutes", type=float, default=60.0, help="measured minutes of window starts per seed")
    parser.add_argument("--scenarios", type=int, default=15, help="random scenarios per seed (distinct symbols)")
    parser.add_argument("--plain-tapes", action="store_true",
                        help="also each seed's tape without scenarios: false positives over all its symbols "
                             "(twice the time; by default they are counted on the symbols without a scenario)")
    parser.add_argument("--jobs", type=int, default=2, help="seeds measured in parallel (processes)")
    parser.add_argument("--variant", action="append", default=[], metavar="'SETTING=VALUE ...'",
                        help="also measure at other DetectorSettings on the same panes, e.g. "
                             "'block_min_blocks=8 block_thresholds=8,12,18'; repeatable")
    args = parser.parse_args(argv)
    variants = {"defaults": DEFAULT_SETTINGS} | {text: settings_with(text.split()) for text in args.variant}
    session = Session.layout(args.minutes)
    began = time.perf_counter()
    print(f"alert quality: {len(args.seeds)} seeds, {args.rate:,.0f} trades/s over the default universe, "
          f"{session.hours * 60:.0f} measured minutes of windows after a "
          f"{DEFAULT_SETTINGS.min_baseline_windows}-minute warm-up, 5-minute windows every minute, "
          f"{args.scenarios} random scenarios per seed; settings: {', '.join(variants)}", flush=True)
    results: dict[str, list[Run]] = {name: [] for name in variants}
    plain_results: dict[str, list[Run]] = {name: [] for name in variants}
    measure = partial(run, rate=args.rate, session=session, scenarios=args.scenarios,
                      settings=list(variants.values()))
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        seed_runs = list(zip(args.seeds, pool.map(measure, args.seeds), strict=True))
    for seed, runs in seed_runs:
        print(f"seed {seed}: {runs[0].trades:,} trades, {len(runs[0].windows)} scenarios, "
              f"{runs[0].seconds:.0f} s", flush=True)
        for name, r in zip(variants, runs, strict=True):
            results[name].append(r)
            print(f" {name}:")
            print_false_positives(f"seed {seed}", false_positives([r], session))
            for window, hit, venue_hit in scenario_outcomes(r):
                if not (hit and venue_hit):
                    print(f"    missed: {window.spec} ({format_event_time(window.start_ms)}): "
                          f"{'detected, naming another venue' if hit else 'not detected'}", flush=True)
            print_recall(f"seed {seed}", recall([r]))
        if args.plain_tapes:
            plain = run(seed, args.rate, session, settings=list(variants.values()))
            print(f"seed {seed} without scenarios: {plain[0].trades:,} trades, {plain[0].seconds:.0f} s", flush=True)
            for name, r, mixed in zip(variants, plain, runs, strict=True):
                plain_results[name].append(r)
                same = {k: a["severity"] for k, a in r.alerts.items() if k[0] in clean_symbols(mixed)} == {
                    k: a["severity"] for k, a in mixed.alerts.items() if k[0] in clean_symbols(mixed)}
                print(f" {name}: the symbols without a scenario alert as in the tape with them: {same}")
                print_false_positives(f"seed {seed}, all symbols", false_positives([r], session))
    for name in variants:
        print(f"overall, {name}:")
        print_quality(results[name], session)
        if args.plain_tapes:
            print_false_positives("without scenarios, all symbols", false_positives(plain_results[name], session))
    print(f"run time {time.perf_counter() - began:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
