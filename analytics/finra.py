"""FINRA OTC transparency weekly ATS data: store, analyse, compare with the pipeline.

Reading and validating the files (their format, tiers, week rules, every
problem with ``file:line`` and a reason) and calibrating the feed from one live
in the bottom package, :mod:`darkpool.finra_file`, since the feed reads them too.

The import adds the usable rows of FINRA files to the store; rows that are not
usable (no symbol, no MPID, no known tier: FINRA's own files end with one) are
left out, listed and counted, unless ``strict``. Anything that makes a file
untrustworthy (a wrong header, a bad quantity or date, rows of two weeks, a
duplicate ``(week, symbol, MPID)`` within the files or against the store unless
``replace``) rejects the whole import: nothing is stored. The store is one
Parquet file (``<store>/ats_weekly.parquet``) rewritten through a temporary
file and an atomic rename, so readers never see a half-written import.

Venues outside the active venue registry (darkpool.venues) are kept by MPID:
the import reports them (:func:`unknown_venues`), the report lists them, and
the comparison with the pipeline shows them under their MPID and FINRA's name.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analytics import market_sql as m
from darkpool.contracts import load_venues
from darkpool.finra_file import (
    FINRA_SCHEMA,
    REASON_ALREADY_STORED,
    FileSummary,
    FinraValidationError,
    RowError,
    read_files,
    tier_id,
    tier_order,
)

STORE_FILE = "ats_weekly.parquet"


# --- the store ------------------------------------------------------------------------
def store_path(store: Path) -> Path:
    return Path(store) / STORE_FILE


def _with_tier_ids(table: pa.Table) -> pa.Table:
    """Stores written before tiers were identifiers hold tierDescription values: map them to T1/T2/OTCE."""
    tiers = table.column("tier").to_pylist()
    mapped = [tier_id(t) or t for t in tiers]
    if mapped == tiers:
        return table
    return table.set_column(table.schema.get_field_index("tier"), "tier", pa.array(mapped, pa.string()))


def load_store(store: Path) -> pa.Table | None:
    """Everything imported so far, or None when nothing has been imported into ``store``."""
    path = store_path(store)
    if not path.exists():
        return None
    return _with_tier_ids(pq.read_table(path, schema=FINRA_SCHEMA))


@dataclass(frozen=True)
class ImportResult:
    """What an import did: rows stored, rows left out (with file:line and reason), tiers, unknown venues."""

    path: Path
    rows: int
    weeks: tuple[date, ...]
    replaced_rows: int
    total_rows: int
    week_sources: dict[str, str]
    skipped: tuple[RowError, ...]
    files: tuple[FileSummary, ...]
    tier_rows: dict[str, int]  # tier -> rows imported
    unknown_venues: pd.DataFrame  # see unknown_venues()


def import_files(
    paths: Sequence[Path | str], store: Path, week: date | None = None, replace: bool = False,
    strict: bool = False,
) -> ImportResult:
    """Validate FINRA files and add their usable rows to the store; nothing if any file is untrustworthy.

    A (week, symbol, MPID) already in the store is an error unless ``replace``,
    which replaces every stored row of the imported weeks. With ``strict`` a row
    that is not usable rejects the import too.
    """
    parsed = read_files(paths, week, strict=strict)
    new = parsed.table
    weeks = tuple(sorted(set(new.column("week").to_pylist())))
    existing = load_store(store)
    replaced = 0
    if existing is not None and existing.num_rows:
        con = duckdb.connect(":memory:")
        con.register("old", existing)
        con.register("new", new)
        if replace:
            kept = con.sql("SELECT * FROM old WHERE week NOT IN (SELECT DISTINCT week FROM new)").to_arrow_table()
            replaced = existing.num_rows - kept.num_rows
            existing = kept
        else:
            clashes = con.execute("""
                SELECT n.source_file, n.source_line, n.week, n.symbol, n.mpid, o.source_file
                FROM new n JOIN old o USING (week, symbol, mpid) ORDER BY n.source_file, n.source_line
            """).fetchall()
            if clashes:
                raise FinraValidationError([
                    RowError(f, line, REASON_ALREADY_STORED,
                             f"duplicate (week {w}, symbol {s}, MPID {m}): already stored "
                             f"(imported from {src}); use --replace to replace the week")
                    for f, line, w, s, m, src in clashes
                ])
        combined = pa.concat_tables([existing.cast(FINRA_SCHEMA), new])
    else:
        combined = new
    combined = combined.sort_by([("week", "ascending"), ("symbol", "ascending"), ("mpid", "ascending")])
    target = store_path(store)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(combined, tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    tier_rows: dict[str, int] = {}
    for tier in new.column("tier").to_pylist():
        tier_rows[tier] = tier_rows.get(tier, 0) + 1
    return ImportResult(path=target, rows=new.num_rows, weeks=weeks, replaced_rows=replaced,
                        total_rows=combined.num_rows, week_sources=parsed.week_sources,
                        skipped=tuple(parsed.skipped), files=tuple(parsed.files),
                        tier_rows=dict(sorted(tier_rows.items(), key=lambda item: tier_order(item[0]))),
                        unknown_venues=unknown_venues(new))


# --- analysis ---------------------------------------------------------------------------
def _con_with(table: pa.Table) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.register("finra", table)
    return con


def filter_table(table: pa.Table, symbols: Sequence[str] | None = None,
                 weeks: Sequence[date] | None = None, tiers: Sequence[str] | None = None) -> pa.Table:
    """Rows of the given symbols, weeks and tiers (T1, T2, OTCE; None = all)."""
    con = _con_with(table)
    clauses, params = [], []
    for column, values in (("symbol", symbols), ("week", weeks), ("tier", tiers)):
        if values:
            clauses.append(f"{column} IN (SELECT unnest(?))")
            params.append(list(values))
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    return con.sql(f"SELECT * FROM finra{where}", params=params).to_arrow_table().cast(FINRA_SCHEMA)


def venue_name_sql(name: str, mpid: str) -> str:
    """SQL: FINRA's marketParticipantName without the MPID it starts with (``UBSA UBS ATS`` -> ``UBS ATS``)."""
    return (f"CASE WHEN starts_with(upper({name}), {mpid} || ' ') "
            f"THEN trim(substr({name}, length({mpid}) + 2)) ELSE {name} END")


