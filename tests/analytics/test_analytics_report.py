"""The report folder: self-contained HTML with embedded figures, CSV/Parquet tables, and the CLI."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from analytics_handmade import write_finra

from analytics import finra
from analytics.dataset import Selection
from analytics.report import build_report
from analytics.tables import TABLES
from console.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMG = re.compile(r"<img alt='([^']*)' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>")


def _embedded_pngs(html: str) -> dict[str, bytes]:
    return {alt: base64.b64decode(data) for alt, data in IMG.findall(html)}


def test_report_with_finra_file(hand_dataset: Path, finra_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = build_report(hand_dataset, Selection(), out, finra_file=finra_file)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert result.html_path == out / "report.html"
    # self-contained: no external scripts, styles or images
    assert "<script" not in html and "<link" not in html and "src='http" not in html
    images = _embedded_pngs(html)
    expected_figures = {"venue_ranking", "dark_lit_over_time", "symbol_ranking", "trade_size", "block_activity",
                        "hhi_over_time", "hhi_by_symbol", "finra_venue_share", "finra_venue_trade_size",
                        "finra_concentration", "finra_comparison"}
    assert set(result.figures) == expected_figures
    assert len(images) == len(expected_figures)
    for png in images.values():
        assert png.startswith(PNG_MAGIC) and len(png) > 5000
    for name, path in result.figures.items():
        assert path.read_bytes() in images.values(), name
    # every table as CSV and Parquet, with the same rows as computed
    names = [spec.name for spec in TABLES] + list(finra.FINRA_TABLES) + ["finra_comparison",
                                                                        "finra_comparison_by_symbol"]
    assert set(result.tables) == set(names)
    for name in names:
        csv = pd.read_csv(out / "tables" / f"{name}.csv")
        parquet = pq.read_table(out / "tables" / f"{name}.parquet")
        assert len(csv) == parquet.num_rows == len(result.tables[name]), name
        assert f"id='{name}'" in html
    venues = pd.read_csv(out / "tables" / "venue_ranking.csv")
    assert venues["share_quantity"].tolist() == [6000, 5000, 3000]
    comparison = pq.read_table(out / "tables" / "finra_comparison.parquet").to_pandas().set_index("venue")
    assert comparison.loc["UBSA", "difference_pp"] == pytest.approx(100 * (2 / 3 - 0.5))
    # numbers are formatted for reading in the HTML
    assert "42.86%" in html  # UBSA's volume share 6000 / 14000
    assert str(finra_file) in html


def test_report_uses_the_finra_store_and_symbols(hand_dataset: Path, finra_file: Path, tmp_path: Path) -> None:
    store = tmp_path / "finra"
    finra.import_files([finra_file], store)
    result = build_report(hand_dataset, Selection(symbols=("BBB",)), tmp_path / "r", finra_store=store)
    assert set(result.tables["finra_venue_share"]["symbol"]) == {"BBB"}
    assert "finra_comparison" not in result.tables  # comparison only with --finra FILE
    assert set(result.tables["venue_ranking"]["venue"]) == {"CDRG", "XNYS"}
    empty_store = build_report(hand_dataset, Selection(), tmp_path / "r2", finra_store=tmp_path / "nothing")
    assert not any(name.startswith("finra") for name in empty_store.tables)
    assert "finra_venue_share" not in empty_store.figures


def test_cli_analyze_prints_the_output_folder(hand_dataset: Path, finra_file: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-report"
    code = main(["analyze", "--dataset", str(hand_dataset), "--out", str(out), "--from", "2026-11-24T14:31:00Z",
                 "--symbols", "aaa", "--finra-store", str(tmp_path / "none"), "--all-panes"])
    captured = capsys.readouterr()
    assert code == 0
    assert f"output folder: {out}" in captured.out
    assert "analyze: reading liquidity: 2 files" in captured.err  # progress on stderr
    over_time = pd.read_csv(out / "tables" / "dark_lit_over_time.csv")
    assert over_time["share_quantity"].tolist() == [100_000, 5000]  # W2 and W3, AAA only, final panes of W3
    panes = pd.read_csv(out / "tables" / "pane_summary.csv")
    # all AAA liquidity panes from W2 on, on the grid: W3 UBSA and XNYS twice
    assert panes[panes["table_name"] == "liquidity"]["panes"].sum() == 3


def test_cli_errors_are_clear(hand_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert "no Parquet dataset at" in capsys.readouterr().err
    assert main(["analyze", "--dataset", str(hand_dataset), "--from", "2026-11-25", "--to", "2026-11-24"]) == 1
    assert "is not before --to" in capsys.readouterr().err
    bad = write_finra(tmp_path / "bad.txt", ["NMS Tier 1|AAA|A|U|UBSA|x|1|2026-11-16"])
    assert main(["finra", "import", str(bad), "--store", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2: totalWeeklyShareQuantity is not an integer" in err and "Traceback" not in err
    assert not (tmp_path / "s" / "ats_weekly.parquet").exists()


def test_cli_finra_import_show_compare(hand_dataset: Path, finra_file: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    assert main(["finra", "import", str(finra_file), "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "week from file name" in out and "imported 4 rows for week(s) 2026-11-16" in out
    assert main(["finra", "show", "--store", str(store)]) == 0
    assert "2026-11-16" in capsys.readouterr().out
    assert main(["finra", "compare", str(finra_file), "--dataset", str(hand_dataset), "--out",
                 str(tmp_path / "cmp"), "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    ubsa = next(line for line in lines if line.startswith("UBSA"))
    assert "66.67%" in ubsa and "50.00%" in ubsa and "+16.67" in ubsa
    assert (tmp_path / "cmp" / "finra_comparison_by_symbol.csv").exists()
