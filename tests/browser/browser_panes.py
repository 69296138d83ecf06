"""Contract records for the browser tests: liquidity and market panes of recent windows.

The panes follow darkpool.contracts (LIQUIDITY_FIELDS / MARKET_FIELDS, keys,
ISO-8601 times) and the definitions of darkpool.market, with the market rollup computed
from the liquidity panes of the same (window, symbol), so what the dashboard
shows can be checked against what was produced. Alert records (:func:`alert_record`,
darkpool.contracts ALERT_FIELDS) go to an optional alerts topic (``make_topics(...,
alerts=True)``); without it the alerts topic named does not exist (no alerts yet).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

import orjson
from confluent_kafka import Producer
from contract_records import market_rollup

from darkpool import market
from darkpool.contracts import (
    ALERT_FIELDS,
    ALERT_NULLABLE_FIELDS,
    BLOCK_MIN_SHARES,
    LIQUIDITY_FIELDS,
    alert_key,
    format_event_time,
    liquidity_key,
    load_venues,
    market_key,
)
from darkpool.stack.topics import TopicSpec, create_topics

MINUTE_MS = 60_000
WINDOW_MS = 5 * MINUTE_MS
PRICES = {"AAPL": 189.2, "MSFT": 415.6, "NVDA": 131.4, "AMZN": 178.9, "TSLA": 242.1, "SPY": 571.3}


@dataclass(frozen=True)
class Topics:
    liquidity: str
    market: str
    alerts: str = ""  # the alerts topic serving reads (empty: serving's default)


def make_topics(bootstrap: str, alerts: bool = False) -> Topics:
    """Two fresh, uniquely named output topics on the real broker, and a unique alerts topic name
    (the topic created only when ``alerts``, so by default serving has no alerts topic: no alerts yet)."""
    suffix = uuid.uuid4().hex[:10]
    topics = Topics(f"test.browser.{suffix}.liquidity", f"test.browser.{suffix}.market",
                    f"test.browser.{suffix}.alerts")
    specs = {topics.liquidity: TopicSpec(2), topics.market: TopicSpec(2)}
    if alerts:
        specs[topics.alerts] = TopicSpec(2, {"cleanup.policy": "compact"})
    create_topics(bootstrap, specs)
    return topics


def liquidity_pane(symbol: str, venue: str, window_start_ms: int, *, trades: list[tuple[float, int]],
                   timing: str, pane_index: int, emitted_ms: int) -> dict:
    """One (window, symbol, venue) pane aggregated from (price, quantity) trades."""
    venue_type = load_venues()[venue].venue_type
    qty = sum(q for _, q in trades)
    notional = sum(p * q for p, q in trades)
    blocks = [(p, q) for p, q in trades if market.is_block(p, q)]
    buy = sum(q for i, (_, q) in enumerate(trades) if i % 2 == 0)
    record = {
        "window_start": format_event_time(window_start_ms),
        "window_end": format_event_time(window_start_ms + WINDOW_MS),
        "symbol": symbol, "venue": venue, "venue_type": venue_type,
        "trade_count": len(trades), "share_quantity": qty, "notional": round(notional, 4),
        "vwap": market.vwap(notional, qty), "min_price": min(p for p, _ in trades),
        "max_price": max(p for p, _ in trades), "avg_trade_size": market.average_trade_size(qty, len(trades)),
        "block_count": len(blocks),
        "block_quantity": sum(q for _, q in blocks), "buy_quantity": buy, "sell_quantity": qty - buy,
        "pane_timing": timing, "pane_index": pane_index, "emitted_at": format_event_time(emitted_ms),
    }
    assert tuple(record) == LIQUIDITY_FIELDS
    return record


def market_pane(panes: list[dict]) -> dict:
    """The (window, symbol) rollup of its venues' liquidity panes, by the rules of darkpool.market."""
    first = panes[0]
    return market_rollup(panes, first["pane_timing"], first["pane_index"], first["emitted_at"])


