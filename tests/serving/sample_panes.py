"""Contract records for the serving tests, and their expected final state.

The tape: 5 sliding windows (5 min every 1 min) W0..W4; symbols AAPL, MSFT,
NVDA on venues UBSA (ATS), JPMX (ATS), CDRG (SDP), XNAS (EXCHANGE); IBM prints
only in W0. Windows W0..W2 get EARLY -> ON_TIME panes, W0 and W1 also a LATE
pane; W3 and W4 only EARLY panes (two each). After the final panes a stale
EARLY pane (index 0) of W1 is re-sent: the store must keep the LATE pane.
So the latest complete window is W2 and the current window is W4.

Alerts (:func:`sample_alerts`) for the tape's windows go to an optional alerts topic
(``make_topics(..., alerts=True)``); without it the topics' alerts name is one that does not
exist, so serving meets a deployment that has no alerts topic yet.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Producer
from contract_records import market_rollup

from darkpool import market
from darkpool.contracts import (
    ALERT_FIELDS,
    ALERT_KINDS,
    LIQUIDITY_FIELDS,
    SEVERITIES,
    alert_key,
    format_event_time,
    liquidity_key,
    load_venues,
    market_key,
)
from darkpool.stack.topics import TopicSpec, create_topics

BASE_MS = 1_795_000_000_000 - (1_795_000_000_000 % 60_000)  # a minute boundary in 2026
WINDOW_MS, PERIOD_MS = 300_000, 60_000
SYMBOLS = ("AAPL", "MSFT", "NVDA")
VENUES = ("UBSA", "JPMX", "CDRG", "XNAS")
PRICES = {"AAPL": 189.0, "MSFT": 410.0, "NVDA": 130.0, "IBM": 220.0}
N_WINDOWS = 5
# window index -> pane timings in emission order
TIMINGS = {0: ("EARLY", "ON_TIME", "LATE"), 1: ("EARLY", "ON_TIME", "LATE"), 2: ("EARLY", "ON_TIME"),
           3: ("EARLY", "EARLY"), 4: ("EARLY", "EARLY")}


def window_start(w: int) -> int:
    return BASE_MS + w * PERIOD_MS


def liquidity_record(w: int, symbol: str, venue: str, pane_index: int, timing: str) -> dict[str, Any]:
    """A liquidity pane whose numbers grow with the pane index (accumulating panes)."""
    vi = VENUES.index(venue) if venue in VENUES else 0
    si = (SYMBOLS.index(symbol) if symbol in SYMBOLS else 3)
    trades = 10 + 3 * w + 5 * vi + si + 4 * pane_index
    qty = trades * (100 + 50 * vi + 10 * si) + (12_000 if (w + vi) % 4 == 0 else 0)
    price = PRICES[symbol] + 0.01 * w
    notional = qty * price
    blocks = 1 if (w + vi) % 4 == 0 else 0
    start = window_start(w)
    record = {
        "window_start": format_event_time(start), "window_end": format_event_time(start + WINDOW_MS),
        "symbol": symbol, "venue": venue, "venue_type": load_venues()[venue].venue_type,
        "trade_count": trades, "share_quantity": qty, "notional": notional, "vwap": market.vwap(notional, qty),
        "min_price": price - 0.05, "max_price": price + 0.05, "avg_trade_size": market.average_trade_size(qty, trades),
        "block_count": blocks, "block_quantity": 12_000 * blocks,
        "buy_quantity": qty // 2, "sell_quantity": qty - qty // 2,
        "pane_timing": timing, "pane_index": pane_index,
        "emitted_at": format_event_time(start + WINDOW_MS + 1000 * pane_index - (60_000 if timing == "EARLY" else 0)),
    }
    assert tuple(record) == LIQUIDITY_FIELDS
    return record


def market_record(rows: list[dict[str, Any]], pane_index: int, timing: str) -> dict[str, Any]:
    """The market rollup of one (window, symbol) from its liquidity rows."""
    return market_rollup(rows, timing, pane_index, max(r["emitted_at"] for r in rows))


def venues_of(w: int, symbol: str) -> tuple[str, ...]:
    """NVDA does not print on CDRG in odd windows: venue sets differ across windows."""
    if symbol == "IBM":
        return ("UBSA", "XNAS")
    return tuple(v for v in VENUES if not (symbol == "NVDA" and v == "CDRG" and w % 2 == 1))


@dataclass
class Tape:
    """Records in production order and the final (latest) pane per key."""

    liquidity: list[dict[str, Any]] = field(default_factory=list)
    market: list[dict[str, Any]] = field(default_factory=list)
    final_liquidity: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    final_market: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def add_window(self, w: int, symbols: tuple[str, ...]) -> None:
        for index, timing in enumerate(TIMINGS[w]):
            for symbol in symbols:
                rows = [liquidity_record(w, symbol, v, index, timing) for v in venues_of(w, symbol)]
                for row in rows:
                    self.liquidity.append(row)
                    self.final_liquidity[(row["window_start"], symbol, row["venue"])] = row
                mrec = market_record(rows, index, timing)
                self.market.append(mrec)
                self.final_market[(mrec["window_start"], symbol)] = mrec

    def window_rows(self, w: int, symbol: str | None = None, venue: str | None = None) -> list[dict[str, Any]]:
        start = format_event_time(window_start(w))
        rows = [r for (ws, s, v), r in self.final_liquidity.items()
                if ws == start and (symbol is None or s == symbol) and (venue is None or v == venue)]
        return sorted(rows, key=lambda r: (r["symbol"], r["venue"]))

    def market_rows(self, w: int) -> list[dict[str, Any]]:
        start = format_event_time(window_start(w))
        return [r for (ws, _), r in self.final_market.items() if ws == start]


def build_tape() -> Tape:
    """The whole test tape, plus one stale EARLY pane re-sent after W1's LATE pane."""
    tape = Tape()
    tape.add_window(0, (*SYMBOLS, "IBM"))
    for w in range(1, N_WINDOWS):
        tape.add_window(w, SYMBOLS)
    tape.liquidity.append(liquidity_record(1, "AAPL", "UBSA", 0, "EARLY"))  # stale: must not replace index 2
    return tape


