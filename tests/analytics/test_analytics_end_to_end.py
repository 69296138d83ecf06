"""End to end, offline: feed tape -> the real Beam pipeline (DirectRunner, file backfill) -> analyze.

The pipeline's own Parquet output is analysed, and the report's period totals
must equal the tape's totals exactly: the non-overlapping 5-minute grid windows
tile the session, so every trade is counted once (not five times, as a sum over
all sliding windows would).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from analytics.dataset import Selection
from analytics.report import build_report
from darkpool.contracts import DARK_VENUE_TYPES, load_venues

feed_generator = pytest.importorskip("feed.generator", reason="the feed package (feed/) is not in this checkout")
pytest.importorskip("pipeline.main", reason="the pipeline package (pipeline/) is not in this checkout")

REPO = Path(__file__).resolve().parents[2]
TRADES = 40_000


def test_report_totals_match_the_tape(tmp_path: Path) -> None:
    config = feed_generator.FeedConfig(seed=5, session_trades=TRADES, count=TRADES, symbols=("AAPL", "MSFT", "NVDA"),
                                       session_date=dt.date(2026, 11, 24))
    tape = tmp_path / "tape.jsonl"
    volume: dict[str, int] = {}
    trades: dict[str, int] = {}
    with tape.open("w") as out:
        for record in feed_generator.generate_tape(config):
            out.write(record.value + "\n")
            trade = orjson.loads(record.value)
            volume[trade["venue"]] = volume.get(trade["venue"], 0) + trade["quantity"]
            trades[trade["venue"]] = trades.get(trade["venue"], 0) + 1
    dataset = tmp_path / "parquet"
    subprocess.run([sys.executable, "-m", "pipeline.main", "--source", "file", "--input", str(tape),
                    "--output", str(dataset)], check=True, cwd=REPO, capture_output=True, timeout=300)

    result = build_report(dataset, Selection(), tmp_path / "report", figures=False)
    ranking = result.tables["venue_ranking"].set_index("venue")
    assert ranking["share_quantity"].to_dict() == volume
    assert ranking["trade_count"].to_dict() == trades
    venues = load_venues()
    dark = sum(q for v, q in volume.items() if venues[v].venue_type in DARK_VENUE_TYPES)
    total = result.tables["trade_size"].set_index("symbol").loc["ALL"]
    assert total["dark_quantity"] == dark
    assert total["dark_quantity"] + total["lit_quantity"] == sum(volume.values())
    symbols = result.tables["symbol_ranking"]
    assert set(symbols["symbol"]) == {"AAPL", "MSFT", "NVDA"}
    assert symbols["share_quantity"].sum() == sum(volume.values())
