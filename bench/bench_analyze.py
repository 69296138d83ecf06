"""Benchmark: `darkpool analyze` over 10 million panes vs the seed project's pandas-over-JSON approach.

1. Generates (once; cached under .cache/bench/analyze-<panes>/) a Parquet dataset in
   the contract layout: 50 symbols x 23 venues, one-minute trade buckets summed
   into 5-minute windows sliding every minute, over as many 390-minute sessions
   as it takes to reach the pane target. Keys get an EARLY pane (60%), an ON_TIME
   pane and sometimes a LATE revision (5%), like the pipeline's accumulating panes.
   Generation is vectorised numpy/pyarrow.
2. Times the whole report (`python -m console.cli analyze`: final-pane selection,
   every table, every figure, the HTML, CSV and Parquet) over all panes, in a
   fresh process.
3. Times the seed's approach on the same panes: a JSON-lines dump (as the seed
   project kept its output) read with pandas, final panes by sort + drop_duplicates,
   the same tables with groupby (no figures, no report). A 10-million-row JSON dump
   is ~4 GB and does not fit pandas' JSON reader comfortably, so the seed runs on a
   subset of whole sessions (default 15% of the sessions) and is extrapolated
   linearly; `analyze` is also timed on that same subset, so a measured
   like-for-like ratio is printed beside the extrapolated one.
4. Checks that both approaches give the same venue ranking on the subset.

Usage: .venv/bin/python bench/bench_analyze.py [--panes 10000000] [--seed-fraction 0.1] [--regenerate]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from darkpool.contracts import (  # noqa: E402
    BLOCK_MIN_SHARES,
    DARK_VENUE_TYPES,
    LIQUIDITY_SCHEMA,
    MARKET_SCHEMA,
    load_venues,
)

SYMBOLS = [
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AVGO", "JPM", "V", "UNH", "XOM", "MA", "JNJ",
    "PG", "HD", "COST", "ABBV", "MRK", "ORCL", "CVX", "KO", "PEP", "BAC", "ADBE", "CRM", "NFLX", "AMD",
    "WMT", "TMO", "LIN", "MCD", "CSCO", "ACN", "ABT", "DIS", "WFC", "INTC", "VZ", "CMCSA", "QCOM", "TXN",
    "DHR", "PM", "NEE", "IBM", "INTU", "AMGN", "HON", "SPY",
]
SESSION_MINUTES = 390
WINDOW_MINUTES = 5
P_EARLY, P_LATE = 0.6, 0.05
FIRST_DAY = np.datetime64("2026-10-01")


def _sessions(n_days: int) -> np.ndarray:
    """The first n weekdays from FIRST_DAY, as datetime64[D]."""
    days = FIRST_DAY + np.arange(n_days * 2)
    weekdays = days[((days.astype("int64") + 3) % 7) < 5]  # Monday = 0; 1970-01-01 was a Thursday
    return weekdays[:n_days]


def _panes_per_day(rng: np.random.Generator) -> float:
    """Expected panes per session (liquidity + market), estimated from one simulated session."""
    liq, mkt = simulate_day(rng, np.datetime64("2026-10-01"))
    return float(liq.num_rows + mkt.num_rows)


def simulate_day(rng: np.random.Generator, day: np.datetime64) -> tuple[pa.Table, pa.Table]:
    """One session's liquidity and market panes (contract schemas), vectorised."""
    venues = list(load_venues().values())
    n_t, n_s, n_v = SESSION_MINUTES, len(SYMBOLS), len(venues)
    is_dark = np.array([v.venue_type in DARK_VENUE_TYPES for v in venues])
    venue_type = np.array([v.venue_type for v in venues], dtype=object)
    mpids = np.array([v.mpid for v in venues], dtype=object)
    symbols = np.array(SYMBOLS, dtype=object)
    sym_rng = np.random.default_rng(7)  # market structure fixed across days
    price = np.exp(sym_rng.normal(5.0, 0.8, n_s))
    activity = np.exp(sym_rng.normal(0.0, 0.7, n_s)) * 1.5
    venue_weight = np.exp(sym_rng.normal(0.0, 0.8, (n_s, n_v)))
    venue_weight[:, ~is_dark] *= 2.0
    avg_size = np.where(is_dark, 180.0, 110.0) * np.exp(sym_rng.normal(0.0, 0.2, (n_s, n_v)))
    minute = np.arange(n_t)
    intraday = 1.0 + 2.6 * np.exp(-minute / 27.0) + 2.0 * np.exp(-(n_t - 1 - minute) / 23.0)
    # one-minute buckets [t, s, v]
    rate = intraday[:, None, None] * activity[None, :, None] * venue_weight[None, :, :] * 0.9
    trades_1m = rng.poisson(rate)
    qty_1m = np.rint(trades_1m * avg_size[None] * np.exp(rng.normal(0, 0.3, trades_1m.shape))).astype(np.int64)
    blocks_1m = rng.binomial(trades_1m, 0.002)
    block_qty_1m = blocks_1m * BLOCK_MIN_SHARES * 2
    qty_1m += block_qty_1m
    px_1m = price[None, :, None] * np.exp(rng.normal(0, 0.002, trades_1m.shape))

    def window_sum(x: np.ndarray) -> np.ndarray:
        c = np.concatenate([np.zeros((1,) + x.shape[1:], x.dtype), np.cumsum(x, axis=0)])
        end = np.minimum(np.arange(n_t) + WINDOW_MINUTES, n_t)
        return c[end] - c[np.arange(n_t)]

    trades, qty = window_sum(trades_1m), window_sum(qty_1m)
    notional = window_sum(qty_1m * px_1m)
    blocks, block_qty = window_sum(blocks_1m), window_sum(block_qty_1m)
    open_ms = (day.astype("datetime64[ms]") + np.timedelta64(14 * 60 + 30, "m")).astype("int64")
    ws = open_ms + minute * 60_000
    we = ws + WINDOW_MINUTES * 60_000

    # liquidity keys present: (t, s, v) with trades
    t_i, s_i, v_i = np.nonzero(trades)
    liq_cols = {
        "window_start": ws[t_i], "window_end": we[t_i], "symbol": symbols[s_i], "venue": mpids[v_i],
        "venue_type": venue_type[v_i], "trade_count": trades[t_i, s_i, v_i], "share_quantity": qty[t_i, s_i, v_i],
        "notional": notional[t_i, s_i, v_i], "block_count": blocks[t_i, s_i, v_i],
        "block_quantity": block_qty[t_i, s_i, v_i],
    }
    liq_cols["vwap"] = liq_cols["notional"] / liq_cols["share_quantity"]
    liq_cols["min_price"] = liq_cols["vwap"] * 0.999
    liq_cols["max_price"] = liq_cols["vwap"] * 1.001
    liq_cols["avg_trade_size"] = liq_cols["share_quantity"] / liq_cols["trade_count"]
    liq_cols["buy_quantity"] = liq_cols["share_quantity"] // 2
    liq_cols["sell_quantity"] = liq_cols["share_quantity"] - liq_cols["buy_quantity"]

    # market rollup [t, s]
    total_q = qty.sum(axis=2)
    dark_q = qty[:, :, is_dark].sum(axis=2)
    share = qty / np.maximum(total_q, 1)[:, :, None]
    t_m, s_m = np.nonzero(total_q)
    top = share.argmax(axis=2)
    mkt_cols = {
        "window_start": ws[t_m], "window_end": we[t_m], "symbol": symbols[s_m],
        "trade_count": trades.sum(axis=2)[t_m, s_m], "share_quantity": total_q[t_m, s_m],
        "notional": notional.sum(axis=2)[t_m, s_m],
        "dark_quantity": dark_q[t_m, s_m], "lit_quantity": (total_q - dark_q)[t_m, s_m],
        "dark_notional": notional[:, :, is_dark].sum(axis=2)[t_m, s_m],
        "lit_notional": notional[:, :, ~is_dark].sum(axis=2)[t_m, s_m],
        "dark_trade_count": trades[:, :, is_dark].sum(axis=2)[t_m, s_m],
        "lit_trade_count": trades[:, :, ~is_dark].sum(axis=2)[t_m, s_m],
        "block_count": blocks.sum(axis=2)[t_m, s_m], "block_quantity": block_qty.sum(axis=2)[t_m, s_m],
        "dark_block_count": blocks[:, :, is_dark].sum(axis=2)[t_m, s_m],
        "hhi": (10_000 * (share ** 2).sum(axis=2))[t_m, s_m],
        "venue_count": (qty > 0).sum(axis=2)[t_m, s_m], "top_venue": mpids[top[t_m, s_m]],
        "top_venue_share": share.max(axis=2)[t_m, s_m],
    }
    mkt_cols["vwap"] = mkt_cols["notional"] / mkt_cols["share_quantity"]
    mkt_cols["dark_share"] = mkt_cols["dark_quantity"] / mkt_cols["share_quantity"]
    return (_with_panes(rng, liq_cols, LIQUIDITY_SCHEMA, ["share_quantity", "trade_count", "notional"]),
            _with_panes(rng, mkt_cols, MARKET_SCHEMA, ["share_quantity", "trade_count", "notional"]))


