"""``darkpool analyze`` and ``darkpool finra import|compare|show``.

Registered by console.cli (the `darkpool` command) through :func:`register`. Progress goes to stderr;
the result (the report folder, the import summary, the comparison table) to
stdout. Errors are DarkpoolErrors, printed by the CLI without a stack trace.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from darkpool.config import load_settings
from darkpool.errors import DarkpoolError

if TYPE_CHECKING:
    from darkpool.finra_file import RowError


def _week_arg(text: str) -> date:
    from darkpool.finra_file import parse_date

    try:
        return parse_date(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


def _tiers_arg(text: str) -> tuple[str, ...] | None:
    """--tiers: FINRA tiers, by identifier or description (T1, T2, OTCE; "NMS Tier 1", ...)."""
    from darkpool.finra_file import parse_tiers

    try:
        return parse_tiers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _print_skipped(skipped: Sequence[RowError], stream: TextIO) -> None:
    """The rows left out of FINRA files, with file:line and reason, and their count by reason."""
    from darkpool.finra_file import count_reasons, describe_errors

    if not skipped:
        return
    reasons = ", ".join(f"{reason} {n}" for reason, n in count_reasons(skipped).items())
    print(f"left out {len(skipped):,} unusable row(s) ({reasons}):", file=stream)
    print(describe_errors(skipped), file=stream)


def _dataset_arg(text: str) -> Path | str:
    """--dataset: a folder or an s3://bucket/prefix URI."""
    from darkpool.storage import parse_location

    try:
        return parse_location(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _default_finra_store() -> Path:
    return load_settings().state_dir / "finra"


def _add_selection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", type=_dataset_arg, default=None,
                        help="root of the Parquet dataset: a folder or s3://bucket/prefix (endpoint and credentials "
                             "from DARKPOOL_S3_*; default: DARKPOOL_DATASET_URI, else <state dir>/parquet)")
    parser.add_argument("--from", dest="start", metavar="TS",
                        help="first window_start to include (ISO-8601 time or date, UTC if no offset)")
    parser.add_argument("--to", dest="end", metavar="TS", help="window_start before which to stop (exclusive)")
    parser.add_argument("--symbols", metavar="A,B", help="comma-separated symbols (default: all)")
    parser.add_argument("--all-panes", action="store_true",
                        help="analyse every pane (EARLY, ON_TIME, LATE) instead of the final pane per window; "
                             "period totals then count a window once per pane")


def _selection(args: argparse.Namespace):
    from analytics.dataset import Selection, parse_symbols_arg, parse_time_arg

    start = parse_time_arg(args.start, "--from")
    end = parse_time_arg(args.end, "--to")
    if start and end and start >= end:
        raise DarkpoolError(f"--from {args.start} is not before --to {args.end}")
    return Selection(start=start, end=end, symbols=parse_symbols_arg(args.symbols), all_panes=args.all_panes)


def _dataset(args: argparse.Namespace) -> Path | str:
    return args.dataset if args.dataset is not None else load_settings().dataset_location


def cmd_analyze(args: argparse.Namespace) -> int:
    """Build the report and print the folder it went to."""
    from analytics.dataset import Progress
    from analytics.report import build_report, default_out_dir

    selection = _selection(args)
    out_dir = args.out if args.out is not None else default_out_dir(load_settings().home)
    result = build_report(
        dataset=_dataset(args), selection=selection, out_dir=out_dir,
        finra_store=args.finra_store if args.finra_store is not None else _default_finra_store(),
        finra_file=args.finra, finra_week=args.week, finra_tiers=args.finra_tiers,
        progress=Progress(enabled=not args.quiet), figures=not args.no_figures,
    )
    print(f"report: {result.html_path}")
    print(f"tables: {result.out_dir / 'tables'} ({len(result.tables)} tables, CSV + Parquet)")
    print(f"figures: {len(result.figures)} (embedded in the report and in {result.out_dir / 'figures'})")
    print(f"output folder: {result.out_dir}")
    return 0


