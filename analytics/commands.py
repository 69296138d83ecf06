"""``darkpool analyze`` and ``darkpool finra import|compare|show``.

Registered by console.cli (the `darkpool` command) through :func:`register`. Progress goes to stderr;
the result (the report folder, the import summary, the comparison table) to
stdout. Errors are DarkpoolErrors, printed by the CLI without a stack trace.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from darkpool.config import load_settings
from darkpool.errors import DarkpoolError


def _week_arg(text: str) -> date:
    from darkpool.finra_file import parse_date

    try:
        return parse_date(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


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
        finra_file=args.finra, finra_week=args.week, progress=Progress(enabled=not args.quiet),
        figures=not args.no_figures,
    )
    print(f"report: {result.html_path}")
    print(f"tables: {result.out_dir / 'tables'} ({len(result.tables)} tables, CSV + Parquet)")
    print(f"figures: {len(result.figures)} (embedded in the report and in {result.out_dir / 'figures'})")
    print(f"output folder: {result.out_dir}")
    return 0


def cmd_finra_import(args: argparse.Namespace) -> int:
    """Validate FINRA files and store them (all or nothing)."""
    from analytics.finra import import_files

    store = args.store if args.store is not None else _default_finra_store()
    result = import_files(args.files, store, week=args.week, replace=args.replace)
    for name, rule in result.week_sources.items():
        note = " (publication week: pass --week for the trading week)" if rule == "lastUpdateDate" else ""
        print(f"{name}: week from {rule}{note}")
    weeks = ", ".join(str(w) for w in result.weeks)
    replaced = f", replaced {result.replaced_rows:,} stored rows" if result.replaced_rows else ""
    print(f"imported {result.rows:,} rows for week(s) {weeks}{replaced}; "
          f"store {result.path} now holds {result.total_rows:,} rows")
    return 0


def cmd_finra_show(args: argparse.Namespace) -> int:
    """Summarise what the FINRA store holds."""
    import duckdb

    from analytics.finra import load_store, store_path

    store = args.store if args.store is not None else _default_finra_store()
    table = load_store(store)
    if table is None:
        raise DarkpoolError(f"no FINRA data in {store}", "import a file: darkpool finra import FILE")
    con = duckdb.connect(":memory:")
    con.register("finra", table)
    rows = con.execute("""
        SELECT week, count(*) AS rows, count(DISTINCT symbol) AS symbols, count(DISTINCT mpid) AS atss,
               sum(share_quantity)::BIGINT AS shares, sum(trade_count)::BIGINT AS trades
        FROM finra GROUP BY week ORDER BY week
    """).fetchall()
    print(f"{store_path(store)}")
    print(f"{'week':<12}{'rows':>8}{'symbols':>9}{'ATSs':>6}{'shares':>16}{'trades':>12}")
    for week, n, symbols, atss, shares, trades in rows:
        print(f"{week!s:<12}{n:>8,}{symbols:>9,}{atss:>6}{shares:>16,}{trades:>12,}")
    return 0


def cmd_finra_compare(args: argparse.Namespace) -> int:
    """Print the pipeline's venue shares next to a FINRA file's; optionally write CSVs."""
    from analytics.dataset import Progress, connect, load_panes
    from analytics.finra import compare_with_pipeline, filter_table
    from darkpool.finra_file import read_files

    selection = _selection(args)
    finra_table = read_files([args.file], args.week).table
    if selection.symbols:
        finra_table = filter_table(finra_table, symbols=selection.symbols)
    con = connect()
    load_panes(con, _dataset(args), selection, Progress(prefix="finra compare", enabled=not args.quiet))
    overall = compare_with_pipeline(con, finra_table)
    by_symbol = compare_with_pipeline(con, finra_table, by_symbol=True)
    if overall.empty:
        raise DarkpoolError("no symbol is in both the dataset and the FINRA file",
                            "check --symbols, --from/--to and the file")
    print(f"{'venue':<7}{'name':<28}{'pipeline':>10}{'FINRA':>9}{'diff (pp)':>11}")
    for row in overall.itertuples(index=False):
        print(f"{row.venue:<7}{row.name[:27]:<28}{100 * row.pipeline_share:>9.2f}%{100 * row.finra_share:>8.2f}%"
              f"{row.difference_pp:>+11.2f}")
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
    analyze.add_argument("--no-figures", action="store_true", help="tables only (faster)")
    analyze.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    analyze.set_defaults(func=cmd_analyze)

    finra = subparsers.add_parser("finra", help="FINRA OTC transparency (weekly ATS) data: import, show, compare",
                                  description="FINRA OTC transparency weekly ATS files (pipe-delimited).")
    finra_sub = finra.add_subparsers(dest="finra_command", metavar="ACTION")
    finra_sub.required = True

    imp = finra_sub.add_parser("import", help="validate FINRA files and store them as Parquet (all or nothing)",
                               description="Validate every row (errors as file:line) and, only if all are valid, "
                                           "add them to the store <store>/ats_weekly.parquet.")
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE")
    imp.add_argument("--store", type=Path, default=None, help="store folder (default: <state dir>/finra)")
    imp.add_argument("--week", type=_week_arg, default=None, metavar="DATE",
                     help="trading week of every row (any date in it; stored as its Monday). Default: a "
                          "weekStartDate/summaryStartDate column, else a date in the file name, else lastUpdateDate")
    imp.add_argument("--replace", action="store_true", help="replace weeks already in the store")
    imp.set_defaults(func=cmd_finra_import)

    show = finra_sub.add_parser("show", help="what the FINRA store holds, per week")
    show.add_argument("--store", type=Path, default=None, help="store folder (default: <state dir>/finra)")
    show.set_defaults(func=cmd_finra_show)

    cmp_ = finra_sub.add_parser("compare", help="the pipeline's venue shares vs a FINRA file's",
                                description="Per venue: share of dark volume in the Parquet dataset and in the "
                                            "FINRA file (symbols in both), and the difference in percentage points.")
    cmp_.add_argument("file", type=Path, metavar="FILE")
    _add_selection_options(cmp_)
    cmp_.add_argument("--week", type=_week_arg, default=None, metavar="DATE",
                      help="trading week of the file (any date in it)")
    cmp_.add_argument("--out", type=Path, default=None, help="also write the comparison CSVs to this folder")
    cmp_.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    cmp_.set_defaults(func=cmd_finra_compare)

