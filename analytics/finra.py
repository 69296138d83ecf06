"""FINRA OTC transparency weekly ATS data: validate, store, analyse, compare, calibrate.

Input: FINRA's public weekly per-ATS, per-symbol volume files, pipe-delimited,
with the header::

    tierDescription|issueSymbolIdentifier|issueName|marketParticipantName|MPID|
    totalWeeklyShareQuantity|totalWeeklyTradeCount|lastUpdateDate

(extra columns are allowed and ignored, columns may come in any order; a UTF-8
byte-order mark and blank lines are tolerated).

The week a row belongs to (stored as the Monday of that week) is determined, in
order, by:

1. ``--week DATE`` (``week=`` here), for every row of every file;
2. a ``weekStartDate`` or ``summaryStartDate`` column, per row;
3. a date in the file name (``...20241104...`` or ``...2024-11-04...``);
4. ``lastUpdateDate``, per row. FINRA publishes a week's data two to four weeks
   after it, so this is the publication week, not the trading week: pass
   ``--week`` when the file does not say. The import reports which rule it used.

Validation collects every bad row with ``file:line`` (wrong column count, missing
symbol or MPID, non-integer or negative quantity, bad date, duplicate
``(week, symbol, MPID)`` within the import or against the store) and imports
nothing if any is found. The store is one Parquet file
(``<store>/ats_weekly.parquet``) rewritten through a temporary file and an atomic
rename, so readers never see a half-written import.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analytics import market_sql as m
from darkpool.contracts import Calibration, VenueProfile, load_venues
from darkpool.errors import DarkpoolError

log = logging.getLogger(__name__)

FINRA_COLUMNS = (
    "tierDescription", "issueSymbolIdentifier", "issueName", "marketParticipantName", "MPID",
    "totalWeeklyShareQuantity", "totalWeeklyTradeCount", "lastUpdateDate",
)
WEEK_COLUMNS = ("weekStartDate", "summaryStartDate")
STORE_FILE = "ats_weekly.parquet"
MAX_ERRORS_SHOWN = 50

FINRA_SCHEMA = pa.schema([
    ("week", pa.date32()),  # Monday of the trading week
    ("tier", pa.string()),
    ("symbol", pa.string()),
    ("issue_name", pa.string()),
    ("participant_name", pa.string()),
    ("mpid", pa.string()),
    ("share_quantity", pa.int64()),
    ("trade_count", pa.int64()),
    ("last_update_date", pa.date32()),
    ("week_source", pa.string()),  # option | column | file name | lastUpdateDate
    ("source_file", pa.string()),
    ("source_line", pa.int64()),
])

_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%m/%d/%Y")
_FILENAME_DATE = re.compile(r"(20\d{2})-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])")
_INTEGER = re.compile(r"[+-]?\d+")


# --- pure helpers -----------------------------------------------------------------
def parse_date(text: str) -> date:
    """``2024-11-04``, ``20241104`` or ``11/04/2024`` -> date; ValueError otherwise."""
    value = text.strip()
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"not a date (expected YYYY-MM-DD): {text!r}")


def week_start(day: date) -> date:
    """The Monday of the week containing ``day`` (FINRA weeks run Monday to Friday)."""
    return day - timedelta(days=day.weekday())


def week_from_filename(path: Path) -> date | None:
    """The week of a date embedded in a file name, or None."""
    match = _FILENAME_DATE.search(path.name)
    if not match:
        return None
    try:
        return week_start(date(int(match[1]), int(match[2]), int(match[3])))
    except ValueError:
        return None


def parse_quantity(text: str, column: str) -> int:
    """A non-negative integer field; ValueError with a readable reason otherwise."""
    value = text.strip()
    if not _INTEGER.fullmatch(value):
        raise ValueError(f"{column} is not an integer: {text!r}")
    number = int(value)
    if number < 0:
        raise ValueError(f"{column} is negative: {number}")
    return number


# --- parsing and validation --------------------------------------------------------
@dataclass(frozen=True)
class RowError:
    """A validation error at ``file:line``."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class FinraValidationError(DarkpoolError):
    """One or more FINRA rows are invalid; nothing was imported. ``errors`` lists them all."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        self.errors = list(errors)
        shown = "\n".join(f"  {e}" for e in self.errors[:MAX_ERRORS_SHOWN])
        more = len(self.errors) - MAX_ERRORS_SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(
            f"{len(self.errors)} invalid row(s) in the FINRA file(s); nothing was imported:\n{shown}{tail}",
            "fix the rows above (file:line) and import again",
        )


@dataclass
class ParsedFiles:
    """Validated rows of one or more FINRA files, with how their weeks were determined."""

    table: pa.Table
    week_sources: dict[str, str]  # file -> rule used
    errors: list[RowError]


def _week_rule(path: Path, header: list[str], week: date | None) -> tuple[str, date | None, int | None]:
    """(rule name, fixed week or None, index of a week column or None) for one file."""
    if week is not None:
        return "option", week_start(week), None
    for name in WEEK_COLUMNS:
        if name in header:
            return f"column {name}", None, header.index(name)
    from_name = week_from_filename(path)
    if from_name is not None:
        return "file name", from_name, None
    return "lastUpdateDate", None, None


def parse_files(paths: Sequence[Path | str], week: date | None = None) -> ParsedFiles:
    """Parse and validate FINRA weekly files; collect every error instead of stopping at the first."""
    columns: dict[str, list] = {name: [] for name in FINRA_SCHEMA.names}
    errors: list[RowError] = []
    week_sources: dict[str, str] = {}
    first_seen: dict[tuple[date, str, str], str] = {}
    for raw_path in paths:
        path = Path(raw_path)
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError as exc:
            raise DarkpoolError(f"FINRA file not found: {path}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise DarkpoolError(f"cannot read FINRA file {path}: {exc}") from exc
        lines = text.splitlines()
        header_line = next((i for i, line in enumerate(lines) if line.strip()), None)
        if header_line is None:
            errors.append(RowError(name, 1, "empty file (expected the header " + "|".join(FINRA_COLUMNS) + ")"))
            continue
        header = [h.strip() for h in lines[header_line].split("|")]
        missing = [c for c in FINRA_COLUMNS if c not in header]
        if missing:
            errors.append(RowError(name, header_line + 1, f"header lacks column(s) {', '.join(missing)}; "
                                   f"expected {'|'.join(FINRA_COLUMNS)}"))
            continue
        idx = {c: header.index(c) for c in FINRA_COLUMNS}
        rule, fixed_week, week_col = _week_rule(path, header, week)
        week_sources[name] = rule
        data_rows = 0
        for i in range(header_line + 1, len(lines)):
            line = lines[i]
            if not line.strip():
                continue
            data_rows += 1
            lineno = i + 1
            fields = line.split("|")
            if len(fields) != len(header):
                errors.append(RowError(name, lineno, f"{len(fields)} columns, expected {len(header)}"))
                continue
            problems: list[str] = []
            symbol = fields[idx["issueSymbolIdentifier"]].strip().upper()
            mpid = fields[idx["MPID"]].strip().upper()
            if not symbol:
                problems.append("missing issueSymbolIdentifier (symbol)")
            if not mpid:
                problems.append("missing MPID")
            quantities: list[int] = []
            for column in ("totalWeeklyShareQuantity", "totalWeeklyTradeCount"):
                try:
                    quantities.append(parse_quantity(fields[idx[column]], column))
                except ValueError as exc:
                    problems.append(str(exc))
            updated: date | None = None
            try:
                updated = parse_date(fields[idx["lastUpdateDate"]])
            except ValueError as exc:
                problems.append(f"lastUpdateDate {exc}")
            row_week = fixed_week
            if week_col is not None:
                try:
                    row_week = week_start(parse_date(fields[week_col]))
                except ValueError as exc:
                    problems.append(f"{header[week_col]} {exc}")
            elif row_week is None and updated is not None:
                row_week = week_start(updated)
            if problems:
                errors.extend(RowError(name, lineno, p) for p in problems)
                continue
            key = (row_week, symbol, mpid)
            where = f"{name}:{lineno}"
            if key in first_seen:
                errors.append(RowError(name, lineno, f"duplicate (week {row_week}, symbol {symbol}, MPID {mpid}); "
                                       f"first at {first_seen[key]}"))
                continue
            first_seen[key] = where
            columns["week"].append(row_week)
            columns["tier"].append(fields[idx["tierDescription"]].strip())
            columns["symbol"].append(symbol)
            columns["issue_name"].append(fields[idx["issueName"]].strip())
            columns["participant_name"].append(fields[idx["marketParticipantName"]].strip())
            columns["mpid"].append(mpid)
            columns["share_quantity"].append(quantities[0])
            columns["trade_count"].append(quantities[1])
            columns["last_update_date"].append(updated)
            columns["week_source"].append(rule)
            columns["source_file"].append(path.name)
            columns["source_line"].append(lineno)
        if data_rows == 0:
            errors.append(RowError(name, header_line + 1, "no data rows after the header"))
    table = pa.Table.from_pydict(columns, schema=FINRA_SCHEMA)
    return ParsedFiles(table=table, week_sources=week_sources, errors=errors)


def read_files(paths: Sequence[Path | str], week: date | None = None) -> ParsedFiles:
    """:func:`parse_files`, raising :class:`FinraValidationError` if any row is invalid."""
    parsed = parse_files(paths, week)
    if parsed.errors:
        raise FinraValidationError(parsed.errors)
    return parsed


# --- the store ------------------------------------------------------------------------
def store_path(store: Path) -> Path:
    return Path(store) / STORE_FILE


def load_store(store: Path) -> pa.Table | None:
    """Everything imported so far, or None when nothing has been imported into ``store``."""
    path = store_path(store)
    if not path.exists():
        return None
    return pq.read_table(path, schema=FINRA_SCHEMA)


@dataclass(frozen=True)
class ImportResult:
    """What an import did."""

    path: Path
    rows: int
    weeks: tuple[date, ...]
    replaced_rows: int
    total_rows: int
    week_sources: dict[str, str]


def import_files(
    paths: Sequence[Path | str], store: Path, week: date | None = None, replace: bool = False
) -> ImportResult:
    """Validate FINRA files and add them to the store, all or nothing.

    A (week, symbol, MPID) already in the store is an error unless ``replace``,
    which replaces every stored row of the imported weeks.
    """
    parsed = read_files(paths, week)
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
                    RowError(f, line, f"duplicate (week {w}, symbol {s}, MPID {m}): already stored "
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
    return ImportResult(path=target, rows=new.num_rows, weeks=weeks, replaced_rows=replaced,
                        total_rows=combined.num_rows, week_sources=parsed.week_sources)


# --- analysis ---------------------------------------------------------------------------
def _con_with(table: pa.Table) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.register("finra", table)
    return con


def filter_table(table: pa.Table, symbols: Sequence[str] | None = None,
                 weeks: Sequence[date] | None = None) -> pa.Table:
    """Rows of the given symbols and weeks (None = all)."""
    con = _con_with(table)
    clauses, params = [], []
    if symbols:
        clauses.append("symbol IN (SELECT unnest(?))")
        params.append(list(symbols))
    if weeks:
        clauses.append("week IN (SELECT unnest(?))")
        params.append(list(weeks))
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    return con.sql(f"SELECT * FROM finra{where}", params=params).to_arrow_table().cast(FINRA_SCHEMA)


def venue_share(table: pa.Table) -> pd.DataFrame:
    """Each ATS's share of a symbol's weekly ATS volume, with its average trade size."""
    venue_share = m.ratio("sum(share_quantity)", "sum(sum(share_quantity)) OVER (PARTITION BY week, symbol)")
    return _con_with(table).execute(f"""
        SELECT week, symbol, mpid, any_value(participant_name) AS participant_name,
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
            SELECT week, symbol, mpid, sum(share_quantity)::DOUBLE AS q FROM finra GROUP BY week, symbol, mpid
        )
        SELECT week, symbol, {m.venue_count("q")} AS venues, sum(q)::BIGINT AS share_quantity,
               {m.hhi("q")} AS hhi, {m.top_venue("mpid", "q")} AS top_mpid, {m.top_venue_share("q")} AS top_share
        FROM v GROUP BY week, symbol ORDER BY week, share_quantity DESC, symbol
    """).df()


FINRA_TABLES = {
    "finra_venue_share": venue_share,
    "finra_venue_trade_size": venue_trade_size,
    "finra_concentration": concentration,
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
        )
        SELECT {sym_col}venue, coalesce(r.name, '') AS name,
               coalesce(pq, 0)::BIGINT AS pipeline_quantity,
               {pipeline_share} AS pipeline_share,
               coalesce(fq, 0)::BIGINT AS finra_quantity,
               {finra_share} AS finra_share,
               100 * ({pipeline_share} - {finra_share}) AS difference_pp
        FROM j LEFT JOIN venues r ON r.mpid = j.venue
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
    """
    con.register("finra", finra)
    try:
        return con.execute(_compare_sql(by_symbol)).df()
    finally:
        con.unregister("finra")