def alert_record(w: int, symbol: str, kind: str, severity: str, emitted_ms: int, pane_index: int = 0,
                 timing: str = "EARLY") -> dict[str, Any]:
    """A darkpool.alerts record of window ``w`` (venue-named kinds name UBSA)."""
    start = window_start(w)
    record = {
        "window_start": format_event_time(start), "window_end": format_event_time(start + WINDOW_MS),
        "symbol": symbol, "kind": kind, "venue": None if kind == ALERT_KINDS[0] else "UBSA",
        "observed": 0.7, "baseline": 0.3, "baseline_spread": 0.02, "baseline_windows": 60,
        "score": 5.0 + 2.0 * SEVERITIES.index(severity), "severity": severity,
        "pane_timing": timing, "pane_index": pane_index, "emitted_at": format_event_time(emitted_ms),
    }
    assert tuple(record) == ALERT_FIELDS
    return record


def sample_alerts() -> list[dict[str, Any]]:
    """One alert of each kind on the tape's symbols and windows, one raised later (low, then high)."""
    return [
        alert_record(1, "AAPL", ALERT_KINDS[0], SEVERITIES[0], window_start(1) + 60_000),
        alert_record(2, "MSFT", ALERT_KINDS[1], SEVERITIES[1], window_start(2) + 70_000),
        alert_record(3, "NVDA", ALERT_KINDS[2], SEVERITIES[0], window_start(3) + 80_000),
        alert_record(1, "AAPL", ALERT_KINDS[0], SEVERITIES[2], window_start(1) + 90_000, 1),  # raised
    ]


@dataclass
class Topics:
    liquidity: str
    market: str
    alerts: str = ""  # empty: alerts are not read


CREATED: list[str] = []  # topics this test session made (deleted at its end by conftest)


def make_topics(bootstrap: str, partitions: int = 3, alerts: bool = False) -> Topics:
    """A fresh, uniquely named pair of compacted output topics, and a unique alerts topic name (the topic
    created only when ``alerts``)."""
    suffix = uuid.uuid4().hex[:10]
    topics = Topics(f"test.serving.liquidity.{suffix}", f"test.serving.market.{suffix}",
                    f"test.serving.alerts.{suffix}")
    compacted = {"cleanup.policy": "compact"}
    specs = {topics.liquidity: TopicSpec(partitions, compacted), topics.market: TopicSpec(partitions, compacted)}
    if alerts:
        specs[topics.alerts] = TopicSpec(partitions, compacted)
    CREATED.extend(specs)
    create_topics(bootstrap, specs)
    return topics


def create_alerts_topic(bootstrap: str, topics: Topics, partitions: int = 3) -> None:
    """Create the topics' alerts topic later (as `darkpool topics` does on a deployment that had none)."""
    CREATED.append(topics.alerts)
    create_topics(bootstrap, {topics.alerts: TopicSpec(partitions, {"cleanup.policy": "compact"})})


def produce(bootstrap: str, topics: Topics, liquidity: list[dict[str, Any]], market: list[dict[str, Any]],
            raw_liquidity: list[bytes] = (), alerts: list[dict[str, Any]] = ()) -> None:
    """Produce records keyed as the pipeline keys them; waits for every delivery."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    failures: list[str] = []

    def on_delivery(err, _msg) -> None:
        if err is not None:
            failures.append(str(err))

    for rec in liquidity:
        producer.produce(topics.liquidity, orjson.dumps(rec),
                         key=liquidity_key(rec["symbol"], rec["venue"], rec["window_start"]), on_delivery=on_delivery)
    for raw in raw_liquidity:
        producer.produce(topics.liquidity, raw, key=b"AAPL|UBSA|bad", on_delivery=on_delivery)
    for rec in market:
        producer.produce(topics.market, orjson.dumps(rec), key=market_key(rec["symbol"], rec["window_start"]),
                         on_delivery=on_delivery)
    for rec in alerts:
        producer.produce(topics.alerts, orjson.dumps(rec), key=alert_key(rec["symbol"], rec["kind"],
                                                                         rec["window_start"]),
                         on_delivery=on_delivery)
    remaining = producer.flush(30)
    assert remaining == 0 and not failures, f"produce failed: {remaining} undelivered, {failures[:3]}"