def _with_panes(rng: np.random.Generator, cols: dict[str, np.ndarray], schema: pa.Schema,
                scaled: list[str]) -> pa.Table:
    """Expand each key into its panes: EARLY (60%, half the value), ON_TIME, LATE (5%, ON_TIME had 97%)."""
    n = len(cols["window_start"])
    early = rng.random(n) < P_EARLY
    late = rng.random(n) < P_LATE
    copies = 1 + early + late
    idx = np.repeat(np.arange(n), copies)
    pos = np.arange(len(idx)) - np.repeat(np.cumsum(copies) - copies, copies)  # 0.. within key
    has_early = early[idx]
    timing_code = pos + (~has_early)  # 0 EARLY, 1 ON_TIME, 2 LATE
    out = {name: values[idx] for name, values in cols.items()}
    factor = np.where(timing_code == 0, 0.5, np.where((timing_code == 1) & late[idx], 0.97, 1.0))
    for name in scaled:
        v = out[name] * factor
        out[name] = np.rint(v).astype(np.int64) if out[name].dtype.kind == "i" else v
    out["pane_timing"] = np.array(["EARLY", "ON_TIME", "LATE"], dtype=object)[timing_code]
    out["pane_index"] = pos.astype(np.int64)
    out["emitted_at"] = out["window_end"] + np.array([-60_000, 1_000, 120_000])[timing_code]
    arrays = []
    for field in schema:
        values = out[field.name]
        if pa.types.is_timestamp(field.type):
            arrays.append(pa.array(values.astype("int64"), pa.int64()).cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def generate(root: Path, target_panes: int) -> dict[str, int]:
    """Write the dataset (one file per table and session) until ``target_panes`` is reached."""
    rng = np.random.default_rng(2026)
    per_day = _panes_per_day(np.random.default_rng(1))
    n_days = max(1, math.ceil(target_panes / per_day))  # at least the target
    total = {"liquidity": 0, "market": 0}
    t0 = time.perf_counter()
    for i, day in enumerate(_sessions(n_days)):
        liq, mkt = simulate_day(rng, day)
        for name, table in (("liquidity", liq), ("market", mkt)):
            folder = root / name / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, folder / "part-0.parquet")
            total[name] += table.num_rows
        print(f"  generated session {i + 1}/{n_days} ({day}): {sum(total.values()):,} panes "
              f"[{time.perf_counter() - t0:.1f}s]", file=sys.stderr, flush=True)
    (root / "MANIFEST.json").write_text(json.dumps({"target": target_panes, "days": n_days, **total}))
    return total


