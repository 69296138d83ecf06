"""DetectAlertsFn's keyed state stays bounded: driven directly (no runner) over many windows of one symbol."""

from __future__ import annotations

from apache_beam import coders
from pipeline_testkit import alert_state_cells

from darkpool.alerts import DetectorSettings
from darkpool.contracts import format_event_time, parse_event_time
from pipeline.transforms.alerts import BLOCKS, MARKET, DetectAlertsFn

T0 = parse_event_time("2026-11-25T14:00:00.000Z")
MINUTE = 60_000


def market(start: int, dark_share: float = 0.3) -> dict:
    return {"window_start": format_event_time(start), "window_end": format_event_time(start + 5 * MINUTE),
            "symbol": "AAPL", "trade_count": 100, "share_quantity": 100_000, "dark_share": dark_share,
            "top_venue": "XNAS", "top_venue_share": 0.4, "pane_timing": "ON_TIME", "pane_index": 0}


def blocks(start: int, count: int) -> dict:
    return {"window_start": format_event_time(start), "window_end": format_event_time(start + 5 * MINUTE),
            "symbol": "AAPL", "venue": "UBSA", "trade_count": 10, "share_quantity": 12_000 * count,
            "block_count": count, "block_quantity": 12_000 * count, "pane_timing": "ON_TIME", "pane_index": 0}


def test_state_keeps_only_what_the_baseline_and_open_windows_need():
    settings = DetectorSettings(baseline_windows=20, min_baseline_windows=5)
    fn = DetectAlertsFn(settings, period_ms=MINUTE, window_ms=5 * MINUTE, allowed_lateness_ms=10 * MINUTE,
                        clock=lambda: 1.0)
    cells = alert_state_cells()
    coder = coders.FastPrimitivesCoder()  # the cells' coder: their size as the runner stores them
    sizes, alerts = [], []
    for minute in range(300):
        start = T0 + minute * MINUTE
        alerts += list(fn.process(("AAPL", (MARKET, market(start))), **cells))
        alerts += list(fn.process(("AAPL", (BLOCKS, blocks(start, 12 if minute % 50 == 49 else 1))), **cells))
        sizes.append(sum(len(coder.encode(cell.value)) for cell in cells.values() if cell.value is not None))
    figures, opened, sent = (cells[name].value for name in DetectAlertsFn.STATE_CELLS)
    # windows: the baseline's reach (20 + 1 periods) + the window (5) + the lateness (10), and the newest
    assert len(figures) == 20 + 1 + 5 + 10 + 1
    # open windows: two window lengths + the lateness + a period (the margin for skew), and the newest
    # (only windows with a venue of at least block_min_blocks blocks: here every 50th)
    assert 0 < len(opened) <= 2 * 5 + 10 + 1 + 1
    assert all(venues == {"UBSA": (12, 144_000.0)} for venues in opened.values())
    assert len(sent) <= len(figures)
    assert max(sizes[100:]) == max(sizes[200:])  # flat once the reach is full
    # every 50th window's cluster alerts (12 blocks of 12,000 against a baseline of 12,000, floor 10,000:
    # score 13.2 = medium)
    clusters = [a for a in alerts if a["kind"] == "block_cluster"]
    assert [a["window_start"] for a in clusters] == [format_event_time(T0 + m * MINUTE) for m in range(49, 300, 50)]
    assert {a["severity"] for a in clusters} == {"medium"}
    assert [a for a in alerts if a["kind"] != "block_cluster"] == []  # a constant dark share never alerts


def test_open_windows_keep_each_venues_highest_block_figures_until_they_close():
    settings = DetectorSettings(baseline_windows=20, min_baseline_windows=5)
    fn = DetectAlertsFn(settings, period_ms=MINUTE, window_ms=5 * MINUTE, allowed_lateness_ms=10 * MINUTE,
                        clock=lambda: 1.0)
    cells = alert_state_cells()
    for minute in range(60):
        start = T0 + minute * MINUTE
        list(fn.process(("AAPL", (MARKET, market(start))), **cells))
        for pane in (blocks(start, 6), {**blocks(start, 7), "pane_index": 1}):
            list(fn.process(("AAPL", (BLOCKS, pane)), **cells))
        list(fn.process(("AAPL", (BLOCKS, blocks(start, 6))), **cells))  # pane 0 again, late: changes nothing
    opened = cells["open_state"].value
    # every window has a cluster venue; those that can still get a pane stay (see the bound above)
    assert sorted(opened) == [T0 + m * MINUTE for m in range(60 - (2 * 5 + 10 + 1 + 1), 60)]
    assert all(venues == {"UBSA": (7, 84_000.0)} for venues in opened.values())