def cmd_finra_import(args: argparse.Namespace) -> int:
    """Validate FINRA files and store their usable rows (nothing if a file is untrustworthy)."""
    import sys

    from analytics.finra import import_files
    from darkpool.finra_file import TIERS

    store = args.store if args.store is not None else _default_finra_store()
    result = import_files(args.files, store, week=args.week, replace=args.replace, strict=args.strict)
    for summary in result.files:
        note = " (publication week: pass --week for the trading week)" \
            if summary.week_source == "lastUpdateDate" else ""
        print(f"{summary.file}: week from {summary.week_source}{note}; {summary.data_rows:,} data rows, "
              f"{summary.usable:,} usable, {summary.skipped:,} left out")
    _print_skipped(result.skipped, sys.stdout)
    tiers = ", ".join(f"{tier} ({TIERS.get(tier, tier)}) {n:,}" for tier, n in result.tier_rows.items())
    print(f"tiers: {tiers}")
    unknown = result.unknown_venues
    if not unknown.empty:
        print(f"{len(unknown)} venue(s) not in the venue registry, kept by MPID:")
        print(f"  {'MPID':<6}{'name':<44}{'tiers':<11}{'symbols':>8}{'shares':>16}")
        for row in unknown.itertuples(index=False):
            print(f"  {row.mpid:<6}{str(row.name)[:43]:<44}{row.tiers:<11}{row.symbols:>8,}{row.share_quantity:>16,}")
    weeks = ", ".join(str(w) for w in result.weeks)
    replaced = f", replaced {result.replaced_rows:,} stored rows" if result.replaced_rows else ""
    print(f"imported {result.rows:,} rows for week(s) {weeks}{replaced}; "
          f"store {result.path} now holds {result.total_rows:,} rows")
    return 0


def cmd_finra_show(args: argparse.Namespace) -> int:
    """Summarise what the FINRA store holds."""
    import duckdb

    from analytics.finra import filter_table, load_store, store_path, unknown_venues
    from darkpool.finra_file import tier_order

    store = args.store if args.store is not None else _default_finra_store()
    table = load_store(store)
    if table is None:
        raise DarkpoolError(f"no FINRA data in {store}", "import a file: darkpool finra import FILE")
    if args.tiers:
        table = filter_table(table, tiers=args.tiers)
    con = duckdb.connect(":memory:")
    con.register("finra", table)
    rows = con.execute("""
        SELECT week, tier, count(*) AS rows, count(DISTINCT symbol) AS symbols, count(DISTINCT mpid) AS atss,
               sum(share_quantity)::BIGINT AS shares, sum(trade_count)::BIGINT AS trades
        FROM finra GROUP BY week, tier
    """).fetchall()
    rows.sort(key=lambda row: (row[0], tier_order(row[1])))
    print(f"{store_path(store)}")
    print(f"{'week':<12}{'tier':<6}{'rows':>8}{'symbols':>9}{'ATSs':>6}{'shares':>16}{'trades':>12}")
    for week, tier, n, symbols, atss, shares, trades in rows:
        print(f"{week!s:<12}{tier:<6}{n:>8,}{symbols:>9,}{atss:>6}{shares:>16,}{trades:>12,}")
    unknown = unknown_venues(table)
    if not unknown.empty:
        print(f"not in the venue registry: {', '.join(unknown['mpid'])}")
    return 0


