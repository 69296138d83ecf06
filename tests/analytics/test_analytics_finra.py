"""FINRA weekly files: every validation error, unusable rows, the import, week rules, tables, comparison.

Real FINRA files (the trailing unusable row, the three tiers, venues outside the
registry) are tested in test_finra_real_files.py.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from analytics_handmade import FINRA_ROWS, write_finra

from analytics import finra
from analytics.dataset import Selection, connect, load_panes
from darkpool import market
from darkpool.errors import DarkpoolError
from darkpool.finra_file import (
    REASON_MISSING_MPID,
    REASON_MISSING_SYMBOL,
    REASON_UNKNOWN_TIER,
    FinraValidationError,
    calibration_from_file,
    read_files,
)

GOOD = "NMS Tier 1|AAA|Alpha Corp|UBS ATS|UBSA|6000|10|2026-11-16"


def _errors(path: Path, week: date | None = None) -> list[str]:
    with pytest.raises(FinraValidationError) as info:
        read_files([path], week)
    return [str(e) for e in info.value.errors]


@pytest.mark.parametrize(("row", "message"), [
    ("NMS Tier 1|AAA|Alpha Corp|UBS ATS|UBSA|6000|10", "7 columns, expected 8"),
    ("NMS Tier 1|AAA|Alpha Corp|UBS ATS|UBSA|6000|10|2026-11-16|x", "9 columns, expected 8"),
    ("NMS Tier 1|AAA|Alpha Corp|UBS ATS|UBSA|6000.5|10|2026-11-16",
     "totalWeeklyShareQuantity is not an integer: '6000.5'"),
    ("NMS Tier 1|AAA|Alpha Corp|UBS ATS|UBSA|6000|ten|2026-11-16", "totalWeeklyTradeCount is not an integer"),
    ("NMS Tier 1|AAA|Alpha Corp|UBS ATS|UBSA|-5|10|2026-11-16", "totalWeeklyShareQuantity is negative: -5"),
    ("NMS Tier 1|AAA|Alpha Corp|UBS ATS|UBSA|6000|-1|2026-11-16", "totalWeeklyTradeCount is negative: -1"),
    ("NMS Tier 1|AAA|Alpha Corp|UBS ATS|UBSA|6000|10|2026-13-45", "lastUpdateDate not a date"),
    ("NMS Tier 1|AAA|Alpha Corp|UBS ATS|UBSA|6000|10|", "lastUpdateDate not a date"),
])
def test_each_bad_row_is_reported_with_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = write_finra(tmp_path / "w.txt", [GOOD.replace("AAA", "ZZZ"), row])
    errors = _errors(path, week=date(2026, 11, 9))
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}:3: ")  # header is line 1, the bad row line 3
    assert message in errors[0]


@pytest.mark.parametrize(("row", "reason", "message"), [
    ("NMS Tier 1||Alpha Corp|UBS ATS|UBSA|6000|10|2026-11-16", REASON_MISSING_SYMBOL,
     "missing issueSymbolIdentifier (symbol)"),
    ("NMS Tier 1|||UBS ATS|UBSA|6000|10|2026-11-16", REASON_MISSING_SYMBOL,
     "missing issueSymbolIdentifier (symbol) and issueName"),
    ("NMS Tier 1|AAA|Alpha Corp|UBS ATS| |6000|10|2026-11-16", REASON_MISSING_MPID, "missing MPID"),
    ("NMS Tier 3|AAA|Alpha Corp|UBS ATS|UBSA|6000|10|2026-11-16", REASON_UNKNOWN_TIER, "tier 'NMS Tier 3'"),
    ("|AAA|Alpha Corp|UBS ATS|UBSA|6000|10|2026-11-16", REASON_UNKNOWN_TIER, "tier ''"),
])
def test_each_unusable_row_is_left_out_with_file_line_and_reason(tmp_path: Path, row: str, reason: str,
                                                                 message: str) -> None:
    path = write_finra(tmp_path / "w.txt", [GOOD.replace("AAA", "ZZZ"), row])
    parsed = read_files([path], week=date(2026, 11, 9))
    [skipped] = parsed.skipped
    assert str(skipped) == f"{path}:3: {skipped.message} [{reason}]"
    assert (skipped.file, skipped.line, skipped.reason, skipped.row_only) == (str(path), 3, reason, True)
    assert message in skipped.message
    assert parsed.table.column("symbol").to_pylist() == ["ZZZ"]
    assert [(f.data_rows, f.usable, f.skipped) for f in parsed.files] == [(2, 1, 1)]
    # strict: the same row is an error and nothing is read
    with pytest.raises(FinraValidationError) as info:
        read_files([path], week=date(2026, 11, 9), strict=True)
    assert [(e.line, e.reason) for e in info.value.errors] == [(3, reason)]


def test_duplicate_week_symbol_mpid(tmp_path: Path) -> None:
    path = write_finra(tmp_path / "w_20261109.txt", [GOOD, "NMS Tier 1|BBB|B|UBS ATS|UBSA|1|1|2026-11-16",
                                                     GOOD.replace("6000", "7000")])
    errors = _errors(path)
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}:4: duplicate (week 2026-11-09, symbol AAA, MPID UBSA)")
    assert f"first at {path}:2" in errors[0]
    # across two files of one import
    first = write_finra(tmp_path / "ok_20261109.txt", [GOOD])
    other = write_finra(tmp_path / "other_20261110.txt", [GOOD])
    with pytest.raises(FinraValidationError) as info:
        read_files([first, other])
    assert [str(e) for e in info.value.errors] == [
        f"{other}:2: duplicate (week 2026-11-09, symbol AAA, MPID UBSA); first at {first}:2 [duplicate]"]


def test_bad_week_column_header_and_empty_files(tmp_path: Path) -> None:
    header = ("tierDescription|issueSymbolIdentifier|issueName|marketParticipantName|MPID|"
              "totalWeeklyShareQuantity|totalWeeklyTradeCount|lastUpdateDate|weekStartDate")
    path = write_finra(tmp_path / "w.txt", [GOOD + "|2026-11-09", GOOD.replace("AAA", "BBB") + "|soon"], header)
    assert _errors(path) == [f"{path}:3: weekStartDate not a date (expected YYYY-MM-DD): 'soon' [bad_date]"]
    bad_header = write_finra(tmp_path / "h.txt", [GOOD], header="symbol|MPID|volume")
    [error] = _errors(bad_header)
    assert error.startswith(f"{bad_header}:1: header lacks column(s) tierDescription")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert "empty file" in _errors(empty)[0]
    header_only = write_finra(tmp_path / "only.txt", [])
    assert _errors(header_only) == [f"{header_only}:1: no data rows after the header [no_data_rows]"]
    with pytest.raises(DarkpoolError, match="not found"):
        read_files([tmp_path / "missing.txt"])


def test_all_errors_are_collected(tmp_path: Path) -> None:
    rows = [GOOD, "x|y", "NMS Tier 1||n|p||a|b|c"]
    path = write_finra(tmp_path / "w_20261109.txt", rows)
    errors = _errors(path)
    assert [e.split(": ", 1)[0] for e in errors] == [f"{path}:3"] + [f"{path}:4"] * 5
    with pytest.raises(FinraValidationError, match=r"6 problem\(s\) .*column_count 1, bad_quantity 2"):
        read_files([path])


def test_week_rules(tmp_path: Path) -> None:
    rows = [GOOD]  # lastUpdateDate 2026-11-16 (a Monday)
    by_name = read_files([write_finra(tmp_path / "ats-2026-11-12.txt", rows)])
    assert by_name.table.column("week").to_pylist() == [date(2026, 11, 9)]
    assert by_name.week_sources == {str(tmp_path / "ats-2026-11-12.txt"): "file name"}
    by_update = read_files([write_finra(tmp_path / "ats.txt", rows)])
    assert by_update.table.column("week").to_pylist() == [date(2026, 11, 16)]
    assert list(by_update.week_sources.values()) == ["lastUpdateDate"]
    by_option = read_files([write_finra(tmp_path / "ats-2026-11-12.txt", rows)], week=date(2026, 11, 5))
    assert by_option.table.column("week").to_pylist() == [date(2026, 11, 2)]
    header = ("summaryStartDate|tierDescription|issueSymbolIdentifier|issueName|marketParticipantName|MPID|"
              "totalWeeklyShareQuantity|totalWeeklyTradeCount|lastUpdateDate")
    by_column = read_files([write_finra(tmp_path / "c_20260101.txt", ["20261026|" + GOOD], header)])
    assert by_column.table.column("week").to_pylist() == [date(2026, 10, 26)]
    assert by_column.table.column("share_quantity").to_pylist() == [6000]


def test_import_is_all_or_nothing_and_replace(tmp_path: Path, finra_file: Path) -> None:
    store = tmp_path / "store"
    result = finra.import_files([finra_file], store)
    assert (result.rows, result.total_rows, result.weeks) == (4, 4, (date(2026, 11, 16),))
    stored = store / "ats_weekly.parquet"
    before = stored.read_bytes()
    bad = write_finra(tmp_path / "bad_20261123.txt", [GOOD, "broken"])
    good_next_week = write_finra(tmp_path / "good_20261123.txt", [GOOD.replace("AAA", "CCC")])
    with pytest.raises(FinraValidationError):
        finra.import_files([good_next_week, bad], store)
    assert stored.read_bytes() == before
    assert [p.name for p in store.iterdir()] == ["ats_weekly.parquet"]  # no temp file left behind
    # the same week again: refused without --replace, naming the stored source
    with pytest.raises(FinraValidationError, match="already stored .imported from ats_weekly_20261116.txt"):
        finra.import_files([finra_file], store)
    assert stored.read_bytes() == before
    again = finra.import_files([write_finra(tmp_path / "fix_20261116.txt", FINRA_ROWS[:2])], store, replace=True)
    assert (again.rows, again.replaced_rows, again.total_rows) == (2, 4, 2)
    added = finra.import_files([good_next_week], store)
    assert added.total_rows == 3
    assert finra.load_store(store).column("week").to_pylist() == [date(2026, 11, 16)] * 2 + [date(2026, 11, 23)]


def test_finra_tables(finra_file: Path) -> None:
    table = read_files([finra_file]).table
    share = finra.venue_share(table).set_index(["symbol", "mpid"])
    assert share.loc[("AAA", "UBSA"), "venue_share"] == pytest.approx(0.6)
    assert share.loc[("AAA", "MSPL"), "avg_trade_size"] == pytest.approx(500.0)
    assert share.loc[("BBB", "JPMX"), "venue_share"] == pytest.approx(0.75)
    assert share.loc[("BBB", "UBSA"), "avg_trade_size"] == pytest.approx(1000.0)
    size = finra.venue_trade_size(table).set_index("mpid")
    assert size.loc["UBSA", "avg_trade_size"] == pytest.approx(7000 / 11)
    assert size.loc["UBSA", "ats_volume_share"] == pytest.approx(0.5)
    assert size.loc["JPMX", "share_quantity"] == 3000
    conc = finra.concentration(table).set_index("symbol")
    assert conc.loc["AAA", "hhi"] == pytest.approx(60**2 + 40**2)
    assert conc.loc["BBB", "hhi"] == pytest.approx(75**2 + 25**2)
    assert conc.loc["BBB", "top_mpid"] == "JPMX"
    assert market.hhi({"A": 3, "B": 1}) == pytest.approx(6250.0)


def test_comparison_with_the_pipeline(hand_dataset: Path, finra_file: Path) -> None:
    con = connect()
    load_panes(con, hand_dataset, Selection())
    table = read_files([finra_file]).table
    df = finra.compare_with_pipeline(con, table).set_index("venue")
    # pipeline dark volume (grid windows): UBSA 6000, CDRG 3000; FINRA: UBSA 7000, MSPL 4000, JPMX 3000
    assert set(df.index) == {"UBSA", "CDRG", "MSPL", "JPMX"}
    assert df.loc["UBSA", "pipeline_share"] == pytest.approx(2 / 3)
    assert df.loc["UBSA", "finra_share"] == pytest.approx(0.5)
    assert df.loc["UBSA", "difference_pp"] == pytest.approx(100 * (2 / 3 - 0.5))
    assert df.loc["CDRG", "finra_share"] == 0 and df.loc["CDRG", "pipeline_quantity"] == 3000
    assert df.loc["MSPL", "difference_pp"] == pytest.approx(-100 * 4000 / 14000)
    by_symbol = finra.compare_with_pipeline(con, table, by_symbol=True).set_index(["symbol", "venue"])
    assert by_symbol.loc[("AAA", "UBSA"), "pipeline_share"] == pytest.approx(1.0)
    assert by_symbol.loc[("AAA", "UBSA"), "finra_share"] == pytest.approx(0.6)
    assert by_symbol.loc[("BBB", "CDRG"), "pipeline_share"] == pytest.approx(1.0)
    assert by_symbol.loc[("BBB", "JPMX"), "finra_share"] == pytest.approx(0.75)


def test_calibration_leaves_out_unknown_mpids(tmp_path: Path) -> None:
    path = write_finra(tmp_path / "w_20261109.txt", [GOOD, "NMS Tier 1|AAA|A|Other|QQQQ|4000|4|2026-11-16",
                                                     "NMS Tier 1|AAA|A|Zero|MSPL|0|0|2026-11-16"])
    calibration = calibration_from_file(path)
    assert set(calibration["AAA"]) == {"UBSA"}
    assert calibration["AAA"]["UBSA"].share == pytest.approx(1.0)
    everything = calibration_from_file(path, registry_only=False)
    assert everything["AAA"]["QQQQ"].share == pytest.approx(0.4)
    with pytest.raises(DarkpoolError, match="no calibration"):
        calibration_from_file(write_finra(tmp_path / "x_20261109.txt", [GOOD.replace("UBSA", "QQQQ")]))
