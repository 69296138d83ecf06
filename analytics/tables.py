"""The report's tables, each one DuckDB query over the panes selected by analytics.dataset.

Every function takes a connection on which :func:`analytics.dataset.load_panes`
created the temp tables ``liquidity`` and ``market`` and returns a pandas
DataFrame. Counting rule (see analytics.dataset): tables that add volume over a
period use only ``on_grid`` windows (non-overlapping, each trade counted once);
per-window ratios (dark share, HHI over time) use every window as it is.

The alert tables (:data:`ALERT_TABLES`) read the temp table ``alerts`` that
:func:`analytics.dataset.load_alerts` created (one row per symbol, kind and
window: the alert at its highest severity); the report computes them only when
the dataset has an alerts table.

Definitions: docs/market-rules.md (darkpool.market). The queries build those
columns (dark, VWAP, average trade size, dark share, HHI, top venue, venue
count, and every other ratio, NULL when its denominator is zero) with the SQL
of :mod:`analytics.market_sql`, which tests/test_market_rules.py checks against
darkpool.market and the dashboard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pandas as pd

from analytics import market_sql as m
from darkpool.contracts import SEVERITIES


def _query(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    return con.execute(sql).df()


def venue_ranking(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Venues ranked by notional and by share volume over the period (on-grid windows)."""
    return _query(con, f"""
        WITH v AS (
            SELECT venue, any_value(venue_type) AS venue_type,
                   sum(trade_count)::BIGINT AS trade_count, sum(share_quantity)::BIGINT AS share_quantity,
                   sum(notional) AS notional, sum(block_count)::BIGINT AS block_count,
                   sum(block_quantity)::BIGINT AS block_quantity
            FROM liquidity WHERE on_grid GROUP BY venue
        )
        SELECT rank() OVER (ORDER BY v.notional DESC) AS rank_notional,
               rank() OVER (ORDER BY v.share_quantity DESC) AS rank_volume,
               v.venue, coalesce(r.name, '') AS name, v.venue_type,
               {m.is_dark("v.venue_type")} AS dark,
               v.trade_count, v.share_quantity, v.notional,
               {m.ratio("v.share_quantity", "sum(v.share_quantity) OVER ()")} AS volume_share,
               {m.ratio("v.notional", "sum(v.notional) OVER ()")} AS notional_share,
               {m.average_trade_size("v.share_quantity", "v.trade_count")} AS avg_trade_size,
               {m.vwap("v.notional", "v.share_quantity")} AS vwap,
               v.block_count, v.block_quantity
        FROM v LEFT JOIN venues r ON r.mpid = v.venue
        ORDER BY v.notional DESC, v.venue
    """)


