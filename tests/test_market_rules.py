"""One set of cases, every implementation of the market definitions, equal results (docs/market-rules.md).

The implementations:

- Python, :mod:`darkpool.market` (the tests' helpers use it), and the
  pipeline's market rollup built on it (``pipeline.records.market_values``);
- DuckDB SQL, :mod:`analytics.market_sql`, both as bare expressions over each
  case and inside the report's own queries (``analytics.tables.hhi_by_symbol``,
  ``analytics.finra.concentration``);
- JavaScript, ``dashboard/src/metrics.js``, run with node (tests/market_rules.mjs).

A case is the liquidity rows of one (window, symbol): venue, venue type, trades,
shares, notional. Each implementation gives VWAP, average trade size, dark share,
HHI, top venue and its share, and venue count; floats must agree to 1e-12
(relative), everything else exactly.
"""

from __future__ import annotations

import json
import math
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from analytics import market_sql, tables
from analytics.finra import concentration
from darkpool import market
from darkpool.contracts import (
    BLOCK_MIN_NOTIONAL,
    BLOCK_MIN_SHARES,
    LIQUIDITY_FIELDS,
    MARKET_FIELDS,
    PARQUET_TABLES,
    VENUE_TYPES,
)
from darkpool.finra_file import FINRA_SCHEMA
from darkpool.schema import FIELD_KINDS, FIELDS, LIQUIDITY, MARKET, NULLABLE_FIELDS
from pipeline import records

ROOT = Path(__file__).resolve().parent.parent
NODE_SCRIPT = ROOT / "tests" / "market_rules.mjs"
FIGURES = ("vwap", "avg_trade_size", "dark_share", "hhi", "top_venue", "top_venue_share", "venue_count")


def row(venue: str, venue_type: str | None, shares: int, notional: float = 0.0, trades: int = 1) -> dict[str, Any]:
    """One liquidity row of a case (symbol XYZ)."""
    return {"symbol": "XYZ", "venue": venue, "venue_type": venue_type, "trade_count": trades,
            "share_quantity": shares, "notional": notional}


CASES: dict[str, list[dict[str, Any]]] = {
    "empty": [],
    "all_zero": [row("UBSA", "ATS", 0, 0.0, 0), row("XNAS", "EXCHANGE", 0, 0.0, 0)],
    "one_venue": [row("XNAS", "EXCHANGE", 5_000, 500_000.0, 10)],
    "equal_venues": [row(v, t, 1_000, 100_000.0, 4) for v, t in
                     (("XNYS", "EXCHANGE"), ("UBSA", "ATS"), ("CDRG", "SDP"), ("JPMX", "ATS"))],
    "tie_for_top": [row("UBSA", "ATS", 300, 3_000.0), row("MSPL", "ATS", 300, 3_100.0, 2),
                    row("XNAS", "EXCHANGE", 100, 1_200.0)],
    # plain string order (as Python and DuckDB sort), not a locale's: DARK1 < DARK_1 < dark1
    "tie_plain_string_order": [row("dark1", "ATS", 500, 5_000.0), row("DARK_1", "SDP", 500, 5_000.0),
                               row("DARK1", "EXCHANGE", 500, 5_000.0)],
    "dark_lit_mix": [row("UBSA", "ATS", 600, 6_000.0, 3), row("CDRG", "SDP", 100, 1_000.0),
                     row("XNAS", "EXCHANGE", 300, 3_600.0, 2)],
    "unknown_type_is_lit": [row("ZZZZ", None, 400, 4_000.0), row("UBSA", "ATS", 100, 1_000.0)],
    "zero_venue_beside_others": [row("AAAA", "ATS", 0, 0.0, 0), row("XNYS", "EXCHANGE", 100, 1_000.0)],
    "venue_in_two_rows": [row("UBSA", "ATS", 100, 1_000.0), row("XNAS", "EXCHANGE", 300, 3_000.0),
                          row("UBSA", "ATS", 200, 2_000.0)],
    "large_and_uneven": [row("XNAS", "EXCHANGE", 987_654_321, 1.23e11, 4_000_000),
                         row("UBSA", "ATS", 12_345, 1.5e6, 7), row("CDRG", "SDP", 1, 99.5)],
}
VENUE_TYPES_TO_TRY = [*VENUE_TYPES, None, "ats", ""]

# (price, quantity) -> block? Each limit reached exactly counts.
BLOCK_CASES = [
    (20.0, BLOCK_MIN_SHARES, True), (20.0, BLOCK_MIN_SHARES - 1, False),  # 9,999 sh = $199,980
    (100.0, 2_000, True), (100.0, 1_999, False),  # $200,000 exactly / $199,900
    (0.01, BLOCK_MIN_SHARES, True), (BLOCK_MIN_NOTIONAL, 1, True), (BLOCK_MIN_NOTIONAL - 0.01, 1, False),
]