def random_trades(rng: random.Random, price: float, dark: bool) -> list[tuple[float, int]]:
    """A heavy-tailed handful of prints around a price; dark venues print larger on average."""
    trades = []
    for _ in range(rng.randint(15, 60)):
        size = int(rng.paretovariate(2.0) * (120 if dark else 100))
        if rng.random() < 0.03:
            size = rng.randint(BLOCK_MIN_SHARES, 4 * BLOCK_MIN_SHARES)
        trades.append((round(price * (1 + rng.gauss(0, 0.0008)), 2), max(size, 1)))
    return trades


def build_session(now_ms: int, *, symbols: tuple[str, ...] = tuple(PRICES), windows: int = 20, seed: int = 7,
                  emitted_ms: int | None = None) -> tuple[list[dict], list[dict]]:
    """Panes of the last `windows` complete sliding windows (ON_TIME) plus the current one (EARLY).

    Window ends are minute-aligned; the newest complete window ends at the last
    full minute, the current window one minute later. Returns (liquidity, market).
    """
    rng = random.Random(seed)
    emitted = now_ms if emitted_ms is None else emitted_ms
    last_end = now_ms - now_ms % MINUTE_MS
    registry = load_venues()
    liquidity: list[dict] = []
    market: list[dict] = []
    for k in range(windows, -1, -1):
        end = last_end - k * MINUTE_MS + (MINUTE_MS if k == 0 else 0)
        timing = "EARLY" if k == 0 else "ON_TIME"
        for symbol in symbols:
            # 16 dark venues vs 7 lit ones: a dark venue prints in 22-50% of windows, a lit one in 95%,
            # which gives dark shares of roughly 35-55% depending on the symbol
            dark_rate = 0.22 + 0.28 * (sorted(symbols).index(symbol) / max(len(symbols) - 1, 1))
            panes = []
            for venue in registry.values():
                active = rng.random() < (dark_rate if venue.is_dark else 0.95)
                if not active:
                    continue
                trades = random_trades(rng, PRICES.get(symbol, 100.0), venue.is_dark)
                panes.append(liquidity_pane(symbol, venue.mpid, end - WINDOW_MS, trades=trades, timing=timing,
                                            pane_index=0, emitted_ms=emitted))
            liquidity.extend(panes)
            market.append(market_pane(panes))
    return liquidity, market


def alert_record(symbol: str, kind: str, severity: str, window_start_ms: int, *, emitted_ms: int,
                 venue: str | None = None, observed: float = 0.8, baseline: float = 0.4, score: float = 7.5,
                 timing: str = "EARLY", pane_index: int = 0) -> dict:
    """A darkpool.alerts record (darkpool.contracts ALERT_FIELDS) of the window starting at window_start_ms."""
    record = {
        "window_start": format_event_time(window_start_ms),
        "window_end": format_event_time(window_start_ms + WINDOW_MS),
        "symbol": symbol, "kind": kind, "venue": venue,
        "observed": observed, "baseline": baseline, "baseline_spread": 0.02, "baseline_windows": 20,
        "score": score, "severity": severity, "pane_timing": timing, "pane_index": pane_index,
        "emitted_at": format_event_time(emitted_ms),
    }
    assert tuple(record) == ALERT_FIELDS
    assert all(v is not None for k, v in record.items() if k not in ALERT_NULLABLE_FIELDS)
    return record


def produce(bootstrap: str, topics: Topics, liquidity: list[dict], market: list[dict],
            alerts: list[dict] = ()) -> None:
    """Produce contract records (keys as in darkpool.contracts) and wait for the broker's acknowledgements."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    failures: list[str] = []

    def report(err, _msg) -> None:
        if err is not None:
            failures.append(str(err))

    for r in liquidity:
        producer.produce(topics.liquidity, key=liquidity_key(r["symbol"], r["venue"], r["window_start"]).encode(),
                         value=orjson.dumps(r), on_delivery=report)
    for r in market:
        producer.produce(topics.market, key=market_key(r["symbol"], r["window_start"]).encode(),
                         value=orjson.dumps(r), on_delivery=report)
    for r in alerts:
        producer.produce(topics.alerts, key=alert_key(r["symbol"], r["kind"], r["window_start"]).encode(),
                         value=orjson.dumps(r), on_delivery=report)
    remaining = producer.flush(30)
    assert remaining == 0 and not failures, f"produce failed: {remaining} unsent, errors {failures[:3]}"