def dark_lit_over_time(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Dark vs lit share of volume per window, across the selected symbols (every window)."""
    return _query(con, f"""
        SELECT window_start, window_end, count(DISTINCT symbol) AS symbols,
               sum(share_quantity)::BIGINT AS share_quantity,
               sum(dark_quantity)::BIGINT AS dark_quantity, sum(lit_quantity)::BIGINT AS lit_quantity,
               {m.dark_share("sum(dark_quantity)", "sum(share_quantity)")} AS dark_share,
               {m.ratio("sum(lit_quantity)", "sum(share_quantity)")} AS lit_share,
               {m.ratio("sum(dark_notional)", "sum(notional)")} AS dark_notional_share
        FROM market GROUP BY window_start, window_end ORDER BY window_start
    """)


def symbol_ranking(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Symbols ranked by dark share of volume over the period (on-grid windows)."""
    dark_share = m.dark_share("dark_quantity", "share_quantity")
    return _query(con, f"""
        WITH s AS (
            SELECT symbol, sum(share_quantity)::BIGINT AS share_quantity,
                   sum(dark_quantity)::BIGINT AS dark_quantity, sum(lit_quantity)::BIGINT AS lit_quantity,
                   sum(notional) AS notional, sum(dark_notional) AS dark_notional
            FROM market WHERE on_grid GROUP BY symbol
        )
        SELECT rank() OVER (ORDER BY {dark_share} DESC NULLS LAST) AS rank,
               symbol, share_quantity, dark_quantity, lit_quantity,
               {dark_share} AS dark_share,
               notional, dark_notional, {m.ratio("dark_notional", "notional")} AS dark_notional_share
        FROM s ORDER BY rank, symbol
    """)


def trade_size(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Average trade size (shares per trade) on dark vs lit venues, per symbol and for ALL."""
    dark_size = m.average_trade_size("dark_quantity", "dark_trade_count")
    lit_size = m.average_trade_size("lit_quantity", "lit_trade_count")
    return _query(con, f"""
        WITH t AS (
            SELECT CASE WHEN grouping(symbol) = 1 THEN 'ALL' ELSE symbol END AS symbol,
                   sum(dark_trade_count)::BIGINT AS dark_trade_count, sum(dark_quantity)::BIGINT AS dark_quantity,
                   sum(lit_trade_count)::BIGINT AS lit_trade_count, sum(lit_quantity)::BIGINT AS lit_quantity
            FROM market WHERE on_grid GROUP BY ROLLUP (symbol)
        )
        SELECT symbol, dark_trade_count, dark_quantity, {dark_size} AS dark_avg_trade_size,
               lit_trade_count, lit_quantity, {lit_size} AS lit_avg_trade_size,
               {m.ratio(dark_size, lit_size)} AS dark_to_lit_ratio
        FROM t ORDER BY symbol <> 'ALL', symbol
    """)


def block_activity(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Block trades (>= 10,000 sh or >= $200k) per symbol and for ALL: counts, dark part, volume share."""
    return _query(con, f"""
        WITH b AS (
            SELECT CASE WHEN grouping(symbol) = 1 THEN 'ALL' ELSE symbol END AS symbol,
                   sum(block_count)::BIGINT AS block_count, sum(dark_block_count)::BIGINT AS dark_block_count,
                   sum(block_quantity)::BIGINT AS block_quantity, sum(share_quantity)::BIGINT AS share_quantity,
                   sum(trade_count)::BIGINT AS trade_count
            FROM market WHERE on_grid GROUP BY ROLLUP (symbol)
        )
        SELECT symbol, block_count, dark_block_count, block_count - dark_block_count AS lit_block_count,
               {m.ratio("dark_block_count", "block_count")} AS dark_block_ratio,
               block_quantity, share_quantity, {m.ratio("block_quantity", "share_quantity")} AS block_volume_share,
               {m.ratio("block_count", "trade_count")} AS block_trade_ratio
        FROM b ORDER BY symbol <> 'ALL', block_count DESC, symbol
    """)


def block_by_venue(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Block trades per venue (on-grid windows): counts, quantity and the venue's share of all blocks."""
    return _query(con, f"""
        WITH b AS (
            SELECT venue, any_value(venue_type) AS venue_type,
                   sum(block_count)::BIGINT AS block_count, sum(block_quantity)::BIGINT AS block_quantity,
                   sum(share_quantity)::BIGINT AS share_quantity
            FROM liquidity WHERE on_grid GROUP BY venue
        )
        SELECT venue, venue_type, {m.is_dark("venue_type")} AS dark, block_count, block_quantity,
               {m.ratio("block_count", "sum(block_count) OVER ()")} AS share_of_blocks,
               {m.ratio("block_quantity", "share_quantity")} AS block_volume_share
        FROM b ORDER BY block_count DESC, venue
    """)


def hhi_over_time(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Venue concentration (per-symbol HHI, 0-10,000) per window: mean, volume-weighted, min, max."""
    return _query(con, f"""
        SELECT window_start, count(DISTINCT symbol) AS symbols,
               avg(hhi) AS mean_hhi,
               {m.ratio("sum(hhi * share_quantity)", "sum(share_quantity)")} AS weighted_hhi,
               min(hhi) AS min_hhi, max(hhi) AS max_hhi, avg(venue_count) AS mean_venue_count
        FROM market GROUP BY window_start ORDER BY window_start
    """)


def hhi_by_symbol(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Concentration per symbol: the period's HHI and top venue from venue volumes, and the mean per-window HHI."""
    return _query(con, f"""
        WITH sv AS (
            SELECT symbol, venue, sum(share_quantity)::DOUBLE AS q FROM liquidity WHERE on_grid GROUP BY symbol, venue
        ), p AS (
            SELECT symbol, {m.venue_count("q")} AS venues, {m.hhi("q")} AS period_hhi,
                   {m.top_venue("venue", "q")} AS top_venue, {m.top_venue_share("q")} AS top_venue_share
            FROM sv GROUP BY symbol
        ), w AS (
            SELECT symbol, avg(hhi) AS mean_window_hhi, count(*) AS windows FROM market GROUP BY symbol
        )
        SELECT coalesce(p.symbol, w.symbol) AS symbol, p.venues, p.period_hhi, p.top_venue, p.top_venue_share,
               w.mean_window_hhi, w.windows
        FROM p FULL OUTER JOIN w ON p.symbol = w.symbol
        ORDER BY period_hhi DESC NULLS LAST, symbol
    """)


def pane_summary(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Selected panes per table and pane timing (EARLY / ON_TIME / LATE): how the windows closed.

    Liquidity counts its on-grid windows (the ones loaded), market every window.
    """
    return _query(con, """
        SELECT table_name, pane_timing, count(*) AS panes, avg(pane_index) AS mean_pane_index,
               max(pane_index) AS max_pane_index
        FROM (SELECT 'liquidity' AS table_name, pane_timing, pane_index FROM liquidity
              UNION ALL SELECT 'market', pane_timing, pane_index FROM market)
        GROUP BY table_name, pane_timing ORDER BY table_name, pane_timing
    """)


def _severity_counts() -> str:
    """``count(*) FILTER (WHERE severity = 'high') AS high, ...``: one column per severity, highest first."""
    return ", ".join(f"count(*) FILTER (WHERE severity = '{s}')::BIGINT AS {s}" for s in reversed(SEVERITIES))


def alert_history(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Alerts per symbol and kind: how many, of which per severity, first and last window, max score, venues."""
    return _query(con, f"""
        SELECT symbol, kind, count(*)::BIGINT AS alerts, {_severity_counts()},
               min(window_start) AS first_window, max(window_start) AS last_window, max(score) AS max_score,
               nullif(array_to_string(list_sort(list_distinct(list(venue))), ','), '') AS venues
        FROM alerts GROUP BY symbol, kind ORDER BY alerts DESC, symbol, kind
    """)


def alerts_over_time(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Alerts per hour of window_start and kind, with their severities and how many symbols they name."""
    return _query(con, f"""
        SELECT date_trunc('hour', window_start) AS hour, kind, count(*)::BIGINT AS alerts, {_severity_counts()},
               count(DISTINCT symbol)::BIGINT AS symbols
        FROM alerts GROUP BY hour, kind ORDER BY hour, kind
    """)


SHORT_SPAN_HOURS = 6  # alerts spanning less than this are drawn per 15 minutes, longer spans per hour


def timeline_minutes(span_hours: float) -> int:
    """The bar width of the alerts-over-time figure: 15 minutes when the alerts span < 6 hours, else 60."""
    return 15 if span_hours < SHORT_SPAN_HOURS else 60


def alert_timeline(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The figure's data: alerts per period of window_start (:func:`timeline_minutes`) and kind.

    Columns ``period_start``, ``period_minutes``, ``kind``, ``alerts``.
    """
    span = con.execute("SELECT (epoch_ms(max(window_start)) - epoch_ms(min(window_start))) / 3.6e6 FROM alerts"
                       ).fetchall()[0][0]
    minutes = timeline_minutes(span or 0.0)
    return _query(con, f"""
        SELECT time_bucket(INTERVAL '{minutes} minutes', window_start) AS period_start,
               {minutes} AS period_minutes, kind, count(*)::BIGINT AS alerts
        FROM alerts GROUP BY period_start, kind ORDER BY period_start, kind
    """)


@dataclass(frozen=True)
class TableSpec:
    """One report table: how to compute it and how the report introduces it."""

    name: str
    title: str
    compute: Callable[[duckdb.DuckDBPyConnection], pd.DataFrame]
    description: str


TABLES: tuple[TableSpec, ...] = (
    TableSpec("venue_ranking", "Venue ranking by notional and volume", venue_ranking,
              "Each venue's trades, shares and notional over the period (non-overlapping windows, each trade "
              "counted once), its share of volume and notional, average trade size and blocks."),
    TableSpec("dark_lit_over_time", "Dark vs lit share over time", dark_lit_over_time,
              "Per window (5-minute sliding windows by default): dark (ATS + SDP) and lit share of the selected "
              "symbols' volume."),
    TableSpec("symbol_ranking", "Symbols ranked by dark share", symbol_ranking,
              "Each symbol's dark share of volume over the period."),
    TableSpec("trade_size", "Average trade size, dark vs lit", trade_size,
              "Shares per trade on dark and on lit venues, per symbol and for all symbols (ALL)."),
    TableSpec("block_activity", "Block activity by symbol", block_activity,
              "Block trades (>= 10,000 shares or >= $200,000 notional): how many, how many printed dark, and "
              "their share of volume."),
    TableSpec("block_by_venue", "Block activity by venue", block_by_venue,
              "Where the block trades printed."),
    TableSpec("hhi_over_time", "Venue concentration (HHI) over time", hhi_over_time,
              "Herfindahl-Hirschman index of venue shares of each symbol's volume per window (0-10,000): "
              "simple mean over symbols, volume-weighted mean, min and max."),
    TableSpec("hhi_by_symbol", "Venue concentration by symbol", hhi_by_symbol,
              "HHI of each symbol's venue shares over the whole period, its top venue, and the mean per-window "
              "HHI."),
    TableSpec("pane_summary", "Panes by timing", pane_summary,
              "The analysed panes per pane timing: with final panes, how each window closed (ON_TIME or with a "
              "LATE revision). Liquidity: windows on the non-overlapping grid; market: every window."),
)


ALERT_TABLES: tuple[TableSpec, ...] = (
    TableSpec("alert_history", "Alert history by symbol and kind", alert_history,
              "The pipeline's alerts (docs/alerts.md) per symbol and kind, each alert counted "
              "once at its highest severity: how many, of which high, medium and low, the first and last window, "
              "the highest score and the venues named."),
    TableSpec("alerts_over_time", "Alerts over time", alerts_over_time,
              "Alerts per hour of their window's start and kind (the figure: per 15 minutes when the alerts span "
              "less than 6 hours)."),
)


def compute_all(
    con: duckdb.DuckDBPyConnection, on_step: Callable[[str], None] | None = None
) -> dict[str, pd.DataFrame]:
    """Every table in :data:`TABLES`, by name, in report order."""
    results: dict[str, pd.DataFrame] = {}
    for i, spec in enumerate(TABLES, 1):
        results[spec.name] = spec.compute(con)
        if on_step:
            on_step(f"table {i}/{len(TABLES)} {spec.name}: {len(results[spec.name]):,} rows")
    return results


def compute_alerts(
    con: duckdb.DuckDBPyConnection, on_step: Callable[[str], None] | None = None
) -> dict[str, pd.DataFrame]:
    """Every table in :data:`ALERT_TABLES` (needs the temp table ``alerts``), by name, in report order."""
    results: dict[str, pd.DataFrame] = {}
    for spec in ALERT_TABLES:
        results[spec.name] = spec.compute(con)
        if on_step:
            on_step(f"alert table {spec.name}: {len(results[spec.name]):,} rows")
    return results
