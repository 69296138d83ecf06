"""Injected scenarios (feed.scenarios) without a broker: each moves its own figure far beyond the same seed's
untouched tape, the trades are valid and labelled, tapes are reproducible, the spec parser, the summary."""

from __future__ import annotations

import datetime as dt
import io
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest
from feed_checks import validation_error
from hypothesis import given, settings
from hypothesis import strategies as st

from console.cli import main
from darkpool.alerts import (
    detect_block_cluster,
    detect_dark_share_surge,
    detect_venue_concentration,
    window_figures,
)
from darkpool.contracts import (
    ALERT_BLOCK_CLUSTER,
    ALERT_DARK_SHARE_SURGE,
    ALERT_VENUE_CONCENTRATION,
    BLOCK_MIN_SHARES,
    format_event_time,
    load_venues,
    parse_event_time,
)
from darkpool.errors import DarkpoolError
from darkpool.market import dark_share, hhi, is_block, is_dark, top_venue
from feed.generator import (
    SCENARIO_SEQ_BASE,
    FaultConfig,
    FeedConfig,
    Shard,
    TapeGenerator,
    TapeRecord,
    feed_random_scenarios,
    generate_batches,
    generate_tape,
)
from feed.live import live_batches
from feed.scenarios import (
    ALIGN_MS,
    BLOCK_CLUSTER,
    CLUSTER_VOLUME_SHARE,
    DARK_SHARE_SURGE,
    DEFAULT_DURATION_SECONDS,
    EXPECTED_ALERT,
    FALLBACK_BLOCK_SHARES,
    SCENARIO_KINDS,
    VENUE_TAKEOVER,
    Scenario,
    balancing_shares,
    cluster_block_mean,
    parse_scenario,
    prints_to_fill,
    scenario_window,
    topup_shares,
)
from feed.summary import FeedSummary, FeedTotals, merge_scenario_rows
from feed.tape import TapeWriter, read_tape

SESSION = dt.date(2026, 11, 24)
SYMBOLS = ("AAPL", "MSFT", "NVDA", "SPY", "F", "KO", "JPM", "TSLA")
SURGE = "dark_share_surge:AAPL@2026-11-24T15:00:00Z"
CLUSTER = "block_cluster:MSFT@2026-11-24T15:10:00Z"
TAKEOVER = "venue_takeover:NVDA:UBSA@2026-11-24T15:20:00Z"
Tapes = tuple[list[dict], list[dict], TapeGenerator]  # the tape without scenarios, with them, its generator
FAULTY = FaultConfig(out_of_order_rate=0.02, late_rate=0.01, malformed_rate=0.02, duplicate_rate=0.01)


def config(*specs: str, **changes: object) -> FeedConfig:
    base = FeedConfig(seed=3, session_trades=60_000, session_date=SESSION, symbols=SYMBOLS,
                      scenarios=tuple(parse_scenario(s) for s in specs))
    return replace(base, **changes)


def trades(cfg: FeedConfig) -> list[dict]:
    """The tape's trades as the pipeline aggregates them (valid, not late, not duplicates), from their text,
    with the scenario label of their record."""
    rows = []
    for record in generate_tape(cfg):
        if record.fault not in (None, "out_of_order"):
            continue
        trade = orjson.loads(record.value)
        trade["ms"] = parse_event_time(trade["event_time"])
        trade["scenario"], trade["scenario_index"] = record.scenario, record.scenario_index
        rows.append(trade)
    return rows


def in_window(rows: list[dict], symbol: str, start_ms: int, end_ms: int) -> list[dict]:
    return [t for t in rows if t["symbol"] == symbol and start_ms <= t["ms"] < end_ms]


def venue_quantities(rows: list[dict]) -> dict[str, int]:
    quantities: dict[str, int] = defaultdict(int)
    for t in rows:
        quantities[t["venue"]] += t["quantity"]
    return quantities


def window_dark_share(rows: list[dict]) -> float:
    venues = load_venues()
    dark = sum(t["quantity"] for t in rows if is_dark(venues[t["venue"]].venue_type))
    share = dark_share(dark, sum(t["quantity"] for t in rows))
    assert share is not None
    return share


