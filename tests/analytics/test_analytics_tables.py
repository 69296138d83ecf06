"""Each report table against numbers computed by hand from the dataset in analytics_handmade."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from analytics_handmade import LIQUIDITY_ROWS, MARKET_ROWS, W1, W2, W3

from analytics import tables
from analytics.dataset import Selection, connect, load_panes, parse_symbols_arg, parse_time_arg
from darkpool.errors import DarkpoolError


def _load(root: Path, selection: Selection | None = None) -> duckdb.DuckDBPyConnection:
    con = connect()
    load_panes(con, root, selection or Selection())
    return con


def _row(df: pd.DataFrame, column: str, value: object) -> pd.Series:
    match = df[df[column] == value]
    assert len(match) == 1, f"expected one row with {column}={value!r}, got {len(match)}"
    return match.iloc[0]


def test_final_panes_are_the_last_pane_per_key(hand_dataset: Path) -> None:
    con = _load(hand_dataset)
    # liquidity keeps the on-grid windows only (W1: 4 keys, W3: 3 keys; W2 is off the grid)
    assert con.execute("SELECT count(*) FROM liquidity").fetchall()[0][0] == 7
    assert con.execute("SELECT count(*) FROM liquidity WHERE window_start = ?", [W2]).fetchall()[0][0] == 0
    assert con.execute("SELECT count(*) FROM market").fetchall()[0][0] == 5
    # the EARLY pane (500 sh) is superseded by the ON_TIME one (2000 sh)
    q = con.execute("SELECT share_quantity FROM liquidity WHERE venue='UBSA' AND symbol='AAA' AND window_start=?",
                    [W1]).fetchall()
    assert q == [(2000,)]
    # same pane_index twice: the newer emitted_at wins (1000, not 777)
    q = con.execute("SELECT share_quantity FROM liquidity WHERE venue='XNYS' AND symbol='AAA' AND window_start=?",
                    [W3]).fetchall()
    assert q == [(1000,)]
    # the LATE pane (index 2) supersedes the ON_TIME pane
    q = con.execute("SELECT share_quantity, pane_timing FROM market WHERE symbol='BBB' AND window_start=?",
                    [W3]).fetchall()
    assert q == [(2000, "LATE")]
    grid = con.execute("SELECT window_start, bool_and(on_grid) FROM market GROUP BY 1 ORDER BY 1").fetchall()
    assert [g for _, g in grid] == [True, False, True]


def test_all_panes_keeps_every_pane(hand_dataset: Path) -> None:
    con = _load(hand_dataset, Selection(all_panes=True))
    on_grid_rows = [r for r in LIQUIDITY_ROWS if r["window_start"] != W2]
    assert con.execute("SELECT count(*) FROM liquidity").fetchall()[0][0] == len(on_grid_rows) == 10
    assert con.execute("SELECT count(*) FROM market").fetchall()[0][0] == len(MARKET_ROWS)
    summary = tables.pane_summary(con)
    liq = summary[summary["table_name"] == "liquidity"].set_index("pane_timing")["panes"].to_dict()
    assert liq == {"EARLY": 1, "ON_TIME": 8, "LATE": 1}
    mkt = summary[summary["table_name"] == "market"].set_index("pane_timing")["panes"].to_dict()
    assert mkt == {"ON_TIME": 5, "LATE": 1}


def test_venue_ranking(hand_dataset: Path) -> None:
    df = tables.venue_ranking(_load(hand_dataset))
    assert list(df["venue"]) == ["UBSA", "XNYS", "CDRG"]  # by notional: 600k, 450k, 150k
    ubsa, xnys, cdrg = (_row(df, "venue", v) for v in ("UBSA", "XNYS", "CDRG"))
    # grid windows W1 + W3 only: the off-grid W2 (90,000 sh on UBSA) must not be counted
    assert (ubsa.trade_count, ubsa.share_quantity, ubsa.notional) == (10, 6000, 600_000.0)
    assert (xnys.trade_count, xnys.share_quantity, xnys.notional) == (19, 5000, 450_000.0)
    assert (cdrg.trade_count, cdrg.share_quantity, cdrg.notional) == (5, 3000, 150_000.0)
    assert ubsa.volume_share == pytest.approx(6000 / 14000)
    assert xnys.notional_share == pytest.approx(450_000 / 1_200_000)
    assert xnys.avg_trade_size == pytest.approx(5000 / 19)
    assert cdrg.vwap == pytest.approx(50.0)
    assert (ubsa.block_count, ubsa.block_quantity) == (1, 2000)
    assert ubsa["name"] == "UBS ATS" and bool(ubsa.dark) and not bool(xnys.dark)
    assert list(df["rank_volume"]) == [1, 2, 3]


def test_dark_lit_over_time(hand_dataset: Path) -> None:
    df = tables.dark_lit_over_time(_load(hand_dataset))
    assert [t.to_pydatetime() for t in df["window_start"]] == [W1, W2, W3]
    assert list(df["share_quantity"]) == [7000, 100_000, 7000]
    assert list(df["dark_quantity"]) == [3000, 90_000, 6000]
    assert df["dark_share"].tolist() == pytest.approx([3 / 7, 0.9, 6 / 7])
    assert df["lit_share"].tolist() == pytest.approx([4 / 7, 0.1, 1 / 7])
    assert df["dark_notional_share"].tolist() == pytest.approx([250_000 / 600_000, 0.9, 500_000 / 600_000])


def test_symbol_ranking(hand_dataset: Path) -> None:
    df = tables.symbol_ranking(_load(hand_dataset))
    assert list(df["symbol"]) == ["BBB", "AAA"]
    assert list(df["rank"]) == [1, 2]
    bbb, aaa = _row(df, "symbol", "BBB"), _row(df, "symbol", "AAA")
    assert (bbb.share_quantity, bbb.dark_quantity, bbb.lit_quantity) == (4000, 3000, 1000)
    assert bbb.dark_share == pytest.approx(0.75)
    assert (aaa.share_quantity, aaa.dark_quantity) == (10_000, 6000)
    assert aaa.dark_share == pytest.approx(0.6)
    assert aaa.dark_notional_share == pytest.approx(0.6)


def test_trade_size(hand_dataset: Path) -> None:
    df = tables.trade_size(_load(hand_dataset))
    assert list(df["symbol"]) == ["ALL", "AAA", "BBB"]
    total, aaa, bbb = (_row(df, "symbol", s) for s in ("ALL", "AAA", "BBB"))
    assert (total.dark_trade_count, total.dark_quantity, total.lit_trade_count, total.lit_quantity) == (
        15, 9000, 19, 5000)
    assert total.dark_avg_trade_size == pytest.approx(600.0)
    assert total.lit_avg_trade_size == pytest.approx(5000 / 19)
    assert total.dark_to_lit_ratio == pytest.approx(600 / (5000 / 19))
    assert aaa.lit_avg_trade_size == pytest.approx(4000 / 14)
    assert bbb.dark_to_lit_ratio == pytest.approx(3.0)


def test_block_activity(hand_dataset: Path) -> None:
    con = _load(hand_dataset)
    df = tables.block_activity(con)
    total, aaa, bbb = (_row(df, "symbol", s) for s in ("ALL", "AAA", "BBB"))
    assert (total.block_count, total.dark_block_count, total.lit_block_count, total.block_quantity) == (1, 1, 0, 2000)
    assert total.block_volume_share == pytest.approx(2000 / 14_000)
    assert total.block_trade_ratio == pytest.approx(1 / 34)
    assert aaa.block_volume_share == pytest.approx(0.2)
    assert bbb.block_count == 0 and pd.isna(bbb.dark_block_ratio)
    by_venue = tables.block_by_venue(con)
    ubsa = _row(by_venue, "venue", "UBSA")
    assert (ubsa.block_count, ubsa.block_quantity, ubsa.share_of_blocks) == (1, 2000, 1.0)
    assert ubsa.block_volume_share == pytest.approx(2000 / 6000)


def test_hhi_over_time(hand_dataset: Path) -> None:
    df = tables.hhi_over_time(_load(hand_dataset))
    assert df["mean_hhi"].tolist() == pytest.approx([5100.0, 8200.0, 8400.0])
    assert df["weighted_hhi"].tolist() == pytest.approx([
        (5200 * 5000 + 5000 * 2000) / 7000, 8200.0, (6800 * 5000 + 10_000 * 2000) / 7000])
    assert df["min_hhi"].tolist() == [5000.0, 8200.0, 6800.0]
    assert df["max_hhi"].tolist() == [5200.0, 8200.0, 10_000.0]


def test_hhi_by_symbol(hand_dataset: Path) -> None:
    df = tables.hhi_by_symbol(_load(hand_dataset))
    assert list(df["symbol"]) == ["BBB", "AAA"]
    bbb, aaa = _row(df, "symbol", "BBB"), _row(df, "symbol", "AAA")
    assert bbb.period_hhi == pytest.approx(75**2 + 25**2)  # CDRG 3000, XNYS 1000
    assert aaa.period_hhi == pytest.approx(60**2 + 40**2)  # UBSA 6000, XNYS 4000
    assert (aaa.top_venue, aaa.top_venue_share) == ("UBSA", pytest.approx(0.6))
    assert aaa.mean_window_hhi == pytest.approx((5200 + 8200 + 6800) / 3)
    assert bbb.windows == 2


def test_selection_by_symbol_and_time(hand_dataset: Path) -> None:
    con = _load(hand_dataset, Selection(symbols=("AAA",)))
    assert set(tables.venue_ranking(con)["venue"]) == {"UBSA", "XNYS"}
    con = _load(hand_dataset, Selection(start=W3))
    df = tables.venue_ranking(con)
    assert dict(zip(df["venue"], df["share_quantity"], strict=True)) == {"UBSA": 4000, "XNYS": 1000, "CDRG": 2000}
    con = _load(hand_dataset, Selection(start=W1, end=W3))
    assert tables.dark_lit_over_time(con)["share_quantity"].tolist() == [7000, 100_000]


def test_selection_errors(hand_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DarkpoolError, match="no panes"):
        _load(hand_dataset, Selection(symbols=("ZZZ",)))
    with pytest.raises(DarkpoolError, match="no Parquet dataset"):
        _load(tmp_path / "missing")
    (tmp_path / "empty" / "liquidity").mkdir(parents=True)
    with pytest.raises(DarkpoolError, match="no Parquet files"):
        _load(tmp_path / "empty")
    with pytest.raises(DarkpoolError, match="not an ISO-8601"):
        parse_time_arg("yesterday", "--from")
    assert parse_time_arg("2026-11-24", "--from") == datetime(2026, 11, 24, tzinfo=UTC)
    assert parse_symbols_arg(" aaa, BBB,aaa ") == ("AAA", "BBB")


def test_file_not_in_contract_schema_is_a_clear_error(hand_dataset: Path) -> None:
    bad = pa.table({"window_start": pa.array([1], pa.int64()), "symbol": ["AAA"]})
    pq.write_table(bad, hand_dataset / "market" / "date=2026-11-24" / "zz-bad.parquet")
    with pytest.raises(DarkpoolError, match="cannot read the market table"):
        _load(hand_dataset)
