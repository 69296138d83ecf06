"""Build the analytics report: tables (CSV + Parquet), figures (PNG) and one self-contained HTML page.

Output folder layout::

    <out>/report.html              self-contained: figures embedded as base64 PNG, styles inline
    <out>/tables/<name>.csv        every table, every row
    <out>/tables/<name>.parquet
    <out>/figures/<name>.png       the same figures as separate files

:func:`build_report` is what ``darkpool analyze`` runs.
"""

from __future__ import annotations

import base64
import html
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analytics import finra as finra_mod
from analytics import tables as tables_mod
from analytics.dataset import Progress, Selection, connect, load_alerts, load_panes
from analytics.figures import FIGURES, to_png
from darkpool import __version__
from darkpool.finra_file import MAX_ERRORS_SHOWN, read_files

HTML_ROWS = 25  # rows of each table shown in the HTML (the CSV has all)
NO_ALERTS_NOTE = "no alerts in the dataset (run the pipeline with its alert detectors, the default)"

FINRA_TITLES = {
    "finra_venue_share": ("FINRA: ATS venue share per symbol and week",
                          "Each ATS's share of a symbol's weekly ATS volume and its average trade size "
                          "(FINRA OTC transparency data)."),
    "finra_venue_trade_size": ("FINRA: average trade size per ATS",
                               "Shares per trade and share of all ATS volume per ATS and week."),
    "finra_concentration": ("FINRA: ATS concentration (HHI) per symbol",
                            "HHI of ATS shares of each symbol's weekly ATS volume (0-10,000) and the top ATS."),
    "finra_unknown_venues": ("FINRA: venues not in the venue registry",
                             "MPIDs in the FINRA data that the active venue registry lacks, kept by MPID with "
                             "FINRA's name for them: their tiers, symbols, shares and trades."),
    "finra_comparison": ("Pipeline vs FINRA venue shares",
                         "Each venue's share of dark volume in the pipeline's dataset and in the FINRA data, over "
                         "the symbols present in both, matched by MPID (in_registry false: a venue the registry "
                         "lacks, named as in the FINRA file); difference_pp = pipeline - FINRA in percentage points."),
    "finra_comparison_by_symbol": ("Pipeline vs FINRA venue shares, per symbol",
                                   "The same comparison per symbol."),
}


@dataclass
class ReportResult:
    """Where the report went and what it holds."""

    out_dir: Path
    html_path: Path
    tables: dict[str, pd.DataFrame]
    figures: dict[str, Path]
    finra_source: str | None = None
    notes: list[str] = field(default_factory=list)
    alerts: int | None = None  # alerts analysed; None: the dataset has no alerts table


def default_out_dir(home: Path) -> Path:
    """``<home>/reports/analyze-YYYYmmddTHHMMSSZ``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(home) / "reports" / f"analyze-{stamp}"


# --- HTML formatting ---------------------------------------------------------------------
def _is_fraction(column: str) -> bool:
    return column.endswith(("_share", "share", "_ratio")) or column.startswith("share_of")


def _formatter(column: str, series: pd.Series) -> Callable[[object], str]:
    def fmt(value: object) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
            return ""
        if isinstance(value, bool | np.bool_):
            return "yes" if value else "no"
        if isinstance(value, numbers.Integral):
            return f"{int(value):,}"
        if isinstance(value, numbers.Real):
            value = float(value)
            if _is_fraction(column):
                return f"{100 * value:.2f}%"
            if "notional" in column:
                return f"{value:,.0f}"
            return f"{value:,.2f}"
        if isinstance(value, pd.Timestamp):
            return value.strftime("%Y-%m-%d %H:%M")
        return html.escape(str(value))

    return fmt


def table_html(df: pd.DataFrame, rows: int = HTML_ROWS) -> str:
    """The first ``rows`` rows as an HTML table with readable number formats."""
    head = df.head(rows)
    formatters = {c: _formatter(c, head[c]) for c in head.columns}
    body = head.to_html(index=False, formatters=formatters, escape=False, border=0, classes="tbl", na_rep="")
    more = f"<p class='more'>{len(df) - rows:,} more rows in the CSV.</p>" if len(df) > rows else ""
    return f"<div class='scroll'>{body}</div>{more}"


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:.9em} .meta td{padding:1px 12px 1px 0}
table.tbl{border-collapse:collapse;font-size:.8em;margin:.5em 0} .tbl th,.tbl td{padding:2px 8px;text-align:right}
.tbl th{background:#f0f3f7} .tbl tr:nth-child(even){background:#fafafa}
img{max-width:100%} .more{color:#777;font-size:.8em} .files{font-size:.8em;color:#555}
nav a{margin-right:1em;font-size:.9em} .scroll{overflow-x:auto}
"""


