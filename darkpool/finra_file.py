"""FINRA OTC transparency weekly ATS files: read, validate, and calibrate the feed from one.

The file format is a rule two parts share: analytics imports, validates and
compares FINRA files (analytics.finra: the store, the tables, the comparison),
and the feed calibrates its synthetic tape from one (``darkpool feed
--calibrate FILE``). Both read them here.

Input: FINRA's public weekly per-ATS, per-symbol volume files as downloaded
from otctransparency.finra.org, pipe-delimited, with the header::

    tierDescription|issueSymbolIdentifier|issueName|marketParticipantName|MPID|
    totalWeeklyShareQuantity|totalWeeklyTradeCount|lastUpdateDate

(extra columns are allowed and ignored, columns may come in any order; a
``tierIdentifier`` column may stand in for ``tierDescription``; a UTF-8
byte-order mark, blank lines and a missing final newline are tolerated).

Tiers: FINRA publishes three, NMS Tier 1, NMS Tier 2 and OTC equities, named
``T1``, ``T2``, ``OTCE`` in ``tierIdentifier`` and ``NMS Tier 1``, ``NMS Tier
2``, ``OTC`` in ``tierDescription``; rows are stored with the identifier
(:data:`TIERS`, :func:`tier_id`).

The week a row belongs to (stored as the Monday of that week) is determined, in
order, by:

1. ``--week DATE`` (``week=`` here), for every row of every file;
2. a ``weekStartDate`` or ``summaryStartDate`` column, per row;
3. a date in the file name (``...20241104...`` or ``...2024-11-04...``);
4. ``lastUpdateDate``, per row. FINRA publishes a week's data two to four weeks
   after it, so this is the publication week, not the trading week: pass
   ``--week`` when the file does not say. The import reports which rule it used.

One file holds one week.

Validation sorts what is wrong into two kinds, each a :class:`RowError` with
``file:line``, a reason name (``REASON_*`` below) and a message:

* a row that is **not usable** (:data:`ROW_REASONS`: no symbol, no MPID, no
  known tier; FINRA's own files end with such a row) is left out, listed in
  :attr:`ParsedFiles.skipped` and counted; the rest of the file is used. With
  ``strict`` such a row is an error like the others;
* anything that makes the **file untrustworthy** (:data:`FILE_REASONS`: a wrong
  header, a row with the wrong number of columns (a cut-off file), a quantity
  that is not a non-negative integer, a bad date, rows of two weeks, a duplicate
  ``(week, symbol, MPID)``, no usable row at all) is collected in
  :attr:`ParsedFiles.errors`, and :func:`read_files` raises
  :class:`FinraValidationError` listing them all: nothing of the files is used.
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
TIER_COLUMNS = ("tierIdentifier", "tierDescription")  # either one names the tier; the identifier wins
WEEK_COLUMNS = ("weekStartDate", "summaryStartDate")
MAX_ERRORS_SHOWN = 50

# FINRA's tiers: tierIdentifier -> tierDescription as in the downloadable files
TIERS = {"T1": "NMS Tier 1", "T2": "NMS Tier 2", "OTCE": "OTC"}
_TIER_NAMES = {
    **{tier.lower(): tier for tier in TIERS},
    **{description.lower(): tier for tier, description in TIERS.items()},
    "tier 1": "T1", "tier 2": "T2", "otc equity": "OTCE", "otc equities": "OTCE",
}

FINRA_SCHEMA = pa.schema([
    ("week", pa.date32()),  # Monday of the trading week
    ("tier", pa.string()),  # T1 | T2 | OTCE (TIERS)
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

# --- reasons (RowError.reason) ------------------------------------------------------
# A row that is not usable: left out, listed and counted (with strict: an error).
REASON_MISSING_SYMBOL = "missing_symbol"  # FINRA's files end with a row without symbol and issue name
REASON_MISSING_MPID = "missing_mpid"
REASON_UNKNOWN_TIER = "unknown_tier"  # empty, or none of TIERS
ROW_REASONS = (REASON_MISSING_SYMBOL, REASON_MISSING_MPID, REASON_UNKNOWN_TIER)
# The file cannot be trusted: nothing of the import is used.
REASON_EMPTY_FILE = "empty_file"
REASON_BAD_HEADER = "bad_header"
REASON_NO_DATA_ROWS = "no_data_rows"
REASON_COLUMN_COUNT = "column_count"  # a row cut off or split: the file is not whole
REASON_BAD_QUANTITY = "bad_quantity"  # not an integer, or negative
REASON_BAD_DATE = "bad_date"
REASON_MIXED_WEEKS = "mixed_weeks"
REASON_DUPLICATE = "duplicate"  # (week, symbol, MPID) twice in the files read
REASON_ALREADY_STORED = "already_stored"  # (week, symbol, MPID) already in the store (analytics.finra)
REASON_NO_USABLE_ROWS = "no_usable_rows"
FILE_REASONS = (
    REASON_EMPTY_FILE, REASON_BAD_HEADER, REASON_NO_DATA_ROWS, REASON_COLUMN_COUNT,
    REASON_BAD_QUANTITY, REASON_BAD_DATE, REASON_MIXED_WEEKS, REASON_DUPLICATE, REASON_ALREADY_STORED,
    REASON_NO_USABLE_ROWS,
)

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


def tier_id(text: str) -> str | None:
    """FINRA's tier identifier (T1, T2, OTCE) of a tierIdentifier or tierDescription value; None if unknown."""
    return _TIER_NAMES.get(" ".join(text.split()).lower())


