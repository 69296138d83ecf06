"""Real FINRA weekly files: the trailing unusable row, the three tiers, venues outside the registry.

The fixtures in ``tests/analytics/finra_files/`` are in the format of FINRA's
downloadable weekly ATS files (otctransparency.finra.org), one per tier, for the
week of 2025-12-29 (the date in the file names): the real header, pipe-delimited,
``marketParticipantName`` prefixed with the MPID as FINRA writes it, and the OTC
file ends, like FINRA's own file of that week, with a row whose symbol and issue
name are empty and no final newline. Expected figures, by hand:

* tier 1 (``T1``), lines 2-7: AAPL UBSA 4,200,000 / SGMT 2,800,000 / CGXS 1,000,000;
  MSFT INCR 1,500,000 / JPMX 900,000 / EBXL 600,000 (11,000,000 shares);
* tier 2 (``T2``), lines 2-4: AAOI UBSA 510,000 / EBXL 430,000 / INCR 260,000;
* OTC (``OTCE``), lines 2-5: AABB OTCN 2,500,000 / OTCX 120,000; ABBNY ARCA 180,000 /
  OTCX 90,000; line 6 ``OTC|||PPEX ...|PPEX|1|1|2025-12-29``: not usable (missing_symbol).

Not in the shipped venue registry: CGXS (T1), EBXL (T1 and T2; the registry knows
Level ATS as LEVL), OTCN, OTCX, ARCA (OTC). PPEX appears only in the unusable row.

The pipeline dataset built here has, on the 5-minute grid, AAPL UBSA 3,000 and
SGMT 1,000 and MSFT INCR 2,000 dark shares (6,000) plus lit XNYS volume.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from analytics_handmade import W1, liq, mkt, write_dataset

from analytics import finra
from analytics.dataset import Selection, connect, load_panes
from analytics.report import build_report
from console.cli import main
from darkpool.finra_file import (
    FINRA_SCHEMA,
    REASON_BAD_HEADER,
    REASON_BAD_QUANTITY,
    REASON_COLUMN_COUNT,
    REASON_MISSING_SYMBOL,
    REASON_MIXED_WEEKS,
    FinraValidationError,
    calibration_from_file,
    parse_tiers,
    read_files,
)

FILES = Path(__file__).parent / "finra_files"
T1 = FILES / "finra_otc_weekly_tier1_20251229.csv"
T2 = FILES / "finra_otc_weekly_tier2_20251229.csv"
OTC = FILES / "finra_otc_weekly_otc_20251229.csv"
WEEK = date(2025, 12, 29)
TRAILING_ROW = "OTC|||PPEX NORTH CAPITAL PRIVATE SECURITIES CORPORATION|PPEX|1|1|2025-12-29"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Copies of the three fixture files in tmp_path (so errors name a path of this test)."""
    return {name: Path(shutil.copy(src, tmp_path / src.name)) for name, src in (("T1", T1), ("T2", T2),
                                                                                   ("OTCE", OTC))}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """AAPL: UBSA 3,000, SGMT 1,000, XNYS 4,000; MSFT: INCR 2,000, XNYS 2,000 (one grid window)."""
    liquidity = [liq(W1, "AAPL", "UBSA", 6, 3000, 300_000.0), liq(W1, "AAPL", "SGMT", 2, 1000, 100_000.0),
                 liq(W1, "AAPL", "XNYS", 8, 4000, 400_000.0), liq(W1, "MSFT", "INCR", 4, 2000, 800_000.0),
                 liq(W1, "MSFT", "XNYS", 4, 2000, 800_000.0)]
    market = [mkt(W1, "AAPL", trades=16, qty=8000, notional=800_000.0, dark_qty=4000, dark_notional=400_000.0,
                  dark_trades=8, hhi=3750.0, venues=3, top="XNYS", top_share=0.5),
              mkt(W1, "MSFT", trades=8, qty=4000, notional=1_600_000.0, dark_qty=2000, dark_notional=800_000.0,
                  dark_trades=4, hhi=5000.0, venues=2, top="INCR", top_share=0.5)]
    return write_dataset(tmp_path / "parquet", liquidity, market)


def _store_state(store: Path) -> tuple[list[str], bytes | None]:
    """What is in a store folder: its file names and the store file's bytes."""
    names = sorted(p.name for p in store.iterdir()) if store.exists() else []
    path = finra.store_path(store)
    return names, path.read_bytes() if path.exists() else None


def _rewrite(path: Path, old: str, new: str) -> Path:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