def render_html(
    title: str,
    meta: dict[str, str],
    sections: list[tuple[str, str, str, pd.DataFrame, bytes | None]],
    notes: list[str],
) -> str:
    """The report page. ``sections``: (name, title, description, table, png bytes or None)."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><table class='meta'>",
    ]
    parts += [f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in meta.items()]
    parts.append("</table>")
    parts += [f"<p class='meta'>{html.escape(n)}</p>" for n in notes]
    parts.append("<nav>" + "".join(f"<a href='#{n}'>{html.escape(t)}</a>" for n, t, _, _, _ in sections) + "</nav>")
    for name, section_title, description, df, png in sections:
        parts.append(f"<h2 id='{name}'>{html.escape(section_title)}</h2><p>{html.escape(description)}</p>")
        if png is not None:
            encoded = base64.b64encode(png).decode("ascii")
            parts.append(f"<img alt='{html.escape(section_title)}' src='data:image/png;base64,{encoded}'>")
        parts.append(table_html(df))
        parts.append(f"<p class='files'>All rows: tables/{name}.csv, tables/{name}.parquet</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --- writing --------------------------------------------------------------------------------
def to_arrow(df: pd.DataFrame) -> pa.Table:
    """A DataFrame as an Arrow table; time-zone-aware columns become UTC timestamps.

    (pyarrow 16's own conversion of tz-aware columns uses an accessor pandas 3 deprecates.)
    """
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for name in df.columns:
        series = df[name]
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            naive = series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
            columns[name] = pa.array(naive, type=pa.timestamp("us", tz="UTC"))
        else:
            columns[name] = pa.Table.from_pandas(df[[name]], preserve_index=False).column(0)
    return pa.table(columns)


def write_table(df: pd.DataFrame, tables_dir: Path, name: str) -> None:
    """``<name>.csv`` and ``<name>.parquet`` of one table."""
    df.to_csv(tables_dir / f"{name}.csv", index=False)
    pq.write_table(to_arrow(df), tables_dir / f"{name}.parquet")


def build_report(
    dataset: Path | str,
    selection: Selection,
    out_dir: Path,
    finra_store: Path | None = None,
    finra_file: Path | None = None,
    finra_week: date | None = None,
    finra_tiers: Sequence[str] | None = None,
    progress: Progress | None = None,
    figures: bool = True,
) -> ReportResult:
    """Read the dataset, compute every table and figure, and write the report folder.

    FINRA: with ``finra_file`` that file is validated and used for the FINRA
    tables and the comparison with the pipeline; otherwise the FINRA store
    (``darkpool finra import``) is used when it holds data. Symbols selected
    with ``selection.symbols`` filter the FINRA data too, and ``finra_tiers``
    (T1, T2, OTCE) its tiers. Rows of ``finra_file`` that are not usable are
    left out and listed in the report's notes.
    """
    progress = progress or Progress(enabled=False)
    con = connect()
    counts = load_panes(con, dataset, selection, progress)
    results = tables_mod.compute_all(con, progress.step)
    titles = {spec.name: (spec.title, spec.description) for spec in tables_mod.TABLES}

    notes: list[str] = []
    figure_data: dict[str, pd.DataFrame] = {}  # a figure drawn from another frame than its table
    alert_count = load_alerts(con, dataset, selection, progress)
    if alert_count is None:
        notes.append(NO_ALERTS_NOTE)
    else:
        results.update(tables_mod.compute_alerts(con, progress.step))
        titles.update({spec.name: (spec.title, spec.description) for spec in tables_mod.ALERT_TABLES})
        figure_data["alerts_over_time"] = tables_mod.alert_timeline(con)
        if alert_count == 0:
            notes.append(f"the dataset's alerts table has no alert for {selection.describe()}")
    finra_source: str | None = None
    finra_table: pa.Table | None = None
    if finra_file is not None:
        parsed = read_files([finra_file], finra_week)
        finra_table = parsed.table
        finra_source = str(finra_file)
        if parsed.skipped:
            shown = "; ".join(str(e) for e in parsed.skipped[:MAX_ERRORS_SHOWN])
            more = len(parsed.skipped) - MAX_ERRORS_SHOWN
            notes.append(f"{len(parsed.skipped):,} unusable row(s) of {finra_file} left out: {shown}"
                         + (f"; ... and {more:,} more" if more > 0 else ""))
            progress.step(f"FINRA: {len(parsed.skipped):,} unusable row(s) of {finra_file} left out")
    elif finra_store is not None:
        finra_table = finra_mod.load_store(finra_store)
        finra_source = str(finra_mod.store_path(finra_store)) if finra_table is not None else None
    if finra_table is not None and (selection.symbols or finra_tiers):
        finra_table = finra_mod.filter_table(finra_table, symbols=selection.symbols, tiers=finra_tiers)
    if finra_table is not None and finra_table.num_rows:
        for name, compute in finra_mod.FINRA_TABLES.items():
            results[name] = compute(finra_table)
            titles[name] = FINRA_TITLES[name]
        progress.step(f"FINRA tables from {finra_source}: {finra_table.num_rows:,} rows")
        if finra_file is not None:
            results["finra_comparison"] = finra_mod.compare_with_pipeline(con, finra_table)
            results["finra_comparison_by_symbol"] = finra_mod.compare_with_pipeline(con, finra_table, by_symbol=True)
            for name in ("finra_comparison", "finra_comparison_by_symbol"):
                titles[name] = FINRA_TITLES[name]
            progress.step("FINRA comparison done")
    elif finra_source is not None:
        notes.append(f"FINRA data at {finra_source} has no rows for the selected symbols and tiers.")

    out_dir = Path(out_dir)
    tables_dir, figures_dir = out_dir / "tables", out_dir / "figures"
    tables_dir.mkdir(parents=True, exist_ok=True)
    figures_dir.mkdir(parents=True, exist_ok=True)
    for name, df in results.items():
        write_table(df, tables_dir, name)
    progress.step(f"wrote {len(results)} tables (CSV + Parquet) to {tables_dir}")

    figure_paths: dict[str, Path] = {}
    sections = []
    plotted = [n for n in results if figures and n in FIGURES]
    for name, df in results.items():
        png: bytes | None = None
        if name in plotted:
            fig = FIGURES[name](figure_data.get(name, df))
            if fig is not None:
                png = to_png(fig)
                figure_paths[name] = figures_dir / f"{name}.png"
                figure_paths[name].write_bytes(png)
            progress.step(f"figure {plotted.index(name) + 1}/{len(plotted)} {name}")
        title, description = titles[name]
        sections.append((name, title, description, df, png))

    meta = {
        "dataset": str(dataset),
        "selection": selection.describe(),
        "panes analysed": f"{counts['liquidity']:,} liquidity, {counts['market']:,} market",
        "volume rule": "period totals use only windows on the non-overlapping grid of the window size "
                       "(window_start % size == 0), so each trade is counted once; per-window shares and HHI "
                       "use every window",
        "alerts analysed": ("none (no alerts table)" if alert_count is None
                            else f"{alert_count:,} (one per symbol, kind and window, at its highest severity)"),
        "FINRA data": finra_source or "none (darkpool finra import FILE, or --finra FILE)",
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") + f" by darkpool {__version__}",
    }
    html_path = out_dir / "report.html"
    html_path.write_text(render_html("Dark pool liquidity report", meta, sections, notes), encoding="utf-8")
    progress.step(f"report written: {html_path}")
    return ReportResult(out_dir=out_dir, html_path=html_path, tables=results, figures=figure_paths,
                        finra_source=finra_source, notes=notes, alerts=alert_count)