def tier_order(tier: str) -> int:
    """Sort key of a tier identifier: T1, T2, OTCE (FINRA's order), then anything else."""
    return list(TIERS).index(tier) if tier in TIERS else len(TIERS)


def parse_tiers(text: str | None) -> tuple[str, ...] | None:
    """``"T1, nms tier 2"`` -> ``("T1", "T2")``; empty or None means every tier; ValueError for an unknown one."""
    if not text:
        return None
    tiers: list[str] = []
    for part in (p for p in text.split(",") if p.strip()):
        tier = tier_id(part)
        if tier is None:
            raise ValueError(f"{part.strip()!r} is not a FINRA tier (one of {', '.join(TIERS)})")
        tiers.append(tier)
    if not tiers:
        raise ValueError(f"{text!r} names no tier (one of {', '.join(TIERS)})")
    return tuple(dict.fromkeys(tiers))


# --- parsing and validation --------------------------------------------------------
@dataclass(frozen=True)
class RowError:
    """What is wrong at ``file:line``: a reason name (``REASON_*``) and a readable message."""

    file: str
    line: int
    reason: str
    message: str

    @property
    def row_only(self) -> bool:
        """True when only this row is unusable (:data:`ROW_REASONS`), False when the file is untrustworthy."""
        return self.reason in ROW_REASONS

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message} [{self.reason}]"


def describe_errors(errors: Sequence[RowError], limit: int = MAX_ERRORS_SHOWN) -> str:
    """Up to ``limit`` errors, one ``  file:line: message [reason]`` line each, then ``... and N more``."""
    shown = "\n".join(f"  {e}" for e in errors[:limit])
    more = len(errors) - limit
    return shown + (f"\n  ... and {more} more" if more > 0 else "")


def count_reasons(errors: Sequence[RowError]) -> dict[str, int]:
    """reason -> how many, in order of first appearance."""
    counts: dict[str, int] = {}
    for error in errors:
        counts[error.reason] = counts.get(error.reason, 0) + 1
    return counts


class FinraValidationError(DarkpoolError):
    """The FINRA file(s) cannot be trusted; nothing was imported. ``errors`` lists every problem."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        self.errors = list(errors)
        reasons = ", ".join(f"{reason} {n}" for reason, n in count_reasons(self.errors).items())
        super().__init__(
            f"{len(self.errors)} problem(s) in the FINRA file(s) ({reasons}); nothing was imported:\n"
            f"{describe_errors(self.errors)}",
            "these rows are not usable: import without --strict to leave them out"
            if all(e.row_only for e in self.errors) else "fix the rows above (file:line) and import again",
        )


@dataclass(frozen=True)
class FileSummary:
    """What one file gave: its week rule, its data rows and how many of them were left out."""

    file: str
    week_source: str
    data_rows: int
    skipped: int

    @property
    def usable(self) -> int:
        return self.data_rows - self.skipped


@dataclass
class ParsedFiles:
    """Rows of one or more FINRA files: the usable ones, the ones left out, and what makes them untrustworthy."""

    table: pa.Table
    week_sources: dict[str, str]  # file -> rule used
    errors: list[RowError]  # file reasons (and, with strict, row reasons): nothing may be used
    skipped: list[RowError]  # rows left out (ROW_REASONS), in file order
    files: list[FileSummary]


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


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError as exc:
        raise DarkpoolError(f"FINRA file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DarkpoolError(f"cannot read FINRA file {path}: {exc}") from exc


def _header_problem(header: list[str]) -> str | None:
    """Why a header line is not a FINRA weekly file's, or None."""
    missing = [c for c in FINRA_COLUMNS if c not in header and c != "tierDescription"]
    if not any(c in header for c in TIER_COLUMNS):
        missing.insert(0, "tierDescription (or tierIdentifier)")
    if not missing:
        return None
    return f"header lacks column(s) {', '.join(missing)}; expected {'|'.join(FINRA_COLUMNS)}"