def blocks_per_venue_minute(rows: list[dict]) -> Counter[tuple[str, int]]:
    return Counter((t["venue"], t["ms"] // ALIGN_MS) for t in rows if is_block(t["price"], t["quantity"]))


@pytest.fixture(scope="module")
def tapes() -> Tapes:
    """The same seed's tape without and with one scenario of each kind."""
    with_scenarios = config(SURGE, CLUSTER, TAKEOVER)
    generator = TapeGenerator(with_scenarios)
    for _ in generator.replay_batches():
        pass
    return trades(config()), trades(with_scenarios), generator


def test_dark_share_surge_lifts_the_symbols_dark_share_only(tapes: Tapes) -> None:
    base, scen, generator = tapes
    window = generator.scenarios.windows[0]
    assert (window.name, window.symbol, window.venue) == (DARK_SHARE_SURGE, "AAPL", None)
    before = in_window(base, "AAPL", window.start_ms, window.end_ms)
    after = in_window(scen, "AAPL", window.start_ms, window.end_ms)
    assert window_dark_share(before) < 0.6
    assert window_dark_share(after) >= 0.9  # the target, reached from below by the last top-up
    for minute in range(window.start_ms, window.end_ms, ALIGN_MS):  # each minute of it, not only on average
        assert window_dark_share(in_window(scen, "AAPL", minute, minute + ALIGN_MS)) >= 0.85
    # spread over the dark venues, below the block limits: no concentration jump, no block added
    assert hhi(venue_quantities(after)) <= hhi(venue_quantities(before))
    added = [t for t in after if t["scenario"] == DARK_SHARE_SURGE]
    assert len({t["venue"] for t in added}) == sum(1 for v in load_venues().values() if is_dark(v.venue_type))
    assert not any(is_block(t["price"], t["quantity"]) for t in added)


def test_block_cluster_puts_eight_blocks_on_one_venue_in_one_minute(tapes: Tapes) -> None:
    base, scen, generator = tapes
    window = generator.scenarios.windows[1]
    assert (window.name, window.symbol) == (BLOCK_CLUSTER, "MSFT") and window.venue is not None
    assert is_dark(load_venues()[window.venue].venue_type)
    assert window.end_ms - window.start_ms == ALIGN_MS and window.start_ms % ALIGN_MS == 0
    minute = window.start_ms // ALIGN_MS
    baseline = blocks_per_venue_minute([t for t in base if t["symbol"] == "MSFT"])
    after = blocks_per_venue_minute(in_window(scen, "MSFT", window.start_ms, window.end_ms))
    assert after[(window.venue, minute)] == 8 + baseline[(window.venue, minute)]
    # far beyond anything the untouched session prints on one venue in one minute
    assert after[(window.venue, minute)] >= 2 * max(baseline.values())
    added = [t for t in scen if t["scenario"] == BLOCK_CLUSTER]
    blocks = [t for t in added if t["venue"] == window.venue]
    assert len(blocks) == 8 and all(t["quantity"] >= BLOCK_MIN_SHARES for t in blocks)
    # the balancing prints: lit, no blocks, keeping the dark share of the 5 minutes before
    venues = load_venues()
    balancing = [t for t in added if t["venue"] != window.venue]
    assert balancing and not any(is_dark(venues[t["venue"]].venue_type) for t in balancing)
    assert not any(is_block(t["price"], t["quantity"]) for t in balancing)
    before = in_window(scen, "MSFT", window.start_ms - 5 * ALIGN_MS, window.start_ms)
    assert abs(window_dark_share(in_window(scen, "MSFT", window.start_ms, window.end_ms))
               - window_dark_share(before)) < 0.05
    top = top_venue(venue_quantities(in_window(scen, "MSFT", window.start_ms - 4 * ALIGN_MS, window.end_ms)))[1]
    assert top is not None and top < 0.5


def test_block_cluster_sizes_follow_the_symbols_volume() -> None:
    """Blocks carry CLUSTER_VOLUME_SHARE of the symbol's volume in the 5 minutes before (at a rate where
    that is more than 8 blocks of 10,000 shares), in live mode at two rates."""
    shares = {}
    for rate in (400, 1600):
        start = 1_795_000_000_000 // ALIGN_MS * ALIGN_MS
        scenario = Scenario(BLOCK_CLUSTER, "NVDA", "LATS", offset_seconds=300.0)
        generator = TapeGenerator(FeedConfig(seed=5, mode="live", scenarios=(scenario,)))
        n = rate * 6 * 60
        times = start + np.arange(n, dtype=np.int64) * 1000 // rate
        batches = [generator.batch(times[i:i + 4096]) for i in range(0, n, 4096)]
        s = generator.market.symbols.index("NVDA")
        volume = sum(int(b.qty[(b.sym == s) & (b.scenario < 0) & (b.ts < start + 300_000)].sum()) for b in batches)
        blocks = sum(int(b.qty[(b.scenario == 0) & (b.venue == generator.market.venues.index("LATS"))].sum())
                     for b in batches)
        assert blocks == pytest.approx(CLUSTER_VOLUME_SHARE * volume, rel=0.15)
        shares[rate] = blocks
    assert shares[1600] > 3 * shares[400]
    assert cluster_block_mean(0, 10.0, 8) == cluster_block_mean(10**9, 10.0, 8) == FALLBACK_BLOCK_SHARES
    assert cluster_block_mean(8 * 10**6, 300.0, 8) == 300_000 and cluster_block_mean(1000, 300.0, 8) == BLOCK_MIN_SHARES
    assert balancing_shares(80_000, 0.4) == 120_000 and balancing_shares(100, 0.01) == 400


def test_venue_takeover_gives_the_venue_most_of_the_volume(tapes: Tapes) -> None:
    base, scen, generator = tapes
    window = generator.scenarios.windows[2]
    assert (window.name, window.symbol, window.venue) == (VENUE_TAKEOVER, "NVDA", "UBSA")
    before = venue_quantities(in_window(base, "NVDA", window.start_ms, window.end_ms))
    after = venue_quantities(in_window(scen, "NVDA", window.start_ms, window.end_ms))
    top_before, share_before = top_venue(before)
    assert share_before is not None and share_before < 0.4
    assert top_venue(after)[0] == "UBSA" and top_venue(after)[1] >= 0.8
    assert (hhi(after) or 0) > 3 * (hhi(before) or 0)
    added = [t for t in scen if t["scenario"] == VENUE_TAKEOVER]
    assert {t["venue"] for t in added} == {"UBSA"}
    assert not any(is_block(t["price"], t["quantity"]) for t in added)


def test_scenario_trades_are_valid_labelled_and_inside_their_window() -> None:
    cfg = config(SURGE, CLUSTER, TAKEOVER, faults=FAULTY)
    generator = TapeGenerator(cfg)
    records = [r for b in generator.replay_batches() for r in generator.encode(b).records()]
    windows = generator.scenarios.windows
    ids = [orjson.loads(r.value)["trade_id"] for r in records if r.fault is None or r.fault == "out_of_order"]
    assert len(ids) == len(set(ids))
    made = [r for r in records if r.scenario is not None]
    assert {r.scenario_index for r in made} == {0, 1, 2}
    for record in made:
        window = windows[record.scenario_index]
        trade = orjson.loads(record.value)
        assert record.fault is None and validation_error(record.value, record.timestamp_ms) is None
        assert record.scenario == window.name and trade["symbol"] == window.symbol == record.key
        assert window.start_ms <= record.timestamp_ms < window.end_ms
        assert int(trade["trade_id"].removeprefix("T-")) >= SCENARIO_SEQ_BASE
        assert trade["trade_id"].startswith(f"T-1{record.scenario_index:02d}") and len(trade["trade_id"]) == 15
    # never out of order: each scenario trade is at or after every earlier record of its symbol
    latest: dict[str, int] = {}
    for record in records:
        if record.scenario is not None:
            assert record.timestamp_ms >= latest.get(record.key, 0)
        if record.fault is None:
            latest[record.key] = max(latest.get(record.key, 0), record.timestamp_ms)


def test_a_scenario_only_adds_trades_the_tape_is_otherwise_unchanged() -> None:
    """Without the scenario's records the tape is the same seed's tape without scenarios, byte for byte,
    faults included: a scenario draws from its own generator and never touches the tape's trades."""
    plain = [r.to_json() for r in generate_tape(config(faults=FAULTY))]
    mixed = list(generate_tape(config(SURGE, CLUSTER, TAKEOVER, faults=FAULTY)))
    assert len(mixed) > len(plain)
    assert [r.to_json() for r in mixed if r.scenario is None] == plain


def test_no_scenario_tape_lines_keep_todays_format() -> None:
    cfg = config(faults=FAULTY, count=20_000)
    stream = io.BytesIO()
    writer = TapeWriter(stream)
    for batch in generate_batches(cfg):
        assert batch.scenario is None and batch.scenarios == ()
        writer.write(batch)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 20_000
    assert lines == [r.to_json() for r in generate_tape(cfg)]
    assert {tuple(orjson.loads(line)) for line in lines} == {("key", "timestamp_ms", "value", "fault")}


def test_tape_out_carries_the_scenario_and_reads_back(tmp_path: Path) -> None:
    cfg = config(SURGE, CLUSTER, count=40_000)
    path = tmp_path / "tape.jsonl"
    with open(path, "wb") as stream:
        writer = TapeWriter(stream)
        for batch in generate_batches(cfg):
            writer.write(batch)
    back = list(read_tape(path))
    assert back == list(generate_tape(cfg))
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    labelled = [line for line in lines if "scenario" in line]
    assert labelled and {(line["scenario"], line["scenario_index"]) for line in labelled} == {
        (DARK_SHARE_SURGE, 0), (BLOCK_CLUSTER, 1)}
    assert all(set(line) == {"key", "timestamp_ms", "value", "fault"} for line in lines if "scenario" not in line)


def test_the_same_seed_gives_the_same_tape_with_scenarios() -> None:
    cfg = config(SURGE, CLUSTER, TAKEOVER, faults=FAULTY, count=40_000)
    first = [r.to_json() for r in generate_tape(cfg)]
    assert first == [r.to_json() for r in generate_tape(cfg)]
    other = [r.to_json() for r in generate_tape(replace(cfg, seed=4))]
    assert other != first


def test_shards_together_send_the_single_process_tape_and_summary() -> None:
    cfg = config(SURGE, CLUSTER, TAKEOVER)
    single = FeedTotals()
    for batch in generate_batches(cfg):
        single.add(batch)
    parts = []
    for index in range(2):
        totals = FeedTotals()
        for batch in generate_batches(cfg, shard=Shard(index, 2)):
            totals.add(batch)
        summary = FeedSummary(topic="t", bootstrap="b")
        totals.fill(summary)
        parts.append(summary.scenarios)
    whole = FeedSummary(topic="t", bootstrap="b")
    single.fill(whole)
    assert merge_scenario_rows(parts) == whole.scenarios


def test_summary_lists_each_scenario_with_what_it_added() -> None:
    cfg = config(SURGE, CLUSTER, TAKEOVER, faults=FAULTY)
    totals = FeedTotals()
    sent: dict[int, list[int]] = defaultdict(list)
    for batch in generate_batches(cfg):
        totals.add(batch)
        for record in batch.records():
            if record.scenario_index is not None:
                sent[record.scenario_index].append(orjson.loads(record.value)["quantity"])
    summary = FeedSummary(topic="t", bootstrap="b", mode="replay", seed=3)
    totals.fill(summary)
    rows = summary.to_dict()["scenarios"]
    assert [(r["index"], r["name"], r["symbol"]) for r in rows] == [
        (0, DARK_SHARE_SURGE, "AAPL"), (1, BLOCK_CLUSTER, "MSFT"), (2, VENUE_TAKEOVER, "NVDA")]
    assert rows[0]["venue"] is None and rows[2]["venue"] == "UBSA" and rows[1]["venue"]
    for row in rows:
        assert row["trades"] == len(sent[row["index"]]) > 0
        assert row["shares"] == sum(sent[row["index"]])
        assert parse_event_time(row["start"]) == row["start_ms"] and parse_event_time(row["end"]) == row["end_ms"]
    assert rows[0]["start"] == "2026-11-24T15:00:00.000Z" and rows[0]["end"] == "2026-11-24T15:03:00.000Z"
    text = summary.format()
    assert "scenarios (trades / shares added):" in text
    assert f"{rows[1]['trades']:>10,} {rows[1]['shares']:>14,}" in text
    assert "scenarios" not in FeedSummary(topic="t", bootstrap="b").format()


def test_offsets_count_from_the_first_print_and_windows_start_on_whole_minutes() -> None:
    cfg = config("venue_takeover:SPY:XNAS@+60s,for=90s")
    generator = TapeGenerator(cfg)
    first = next(generator.replay_batches())
    window = generator.scenarios.windows[0]
    start = int(first.release[0]) + 60_000
    assert window.start_ms == -(-start // ALIGN_MS) * ALIGN_MS and window.end_ms - window.start_ms == 120_000
    assert scenario_window(Scenario(BLOCK_CLUSTER, "MSFT", start_ms=1_795_532_430_000), 0) == (
        1_795_532_460_000, 1_795_532_520_000)


def test_live_feed_injects_a_scenario_in_the_current_minute() -> None:
    now = int(time.time() * 1000)
    minute = now // ALIGN_MS * ALIGN_MS
    scenario = Scenario(VENUE_TAKEOVER, "NVDA", "JPMX", start_ms=minute)
    generator = TapeGenerator(FeedConfig(seed=5, mode="live", scenarios=(scenario,)))
    records = [r for b in live_batches(generator, rate=20_000, count=3_000) for r in b.records()]
    assert len(records) == 3_000
    made = [r for r in records if r.scenario == VENUE_TAKEOVER]
    assert made and all(minute <= r.timestamp_ms <= time.time() * 1000 for r in made)
    assert all(orjson.loads(r.value)["venue"] == "JPMX" for r in made)
    stamps = [r.timestamp_ms for r in records if r.key == "NVDA"]
    assert stamps == sorted(stamps)


def test_random_scenarios_are_reproducible_and_cover_every_kind() -> None:
    cfg = config()
    drawn = feed_random_scenarios(cfg, 6, 3600.0)
    assert drawn == feed_random_scenarios(cfg, 6, 3600.0)
    assert drawn != feed_random_scenarios(replace(cfg, seed=4), 6, 3600.0)
    assert Counter(s.name for s in drawn) == dict.fromkeys(SCENARIO_KINDS, 2)
    assert len({s.symbol for s in drawn}) == 6
    for scenario in drawn:
        assert scenario.offset_seconds is not None
        assert 120 <= scenario.offset_seconds <= 3600 - DEFAULT_DURATION_SECONDS[scenario.name] - 60
        venues = load_venues()
        assert (scenario.venue is None) == (scenario.name == DARK_SHARE_SURGE)
        assert scenario.venue is None or is_dark(venues[scenario.venue].venue_type)
    generator = TapeGenerator(replace(cfg, scenarios=drawn))
    made = Counter(int(i) for b in generator.replay_batches() for i in b.scenario[b.scenario >= 0])
    assert set(made) == set(range(6))


@pytest.mark.parametrize("text, expected", [
    ("dark_share_surge:AAPL@+60s", Scenario(DARK_SHARE_SURGE, "AAPL", offset_seconds=60.0)),
    ("block_cluster:MSFT:JPMX@+120s", Scenario(BLOCK_CLUSTER, "MSFT", "JPMX", offset_seconds=120.0)),
    ("venue_takeover:NVDA:UBSA@2026-12-01T14:35:00Z",
     Scenario(VENUE_TAKEOVER, "NVDA", "UBSA", start_ms=parse_event_time("2026-12-01T14:35:00Z"))),
    ("block_cluster:MSFT", Scenario(BLOCK_CLUSTER, "MSFT")),
    ("dark_share_surge:TSLA@+2m,for=5m,share=0.95",
     Scenario(DARK_SHARE_SURGE, "TSLA", offset_seconds=120.0, duration_seconds=300.0, share=0.95)),
    ("block_cluster:F:LATS@+90,blocks=12,block_shares=50000",
     Scenario(BLOCK_CLUSTER, "F", "LATS", offset_seconds=90.0, blocks=12, block_shares=50_000)),
    ("venue_takeover:SPY:XNAS@2026-12-01T09:35:00-05:00,share=0.7",
     Scenario(VENUE_TAKEOVER, "SPY", "XNAS", start_ms=parse_event_time("2026-12-01T14:35:00Z"), share=0.7)),
])
def test_spec_forms(text: str, expected: Scenario) -> None:
    parsed = parse_scenario(text)
    assert parsed == expected
    assert parse_scenario(parsed.to_spec()) == parsed


@pytest.mark.parametrize("text, message", [
    ("dark_pool_party:AAPL", "unknown scenario kind 'dark_pool_party'"),
    ("block_cluster", "no symbol"),
    ("block_cluster:MSFT:JPMX:XNAS", "expected KIND:SYMBOL[:VENUE]"),
    ("dark_share_surge:AAPL:UBSA", "a dark-share surge takes no venue"),
    ("dark_share_surge:AAPL@", "nothing after '@'"),
    ("dark_share_surge:AAPL@+soon", "is not a duration"),
    ("dark_share_surge:AAPL@tomorrow", "neither +<duration> nor an ISO-8601 event time"),
    ("dark_share_surge:AAPL,blocks=3", "blocks does not apply to dark_share_surge"),
    ("block_cluster:MSFT,colour=red", "unknown option 'colour=red'"),
    ("venue_takeover:NVDA,share=1.2", "share must be above 0 and below 1"),
    ("block_cluster:MSFT,block_shares=500", "block_shares must be >= 10,000"),
    ("block_cluster:MSFT,blocks=many", "blocks='many' is not a valid value"),
    ("venue_takeover:NVDA,for=0s", "the duration must be > 0"),
])
def test_spec_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_scenario(text)
    assert message in str(error.value)


def test_a_malformed_spec_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["feed", "--scenario", "dark_pool_party:AAPL"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "argument --scenario: unknown scenario kind 'dark_pool_party'" in err


@pytest.mark.parametrize("args, message", [
    (["--scenario", "dark_share_surge:NOPE"], "unknown symbol 'NOPE'"),
    (["--scenario", "block_cluster:MSFT:XXXX"], "unknown venue 'XXXX'"),
    (["--symbols", "AAPL,MSFT", "--scenario", "venue_takeover:NVDA"], "unknown symbol 'NVDA'"),
    (["--from-file", "trades.csv", "--scenario", "block_cluster:MSFT"], "cannot be combined with --from-file"),
    (["--random-scenarios", "100"], "--random-scenarios must be >= 0, and at most 99"),
])
def test_unknown_symbols_and_venues_are_clear_errors(args: list[str], message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """In-process through the CLI (the scenarios are checked before any broker is asked)."""
    assert main(["feed", "--bootstrap", "127.0.0.1:1", *args]) == 1
    err = capsys.readouterr().err
    assert "darkpool feed: error:" in err and message in err and "Traceback" not in err


def test_unknown_symbol_names_the_feeds_symbols() -> None:
    with pytest.raises(DarkpoolError) as error:
        TapeGenerator(config("dark_share_surge:NOPE"))
    assert "unknown symbol 'NOPE'" in str(error.value) and "AAPL" in (error.value.hint or "")


def test_topup_and_fill_math() -> None:
    # 300 lit, 0 dark -> 2,700 dark for 90 %; already above the target -> nothing
    assert topup_shares(0, 300, 0.9) == 2700 and topup_shares(5000, 300, 0.9) == 0
    inside, outside = np.array([100, 0]), np.array([900, 1000])
    need = topup_shares(inside, outside, 0.8)
    assert ((inside + need) / (inside + need + outside) >= 0.8).all()
    assert prints_to_fill(np.array([100, 200, 300]), 250) == 2
    assert prints_to_fill(np.array([100, 200]), 1000) == 2 and prints_to_fill(np.array([100]), 0) == 0


def test_record_defaults_keep_old_tapes_readable() -> None:
    record = TapeRecord("AAPL", 1, "{}", None)
    assert record.scenario is None and orjson.loads(record.to_json()) == {
        "key": "AAPL", "timestamp_ms": 1, "value": "{}", "fault": None}


def window_alerts(generator: TapeGenerator, rate: int, minutes: int) -> set[tuple[int, str, str, str | None]]:
    """(window start ms, symbol, alert kind, venue) of every alert darkpool.alerts' detectors (default
    settings) find in a live tape of ``rate`` prints/s: the pipeline's windows (5 minutes every minute),
    each window's final figures, each symbol's earlier windows as its history."""
    start = 1_795_000_000_000 // ALIGN_MS * ALIGN_MS
    n = rate * minutes * 60
    times = start + np.arange(n, dtype=np.int64) * 1000 // rate
    batches = [generator.batch(times[i:i + 8192]) for i in range(0, n, 8192)]
    names = ("ts", "sym", "venue", "qty", "price", "fault")
    cols = {k: np.concatenate([getattr(b, k) for b in batches]) for k in names}
    counted = np.isin(cols["fault"], (0, 1))  # valid, not late, no duplicate
    cols = {k: v[counted] for k, v in cols.items()}
    market = generator.market
    shape = (len(market.symbols), minutes + 1, len(market.venues))
    at = (cols["sym"], (cols["ts"] - start) // ALIGN_MS, cols["venue"])
    block = np.frompyfunc(is_block, 2, 1)(cols["price"], cols["qty"]).astype(bool)
    sums = {name: np.zeros(shape) for name in ("qty", "trades", "block_qty", "blocks")}
    np.add.at(sums["qty"], at, cols["qty"])
    np.add.at(sums["trades"], at, 1)
    np.add.at(sums["block_qty"], tuple(a[block] for a in at), cols["qty"][block])
    np.add.at(sums["blocks"], tuple(a[block] for a in at), 1)
    history: dict[tuple[int, str], list[float | None]] = defaultdict(list)
    found = set()
    for first in range(-4, minutes):
        lo, hi = max(first, 0), first + 5
        for s, symbol in enumerate(market.symbols):
            per_venue = {k: v[s, lo:hi].sum(axis=0) for k, v in sums.items()}
            quantities = {market.venues[v]: int(q) for v, q in enumerate(per_venue["qty"]) if q > 0}
            if not quantities:
                continue
            dark = sum(q for v, q in quantities.items() if is_dark(load_venues()[v].venue_type))
            top, top_share = top_venue(quantities)
            key = {"symbol": symbol, "window_start": format_event_time(start + first * ALIGN_MS),
                   "window_end": format_event_time(start + hi * ALIGN_MS)}
            pane = {**key, "share_quantity": sum(quantities.values()), "trade_count": int(per_venue["trades"].sum()),
                    "dark_share": dark_share(dark, sum(quantities.values())), "top_venue": top,
                    "top_venue_share": top_share}
            venue_panes = [{**key, "venue": market.venues[v], "pane_index": 0, "share_quantity": int(q),
                            "trade_count": int(per_venue["trades"][v]), "block_count": int(per_venue["blocks"][v]),
                            "block_quantity": int(per_venue["block_qty"][v])}
                           for v, q in enumerate(per_venue["qty"]) if q > 0]
            for kind, detect, panes in ((ALERT_DARK_SHARE_SURGE, detect_dark_share_surge, pane),
                                        (ALERT_BLOCK_CLUSTER, detect_block_cluster, venue_panes),
                                        (ALERT_VENUE_CONCENTRATION, detect_venue_concentration, pane)):
                candidate = detect(panes, history[(s, kind)])
                if candidate is not None:
                    found.add((start + first * ALIGN_MS, symbol, kind, candidate.venue))
            for kind, figure in window_figures(pane, venue_panes).items():
                history[(s, kind)].append(figure)
    return found


def test_each_scenario_is_detected_by_its_own_detector_at_default_settings() -> None:
    """The detectors of darkpool.alerts at their defaults, over the pipeline's windows of a live tape
    (500 prints/s): each scenario raises its own kind of alert, for its symbol and venue, in the windows
    that hold it, which the same seed's tape without scenarios does not; a surge, a block cluster and a
    takeover by an exchange add no alert of another kind for their symbol (a dark venue's takeover lifts
    the dark share too)."""
    specs = ("dark_share_surge:AAPL@+600s", "block_cluster:MSFT@+660s", "venue_takeover:NVDA:UBSA@+720s",
             "venue_takeover:SPY:XNAS@+780s", "block_cluster:F@+840s")
    scenarios = tuple(parse_scenario(s) for s in specs)
    generator = TapeGenerator(FeedConfig(seed=5, mode="live", symbols=SYMBOLS, scenarios=scenarios))
    alerts = window_alerts(generator, 500, 20)
    plain = window_alerts(TapeGenerator(FeedConfig(seed=5, mode="live", symbols=SYMBOLS)), 500, 20)
    for window in generator.scenarios.windows:
        holding = range(window.start_ms - 4 * ALIGN_MS, window.end_ms, ALIGN_MS)  # windows that hold a minute of it
        kind = EXPECTED_ALERT[window.name]
        mine = {(t, k, v) for t, symbol, k, v in alerts if symbol == window.symbol and t in holding}
        assert any(k == kind and v == window.venue for _, k, v in mine), (window.spec, mine)
        assert not any(symbol == window.symbol and k == kind and t in holding for t, symbol, k, _ in plain)
        caused = {(t, k, v) for t, symbol, k, v in alerts - plain if symbol == window.symbol and t in holding}
        others = {k for _, k, _ in caused} - {kind}  # the untouched tape's own alerts (its block tail) aside
        if window.name == VENUE_TAKEOVER and is_dark(load_venues()[window.venue].venue_type):
            assert others <= {ALERT_DARK_SHARE_SURGE}
        else:
            assert not others, (window.spec, mine)


def test_a_scenario_begun_before_the_feed_sends_only_its_rest() -> None:
    """A window that started before the feed's first print adds trades from the first print on, never before."""
    now = int(time.time() * 1000)
    past = (now // ALIGN_MS - 1) * ALIGN_MS  # the previous minute: the window runs 2 minutes from there
    generator = TapeGenerator(FeedConfig(seed=5, mode="live", scenarios=(
        Scenario(BLOCK_CLUSTER, "MSFT", start_ms=past, duration_seconds=120.0),
        Scenario(DARK_SHARE_SURGE, "AAPL", start_ms=past))))
    records = [r for b in live_batches(generator, rate=20_000, count=2_000) for r in b.records()]
    first = min(r.timestamp_ms for r in records if r.scenario is None)
    made = [r for r in records if r.scenario is not None]
    assert made and min(r.timestamp_ms for r in made) >= first


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(SCENARIO_KINDS), symbol=st.sampled_from(SYMBOLS),
       venue=st.sampled_from((None, "UBSA", "XNAS")),
       start=st.one_of(st.none(), st.integers(1_700_000_000_000, 1_900_000_000_000)),
       offset=st.one_of(st.none(), st.floats(0, 86_400, allow_nan=False)),
       duration=st.one_of(st.none(), st.floats(0.001, 86_400, allow_nan=False)),
       share=st.one_of(st.none(), st.floats(0.01, 0.99)), blocks=st.integers(1, 50),
       block_shares=st.one_of(st.none(), st.integers(BLOCK_MIN_SHARES, 500_000)))
def test_every_scenario_reads_back_from_its_spec(kind: str, symbol: str, venue: str | None, start: int | None,
                                                 offset: float | None, duration: float | None, share: float | None,
                                                 blocks: int, block_shares: int | None) -> None:
    scenario = Scenario(kind, symbol, None if kind == DARK_SHARE_SURGE else venue,
                        start_ms=start, offset_seconds=None if start is not None else offset,
                        duration_seconds=duration, share=None if kind == BLOCK_CLUSTER else share,
                        blocks=blocks if kind == BLOCK_CLUSTER else 8,
                        block_shares=block_shares if kind == BLOCK_CLUSTER else None)
    assert parse_scenario(scenario.to_spec()) == scenario
