"""Serving benchmark: GET /api/v1/windows/latest under load while the consumer ingests live panes.

What it does, all on loopback:
  1. makes sure a Kafka broker answers (starts the local one if needed, stops it again at the end);
  2. creates fresh compacted output topics and loads an hour of history
     (--symbols x --venues panes per window, one window per minute);
  3. for each server in --servers (granian, gunicorn): starts `darkpool serve --server <it>` (1 worker
     process x --threads threads) and times its start + rebuild;
  4. starts a producer process that writes live panes (--live-rate panes/s: EARLY panes of the current
     window, an ON_TIME pane per key when a window closes) for the whole run;
  5. loads the endpoints with wrk (Debian package `wrk`) from a separate process, --duration seconds each:
     paced near --rate req/s (wrk's delay() per connection: the latency at the target's load), then
     as fast as it goes (the ceiling); prints req/s, p50, p90, p99 side by side for both servers, and
     how many live panes the server ingested during each run.

Target (issue 5): >= 2,000 req/s with p99 < 50 ms on 2 cores while the consumer ingests live panes.

    .venv/bin/python bench/bench_serving.py                 # defaults
    .venv/bin/python bench/bench_serving.py --duration 30 --connections 32 --servers granian
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import requests
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from darkpool.config import load_settings
from darkpool.contracts import format_event_time, liquidity_key, load_venues, market_key
from darkpool.errors import DarkpoolError
from darkpool.stack.services import service_by_name
from darkpool.stack.topics import TopicSpec, check_reachable, create_topics

DARKPOOL = str(Path(sys.executable).with_name("darkpool"))
WINDOW_MS, PERIOD_MS = 300_000, 60_000
SYMBOLS = (
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AVGO", "JPM", "V", "UNH", "XOM",
    "LLY", "MA", "HD", "PG", "COST", "JNJ", "ABBV", "MRK", "BAC", "KO", "PEP", "WMT",
    "CVX", "ADBE", "CRM", "NFLX", "AMD", "INTC", "ORCL", "CSCO", "TMO", "ACN", "MCD", "DIS",
    "ABT", "WFC", "LIN", "DHR",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default: the local stack's broker)")
    p.add_argument("--symbols", type=int, default=30, help="symbols (default %(default)s)")
    p.add_argument("--venues", type=int, default=12, help="venues per symbol (default %(default)s)")
    p.add_argument("--history-minutes", type=int, default=60, help="windows of history loaded first")
    p.add_argument("--live-rate", type=int, default=1000, help="live panes produced per second during the load")
    p.add_argument("--duration", type=int, default=15, help="seconds of load per scenario (default %(default)s)")
    p.add_argument("--connections", type=int, default=16, help="wrk connections (default %(default)s)")
    p.add_argument("--rate", type=int, default=2500,
                   help="offered load of the paced runs, req/s (wrk delay() per connection; default %(default)s)")
    p.add_argument("--wrk-threads", type=int, default=2, help="wrk threads")
    p.add_argument("--threads", type=int, default=32, help="server request threads")
    p.add_argument("--servers", default="granian,gunicorn",
                   help="comma-separated WSGI servers to compare (darkpool serve --server; default %(default)s)")
    args = p.parse_args(argv)
    if not 1 <= args.symbols <= len(SYMBOLS):
        p.error(f"--symbols must be 1..{len(SYMBOLS)}")
    return args


# -- records ------------------------------------------------------------------------
def liquidity(start_ms: int, symbol: str, venue: str, venue_type: str, index: int, timing: str,
              emitted_ms: int) -> dict:
    trades = 20 + 3 * index + len(venue)
    qty = trades * 180
    price = 100.0 + (hash(symbol) % 300)
    return {
        "window_start": format_event_time(start_ms), "window_end": format_event_time(start_ms + WINDOW_MS),
        "symbol": symbol, "venue": venue, "venue_type": venue_type, "trade_count": trades, "share_quantity": qty,
        "notional": qty * price, "vwap": price, "min_price": price - 0.1, "max_price": price + 0.1,
        "avg_trade_size": qty / trades, "block_count": index % 2, "block_quantity": 10_000 * (index % 2),
        "buy_quantity": qty // 2, "sell_quantity": qty - qty // 2, "pane_timing": timing, "pane_index": index,
        "emitted_at": format_event_time(emitted_ms),
    }


def market(rows: list[dict], index: int, timing: str, emitted_ms: int) -> dict:
    qty = sum(r["share_quantity"] for r in rows)
    dark = [r for r in rows if r["venue_type"] != "EXCHANGE"]
    dq = sum(r["share_quantity"] for r in dark)
    notional = sum(r["notional"] for r in rows)
    return {
        "window_start": rows[0]["window_start"], "window_end": rows[0]["window_end"], "symbol": rows[0]["symbol"],
        "trade_count": sum(r["trade_count"] for r in rows), "share_quantity": qty, "notional": notional,
        "vwap": notional / qty, "dark_quantity": dq, "lit_quantity": qty - dq,
        "dark_notional": sum(r["notional"] for r in dark), "lit_notional": notional - sum(r["notional"] for r in dark),
        "dark_trade_count": sum(r["trade_count"] for r in dark),
        "lit_trade_count": sum(r["trade_count"] for r in rows) - sum(r["trade_count"] for r in dark),
        "dark_share": dq / qty, "block_count": 0, "block_quantity": 0, "dark_block_count": 0,
        "hhi": sum((100 * r["share_quantity"] / qty) ** 2 for r in rows), "venue_count": len(rows),
        "top_venue": rows[0]["venue"], "top_venue_share": rows[0]["share_quantity"] / qty,
        "pane_timing": timing, "pane_index": index, "emitted_at": format_event_time(emitted_ms),
    }


class PaneWriter:
    """Produces one (window, symbol) group of panes: its liquidity records and the market rollup."""

    def __init__(self, bootstrap: str, topics: tuple[str, str], symbols: list[str], venues: list[tuple[str, str]]):
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
        self.liq_topic, self.mkt_topic = topics
        self.symbols, self.venues = symbols, venues
        self.count = 0

    def window(self, start_ms: int, index: int, timing: str, emitted_ms: int) -> None:
        for symbol in self.symbols:
            rows = [liquidity(start_ms, symbol, v, t, index, timing, emitted_ms) for v, t in self.venues]
            for row in rows:
                self.producer.produce(self.liq_topic, orjson.dumps(row),
                                      key=liquidity_key(symbol, row["venue"], row["window_start"]))
            self.producer.produce(self.mkt_topic, orjson.dumps(market(rows, index, timing, emitted_ms)),
                                  key=market_key(symbol, rows[0]["window_start"]))
            self.count += len(rows) + 1
            self.producer.poll(0)


def live_producer(bootstrap: str, topics: tuple[str, str], symbols: list[str], venues: list[tuple[str, str]],
                  start_ms: int, rate: int, stop: mp.Event, produced: mp.Value) -> None:
    """Child process: EARLY panes of the current window at ~rate panes/s (every key once per round);
    after 10 rounds the window gets its ON_TIME panes and the next window opens."""
    writer = PaneWriter(bootstrap, topics, symbols, venues)
    window, index = start_ms, 0
    t0 = time.monotonic()
    while not stop.is_set():
        now_ms = int(time.time() * 1000)
        writer.window(window, index, "EARLY", now_ms)
        index += 1
        if index == 10:  # the window closes: ON_TIME pane, next window opens
            writer.window(window, index, "ON_TIME", now_ms)
            window, index = window + PERIOD_MS, 0
        produced.value = writer.count
        ahead = writer.count / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(min(ahead, 1.0))
    writer.producer.flush(30)
    produced.value = writer.count


# -- wrk ------------------------------------------------------------------------------
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def pacing_script(connections: int, rate: int) -> Path:
    """A wrk Lua script whose per-request delay() holds the offered load near ``rate`` req/s."""
    delay_ms = max(1, int(connections * 1000 / (rate * 1.15)))  # wrk's timers run late: aim 15% high
    path = Path(tempfile.gettempdir()) / f"darkpool_wrk_pace_{delay_ms}.lua"
    path.write_text(f"function delay()\n  return {delay_ms}\nend\n")
    return path


def run_wrk(url: str, duration: int, connections: int, threads: int, rate: int | None = None) -> dict[str, float]:
    """One wrk run: closed loop as fast as it goes, or paced near ``rate`` req/s."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    if rate:
        command += ["-s", str(pacing_script(connections, rate))]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "90", "99"):
        result[f"p{pct}"] = to_ms(re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    result["non2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    result["requests"] = float(re.search(r"(\d+) requests in", out).group(1))
    result["socket_errors"] = errors.group(1) if errors else "none"
    return result


# -- orchestration ------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_broker(bootstrap: str | None) -> tuple[str, object | None]:
    """The bootstrap address, and the broker service if this run started it."""
    settings = load_settings()
    bootstrap = bootstrap or settings.bootstrap_servers
    try:
        check_reachable(bootstrap, timeout=3)
        return bootstrap, None
    except DarkpoolError:
        if bootstrap != settings.bootstrap_servers:
            raise
    print(f"bench: starting the local Kafka broker on {bootstrap}", flush=True)
    broker = service_by_name(settings, "kafka")
    broker.start()
    return bootstrap, broker


def status(base: str) -> dict:
    return requests.get(f"{base}/api/v1/status", timeout=5).json()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk not found; install it with `apt-get install -y wrk` (Debian)", file=sys.stderr)
        return 1
    bootstrap, started_broker = ensure_broker(args.bootstrap)
    suffix = uuid.uuid4().hex[:8]
    topics = (f"bench.serving.liquidity.{suffix}", f"bench.serving.market.{suffix}")
    create_topics(bootstrap, {t: TopicSpec(4, {"cleanup.policy": "compact"}) for t in topics})
    registry = load_venues()
    venues = [(m, v.venue_type) for m, v in list(registry.items())[: args.venues]]
    symbols = SYMBOLS[: args.symbols]
    server = producer_proc = None
    results: list[tuple[str, str, dict]] = []
    try:
        now_ms = int(time.time() * 1000)
        first = now_ms - now_ms % PERIOD_MS - args.history_minutes * PERIOD_MS
        print(f"bench: loading {args.history_minutes} windows of history ({len(symbols)} symbols x "
              f"{len(venues)} venues) into {topics[0]} / {topics[1]}", flush=True)
        writer = PaneWriter(bootstrap, topics, symbols, venues)
        for w in range(args.history_minutes):
            start = first + w * PERIOD_MS
            writer.window(start, 0, "EARLY", start + WINDOW_MS - 30_000)
            writer.window(start, 1, "ON_TIME", start + WINDOW_MS + 1000)
        writer.producer.flush(60)
        history = writer.count

        stop, produced = mp.Event(), mp.Value("l", 0)
        producer_proc = mp.Process(target=live_producer, args=(
            bootstrap, topics, symbols, venues, first + args.history_minutes * PERIOD_MS, args.live_rate,
            stop, produced), daemon=True)
        one, every = f"/api/v1/windows/latest?symbol={symbols[0]}", "/api/v1/windows/latest"
        all_rows = len(symbols) * len(venues)
        scenarios = [  # (label, path, paced rate or None for as fast as it goes)
            (f"latest, one symbol @{args.rate} req/s", one, args.rate),
            (f"latest, all {all_rows} rows @{args.rate} req/s", every, args.rate),
            ("latest, one symbol, max", one, None),
            (f"latest, all {all_rows} rows, max", every, None),
            ("market ranking (limit 20), max", "/api/v1/market?sort=dark_share&limit=20", None),
            ("status (uncached, via Flask), max", "/api/v1/status", None),
        ]
        for name in args.servers.split(","):
            server, base, rebuild_s = start_server(name.strip(), bootstrap, topics, args.threads)
            print(f"bench: {name} ready in {rebuild_s:.2f} s (process start + rebuild of "
                  f"{status(base)['panes_ingested']:,} panes from {history:,} records)", flush=True)
            if producer_proc.pid is None:  # live panes start once the first server is up, and keep flowing
                producer_proc.start()
                time.sleep(2)
            run_wrk(base + scenarios[2][1], 3, args.connections, args.wrk_threads)  # warm-up
            for label, path, rate in scenarios:
                before, produced_before = status(base), produced.value
                result = run_wrk(base + path, args.duration, args.connections, args.wrk_threads, rate)
                after = status(base)
                result["ingested"] = after["panes_ingested"] - before["panes_ingested"]
                result["produced"] = produced.value - produced_before
                result["lag"] = after["consumer"]["lag"]
                result["size"] = len(requests.get(base + path, timeout=5).content)
                results.append((name, label, result))
                print(f"bench: {name}: {label}: {result['rps']:,.0f} req/s, p99 {result['p99']:.1f} ms", flush=True)
            stop_server(server)
            server = None
    finally:
        if producer_proc is not None and producer_proc.pid is not None:
            stop.set()
            producer_proc.join(30)
        if server is not None:
            stop_server(server)
        AdminClient({"bootstrap.servers": bootstrap}).delete_topics(list(topics))
        if started_broker is not None:
            started_broker.stop()

    report(results, args)
    return 0


def report(results: list[tuple[str, str, dict]], args: argparse.Namespace) -> None:
    print()
    print(f"serving benchmark: 1 worker process x {args.threads} threads; wrk -t{args.wrk_threads} "
          f"-c{args.connections} -d{args.duration}s on loopback; live producer target {args.live_rate} panes/s")
    header = (f"{'server':9} {'scenario':40} {'bytes':>8} {'req/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
              f"{'non-2xx':>7} {'live panes ingested/produced':>29}")
    print(header)
    print("-" * len(header))
    for server, label, r in results:
        print(f"{server:9} {label:40} {r['size']:>8,} {r['rps']:>8,.0f} {r['p50']:>7.2f} {r['p90']:>7.2f} "
              f"{r['p99']:>7.2f} {int(r['non2xx']):>7} {int(r['ingested']):>14,}/{int(r['produced']):<14,}")
    by_key = {(server, label): r for server, label, r in results}
    servers = list(dict.fromkeys(server for server, _, _ in results))
    if len(servers) == 2:
        a, b = servers
        for label in dict.fromkeys(label for _, label, _ in results):
            ra, rb = by_key[(a, label)], by_key[(b, label)]
            print(f"ratio {a}/{b} req/s, {label}: {ra['rps'] / rb['rps']:.2f}   "
                  f"(p99 {ra['p99']:.1f} vs {rb['p99']:.1f} ms)")
    for server in servers:
        paced = by_key[(server, results[0][1])]
        ok = paced["rps"] >= 2000 and paced["p99"] < 50 and paced["non2xx"] == 0 and paced["ingested"] > 0
        print(f"target {server}: /api/v1/windows/latest at {paced['rps']:,.0f} req/s with p99 {paced['p99']:.1f} ms "
              f"while ingesting {paced['ingested']:,} live panes (>= 2,000 req/s, p99 < 50 ms): "
              f"{'MET' if ok else 'NOT MET'}")


def start_server(name: str, bootstrap: str, topics: tuple[str, str], threads: int) -> tuple:
    """Start `darkpool serve --server name` on a free port; returns (process, base URL, seconds to ready)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    proc = subprocess.Popen([DARKPOOL, "serve", "--server", name, "--port", str(port), "--bootstrap", bootstrap,
                             "--liquidity-topic", topics[0], "--market-topic", topics[1], "--threads", str(threads)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            if requests.get(f"{base}/api/v1/ready", timeout=2).status_code == 200:
                return proc, base, time.monotonic() - t0
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() - t0 > 120:
            stop_server(proc)
            raise RuntimeError(f"darkpool serve --server {name} did not become ready")
        time.sleep(0.1)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