def cmd_finra_compare(args: argparse.Namespace) -> int:
    """Print the pipeline's venue shares next to a FINRA file's, by MPID; optionally write CSVs."""
    import sys

    from analytics.dataset import Progress, connect, load_panes
    from analytics.finra import compare_with_pipeline, filter_table
    from darkpool.finra_file import read_files

    selection = _selection(args)
    parsed = read_files([args.file], args.week)
    _print_skipped(parsed.skipped, sys.stderr)
    finra_table = parsed.table
    if selection.symbols or args.tiers:
        finra_table = filter_table(finra_table, symbols=selection.symbols, tiers=args.tiers)
    con = connect()
    load_panes(con, _dataset(args), selection, Progress(prefix="finra compare", enabled=not args.quiet))
    overall = compare_with_pipeline(con, finra_table)
    by_symbol = compare_with_pipeline(con, finra_table, by_symbol=True)
    if overall.empty:
        raise DarkpoolError("no symbol is in both the dataset and the FINRA file",
                            "check --symbols, --from/--to and the file")
    print(f"{'venue':<7}{'name':<28}{'pipeline':>10}{'FINRA':>9}{'diff (pp)':>11}")
    for row in overall.itertuples(index=False):
        mark = "" if row.in_registry else "  *"
        print(f"{row.venue:<7}{row.name[:27]:<28}{100 * row.pipeline_share:>9.2f}%{100 * row.finra_share:>8.2f}%"
              f"{row.difference_pp:>+11.2f}{mark}")
    if not overall["in_registry"].all():
        print("* not in the venue registry: compared by MPID, named as in the FINRA file")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        overall.to_csv(args.out / "finra_comparison.csv", index=False)
        by_symbol.to_csv(args.out / "finra_comparison_by_symbol.csv", index=False)
        print(f"wrote {args.out / 'finra_comparison.csv'} and {args.out / 'finra_comparison_by_symbol.csv'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``analyze`` and ``finra`` to the darkpool command line."""
    analyze = subparsers.add_parser(
        "analyze", help="offline report (HTML + CSV/Parquet tables + figures) from the Parquet dataset",
        description="Read the pipeline's Parquet dataset (final panes by default), compute venue ranking, "
                    "dark vs lit share over time, symbol ranking by dark share, trade size dark vs lit, "
                    "block activity and venue concentration (HHI), draw them, and write one self-contained "
                    "HTML report plus CSV and Parquet tables. FINRA ATS data is added when the FINRA store "
                    "holds any, or from --finra FILE (with a comparison against the pipeline's venue shares).",
    )
    _add_selection_options(analyze)
    analyze.add_argument("--out", type=Path, default=None,
                         help="output folder (default: <home>/reports/analyze-<UTC time>)")
    analyze.add_argument("--finra", type=Path, metavar="FILE", default=None,
                         help="a FINRA weekly ATS file: its tables and a comparison with the pipeline's venue shares")
    analyze.add_argument("--finra-store", type=Path, metavar="DIR", default=None,
                         help="FINRA store to include when --finra is not given (default: <state dir>/finra)")
    analyze.add_argument("--week", type=_week_arg, default=None, metavar="DATE",
                         help="with --finra: the trading week of the file (any date in it)")
    analyze.add_argument("--finra-tiers", type=_tiers_arg, default=None, metavar="T1,T2",
                         help="only these FINRA tiers (T1, T2, OTCE or their names; default: all)")
    analyze.add_argument("--no-figures", action="store_true", help="tables only (faster)")
    analyze.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    analyze.set_defaults(func=cmd_analyze)

    finra = subparsers.add_parser("finra", help="FINRA OTC transparency (weekly ATS) data: import, show, compare",
                                  description="FINRA OTC transparency weekly ATS files (pipe-delimited).")
    finra_sub = finra.add_subparsers(dest="finra_command", metavar="ACTION")
    finra_sub.required = True

    imp = finra_sub.add_parser(
        "import", help="validate FINRA files and store their usable rows as Parquet",
        description="Validate every row and add the usable ones to the store <store>/ats_weekly.parquet. Rows "
                    "that are not usable (no symbol, no MPID, no known tier) are listed as file:line with their "
                    "reason, counted and left out; a file that cannot be trusted (wrong header, a quantity or "
                    "date that does not parse, a cut-off row, rows of two weeks, duplicates) rejects the whole "
                    "import and nothing is stored. --strict rejects it for any unusable row too.")
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE")
    imp.add_argument("--store", type=Path, default=None, help="store folder (default: <state dir>/finra)")
    imp.add_argument("--week", type=_week_arg, default=None, metavar="DATE",
                     help="trading week of every row (any date in it; stored as its Monday). Default: a "
                          "weekStartDate/summaryStartDate column, else a date in the file name, else lastUpdateDate")
    imp.add_argument("--replace", action="store_true", help="replace weeks already in the store")
    imp.add_argument("--strict", action="store_true",
                     help="all or nothing for every row: any unusable row rejects the import")
    imp.set_defaults(func=cmd_finra_import)

    show = finra_sub.add_parser("show", help="what the FINRA store holds, per week and tier")
    show.add_argument("--store", type=Path, default=None, help="store folder (default: <state dir>/finra)")
    show.add_argument("--tiers", type=_tiers_arg, default=None, metavar="T1,T2",
                      help="only these tiers (T1, T2, OTCE or their names; default: all)")
    show.set_defaults(func=cmd_finra_show)

    cmp_ = finra_sub.add_parser("compare", help="the pipeline's venue shares vs a FINRA file's",
                                description="Per venue: share of dark volume in the Parquet dataset and in the "
                                            "FINRA file (symbols in both), and the difference in percentage points.")
    cmp_.add_argument("file", type=Path, metavar="FILE")
    _add_selection_options(cmp_)
    cmp_.add_argument("--week", type=_week_arg, default=None, metavar="DATE",
                      help="trading week of the file (any date in it)")
    cmp_.add_argument("--tiers", type=_tiers_arg, default=None, metavar="T1,T2",
                      help="only these FINRA tiers (T1, T2, OTCE or their names; default: all)")
    cmp_.add_argument("--out", type=Path, default=None, help="also write the comparison CSVs to this folder")
    cmp_.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    cmp_.set_defaults(func=cmd_finra_compare)