@dataclass(frozen=True)
class _Row:
    """One usable data row."""

    week: date
    tier: str
    symbol: str
    issue_name: str
    participant_name: str
    mpid: str
    share_quantity: int
    trade_count: int
    last_update_date: date


def _parse_row(fields: list[str], idx: dict[str, int], fixed_week: date | None, week_col: int | None,
               week_col_name: str) -> tuple[_Row | None, list[tuple[str, str]]]:
    """(the row, or None) and its problems as (reason, message); file reasons come first."""
    fatal: list[tuple[str, str]] = []
    quantities: list[int] = []
    for column in ("totalWeeklyShareQuantity", "totalWeeklyTradeCount"):
        try:
            quantities.append(parse_quantity(fields[idx[column]], column))
        except ValueError as exc:
            fatal.append((REASON_BAD_QUANTITY, str(exc)))
    updated: date | None = None
    try:
        updated = parse_date(fields[idx["lastUpdateDate"]])
    except ValueError as exc:
        fatal.append((REASON_BAD_DATE, f"lastUpdateDate {exc}"))
    row_week = fixed_week
    if week_col is not None:
        try:
            row_week = week_start(parse_date(fields[week_col]))
        except ValueError as exc:
            fatal.append((REASON_BAD_DATE, f"{week_col_name} {exc}"))
    elif row_week is None and updated is not None:
        row_week = week_start(updated)
    unusable: list[tuple[str, str]] = []
    symbol = fields[idx["issueSymbolIdentifier"]].strip().upper()
    issue_name = fields[idx["issueName"]].strip()
    mpid = fields[idx["MPID"]].strip().upper()
    tier_text = fields[idx["tier"]].strip()
    tier = tier_id(tier_text)
    if not symbol:
        also = " and issueName" if not issue_name else ""
        unusable.append((REASON_MISSING_SYMBOL, f"missing issueSymbolIdentifier (symbol){also}"))
    if not mpid:
        unusable.append((REASON_MISSING_MPID, "missing MPID"))
    if tier is None:
        unusable.append((REASON_UNKNOWN_TIER, f"tier {tier_text!r} is not one of "
                                              f"{', '.join(f'{t} ({d})' for t, d in TIERS.items())}"))
    problems = fatal + unusable
    if problems:
        return None, problems
    assert row_week is not None and updated is not None and tier is not None
    return _Row(row_week, tier, symbol, issue_name, fields[idx["marketParticipantName"]].strip(), mpid,
                quantities[0], quantities[1], updated), []


@dataclass
class _Collected:
    """What the files read so far gave: the table's columns, errors, skipped rows, keys seen."""

    columns: dict[str, list]
    errors: list[RowError]
    skipped: list[RowError]
    first_seen: dict[tuple[date, str, str], str]  # (week, symbol, MPID) -> file:line

    def add(self, row: _Row, rule: str, path: Path, lineno: int) -> None:
        """One usable row into the columns (its key is new)."""
        self.first_seen[(row.week, row.symbol, row.mpid)] = f"{path}:{lineno}"
        for field, value in (("week", row.week), ("tier", row.tier), ("symbol", row.symbol),
                             ("issue_name", row.issue_name), ("participant_name", row.participant_name),
                             ("mpid", row.mpid), ("share_quantity", row.share_quantity),
                             ("trade_count", row.trade_count), ("last_update_date", row.last_update_date),
                             ("week_source", rule), ("source_file", path.name), ("source_line", lineno)):
            self.columns[field].append(value)