def python_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """darkpool.market on a case: add up per venue, then every figure."""
    quantities: dict[str, int] = {}
    notional = trades = dark = 0
    for r in rows:
        quantities[r["venue"]] = quantities.get(r["venue"], 0) + r["share_quantity"]
        notional += r["notional"]
        trades += r["trade_count"]
        dark += r["share_quantity"] if market.is_dark(r["venue_type"]) else 0
    total = sum(quantities.values())
    top, top_share = market.top_venue(quantities)
    return {"vwap": market.vwap(notional, total), "avg_trade_size": market.average_trade_size(total, trades),
            "dark_share": market.dark_share(dark, total), "hhi": market.hhi(quantities), "top_venue": top,
            "top_venue_share": top_share, "venue_count": market.venue_count(quantities)}


def _case_table() -> pa.Table:
    flat = [{"case_name": name, **r} for name, rows in CASES.items() for r in rows]
    return pa.Table.from_pylist(flat, schema=pa.schema([
        ("case_name", pa.string()), ("symbol", pa.string()), ("venue", pa.string()), ("venue_type", pa.string()),
        ("trade_count", pa.int64()), ("share_quantity", pa.int64()), ("notional", pa.float64())]))


def sql_figures(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, Any]:
    """analytics.market_sql's expressions on one case (per-venue sums first, as the report's queries do)."""
    m = market_sql
    dark_q = f"coalesce(sum(CASE WHEN {m.is_dark('venue_type')} THEN q ELSE 0 END), 0)"
    values = con.execute(f"""
        WITH v AS (
            SELECT venue, any_value(venue_type) AS venue_type, sum(share_quantity) AS q,
                   sum(notional) AS notional, sum(trade_count) AS n
            FROM cases WHERE case_name = ? GROUP BY venue
        )
        SELECT {m.vwap("sum(notional)", "sum(q)")}, {m.average_trade_size("sum(q)", "sum(n)")},
               {m.dark_share(dark_q, "sum(q)")}, {m.hhi("q")}, {m.top_venue("venue", "q")},
               {m.top_venue_share("q")}, {m.venue_count("q")}
        FROM v
    """, [name]).fetchone()
    return dict(zip(FIGURES, values, strict=True))


def js_figures() -> dict[str, Any]:
    """dashboard/src/metrics.js on every case and venue type, through node."""
    payload = json.dumps({"cases": CASES, "venue_types": VENUE_TYPES_TO_TRY})
    done = subprocess.run(["node", str(NODE_SCRIPT)], input=payload, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_same(label: str, got: dict[str, Any], expected: dict[str, Any]) -> None:
    for field in expected:
        a, b = got[field], expected[field]
        if isinstance(b, float) and isinstance(a, int | float) and not isinstance(a, bool):
            assert math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0), f"{label}: {field} {a!r} != {b!r}"
        else:
            assert a == b and type(a) is type(b) or (a == b and {type(a), type(b)} <= {int, float}), \
                f"{label}: {field} {a!r} != {b!r}"


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(":memory:")
    connection.register("cases", _case_table())
    return connection


@pytest.fixture(scope="module")
def js() -> dict[str, Any]:
    return js_figures()


def test_python_results_by_the_documented_rules() -> None:
    empty = python_figures(CASES["empty"])
    assert empty == {"vwap": None, "avg_trade_size": None, "dark_share": None, "hhi": None,
                     "top_venue": None, "top_venue_share": None, "venue_count": 0}
    assert python_figures(CASES["all_zero"]) == empty
    assert python_figures(CASES["one_venue"])["hhi"] == 10_000.0
    assert python_figures(CASES["equal_venues"])["hhi"] == pytest.approx(2_500.0)
    assert python_figures(CASES["equal_venues"])["top_venue"] == "CDRG"
    assert python_figures(CASES["tie_for_top"])["top_venue"] == "MSPL"
    assert python_figures(CASES["tie_plain_string_order"])["top_venue"] == "DARK1"
    assert python_figures(CASES["dark_lit_mix"])["dark_share"] == pytest.approx(0.7)
    assert python_figures(CASES["unknown_type_is_lit"])["dark_share"] == pytest.approx(0.2)
    zero = python_figures(CASES["zero_venue_beside_others"])
    assert (zero["venue_count"], zero["hhi"], zero["top_venue"]) == (1, 10_000.0, "XNYS")
    split = python_figures(CASES["venue_in_two_rows"])
    assert (split["top_venue"], split["top_venue_share"]) == ("UBSA", 0.5)


@pytest.mark.parametrize("name", CASES)
def test_pipeline_rollup_equals_python(name: str) -> None:
    """The pipeline's market record of a case (venue statistics in, record fields out)."""
    by_venue: dict[str, records.VenueStats] = {}
    for r in CASES[name]:
        stats = records.VenueStats(count=r["trade_count"], quantity=r["share_quantity"], notional=r["notional"])
        if r["venue"] in by_venue:
            by_venue[r["venue"]].merge(stats)
        else:
            by_venue[r["venue"]] = stats
    venue_types = {r["venue"]: r["venue_type"] for r in CASES[name] if r["venue_type"] is not None}
    rollup = records.market_values("XYZ", by_venue, venue_types)
    expected = python_figures(CASES[name])
    assert_same(f"pipeline {name}", rollup, {f: expected[f] for f in FIGURES if f != "avg_trade_size"})