# --- the seed project's approach: pandas over a JSON-lines dump -------------------------------
def dump_json(root: Path, days: list[str], path: Path) -> int:
    """The panes of the given sessions as JSON lines (one object per pane, ISO times), as the seed kept them."""
    rows = 0
    with path.open("w") as out:
        for table in ("liquidity", "market"):
            for day in days:
                df = pq.read_table(root / table / f"date={day}").to_pandas()
                df.insert(0, "table", table)
                for col in ("window_start", "window_end", "emitted_at"):
                    df[col] = df[col].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                df.to_json(out, orient="records", lines=True)
                rows += len(df)
    return rows


def seed_tables(path: Path) -> dict[str, pd.DataFrame]:
    """The report's tables the seed way: pd.read_json, sort + drop_duplicates, groupby."""
    df = pd.read_json(path, lines=True, dtype=False)
    for column in ("window_start", "window_end", "emitted_at"):
        df[column] = pd.to_datetime(df[column], utc=True, format="ISO8601")
    tables = {}
    final = {}
    for name, keys in (("liquidity", ["window_start", "symbol", "venue"]), ("market", ["window_start", "symbol"])):
        part = df[df["table"] == name]
        part = part.sort_values(keys + ["pane_index", "emitted_at"]).drop_duplicates(keys, keep="last")
        size = (part["window_end"] - part["window_start"]).dt.total_seconds()
        start = (part["window_start"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        part = part.assign(on_grid=start % size == 0)
        final[name] = part
    liq, mkt = final["liquidity"], final["market"]
    lg, mg = liq[liq["on_grid"]], mkt[mkt["on_grid"]]
    vr = lg.groupby("venue").agg(trade_count=("trade_count", "sum"), share_quantity=("share_quantity", "sum"),
                                 notional=("notional", "sum"), block_count=("block_count", "sum"))
    vr["volume_share"] = vr["share_quantity"] / vr["share_quantity"].sum()
    tables["venue_ranking"] = vr.sort_values("notional", ascending=False).reset_index()
    ot = mkt.groupby("window_start")[["share_quantity", "dark_quantity", "lit_quantity"]].sum()
    ot["dark_share"] = ot["dark_quantity"] / ot["share_quantity"]
    tables["dark_lit_over_time"] = ot.reset_index()
    sr = mg.groupby("symbol")[["share_quantity", "dark_quantity", "notional", "dark_notional"]].sum()
    sr["dark_share"] = sr["dark_quantity"] / sr["share_quantity"]
    tables["symbol_ranking"] = sr.sort_values("dark_share", ascending=False).reset_index()
    ts = mg.groupby("symbol")[["dark_trade_count", "dark_quantity", "lit_trade_count", "lit_quantity"]].sum()
    ts.loc["ALL"] = ts.sum()
    ts["dark_avg_trade_size"] = ts["dark_quantity"] / ts["dark_trade_count"]
    ts["lit_avg_trade_size"] = ts["lit_quantity"] / ts["lit_trade_count"]
    tables["trade_size"] = ts.reset_index()
    ba = mg.groupby("symbol")[["block_count", "dark_block_count", "block_quantity", "share_quantity"]].sum()
    ba.loc["ALL"] = ba.sum()
    ba["block_volume_share"] = ba["block_quantity"] / ba["share_quantity"]
    tables["block_activity"] = ba.reset_index()
    tables["block_by_venue"] = lg.groupby("venue")[["block_count", "block_quantity"]].sum().reset_index()
    mkt = mkt.assign(hq=mkt["hhi"] * mkt["share_quantity"])
    ho = mkt.groupby("window_start").agg(mean_hhi=("hhi", "mean"), min_hhi=("hhi", "min"), max_hhi=("hhi", "max"),
                                         hq=("hq", "sum"), q=("share_quantity", "sum"))
    ho["weighted_hhi"] = ho["hq"] / ho["q"]
    tables["hhi_over_time"] = ho.reset_index()
    sv = lg.groupby(["symbol", "venue"])["share_quantity"].sum().astype(float)
    tot = sv.groupby(level="symbol").transform("sum")
    tables["hhi_by_symbol"] = (10_000 * (sv / tot) ** 2).groupby(level="symbol").sum().reset_index()
    both = pd.concat([liq.assign(t="liquidity"), mkt.assign(t="market")])
    tables["pane_summary"] = both.groupby(["t", "pane_timing"]).size().reset_index()
    return tables


def run_analyze(dataset: Path, out: Path, extra: list[str]) -> float:
    """Wall time of `darkpool analyze` in a fresh process (imports included)."""
    cmd = [sys.executable, "-m", "console.cli", "analyze", "--dataset", str(dataset), "--out", str(out),
           "--finra-store", str(out / "no-finra"), *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, env=env)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--panes", type=int, default=10_000_000, help="panes to generate (liquidity + market)")
    parser.add_argument("--seed-fraction", type=float, default=0.15,
                        help="fraction of sessions the seed approach runs on (then extrapolated linearly)")
    parser.add_argument("--regenerate", action="store_true", help="ignore the cached dataset")
    args = parser.parse_args()

    root = REPO / ".cache" / "bench" / f"analyze-{args.panes}"
    manifest = root / "MANIFEST.json"
    if args.regenerate or not manifest.exists():
        print(f"generating ~{args.panes:,} panes into {root} (cached for re-runs)", file=sys.stderr)
        if root.exists():
            subprocess.run(["rm", "-rf", str(root)], check=True)
        t0 = time.perf_counter()
        generate(root, args.panes)
        print(f"generated in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    info = json.loads(manifest.read_text())
    total = info["liquidity"] + info["market"]
    days = sorted(p.name.split("=", 1)[1] for p in (root / "liquidity").iterdir())
    n_sub = max(1, int(round(len(days) * args.seed_fraction)))
    sub_days = days[:n_sub]
    end = (np.datetime64(sub_days[-1]) + np.timedelta64(1, "D")).astype(str)

    results = REPO / ".cache" / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    print(f"dataset: {total:,} panes ({info['liquidity']:,} liquidity + {info['market']:,} market), "
          f"{len(days)} sessions, {sum(p.stat().st_size for p in root.rglob('*.parquet')) / 1e6:.0f} MB Parquet")

    # the machine is shared: time the full report twice and keep the faster run
    runs_full = [run_analyze(root, results / "analyze-full", []), run_analyze(root, results / "analyze-full", ["-q"])]
    t_full = min(runs_full)
    t_sub = run_analyze(root, results / "analyze-subset", ["--to", end, "-q"])

    json_path = results / "seed-panes.jsonl"
    t0 = time.perf_counter()
    sub_rows = dump_json(root, sub_days, json_path)
    t_dump = time.perf_counter() - t0
    t0 = time.perf_counter()
    seed = seed_tables(json_path)
    t_seed = time.perf_counter() - t0
    json_mb = json_path.stat().st_size / 1e6
    json_path.unlink()

    ours = pd.read_csv(results / "analyze-subset" / "tables" / "venue_ranking.csv").set_index("venue")
    theirs = seed["venue_ranking"].set_index("venue")
    same = bool((ours["share_quantity"].sort_index() == theirs["share_quantity"].sort_index()).all())

    scale = total / sub_rows
    t_seed_full = t_seed * scale
    print()
    print(f"{'':44}{'panes':>12}{'seconds':>10}")
    print(f"{'darkpool analyze, whole report (measured)':44}{total:>12,}{t_full:>10.1f}"
          f"   (best of {len(runs_full)}: {', '.join(f'{t:.1f}' for t in runs_full)})")
    print(f"{'darkpool analyze, whole report, subset':44}{sub_rows:>12,}{t_sub:>10.1f}")
    print(f"{'seed: pandas over JSON lines, subset':44}{sub_rows:>12,}{t_seed:>10.1f}"
          f"   (JSON dump {json_mb:,.0f} MB, written in {t_dump:.1f}s, not counted)")
    print(f"{f'seed: extrapolated linearly (x{scale:.1f})':44}{total:>12,}{t_seed_full:>10.1f}")
    print()
    print(f"speed-up on the same subset (measured):      {t_seed / t_sub:6.1f}x")
    print(f"speed-up at {total:,} panes (seed extrapolated): {t_seed_full / t_full:6.1f}x")
    print(f"target: whole report < 30 s -> {'met' if t_full < 30 else 'MISSED'} ({t_full:.1f}s); "
          f">= 10x -> {'met' if t_seed_full / t_full >= 10 else 'MISSED'}")
    print(f"venue ranking identical on the subset (DuckDB vs pandas): {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