# --- the unusable row ------------------------------------------------------------------
def test_the_trailing_row_is_listed_with_file_line_and_reason_and_the_rest_imported(
        files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    otc = files["OTCE"]
    assert otc.read_text(encoding="utf-8").endswith(TRAILING_ROW)  # FINRA's own last line, no newline
    store = tmp_path / "store"
    assert main(["finra", "import", str(otc), "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert f"{otc}: week from file name; 5 data rows, 4 usable, 1 left out" in out
    assert "left out 1 unusable row(s) (missing_symbol 1):" in out
    assert f"  {otc}:6: missing issueSymbolIdentifier (symbol) and issueName [missing_symbol]" in out
    assert "imported 4 rows for week(s) 2025-12-29" in out
    stored = finra.load_store(store)
    assert stored.num_rows == 4
    assert sorted(zip(stored.column("symbol").to_pylist(), stored.column("mpid").to_pylist(),
                      stored.column("share_quantity").to_pylist(), strict=True)) == [
        ("AABB", "OTCN", 2_500_000), ("AABB", "OTCX", 120_000), ("ABBNY", "ARCA", 180_000),
        ("ABBNY", "OTCX", 90_000)]
    assert "PPEX" not in stored.column("mpid").to_pylist()
    assert set(stored.column("week").to_pylist()) == {WEEK}
    assert stored.column("source_line").to_pylist() == [2, 3, 4, 5]
    # the library call says the same
    parsed = read_files([otc])
    assert [(e.line, e.reason) for e in parsed.skipped] == [(6, REASON_MISSING_SYMBOL)]
    assert [(f.data_rows, f.usable, f.skipped) for f in parsed.files] == [(5, 4, 1)]


def test_strict_rejects_the_file_for_the_unusable_row_and_stores_nothing(
        files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    assert main(["finra", "import", str(files["T2"]), "--store", str(store)]) == 0
    capsys.readouterr()
    before = _store_state(store)
    assert main(["finra", "import", str(files["OTCE"]), str(files["T1"]), "--store", str(store), "--strict"]) == 1
    err = capsys.readouterr().err
    assert f"{files['OTCE']}:6: missing issueSymbolIdentifier (symbol) and issueName [missing_symbol]" in err
    assert "nothing was imported" in err and "Traceback" not in err
    assert _store_state(store) == before
    assert finra.load_store(store).column("tier").to_pylist() == ["T2"] * 3
    # a file with only usable rows passes --strict
    assert main(["finra", "import", str(files["T1"]), "--store", str(store), "--strict"]) == 0
    assert finra.load_store(store).num_rows == 9


# --- whole-file failures: nothing in the store -------------------------------------------
@pytest.mark.parametrize(("case", "reason", "message"), [
    ("wrong header", REASON_BAD_HEADER, "header lacks column(s) totalWeeklyShareQuantity"),
    ("non-numeric quantity", REASON_BAD_QUANTITY, "totalWeeklyShareQuantity is not an integer: '2,800,000'"),
    ("two weeks", REASON_MIXED_WEEKS, "week 2026-01-05 here, week 2025-12-29 at line 2"),
    ("cut-off file", REASON_COLUMN_COUNT, "3 columns, expected 8"),
])
def test_an_untrustworthy_file_rejects_the_import_and_leaves_the_store_as_it_was(
        files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, reason: str,
        message: str) -> None:
    bad = files["T1"]
    if case == "wrong header":
        _rewrite(bad, "totalWeeklyShareQuantity", "totalWeeklyShareQty")
    elif case == "non-numeric quantity":
        _rewrite(bad, "|2800000|", "|2,800,000|")
    elif case == "two weeks":  # no date in the name: the week comes from lastUpdateDate, row by row
        bad = _rewrite(bad.rename(bad.with_name("ats_download.csv")),
                       "|JPMX|900000|4500|2025-12-29", "|JPMX|900000|4500|2026-01-05")
    else:  # a download cut off in the middle of its last row
        text = bad.read_text(encoding="utf-8")
        bad.write_text(text[:text.rindex("\n", 0, len(text) - 1) + 1] + "NMS Tier 1|MSFT|Microsoft Corp",
                       encoding="utf-8")
    # first into an empty store: no store file appears
    empty = tmp_path / "empty"
    assert main(["finra", "import", str(files["OTCE"]), str(bad), "--store", str(empty)]) == 1
    err = capsys.readouterr().err
    assert message in err and f"[{reason}]" in err and "nothing was imported" in err, err
    assert _store_state(empty) == ([], None)
    # then into a store that holds a week: unchanged, no temporary file left
    store = tmp_path / "store"
    assert main(["finra", "import", str(files["T2"]), "--store", str(store)]) == 0
    capsys.readouterr()
    before = _store_state(store)
    assert main(["finra", "import", str(files["OTCE"]), str(bad), "--store", str(store), "--replace"]) == 1
    assert _store_state(store) == before
    assert finra.load_store(store).num_rows == 3
    with pytest.raises(FinraValidationError) as info:
        finra.import_files([bad], store)
    assert {e.reason for e in info.value.errors} == {reason}
    assert all(str(e).startswith(f"{bad}:") for e in info.value.errors)
    assert _store_state(store) == before


# --- tiers ------------------------------------------------------------------------------------
def test_the_three_tiers_are_kept_and_filterable(files: dict[str, Path], tmp_path: Path, dataset: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    assert main(["finra", "import", *(str(p) for p in files.values()), "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "tiers: T1 (NMS Tier 1) 6, T2 (NMS Tier 2) 3, OTCE (OTC) 4" in out
    table = finra.load_store(store)
    by_tier = {t: sorted(set(table.filter(pa.compute.equal(table["tier"], t))["symbol"].to_pylist()))
               for t in ("T1", "T2", "OTCE")}
    assert by_tier == {"T1": ["AAPL", "MSFT"], "T2": ["AAOI"], "OTCE": ["AABB", "ABBNY"]}
    assert finra.filter_table(table, tiers=parse_tiers("nms tier 2")).column("symbol").to_pylist() == ["AAOI"] * 3
    assert finra.filter_table(table, tiers=parse_tiers("T1, OTC")).num_rows == 10
    assert parse_tiers("T1,t2,OTC Equity,otce") == ("T1", "T2", "OTCE")
    with pytest.raises(ValueError, match="'Tier 9' is not a FINRA tier"):
        parse_tiers("T1,Tier 9")
    # show, per week and tier, and filtered
    assert main(["finra", "show", "--store", str(store)]) == 0
    shown = [line.split()[:3] for line in capsys.readouterr().out.splitlines()[2:] if line.startswith("2025")]
    assert shown == [["2025-12-29", "T1", "6"], ["2025-12-29", "T2", "3"], ["2025-12-29", "OTCE", "4"]]
    assert main(["finra", "show", "--store", str(store), "--tiers", "OTCE"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("2025")] == ["OTCE"]
    assert "not in the venue registry: OTCN, OTCX, ARCA" in "\n".join(lines)
    # the report's FINRA tables carry the tier and follow --finra-tiers
    shares = finra.venue_share(table).set_index(["symbol", "mpid"])
    assert shares.loc[("AAOI", "EBXL"), "tier"] == "T2"
    assert shares.loc[("AAPL", "UBSA"), "venue_share"] == pytest.approx(4.2 / 8.0)
    assert finra.concentration(table).set_index("symbol").loc["ABBNY", "tier"] == "OTCE"
    report = build_report(dataset, Selection(), tmp_path / "r", finra_store=store, finra_tiers=("T2",),
                          figures=False)
    assert set(report.tables["finra_venue_share"]["tier"]) == {"T2"}
    assert set(report.tables["finra_unknown_venues"]["mpid"]) == {"EBXL"}
    # a file with FINRA's tierIdentifier column instead of tierDescription
    api_style = _rewrite(files["T2"], "tierDescription|", "tierIdentifier|")
    api_style.write_text(api_style.read_text(encoding="utf-8").replace("NMS Tier 2|", "T2|"), encoding="utf-8")
    assert set(read_files([api_style]).table.column("tier").to_pylist()) == {"T2"}


def test_a_store_written_with_tier_descriptions_reads_as_tier_identifiers(tmp_path: Path) -> None:
    rows = [{"week": WEEK, "tier": tier, "symbol": s, "issue_name": s, "participant_name": "UBSA UBS ATS",
             "mpid": "UBSA", "share_quantity": 100, "trade_count": 1, "last_update_date": WEEK,
             "week_source": "file name", "source_file": "old.txt", "source_line": i}
            for i, (tier, s) in enumerate((("NMS Tier 1", "AAPL"), ("NMS Tier 2", "AAOI"), ("OTC", "AABB")), 2)]
    store = tmp_path / "old-store"
    store.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=FINRA_SCHEMA), finra.store_path(store))
    assert finra.load_store(store).column("tier").to_pylist() == ["T1", "T2", "OTCE"]


# --- venues outside the registry ----------------------------------------------------------
def test_unknown_venues_are_reported_in_the_import_summary(files: dict[str, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    result = finra.import_files(list(files.values()), tmp_path / "store")
    unknown = result.unknown_venues
    assert unknown[["mpid", "name", "tiers", "symbols", "share_quantity"]].values.tolist() == [
        ["OTCN", "OTC LINK NQB IDQS", "OTCE", 1, 2_500_000],
        ["EBXL", "LEVEL ATS", "T1,T2", 2, 1_030_000],
        ["CGXS", "ONECHRONOS", "T1", 1, 1_000_000],
        ["OTCX", "OTC LINK ECN ATS", "OTCE", 2, 210_000],
        ["ARCA", "GLOBAL OTC", "OTCE", 1, 180_000],
    ]
    # kept in the store, by MPID
    assert {"OTCN", "EBXL", "CGXS", "OTCX", "ARCA"} <= set(finra.load_store(tmp_path / "store")["mpid"].to_pylist())
    assert main(["finra", "import", str(files["T1"]), "--store", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out
    assert "2 venue(s) not in the venue registry, kept by MPID:" in out
    cgxs = next(line for line in out.splitlines() if line.strip().startswith("CGXS"))
    assert cgxs.split() == ["CGXS", "ONECHRONOS", "T1", "1", "1,000,000"]
    assert next(line for line in out.splitlines() if line.strip().startswith("EBXL")).split()[-1] == "600,000"


def test_unknown_venues_are_compared_by_mpid(files: dict[str, Path], dataset: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    con = connect()
    load_panes(con, dataset, Selection())
    table = read_files([files["T1"]]).table
    df = finra.compare_with_pipeline(con, table).set_index("venue")
    # FINRA: 11,000,000 shares in AAPL and MSFT; pipeline: 6,000 dark shares
    assert set(df.index) == {"UBSA", "SGMT", "CGXS", "INCR", "JPMX", "EBXL"}
    assert (df.loc["CGXS", "name"], bool(df.loc["CGXS", "in_registry"])) == ("ONECHRONOS", False)
    assert df.loc["CGXS", "finra_quantity"] == 1_000_000 and df.loc["CGXS", "pipeline_quantity"] == 0
    assert df.loc["CGXS", "difference_pp"] == pytest.approx(-100 / 11)
    assert df.loc["EBXL", "finra_share"] == pytest.approx(0.6 / 11)
    assert (df.loc["UBSA", "name"], bool(df.loc["UBSA", "in_registry"])) == ("UBS ATS", True)
    assert df.loc["UBSA", "difference_pp"] == pytest.approx(100 * (0.5 - 4.2 / 11))
    by_symbol = finra.compare_with_pipeline(con, table, by_symbol=True).set_index(["symbol", "venue"])
    assert by_symbol.loc[("MSFT", "EBXL"), "finra_share"] == pytest.approx(0.6 / 3.0)
    assert not by_symbol.loc[("MSFT", "EBXL"), "in_registry"]
    # the command prints them with their MPID and a mark
    assert main(["finra", "compare", str(files["T1"]), "--dataset", str(dataset), "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cgxs = next(line for line in lines if line.startswith("CGXS"))
    assert "ONECHRONOS" in cgxs and cgxs.rstrip().endswith("*") and "9.09%" in cgxs
    assert "* not in the venue registry: compared by MPID, named as in the FINRA file" in lines
    # compare and the report read the OTC file too, leaving its unusable row out with its line
    assert main(["finra", "compare", str(files["OTCE"]), "--dataset", str(dataset), "-q"]) == 1
    err = capsys.readouterr().err
    assert f"{files['OTCE']}:6:" in err and "no symbol is in both" in err
    report = build_report(dataset, Selection(), tmp_path / "r", finra_file=files["T1"], figures=False)
    comparison = report.tables["finra_comparison"].set_index("venue")
    assert not comparison.loc["CGXS", "in_registry"] and comparison.loc["CGXS", "finra_quantity"] == 1_000_000
    assert set(report.tables["finra_unknown_venues"]["mpid"]) == {"CGXS", "EBXL"}
    otc_report = build_report(dataset, Selection(), tmp_path / "r2", finra_file=files["OTCE"], figures=False)
    assert any(f"{files['OTCE']}:6: missing issueSymbolIdentifier" in note for note in otc_report.notes)
    assert f"{files['OTCE']}:6:" in otc_report.html_path.read_text(encoding="utf-8")


def test_calibration_from_real_files(files: dict[str, Path]) -> None:
    calibration = calibration_from_file(files["T1"])  # CGXS and EBXL left out (the pipeline rejects them)
    assert set(calibration) == {"AAPL", "MSFT"}
    assert calibration["AAPL"]["UBSA"].share == pytest.approx(4.2 / 7.0)
    assert set(calibration["MSFT"]) == {"INCR", "JPMX"}
    with pytest.raises(Exception, match="no calibration"):  # OTC venues: none in the registry
        calibration_from_file(files["OTCE"])
