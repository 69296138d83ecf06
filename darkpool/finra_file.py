"""FINRA OTC transparency weekly ATS files: read, validate, and calibrate the feed from one.

The file format is a rule two parts share: analytics imports, validates and
compares FINRA files (analytics.finra: the store, the tables, the comparison),
and the feed calibrates its synthetic tape from one (``darkpool feed
--calibrate FILE``). Both read them here.

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
``(week, symbol, MPID)`` within the files read) and :func:`read_files` raises
:class:`FinraValidationError` listing them all.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from darkpool.contracts import Calibration, VenueProfile, load_venues
from darkpool.errors import DarkpoolError

log = logging.getLogger(__name__)

FINRA_COLUMNS = (
    "tierDescription", "issueSymbolIdentifier", "issueName", "marketParticipantName", "MPID",
    "totalWeeklyShareQuantity", "totalWeeklyTradeCount", "lastUpdateDate",
)
WEEK_COLUMNS = ("weekStartDate", "summaryStartDate")
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


# --- calibration of the feed ------------------------------------------------------------
def calibration_from_table(table: pa.Table, registry_only: bool = True) -> Calibration:
    """symbol -> MPID -> VenueProfile(share of the symbol's ATS volume, shares per trade).

    Weeks are added together. Rows with no shares or no trades carry no profile
    and are left out. With ``registry_only`` (the default) MPIDs that are not in
    the active venue registry (shipped, or a user file: docs/venues.md) are left out and the remaining
    shares renormalised, since the pipeline rejects trades on unknown venues.
    """
    known = set(load_venues())
    con = duckdb.connect(":memory:")
    con.register("finra", table)
    rows = con.execute("""
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
