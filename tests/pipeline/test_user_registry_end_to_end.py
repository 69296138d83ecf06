"""A user migrating from the seed project: its CSV and its own venues, end to end through the real parts.

The seed project's trades file (columns ``timestamp, symbol, price, quantity, venue,
side, is_spoof, algo_fingerprint, order_type, order_id``; venues DARK1, DARK2 and
LIT; sides BUY / SELL) and a user venue registry declaring those venues (two ATSs,
one exchange, with coordinates) go through the product's own command line:

- on the real local Flink cluster: ``darkpool --venues FILE feed --from-file`` into
  a fresh trades topic, ``darkpool --venues FILE run`` (the stack's Python workers were
  started before, without the registry: it reaches them inside the job), then the
  serving API over the job's topics: ``/api/v1/venues`` lists the user venues with
  their coordinates, the liquidity windows show them, and nothing was dead-lettered;
- on the DirectRunner: ``darkpool --venues FILE run --runner direct --source file``,
  then ``darkpool --venues FILE analyze`` naming the venues from the registry; the
  same backfill without the registry dead-letters every trade as unknown_venue.

Final panes are checked against a pandas recomputation of the CSV that shares no
code with the product (its own window assignment and venue types).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from flink_support import PipelineRun, final_panes, read_topic, wait_until_consumed, wait_until_stable

from darkpool.config import Settings
from darkpool.stack.beam import worker_pool_service
from darkpool.stack.topics import end_offset

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED_COLUMNS = ("timestamp", "symbol", "price", "quantity", "venue", "side",
                "is_spoof", "algo_fingerprint", "order_type", "order_id")
USER_REGISTRY = """mpid,name,operator,venue_type,data_center,latitude,longitude
DARK1,Seed Dark Pool One,Seed Capital LLC,ATS,Secaucus NJ (NY4),40.7776,-74.0724
DARK2,Seed Dark Pool Two,Seed Capital LLC,ATS,Aurora IL (CH1),41.7606,-88.3201
LIT,Seed Lit Exchange,Seed Exchange Group,EXCHANGE,Mahwah NJ,41.0887,-74.1438
"""
# the recomputation's own view of the registry above
VENUE_TYPES = {"DARK1": "ATS", "DARK2": "ATS", "LIT": "EXCHANGE"}
COORDINATES = {"DARK1": (40.7776, -74.0724), "DARK2": (41.7606, -88.3201), "LIT": (41.0887, -74.1438)}
WINDOW_MS, PERIOD_MS = 5 * 60_000, 60_000
LIQUIDITY_KEY = ["window_start", "symbol", "venue"]
MARKET_KEY = ["window_start", "symbol"]


def seed_trades(n: int, end_ms: int, span_ms: int, seed: int = 7) -> pd.DataFrame:
    """n seed-project trades, in time order over [end_ms - span_ms, end_ms], blocks included."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(end_ms - span_ms, end_ms, n))
    symbols = rng.choice(["AAPL", "MSFT", "TSLA"], n)
    base = pd.Series(symbols).map({"AAPL": 271.4, "MSFT": 507.2, "TSLA": 421.7}).to_numpy()
    quantity = rng.integers(1, 20, n) * 100
    quantity[rng.random(n) < 0.01] = 25_000  # a few blocks
    return pd.DataFrame({
        "ts": ts,
        "symbol": symbols,
        "price": np.round(base * np.exp(rng.normal(0, 0.001, n)), 2),
        "quantity": quantity,
        "venue": rng.choice(["DARK1", "DARK2", "LIT"], n, p=[0.3, 0.2, 0.5]),
        "side": rng.choice(["BUY", "SELL"], n),
        "is_spoof": rng.random(n) < 0.02,
        "algo_fingerprint": [f"{x:08x}" for x in rng.integers(0, 2**32, n)],
        "order_type": rng.choice(["LIMIT", "MARKET", "IOC"], n),
        "order_id": [f"ORD-{seed}-{i:06d}" for i in range(n)],
    })


def write_seed_csv(trades: pd.DataFrame, path: Path) -> Path:
    """The seed project's layout: naive UTC timestamps with a space, True/False flags, extra columns."""
    frame = trades.assign(timestamp=pd.to_datetime(trades["ts"], unit="ms").dt.strftime("%Y-%m-%d %H:%M:%S.%f"))
    frame[list(SEED_COLUMNS)].to_csv(path, index=False)
    return path