@pytest.mark.parametrize("name", CASES)
def test_duckdb_expressions_equal_python(con: duckdb.DuckDBPyConnection, name: str) -> None:
    assert_same(f"SQL {name}", sql_figures(con, name), python_figures(CASES[name]))


@pytest.mark.parametrize("name", CASES)
def test_dashboard_js_equals_python(js: dict[str, Any], name: str) -> None:
    assert_same(f"JS {name}", js["cases"][name], python_figures(CASES[name]))


def test_dark_venue_types_agree(con: duckdb.DuckDBPyConnection, js: dict[str, Any]) -> None:
    python = [market.is_dark(t) for t in VENUE_TYPES_TO_TRY]
    sql = [con.execute(f"SELECT {market_sql.is_dark('?::VARCHAR')}", [t]).fetchone()[0] for t in VENUE_TYPES_TO_TRY]
    assert python == [True, True, False, False, False, False]
    assert sql == python
    assert js["dark"] == python


def test_block_thresholds_at_the_limits() -> None:
    for price, quantity, expected in BLOCK_CASES:
        assert market.is_block(price, quantity) is expected, (price, quantity)
        stats = records.VenueStats()  # the pipeline's accumulator counts blocks by the same rule
        stats.add(price, quantity, "B")
        assert (stats.block_count, stats.block_quantity) == (int(expected), quantity * expected), (price, quantity)


def _report_connection() -> duckdb.DuckDBPyConnection:
    """A connection with the report's temp tables: each non-empty case as one symbol's on-grid liquidity."""
    connection = duckdb.connect(":memory:")
    connection.register("cases", _case_table())
    connection.execute("CREATE TEMP TABLE liquidity AS SELECT case_name AS symbol, venue, venue_type, trade_count, "
                       "share_quantity, notional, true AS on_grid FROM cases")
    connection.execute("CREATE TEMP TABLE market (symbol VARCHAR, hhi DOUBLE)")
    return connection


def test_report_hhi_by_symbol_equals_python() -> None:
    df = tables.hhi_by_symbol(_report_connection()).set_index("symbol")
    for name, rows in CASES.items():
        if not rows:
            continue
        expected = python_figures(rows)
        got = df.loc[name]
        top = None if got.top_venue is None or got.top_venue != got.top_venue else got.top_venue
        share = None if math.isnan(got.top_venue_share) else float(got.top_venue_share)
        hhi = None if math.isnan(got.period_hhi) else float(got.period_hhi)
        assert_same(f"hhi_by_symbol {name}",
                    {"hhi": hhi, "top_venue": top, "top_venue_share": share, "venue_count": int(got.venues)},
                    {f: expected[f] for f in ("hhi", "top_venue", "top_venue_share", "venue_count")})


def test_finra_concentration_equals_python() -> None:
    week = date(2026, 11, 23)
    flat = [{"week": week, "tier": "T1", "symbol": name, "issue_name": name, "participant_name": r["venue"],
             "mpid": r["venue"], "share_quantity": r["share_quantity"], "trade_count": r["trade_count"],
             "last_update_date": week, "week_source": "option", "source_file": "cases", "source_line": i}
            for name, rows in CASES.items() for i, r in enumerate(rows, 1)]
    df = concentration(pa.Table.from_pylist(flat, schema=FINRA_SCHEMA)).set_index("symbol")
    for name, rows in CASES.items():
        if not rows:
            continue
        expected = python_figures(rows)
        got = df.loc[name]
        top = got.top_mpid if isinstance(got.top_mpid, str) else None
        hhi = None if math.isnan(got.hhi) else float(got.hhi)
        share = None if math.isnan(got.top_share) else float(got.top_share)
        assert_same(f"finra.concentration {name}",
                    {"hhi": hhi, "top_venue": top, "top_venue_share": share, "venue_count": int(got.venues)},
                    {f: expected[f] for f in ("hhi", "top_venue", "top_venue_share", "venue_count")})


def test_one_schema_mapping() -> None:
    """darkpool.schema's field lists are the contract schemas' and the contracts' field tuples."""
    assert FIELDS[LIQUIDITY] == tuple(PARQUET_TABLES["liquidity"].names) == LIQUIDITY_FIELDS
    assert FIELDS[MARKET] == tuple(PARQUET_TABLES["market"].names) == MARKET_FIELDS
    assert set(FIELDS[LIQUIDITY]) | set(FIELDS[MARKET]) >= NULLABLE_FIELDS
    assert FIELD_KINDS[MARKET]["hhi"] == "float" and FIELD_KINDS[MARKET]["top_venue"] == "str"
    assert FIELD_KINDS[LIQUIDITY]["window_start"] == "time" and FIELD_KINDS[LIQUIDITY]["trade_count"] == "int"
    # every figure that is None on empty input may be null in a market record
    empty = python_figures([])
    assert {f for f, v in empty.items() if v is None} <= NULLABLE_FIELDS