# --- calibration of the feed ------------------------------------------------------------
def calibration_from_table(table: pa.Table, registry_only: bool = True) -> Calibration:
    """symbol -> MPID -> VenueProfile(share of the symbol's ATS volume, shares per trade).

    Weeks are added together. Rows with no shares or no trades carry no profile
    and are left out. With ``registry_only`` (the default) MPIDs that are not in
    the active venue registry (shipped, or a user file: docs/venues.md) are left out and the remaining
    shares renormalised, since the pipeline rejects trades on unknown venues.
    """
    known = set(load_venues())
    rows = _con_with(table).execute("""
        SELECT symbol, mpid, sum(share_quantity)::BIGINT AS q, sum(trade_count)::BIGINT AS n
        FROM finra GROUP BY symbol, mpid HAVING sum(share_quantity) > 0 AND sum(trade_count) > 0
        ORDER BY symbol, mpid
    """).fetchall()
    dropped = sorted({m for _, m, _, _ in rows if m not in known}) if registry_only else []
    if dropped:
        log.warning("calibration: MPIDs not in the venue registry left out: %s", ", ".join(dropped))
    totals: dict[str, int] = {}
    kept = [(s, m, q, n) for s, m, q, n in rows if not registry_only or m in known]
    for symbol, _, q, _ in kept:
        totals[symbol] = totals.get(symbol, 0) + q
    calibration: Calibration = {}
    for symbol, mpid, q, n in kept:
        calibration.setdefault(symbol, {})[mpid] = VenueProfile(share=q / totals[symbol], avg_trade_size=q / n)
    if not calibration:
        raise DarkpoolError(
            "the FINRA data gives no calibration: no row with shares and trades on a registry venue",
            "check the file's MPIDs against the venue registry (`darkpool venues`; your own: --venues FILE)",
        )
    return calibration


def calibration_from_file(path: Path | str, week: date | None = None, registry_only: bool = True) -> Calibration:
    """Validate one FINRA weekly file and turn it into the feed's :data:`~darkpool.contracts.Calibration`.

    Raises :class:`FinraValidationError` (a DarkpoolError) listing bad rows.
    """
    table = read_files([Path(path)], week).table
    return calibration_from_table(table, registry_only=registry_only)