def unknown_venues(table: pa.Table, known: Collection[str] | None = None) -> pd.DataFrame:
    """The MPIDs of ``table`` not in ``known`` (default: the active venue registry), kept by MPID.

    One row per MPID: FINRA's name for it, its tiers, how many symbols, shares
    and trades, by share volume.
    """
    con = _con_with(table)
    con.register("known", pa.table({"mpid": pa.array(sorted(known if known is not None else load_venues()),
                                                     pa.string())}))
    return con.execute(f"""
        SELECT mpid, any_value({venue_name_sql("participant_name", "mpid")}) AS name,
               string_agg(DISTINCT tier, ',' ORDER BY tier) AS tiers, count(DISTINCT symbol) AS symbols,
               sum(share_quantity)::BIGINT AS share_quantity, sum(trade_count)::BIGINT AS trade_count
        FROM finra WHERE mpid NOT IN (SELECT mpid FROM known)
        GROUP BY mpid ORDER BY share_quantity DESC, mpid
    """).df()


def venue_share(table: pa.Table) -> pd.DataFrame:
    """Each ATS's share of a symbol's weekly ATS volume, with its average trade size."""
    venue_share = m.ratio("sum(share_quantity)", "sum(sum(share_quantity)) OVER (PARTITION BY week, symbol)")
    return _con_with(table).execute(f"""
        SELECT week, any_value(tier) AS tier, symbol, mpid, any_value(participant_name) AS participant_name,
               sum(share_quantity)::BIGINT AS share_quantity, sum(trade_count)::BIGINT AS trade_count,
               {venue_share} AS venue_share,
               {m.average_trade_size("sum(share_quantity)", "sum(trade_count)")} AS avg_trade_size
        FROM finra GROUP BY week, symbol, mpid
        ORDER BY week, symbol, venue_share DESC, mpid
    """).df()


def venue_trade_size(table: pa.Table) -> pd.DataFrame:
    """Per week and ATS: volume, trades, average trade size and share of all ATS volume."""
    volume_share = m.ratio("sum(share_quantity)", "sum(sum(share_quantity)) OVER (PARTITION BY week)")
    return _con_with(table).execute(f"""
        SELECT week, mpid, any_value(participant_name) AS participant_name, count(DISTINCT symbol) AS symbols,
               sum(share_quantity)::BIGINT AS share_quantity, sum(trade_count)::BIGINT AS trade_count,
               {m.average_trade_size("sum(share_quantity)", "sum(trade_count)")} AS avg_trade_size,
               {volume_share} AS ats_volume_share
        FROM finra GROUP BY week, mpid ORDER BY week, share_quantity DESC, mpid
    """).df()