def expected_panes(trades: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(final liquidity, final market) per sliding 5-minute window every minute, recomputed with pandas."""
    frame = trades.assign(venue_type=trades["venue"].map(VENUE_TYPES))
    frame["dark_q"] = np.where(frame["venue_type"].isin(["ATS", "SDP"]), frame["quantity"], 0)
    frame["buy_q"] = np.where(frame["side"] == "BUY", frame["quantity"], 0)
    frame["sell_q"] = np.where(frame["side"] == "SELL", frame["quantity"], 0)
    last_start = frame["ts"] // PERIOD_MS * PERIOD_MS
    windows = pd.concat([frame.assign(window_start=last_start - k * PERIOD_MS)
                         for k in range(WINDOW_MS // PERIOD_MS)], ignore_index=True)
    liquidity = windows.groupby(LIQUIDITY_KEY).agg(
        venue_type=("venue_type", "first"), trade_count=("quantity", "size"),
        share_quantity=("quantity", "sum"), buy_quantity=("buy_q", "sum"), sell_quantity=("sell_q", "sum"),
    ).reset_index()
    market = windows.groupby(MARKET_KEY).agg(
        trade_count=("quantity", "size"), share_quantity=("quantity", "sum"), dark_quantity=("dark_q", "sum"),
        venue_count=("venue", "nunique"),
    ).reset_index()
    return liquidity, market


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame, key: list[str], columns: list[str]) -> None:
    merged = expected.merge(actual, on=key, how="outer", suffixes=("_expected", "_actual"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"][[*key, "_merge"]].head(10)
    for column in columns:
        bad = merged[merged[f"{column}_expected"] != merged[f"{column}_actual"]]
        shown = bad[[*key, f"{column}_expected", f"{column}_actual"]].head()
        assert bad.empty, f"{column} differs in {len(bad)} panes:\n{shown}"


def darkpool(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """The product's command line in a child process (the test stack's settings are in the environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARKPOOL_VENUES_")}
    done = subprocess.run([sys.executable, "-m", "console.cli", *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"darkpool {' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture
def user_files(tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    """(registry file, seed CSV, its trades): 3,000 trades over the 12 minutes that ended 6 minutes ago."""
    registry = tmp_path / "my-venues.csv"
    registry.write_text(USER_REGISTRY, encoding="utf-8")
    now = int(time.time() * 1000)
    trades = seed_trades(3_000, end_ms=now - 6 * 60_000, span_ms=12 * 60_000)
    return registry, write_seed_csv(trades, tmp_path / "seed-trades.csv"), trades


@pytest.mark.stack
@pytest.mark.slow
def test_seed_csv_and_user_registry_through_feed_flink_and_serving(
        flink_stack: Settings, tmp_path: Path, user_files, monkeypatch: pytest.MonkeyPatch) -> None:
    from serving import create_app, start_consumer

    registry, seed_csv, trades = user_files
    settings, bootstrap = flink_stack, flink_stack.bootstrap_servers
    # the stack's Python workers run without the user registry: it can only reach them inside the job
    worker_pool = worker_pool_service(settings).pid()
    assert worker_pool, "the stack's worker pool is not running"
    environ = dict(item.split(b"=", 1) for item in Path(f"/proc/{worker_pool}/environ").read_bytes().split(b"\0")
                   if b"=" in item)
    assert environ.get(b"DARKPOOL_VENUES_FILE", b"") == b""

    run = PipelineRun(settings, tmp_path)
    app = None
    try:
        darkpool("--venues", registry, "feed", "--from-file", seed_csv, "--topic", run.topics["trades"],
                 "--no-create-topic", "--quiet")
        assert end_offset(bootstrap, run.topics["trades"]) == len(trades)
        darkpool("--venues", registry, "run", "--job-name", run.job_name, *run.args)
        record = json.loads((settings.state_dir / "jobs" / f"{run.job_name}.json").read_text())
        assert f"--venues={registry.resolve()}" in record["pipeline_args"]  # `darkpool jobs resume` keeps it

        expected_liquidity, expected_market = expected_panes(trades)
        wait_until_consumed(bootstrap, run.job_name, run.topics["trades"], timeout=420)
        wait_until_stable(bootstrap, [run.topics["liquidity"], run.topics["market"]], quiet_seconds=20,
                          timeout=420, minimum={run.topics["liquidity"]: len(expected_liquidity),
                                                run.topics["market"]: len(expected_market)})
        assert end_offset(bootstrap, run.topics["deadletter"]) == 0, read_topic(bootstrap, run.topics["deadletter"])[:3]

        liquidity = final_panes(read_topic(bootstrap, run.topics["liquidity"]), LIQUIDITY_KEY)
        assert set(liquidity["venue"]) == {"DARK1", "DARK2", "LIT"}
        assert_same(liquidity, expected_liquidity, LIQUIDITY_KEY,
                    ["venue_type", "trade_count", "share_quantity", "buy_quantity", "sell_quantity"])
        market = final_panes(read_topic(bootstrap, run.topics["market"]), MARKET_KEY)
        assert_same(market, expected_market, MARKET_KEY, ["trade_count", "share_quantity", "dark_quantity",
                                                          "venue_count"])

        # serving (the dashboard's API) with the same registry
        monkeypatch.setenv("DARKPOOL_VENUES_FILE", str(registry))
        monkeypatch.setenv("DARKPOOL_VENUES_MODE", "extend")
        app = create_app({"BOOTSTRAP_SERVERS": bootstrap, "LIQUIDITY_TOPIC": run.topics["liquidity"],
                          "MARKET_TOPIC": run.topics["market"], "STALE_AFTER_SECONDS": 1e9})
        start_consumer(app)
        client = app.test_client()
        deadline = time.monotonic() + 60
        while client.get("/api/v1/ready").status_code != 200:  # the store has read the topics to their end
            assert time.monotonic() < deadline, "the store did not catch up within 60 s"
            time.sleep(0.2)
        listed = {v["mpid"]: v for v in client.get("/api/v1/venues").get_json()["venues"]}
        assert {"DARK1", "DARK2", "LIT", "XNAS", "CDRG"} <= set(listed)  # extend: the shipped ones stay
        for mpid, (latitude, longitude) in COORDINATES.items():
            venue = listed[mpid]
            assert (venue["latitude"], venue["longitude"]) == (latitude, longitude)
            assert venue["venue_type"] == VENUE_TYPES[mpid] and venue["is_dark"] == (mpid != "LIT")
        assert listed["DARK2"]["name"] == "Seed Dark Pool Two" and listed["DARK2"]["data_center"] == "Aurora IL (CH1)"
        latest = client.get("/api/v1/windows/latest").get_json()
        assert latest["complete"] is True
        assert {row["venue"] for row in latest["rows"]} == {"DARK1", "DARK2", "LIT"}
        window = int(pd.Timestamp(latest["window_start"]).timestamp() * 1000)
        assert sum(row["trade_count"] for row in latest["rows"]) == int(
            expected_liquidity.loc[expected_liquidity["window_start"] == window, "trade_count"].sum())
        dark1 = client.get("/api/v1/windows/latest?venue=DARK1")
        assert dark1.status_code == 200 and {r["venue"] for r in dark1.get_json()["rows"]} == {"DARK1"}
        print("user registry end-to-end:", {"trades": len(trades), "liquidity_panes": len(liquidity),
                                            "market_panes": len(market), "dead_letters": 0})
    finally:
        run.cancel()
        if app is not None:
            app.extensions["darkpool"].close()


def dead_letters(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.rglob("*.jsonl")) for line in path.read_text().splitlines()
            if line.strip()]


def test_seed_csv_and_user_registry_through_the_direct_runner_and_analytics(tmp_path: Path, user_files) -> None:
    registry, seed_csv, trades = user_files
    out = tmp_path / "with-registry"
    darkpool("--venues", registry, "run", "--runner", "direct", "--source", "file", "--input", seed_csv,
             "--output", out / "parquet")
    liquidity = duckdb.sql(f"""
        SELECT epoch_ms(window_start) AS window_start, symbol, venue, venue_type, trade_count, share_quantity,
               buy_quantity, sell_quantity
        FROM read_parquet('{out}/parquet/liquidity/*/*.parquet', hive_partitioning = true)
        QUALIFY row_number() OVER (PARTITION BY window_start, symbol, venue ORDER BY pane_index DESC) = 1""").df()
    expected_liquidity, _ = expected_panes(trades)
    assert_same(liquidity, expected_liquidity, LIQUIDITY_KEY,
                ["venue_type", "trade_count", "share_quantity", "buy_quantity", "sell_quantity"])
    assert dead_letters(out / "parquet" / "deadletter") == []

    darkpool("--venues", registry, "analyze", "--dataset", out / "parquet", "--out", out / "report",
             "--no-figures", "-q")
    ranking = pd.read_csv(out / "report" / "tables" / "venue_ranking.csv").set_index("venue")
    assert ranking.loc["DARK1", "name"] == "Seed Dark Pool One" and ranking.loc["LIT", "name"] == "Seed Lit Exchange"
    assert ranking.loc["DARK2", "venue_type"] == "ATS" and bool(ranking.loc["DARK2", "dark"]) is True
    assert bool(ranking.loc["LIT", "dark"]) is False

    # the same backfill without the user registry: every trade is an unknown venue
    without = tmp_path / "without-registry"
    darkpool("run", "--runner", "direct", "--source", "file", "--input", seed_csv,
             "--output", without / "parquet")
    reasons = [letter["reason"] for letter in dead_letters(without / "parquet" / "deadletter")]
    assert reasons == ["unknown_venue"] * len(trades)
