"""Test data for tests/analytics: a small hand-made Parquet dataset in the contract layout.

Windows are 5 minutes, sliding every minute. Three windows on 2026-11-24:

- W1 14:30-14:35 and W3 14:35-14:40 start on the 5-minute grid (they count in period totals);
- W2 14:31-14:36 does not (it overlaps both; only per-window tables see it).

Venues: UBSA (ATS, dark), CDRG (SDP, dark), XNYS (exchange, lit). Final pane values
(trades, shares, notional) per (window, symbol, venue)::

    W1 AAA UBSA   4   2000   200,000      W1 BBB CDRG   2  1000  50,000
    W1 AAA XNYS  10   3000   300,000      W1 BBB XNYS   5  1000  50,000
    W2 AAA UBSA  90  90000 9,000,000      W2 AAA XNYS  10 10000 1,000,000  (5 blocks, 60,000 sh)
    W3 AAA UBSA   6   4000   400,000  (1 block, 2,000 sh)
    W3 AAA XNYS   4   1000   100,000      W3 BBB CDRG   3  2000 100,000

Superseded panes are present too: an EARLY pane before AAA UBSA W1's final one, an
ON_TIME pane before BBB CDRG W3's final LATE pane, and two panes of AAA XNYS W3 with
the same pane_index where the newer emitted_at wins.

The ratios come from darkpool.market; the market rows' HHI, top venue and venue
count are written out by hand and tests/test_market_rules.py checks them
against darkpool.market over the final liquidity rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from darkpool import market
from darkpool.contracts import (
    ALERT_BLOCK_CLUSTER,
    ALERT_DARK_SHARE_SURGE,
    ALERT_VENUE_CONCENTRATION,
    LIQUIDITY_SCHEMA,
    MARKET_SCHEMA,
    venue_type_of,
)

DAY = datetime(2026, 11, 24, tzinfo=UTC)
W1 = DAY.replace(hour=14, minute=30)
W2 = DAY.replace(hour=14, minute=31)
W3 = DAY.replace(hour=14, minute=35)
SIZE = timedelta(minutes=5)


def liq(ws, symbol, venue, trades, qty, notional, *, blocks=0, block_qty=0, timing="ON_TIME", index=1,
        emitted_delay_s=400):
    """One liquidity pane row."""
    return {
        "window_start": ws, "window_end": ws + SIZE, "symbol": symbol, "venue": venue,
        "venue_type": venue_type_of(venue), "trade_count": trades, "share_quantity": qty, "notional": notional,
        "vwap": market.vwap(notional, qty), "min_price": notional / qty - 0.05, "max_price": notional / qty + 0.05,
        "avg_trade_size": market.average_trade_size(qty, trades), "block_count": blocks, "block_quantity": block_qty,
        "buy_quantity": qty // 2, "sell_quantity": qty - qty // 2,
        "pane_timing": timing, "pane_index": index, "emitted_at": ws + SIZE + timedelta(seconds=emitted_delay_s),
    }


def mkt(ws, symbol, *, trades, qty, notional, dark_qty, dark_notional, dark_trades, blocks=0, block_qty=0,
        dark_blocks=0, hhi, venues, top, top_share, timing="ON_TIME", index=1):
    """One market pane row."""
    return {
        "window_start": ws, "window_end": ws + SIZE, "symbol": symbol, "trade_count": trades,
        "share_quantity": qty, "notional": notional, "vwap": market.vwap(notional, qty),
        "dark_quantity": dark_qty, "lit_quantity": qty - dark_qty,
        "dark_notional": dark_notional, "lit_notional": notional - dark_notional,
        "dark_trade_count": dark_trades, "lit_trade_count": trades - dark_trades,
        "dark_share": market.dark_share(dark_qty, qty), "block_count": blocks, "block_quantity": block_qty,
        "dark_block_count": dark_blocks, "hhi": hhi, "venue_count": venues, "top_venue": top,
        "top_venue_share": top_share, "pane_timing": timing, "pane_index": index,
        "emitted_at": ws + SIZE + timedelta(seconds=400),
    }


LIQUIDITY_ROWS = [
    liq(W1, "AAA", "UBSA", 1, 500, 50_000.0, timing="EARLY", index=0, emitted_delay_s=-60),  # superseded
    liq(W1, "AAA", "UBSA", 4, 2000, 200_000.0),
    liq(W1, "AAA", "XNYS", 10, 3000, 300_000.0),
    liq(W1, "BBB", "CDRG", 2, 1000, 50_000.0),
    liq(W1, "BBB", "XNYS", 5, 1000, 50_000.0),
    liq(W2, "AAA", "UBSA", 90, 90_000, 9_000_000.0, blocks=5, block_qty=60_000),
    liq(W2, "AAA", "XNYS", 10, 10_000, 1_000_000.0),
    liq(W3, "AAA", "UBSA", 6, 4000, 400_000.0, blocks=1, block_qty=2000),
    liq(W3, "AAA", "XNYS", 3, 777, 77_700.0, emitted_delay_s=100),  # same pane_index, older: superseded
    liq(W3, "AAA", "XNYS", 4, 1000, 100_000.0, emitted_delay_s=200),
    liq(W3, "BBB", "CDRG", 2, 1500, 75_000.0),  # ON_TIME, superseded by the LATE pane
    liq(W3, "BBB", "CDRG", 3, 2000, 100_000.0, timing="LATE", index=2, emitted_delay_s=500),
]

MARKET_ROWS = [
    mkt(W1, "AAA", trades=14, qty=5000, notional=500_000.0, dark_qty=2000, dark_notional=200_000.0, dark_trades=4,
        hhi=5200.0, venues=2, top="XNYS", top_share=0.6),
    mkt(W1, "BBB", trades=7, qty=2000, notional=100_000.0, dark_qty=1000, dark_notional=50_000.0, dark_trades=2,
        hhi=5000.0, venues=2, top="CDRG", top_share=0.5),
    mkt(W2, "AAA", trades=100, qty=100_000, notional=10_000_000.0, dark_qty=90_000, dark_notional=9_000_000.0,
        dark_trades=90, blocks=5, block_qty=60_000, dark_blocks=5, hhi=8200.0, venues=2, top="UBSA", top_share=0.9),
    mkt(W3, "AAA", trades=10, qty=5000, notional=500_000.0, dark_qty=4000, dark_notional=400_000.0, dark_trades=6,
        blocks=1, block_qty=2000, dark_blocks=1, hhi=6800.0, venues=2, top="UBSA", top_share=0.8),
    mkt(W3, "BBB", trades=2, qty=1500, notional=75_000.0, dark_qty=1500, dark_notional=75_000.0, dark_trades=2,
        hhi=10000.0, venues=1, top="CDRG", top_share=1.0),  # superseded by the LATE pane below
    mkt(W3, "BBB", trades=3, qty=2000, notional=100_000.0, dark_qty=2000, dark_notional=100_000.0, dark_trades=3,
        hhi=10000.0, venues=1, top="CDRG", top_share=1.0, timing="LATE", index=2),
]


def write_dataset(root: Path, liquidity: list[dict], market: list[dict]) -> Path:
    """Write rows in the contract layout, split over two files per table and date partition."""
    for table, rows, schema in (("liquidity", liquidity, LIQUIDITY_SCHEMA), ("market", market, MARKET_SCHEMA)):
        by_date: dict[str, list[dict]] = {}
        for row in rows:
            by_date.setdefault(row["window_start"].strftime("%Y-%m-%d"), []).append(row)
        for day, day_rows in by_date.items():
            folder = root / table / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            half = len(day_rows) // 2
            for i, part in enumerate((day_rows[:half], day_rows[half:])):
                if part:
                    pq.write_table(pa.Table.from_pylist(part, schema=schema), folder / f"part-{i}.parquet")
    return root


def write_finra(path: Path, rows: list[str], header: str | None = None) -> Path:
    """A FINRA weekly file: the standard header (or ``header``) and the given pipe-delimited rows."""
    header = header or ("tierDescription|issueSymbolIdentifier|issueName|marketParticipantName|MPID|"
                        "totalWeeklyShareQuantity|totalWeeklyTradeCount|lastUpdateDate")
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


# AAA: UBSA 6000 sh / 10 trades, MSPL 4000 / 8;  BBB: JPMX 3000 / 6, UBSA 1000 / 1
FINRA_ROWS = [
    "NMS Tier 1|AAA|Alpha Corp|UBS ATS|UBSA|6000|10|2026-11-16",
    "NMS Tier 1|AAA|Alpha Corp|MS Pool|MSPL|4000|8|2026-11-16",
    "NMS Tier 2|BBB|Beta Inc|JPM-X|JPMX|3000|6|2026-11-16",
    "NMS Tier 2|BBB|Beta Inc|UBS ATS|UBSA|1000|1|2026-11-16",
]


def shifted_rows(rows: list[dict], days: int) -> list[dict]:
    """Copies of pane rows moved by ``days`` (their window start, window end and emission time)."""
    moved = []
    for row in rows:
        row = dict(row)
        for name in ("window_start", "window_end", "emitted_at"):
            row[name] = row[name] + timedelta(days=days)
        moved.append(row)
    return moved


# --- the alerts table (contracts.ALERT_SCHEMA; tests/analytics/test_analytics_alerts.py lists them) ------
SURGE, BLOCKS, CONCENTRATION = ALERT_DARK_SHARE_SURGE, ALERT_BLOCK_CLUSTER, ALERT_VENUE_CONCENTRATION
EARLY_W = DAY.replace(hour=13, minute=55)
NEXT_DAY = DAY + timedelta(days=1)


def alert(ws, symbol, kind, severity, score, *, venue=None, emitted_s=60, timing="ON_TIME", index=1) -> dict:
    """One alert row in ALERT_SCHEMA, emitted ``emitted_s`` seconds after its window's start."""
    return {"window_start": ws, "window_end": ws + SIZE, "symbol": symbol, "kind": kind, "venue": venue,
            "observed": 0.9, "baseline": 0.4, "baseline_spread": 0.05, "baseline_windows": 30, "score": score,
            "severity": severity, "pane_timing": timing, "pane_index": index,
            "emitted_at": ws + timedelta(seconds=emitted_s)}


ALERT_ROWS = [
    alert(EARLY_W, "BBB", SURGE, "medium", 4.2),
    alert(W2, "AAA", SURGE, "medium", 4.0, emitted_s=30, timing="EARLY", index=0),
    alert(W2, "AAA", SURGE, "high", 6.5, emitted_s=90),
    alert(W2, "AAA", SURGE, "low", 2.0, emitted_s=900, timing="LATE", index=2),  # later but lower: not kept
    alert(W2, "AAA", BLOCKS, "low", 2.6, venue="UBSA", emitted_s=40),
    alert(W2, "AAA", BLOCKS, "medium", 3.5, venue="UBSA", emitted_s=80),
    alert(W2, "AAA", BLOCKS, "medium", 3.6, venue="UBSA", emitted_s=120),  # same severity, later: kept
    alert(W3, "AAA", CONCENTRATION, "low", 3.1, venue="UBSA"),
    alert(W1, "BBB", CONCENTRATION, "high", 7.0, venue="CDRG"),
    alert(W3, "BBB", CONCENTRATION, "medium", 4.8, venue="XNYS"),
    alert(NEXT_DAY.replace(hour=9, minute=30), "AAA", SURGE, "high", 9.0),  # after --to
]