def concentration(table: pa.Table) -> pd.DataFrame:
    """Per week and symbol: number of ATSs, ATS volume, HHI of ATS shares (0-10,000), top ATS (docs/market-rules.md)."""
    return _con_with(table).execute(f"""
        WITH v AS (
            SELECT week, any_value(tier) AS tier, symbol, mpid, sum(share_quantity)::DOUBLE AS q
            FROM finra GROUP BY week, symbol, mpid
        )
        SELECT week, any_value(tier) AS tier, symbol, {m.venue_count("q")} AS venues, sum(q)::BIGINT AS share_quantity,
               {m.hhi("q")} AS hhi, {m.top_venue("mpid", "q")} AS top_mpid, {m.top_venue_share("q")} AS top_share
        FROM v GROUP BY week, symbol ORDER BY week, share_quantity DESC, symbol
    """).df()


FINRA_TABLES = {
    "finra_venue_share": venue_share,
    "finra_venue_trade_size": venue_trade_size,
    "finra_concentration": concentration,
    "finra_unknown_venues": unknown_venues,
}


def _compare_sql(by_symbol: bool) -> str:
    part = "PARTITION BY symbol" if by_symbol else ""
    sym_col = "symbol, " if by_symbol else ""
    using = "symbol, venue" if by_symbol else "venue"
    pipeline_share = f"coalesce({m.ratio('pq', f'sum(pq) OVER ({part})')}, 0)"  # a venue absent on one side: 0
    finra_share = f"coalesce({m.ratio('fq', f'sum(fq) OVER ({part})')}, 0)"
    return f"""
        WITH common AS (
            SELECT DISTINCT symbol FROM finra WHERE symbol IN (SELECT DISTINCT symbol FROM liquidity)
        ), f AS (
            SELECT {sym_col}mpid AS venue, sum(share_quantity)::DOUBLE AS q
            FROM finra WHERE symbol IN (SELECT symbol FROM common) GROUP BY ALL
        ), p AS (
            SELECT {sym_col}venue, sum(share_quantity)::DOUBLE AS q
            FROM liquidity
            WHERE on_grid AND symbol IN (SELECT symbol FROM common)
              AND ({m.is_dark("venue_type")} OR venue IN (SELECT DISTINCT mpid FROM finra))
            GROUP BY ALL
        ), j AS (
            SELECT {using}, p.q AS pq, f.q AS fq FROM p FULL OUTER JOIN f USING ({using})
        ), n AS (
            SELECT mpid, any_value({venue_name_sql("participant_name", "mpid")}) AS finra_name
            FROM finra GROUP BY mpid
        )
        SELECT {sym_col}venue, coalesce(r.name, n.finra_name, '') AS name, r.mpid IS NOT NULL AS in_registry,
               coalesce(pq, 0)::BIGINT AS pipeline_quantity,
               {pipeline_share} AS pipeline_share,
               coalesce(fq, 0)::BIGINT AS finra_quantity,
               {finra_share} AS finra_share,
               100 * ({pipeline_share} - {finra_share}) AS difference_pp
        FROM j LEFT JOIN venues r ON r.mpid = j.venue LEFT JOIN n ON n.mpid = j.venue
        ORDER BY {sym_col}finra_share DESC, pipeline_share DESC, venue
    """


def compare_with_pipeline(
    con: duckdb.DuckDBPyConnection, finra: pa.Table, by_symbol: bool = False
) -> pd.DataFrame:
    """Venue shares of dark volume in the pipeline's dataset vs in FINRA data, and the difference.

    ``con`` is a connection prepared by analytics.dataset (temp table
    ``liquidity``, registry table ``venues``). Both sides are restricted to the
    symbols present in both; the pipeline side counts its dark venues (ATS + SDP
    per the registry) plus any MPID that appears in the FINRA data, over
    non-overlapping windows; the FINRA side is the file's volume (all weeks
    given). ``difference_pp`` = pipeline share - FINRA share, in percentage points.
    Venues are matched by MPID: one the venue registry lacks keeps its MPID,
    takes FINRA's name and has ``in_registry`` false.
    """
    con.register("finra", finra)
    try:
        return con.execute(_compare_sql(by_symbol)).df()
    finally:
        con.unregister("finra")