def _parse_file(path: Path, week: date | None, strict: bool, out: _Collected) -> FileSummary | None:
    """One file's rows into ``out``; its summary, or None when it has no usable header."""
    name = str(path)
    lines = _read_lines(path)
    header_line = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_line is None:
        out.errors.append(RowError(name, 1, REASON_EMPTY_FILE,
                                   "empty file (expected the header " + "|".join(FINRA_COLUMNS) + ")"))
        return None
    header = [h.strip() for h in lines[header_line].split("|")]
    problem = _header_problem(header)
    if problem:
        out.errors.append(RowError(name, header_line + 1, REASON_BAD_HEADER, problem))
        return None
    idx = {c: header.index(c) for c in FINRA_COLUMNS if c in header}
    idx["tier"] = header.index(next(c for c in TIER_COLUMNS if c in header))
    rule, fixed_week, week_col = _week_rule(path, header, week)
    week_col_name = header[week_col] if week_col is not None else ""
    data_rows = skipped = 0
    weeks_seen: dict[date, int] = {}  # week -> first line
    for i in range(header_line + 1, len(lines)):
        if not lines[i].strip():
            continue
        data_rows += 1
        lineno = i + 1
        fields = lines[i].split("|")
        if len(fields) != len(header):
            out.errors.append(RowError(name, lineno, REASON_COLUMN_COUNT,
                                       f"{len(fields)} columns, expected {len(header)} (a cut-off or split row)"))
            continue
        row, problems = _parse_row(fields, idx, fixed_week, week_col, week_col_name)
        if row is None:
            if all(reason in ROW_REASONS for reason, _ in problems) and not strict:
                out.skipped.append(RowError(name, lineno, problems[0][0], "; ".join(m for _, m in problems)))
                skipped += 1
            else:
                out.errors.extend(RowError(name, lineno, reason, message) for reason, message in problems)
            continue
        if row.week not in weeks_seen:
            if weeks_seen:
                first_week, first_line = next(iter(weeks_seen.items()))
                out.errors.append(RowError(name, lineno, REASON_MIXED_WEEKS,
                                           f"week {row.week} here, week {first_week} at line {first_line}: one "
                                           f"file holds one week (rule: {rule}; --week sets it)"))
            weeks_seen[row.week] = lineno
        key = (row.week, row.symbol, row.mpid)
        if key in out.first_seen:
            out.errors.append(RowError(name, lineno, REASON_DUPLICATE,
                                       f"duplicate (week {row.week}, symbol {row.symbol}, MPID {row.mpid}); "
                                       f"first at {out.first_seen[key]}"))
            continue
        out.add(row, rule, path, lineno)
    if data_rows == 0:
        out.errors.append(RowError(name, header_line + 1, REASON_NO_DATA_ROWS, "no data rows after the header"))
    elif skipped == data_rows:
        out.errors.append(RowError(name, header_line + 1, REASON_NO_USABLE_ROWS,
                                   f"none of the {data_rows} data row(s) is usable"))
    return FileSummary(name, rule, data_rows, skipped)


def parse_files(paths: Sequence[Path | str], week: date | None = None, strict: bool = False) -> ParsedFiles:
    """Parse and validate FINRA weekly files; collect every problem instead of stopping at the first.

    Rows that are not usable (:data:`ROW_REASONS`) go to ``skipped`` (with ``strict``: to ``errors``);
    everything else wrong goes to ``errors``.
    """
    out = _Collected(columns={name: [] for name in FINRA_SCHEMA.names}, errors=[], skipped=[], first_seen={})
    files = [summary for path in paths if (summary := _parse_file(Path(path), week, strict, out)) is not None]
    table = pa.Table.from_pydict(out.columns, schema=FINRA_SCHEMA)
    return ParsedFiles(table=table, week_sources={f.file: f.week_source for f in files}, errors=out.errors,
                       skipped=out.skipped, files=files)


def read_files(paths: Sequence[Path | str], week: date | None = None, strict: bool = False) -> ParsedFiles:
    """:func:`parse_files`, raising :class:`FinraValidationError` if anything makes the files untrustworthy.

    Unusable rows are left out (``skipped``), unless ``strict``: then they are errors too.
    """
    parsed = parse_files(paths, week, strict=strict)
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

    Rows that are not usable are left out (logged); anything that makes the file
    untrustworthy raises :class:`FinraValidationError` (a DarkpoolError) listing it.
    """
    parsed = read_files([Path(path)], week)
    if parsed.skipped:
        log.warning("calibration: %d unusable FINRA row(s) left out:\n%s", len(parsed.skipped),
                    describe_errors(parsed.skipped))
    table = parsed.table
    return calibration_from_table(table, registry_only=registry_only)
