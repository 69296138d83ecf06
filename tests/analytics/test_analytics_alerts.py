"""The report's alert history: the alerts table of a hand-made dataset, and a dataset without one.

The alerts (contracts.ALERT_SCHEMA) are written next to the hand-made liquidity and market tables
(analytics_handmade). Alerts, by key (symbol, kind, window_start), as emitted::

    BBB dark_share_surge    13:55 medium 4.2
    AAA dark_share_surge    W2    medium 4.0 EARLY, then high 6.5, then a stale low 2.0 emitted last
    AAA block_cluster       W2    UBSA low 2.6, then medium 3.5, then medium 3.6 re-sent later
    AAA venue_concentration W3    UBSA low 3.1
    BBB venue_concentration W1    CDRG high 7.0
    BBB venue_concentration W3    XNYS medium 4.8
    AAA dark_share_surge    2026-11-25 09:30 high 9.0   (outside the selection: --to 2026-11-25)

Each key counts once, at its highest severity, then its latest emission.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from analytics_handmade import (
    ALERT_ROWS,
    DAY,
    EARLY_W,
    LIQUIDITY_ROWS,
    MARKET_ROWS,
    NEXT_DAY,
    W1,
    W2,
    W3,
    alert,
    write_dataset,
)

from analytics.dataset import Selection, connect, load_alerts, severity_rank_sql
from analytics.report import NO_ALERTS_NOTE, build_report
from analytics.tables import ALERT_TABLES, TABLES, alert_timeline, timeline_minutes
from darkpool.config import Settings
from darkpool.contracts import (
    ALERT_BLOCK_CLUSTER,
    ALERT_DARK_SHARE_SURGE,
    ALERT_SCHEMA,
    ALERT_VENUE_CONCENTRATION,
    SEVERITIES,
    severity_rank,
)
from darkpool.errors import DarkpoolError
from darkpool.storage import join, s3_client

SURGE, BLOCKS, CONCENTRATION = ALERT_DARK_SHARE_SURGE, ALERT_BLOCK_CLUSTER, ALERT_VENUE_CONCENTRATION
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


SELECTION = Selection(end=NEXT_DAY)


def write_alerts(root: Path, rows: list[dict]) -> Path:
    """The alerts table in the contract layout: per window_start date, rows split over two files."""
    by_date: dict[str, list[dict]] = {}
    for row in rows:
        by_date.setdefault(row["window_start"].strftime("%Y-%m-%d"), []).append(row)
    for day, day_rows in by_date.items():
        folder = root / "alerts" / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        half = (len(day_rows) + 1) // 2
        for i, part in enumerate((day_rows[:half], day_rows[half:])):
            if part:
                pq.write_table(pa.Table.from_pylist(part, schema=ALERT_SCHEMA), folder / f"part-{i}.parquet")
    return root


@pytest.fixture
def alert_dataset(tmp_path: Path) -> Path:
    return write_alerts(write_dataset(tmp_path / "with-alerts", LIQUIDITY_ROWS, MARKET_ROWS), ALERT_ROWS)


def _ts(value) -> pd.Timestamp:
    return pd.Timestamp(value)


def _records(df: pd.DataFrame) -> list[tuple]:
    return [tuple(None if (isinstance(v, float) and pd.isna(v)) or v is None else v for v in row)
            for row in df.itertuples(index=False)]


def test_severity_rank_sql_agrees_with_the_contract() -> None:
    con = duckdb.connect(":memory:")
    for severity in SEVERITIES:
        assert con.execute(f"SELECT {severity_rank_sql('?')}", [severity]).fetchall()[0][0] == severity_rank(severity)
    assert con.execute(f"SELECT {severity_rank_sql('?')}", ["urgent"]).fetchall()[0][0] is None


def test_timeline_is_finer_for_short_spans() -> None:
    assert timeline_minutes(0.0) == 15 and timeline_minutes(5.9) == 15
    assert timeline_minutes(6.0) == 60 and timeline_minutes(48.0) == 60


def test_report_adds_the_alert_history(alert_dataset: Path, tmp_path: Path) -> None:
    result = build_report(alert_dataset, SELECTION, tmp_path / "report")
    assert result.alerts == 6 and NO_ALERTS_NOTE not in result.notes
    history = result.tables["alert_history"]
    assert list(history.columns) == ["symbol", "kind", "alerts", "high", "medium", "low", "first_window",
                                     "last_window", "max_score", "venues"]
    assert _records(history) == [
        ("BBB", CONCENTRATION, 2, 1, 1, 0, _ts(W1), _ts(W3), 7.0, "CDRG,XNYS"),
        ("AAA", BLOCKS, 1, 0, 1, 0, _ts(W2), _ts(W2), 3.6, "UBSA"),
        ("AAA", SURGE, 1, 1, 0, 0, _ts(W2), _ts(W2), 6.5, None),
        ("AAA", CONCENTRATION, 1, 0, 0, 1, _ts(W3), _ts(W3), 3.1, "UBSA"),
        ("BBB", SURGE, 1, 0, 1, 0, _ts(EARLY_W), _ts(EARLY_W), 4.2, None),
    ]
    over_time = result.tables["alerts_over_time"]
    assert list(over_time.columns) == ["hour", "kind", "alerts", "high", "medium", "low", "symbols"]
    h13, h14 = _ts(DAY.replace(hour=13)), _ts(DAY.replace(hour=14))
    assert _records(over_time) == [
        (h13, SURGE, 1, 0, 1, 0, 1),
        (h14, BLOCKS, 1, 0, 1, 0, 1),
        (h14, SURGE, 1, 1, 0, 0, 1),
        (h14, CONCENTRATION, 3, 1, 1, 1, 2),
    ]
    # the figure: stacked bars per 15 minutes (the alerts span 40 minutes), written and embedded
    png = result.figures["alerts_over_time"].read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 5000
    assert "alert_history" not in result.figures
    html = result.html_path.read_text(encoding="utf-8")
    assert "id='alert_history'" in html and "id='alerts_over_time'" in html
    assert "alt='Alerts over time' src='data:image/png;base64," in html
    for spec in ALERT_TABLES:
        assert len(pd.read_csv(tmp_path / "report" / "tables" / f"{spec.name}.csv")) == len(result.tables[spec.name])


def test_the_figure_counts_alerts_per_15_minutes(alert_dataset: Path) -> None:
    con = connect()
    assert load_alerts(con, alert_dataset, SELECTION) == 6
    q1345, q1430 = _ts(DAY.replace(hour=13, minute=45)), _ts(DAY.replace(hour=14, minute=30))
    assert _records(alert_timeline(con)) == [
        (q1345, 15, SURGE, 1), (q1430, 15, BLOCKS, 1), (q1430, 15, SURGE, 1), (q1430, 15, CONCENTRATION, 3),
    ]
    assert load_alerts(con, alert_dataset, Selection()) == 7  # with the next day's: 19h35m span, per hour
    assert set(alert_timeline(con)["period_minutes"]) == {60}


def test_alerts_follow_the_symbols_and_the_time_selection(alert_dataset: Path) -> None:
    con = connect()
    assert load_alerts(con, alert_dataset, Selection(symbols=("AAA",), start=W2)) == 4  # 3 on W2-W3, 1 next day
    rows = con.execute("SELECT kind, severity, score FROM alerts WHERE window_start = ? ORDER BY kind", [W2]).fetchall()
    assert rows == [(BLOCKS, "medium", 3.6), (SURGE, "high", 6.5)]
    assert load_alerts(con, alert_dataset, Selection(symbols=("BBB",), start=W1, end=W3)) == 1


def test_unknown_severity_is_an_error(tmp_path: Path) -> None:
    root = write_alerts(tmp_path / "parquet", [alert(W1, "AAA", SURGE, "urgent", 5.0)])
    with pytest.raises(DarkpoolError, match="unknown severity 'urgent'"):
        load_alerts(connect(), root, Selection())


def test_dataset_without_alerts_gives_the_note(hand_dataset: Path, alert_dataset: Path, tmp_path: Path) -> None:
    plain = build_report(hand_dataset, SELECTION, tmp_path / "plain")
    assert plain.alerts is None and NO_ALERTS_NOTE in plain.notes
    assert set(plain.tables) == {spec.name for spec in TABLES}
    assert not any(name.startswith("alert") for name in plain.figures)
    html = plain.html_path.read_text(encoding="utf-8")
    assert NO_ALERTS_NOTE in html and "id='alert_history'" not in html and "id='alerts_over_time'" not in html
    assert not (tmp_path / "plain" / "tables" / "alert_history.csv").exists()
    # the rest of the report is the same with or without alerts
    with_alerts = build_report(alert_dataset, SELECTION, tmp_path / "alerts", figures=False)
    for name, df in plain.tables.items():
        pd.testing.assert_frame_equal(df, with_alerts.tables[name])


def test_alerts_table_with_no_alert_in_the_selection(alert_dataset: Path, tmp_path: Path) -> None:
    result = build_report(alert_dataset, Selection(symbols=("AAA",), end=W2), tmp_path / "r", figures=False)
    assert result.alerts == 0 and result.tables["alert_history"].empty and result.tables["alerts_over_time"].empty
    assert any("no alert for" in note for note in result.notes)


@pytest.mark.stack
def test_alerts_from_s3_are_the_alerts_from_local_files(s3_endpoint: Settings, alert_dataset: Path,
                                                         tmp_path: Path) -> None:
    """The same dataset stored object by object on S3 (the local S3Proxy) gives the same alert tables."""
    uri = f"s3://{s3_endpoint.s3_bucket}/test-{uuid.uuid4().hex[:10]}/parquet"
    client = s3_client(s3_endpoint)
    for path in (p for p in alert_dataset.rglob("*") if p.is_file()):
        client.put(str(join(uri, *path.relative_to(alert_dataset).parts)), path.read_bytes())
    for selection in (SELECTION, Selection(symbols=("AAA",), start=W2)):
        local = build_report(alert_dataset, selection, tmp_path / "local", figures=False)
        on_s3 = build_report(uri, selection, tmp_path / "s3", figures=False)
        assert on_s3.alerts == local.alerts and local.alerts in (6, 4)
        for spec in ALERT_TABLES:
            pd.testing.assert_frame_equal(on_s3.tables[spec.name], local.tables[spec.name])
