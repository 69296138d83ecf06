"""`darkpool dataset compact`: small files rolled up per partition, atomically, never losing or double counting a pane.

The hand-made dataset (analytics_handmade) is written one row per file, with an
at-least-once duplicate, on two days, plus what compaction must leave alone: a
young file (a running job's latest output) and the pipeline's hidden temporary
file. Before and after, and after every step of a compaction interrupted in
between (stage, publish, a partial retire: the real file system in the states a
crash leaves), three views must be identical: the report's tables (`darkpool
analyze`), every pane (`--all-panes` selection, so a duplicate would show) and the
raw rows of the visible files. The same roll-up runs on a real S3 API server.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from analytics_handmade import ALERT_ROWS, LIQUIDITY_ROWS, MARKET_ROWS, shifted_rows

from analytics import compact
from analytics.dataset import Selection, connect, load_panes, table_files
from console import cli
from darkpool.config import Settings
from darkpool.contracts import ALERT_SCHEMA, LIQUIDITY_SCHEMA, MARKET_SCHEMA
from darkpool.storage import join, s3_client

OLD = time.time() - 3600


def _one_row_per_file(root: Path) -> Path:
    """The three tables, the panes' on two days, one row per file, the first liquidity row written twice
    (at-least-once)."""
    for table, rows, schema in (("liquidity", LIQUIDITY_ROWS + shifted_rows(LIQUIDITY_ROWS, 1) + LIQUIDITY_ROWS[:1],
                                 LIQUIDITY_SCHEMA),
                                ("market", MARKET_ROWS + shifted_rows(MARKET_ROWS, 1), MARKET_SCHEMA),
                                ("alerts", ALERT_ROWS, ALERT_SCHEMA)):
        for i, row in enumerate(rows):
            folder = root / table / f"date={row['window_start']:%Y-%m-%d}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"part-{1_700_000_000_000 + i}-{uuid.uuid4().hex[:12]}.parquet"
            pq.write_table(pa.Table.from_pylist([row], schema=schema), path)
            os.utime(path, (OLD, OLD))
    return root


def _analyze(dataset: Path | str, out: Path) -> dict[str, str]:
    argv = ["analyze", "--dataset", str(dataset), "--out", str(out), "--no-figures", "-q",
            "--finra-store", str(out / "no-finra")]
    assert cli.main(argv) == 0
    return {path.name: path.read_text() for path in sorted((out / "tables").glob("*.csv"))}


def _all_panes(dataset: Path | str) -> dict[str, list[tuple]]:
    con = connect()
    load_panes(con, dataset, Selection(all_panes=True))
    return {table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in ("liquidity", "market")}


def _raw_rows(root: Path) -> dict[str, list[str]]:
    rows = {}
    for table in ("liquidity", "market", "alerts"):
        tables = [pq.read_table(path).to_pylist() for path in table_files(root, table)]
        rows[table] = sorted(repr(sorted(r.items())) for t in tables for r in t)
    return rows


def _views(root: Path, out: Path) -> tuple:
    return _analyze(root, out), _all_panes(root), _raw_rows(root)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- the rules ---------------------------------------------------------------------------
def test_visible_names_leave_out_what_a_visible_compacted_file_lists() -> None:
    names = ["part-1.parquet", "part-2.parquet", "part-3.parquet", "compact-9-a.parquet", ".part-4.parquet.tmp",
             ".compact-10-b.parquet.tmp"]
    assert compact.visible_names(names, {}) == ["compact-9-a.parquet", "part-1.parquet", "part-2.parquet",
                                             "part-3.parquet"]
    inputs = {"compact-9-a.parquet": ["part-1.parquet", "part-2.parquet"]}
    assert compact.visible_names(names, inputs) == ["compact-9-a.parquet", "part-3.parquet"]
    # a compacted file that is not (or no longer) listed supersedes nothing
    assert compact.visible_names(["part-1.parquet"], inputs) == ["part-1.parquet"]


def test_two_compaction_runs_at_once_never_show_a_row_twice() -> None:
    """Two runs (two hosts on S3) rolled up overlapping inputs: the earlier-named file wins, the other hides."""
    names = ["part-1.parquet", "part-2.parquet", "part-3.parquet", "compact-9-a.parquet", "compact-9-b.parquet"]
    inputs = {"compact-9-a.parquet": ["part-1.parquet", "part-2.parquet"],
              "compact-9-b.parquet": ["part-2.parquet", "part-3.parquet"]}
    # part-3 is only in the loser: it stays visible itself
    assert compact.visible_names(names, inputs) == ["compact-9-a.parquet", "part-3.parquet"]
    # a compacted file compacted again hides with what it listed
    names += ["compact-10-c.parquet"]
    inputs["compact-10-c.parquet"] = ["compact-9-a.parquet", "part-3.parquet"]
    assert compact.visible_names(names, inputs) == ["compact-10-c.parquet"]


def test_plan_groups_takes_old_small_files_in_name_order_up_to_the_target() -> None:
    now = 10_000.0
    files = [compact.DataFile(f"part-{i}.parquet", 40, now - 600) for i in range(5)]
    files += [compact.DataFile("part-5.parquet", 40, now - 10),  # too young
              compact.DataFile("part-6.parquet", 500, now - 600),  # already large
              compact.DataFile(".part-7.parquet.tmp", 40, now - 600)]  # the pipeline's temporary file
    groups = compact.plan_groups(files, now, min_age=300, target_bytes=100)
    assert [[f.name for f in g] for g in groups] == [["part-0.parquet", "part-1.parquet"],
                                                     ["part-2.parquet", "part-3.parquet"]]  # part-4 alone: left
    assert compact.plan_groups(files[:1], now, 300, 100) == []


def test_footer_lists_the_inputs() -> None:
    table = compact.with_inputs(pa.table({"x": [1]}), ["a.parquet", "b.parquet"])
    assert compact.inputs_from_metadata(table.schema.metadata) == ["a.parquet", "b.parquet"]
    assert compact.inputs_from_metadata(None) == []


# --- on the real file system ------------------------------------------------------------------
def test_compact_keeps_every_result_and_rolls_up_the_files(tmp_path: Path) -> None:
    root = _one_row_per_file(tmp_path / "parquet")
    day = root / "liquidity" / "date=2026-11-24"
    young = day / "part-1800000000000-young.parquet"
    pq.write_table(pa.Table.from_pylist(shifted_rows(LIQUIDITY_ROWS[1:2], 0), schema=LIQUIDITY_SCHEMA), young)
    pipeline_tmp = day / ".part-1800000000001-inflight.parquet.tmp"
    pipeline_tmp.write_bytes(b"PAR1 half a file")
    before = _views(root, tmp_path / "before")
    stats_before = compact.dataset_stats(root, count_rows=True)
    assert stats_before.files == 2 * 12 + 1 + 1 + 2 * 6 + len(ALERT_ROWS)

    result = compact.compact(root, min_age=60, grace=0)

    assert _views(root, tmp_path / "after") == before
    assert result.before.files == stats_before.files
    after = compact.dataset_stats(root, count_rows=True)
    assert after.rows == stats_before.rows
    assert after.files == 6 + 1  # one file per table and day (the alerts on two days too), and the young one
    assert after.median_bytes > stats_before.median_bytes
    assert young.exists() and pipeline_tmp.exists()
    assert [n for n in _names(day) if n.startswith("part-")] == [young.name]
    # the young file stays, and so does the one alert of 2026-11-25 (a lone file has nothing to roll up with)
    assert result.compactions == 5 and result.inputs == stats_before.files - 2

    # a second run finds nothing left to do
    again = compact.compact(root, min_age=60, grace=0)
    assert again.compactions == 0 and _views(root, tmp_path / "again") == before


def test_a_crash_between_steps_never_shows_a_row_twice_or_not_at_all(tmp_path: Path) -> None:
    root = _one_row_per_file(tmp_path / "parquet")
    before = _views(root, tmp_path / "v0")
    partition = compact.Partition(root / "liquidity" / "date=2026-11-24")
    inputs = [f.name for f in partition.visible()]
    job = compact.Compaction(partition, inputs)

    job.stage()  # crash here: a hidden file nobody reads
    folder = Path(partition.location)
    assert (folder / job.staged_name).exists() and not (folder / job.output).exists()
    assert _views(root, tmp_path / "v1") == before

    job.publish()  # crash here: compacted file and all its inputs on disk, each row counted once
    assert (folder / job.output).exists() and all((folder / n).exists() for n in inputs)
    assert _views(root, tmp_path / "v2") == before

    assert partition.delete(inputs[0]) and partition.delete(inputs[1])  # crash in the middle of retire
    assert _views(root, tmp_path / "v3") == before

    # an older crashed stage: a stale hidden file; the next run cleans both up
    stale = folder / ".compact-1-stale.parquet.tmp"
    stale.write_bytes(b"half")
    os.utime(stale, (OLD, OLD))
    recovered = compact.recover(partition, time.time(), min_age=60)
    assert recovered == {"retired": len(inputs) - 2, "stale_staged": 1}
    assert _names(folder) == [job.output]
    assert _views(root, tmp_path / "v4") == before


def test_compacted_files_roll_up_again(tmp_path: Path) -> None:
    root = _one_row_per_file(tmp_path / "parquet")
    before = _views(root, tmp_path / "v0")
    partition = compact.Partition(root / "market" / "date=2026-11-25")
    names = [f.name for f in partition.visible()]
    first = compact.Compaction(partition, names[:3])
    for step in (first.stage, first.publish, first.retire):
        step()
    os.utime(partition.child(first.output), (OLD, OLD))
    assert len(partition.visible()) == len(names) - 2
    compact.compact(root, min_age=60, grace=0)
    assert len(partition.visible()) == 1
    assert _views(root, tmp_path / "v1") == before


def test_two_runs_over_overlapping_files_lose_nothing_and_count_nothing_twice(tmp_path: Path) -> None:
    """Two runs at once (on S3 nothing stops them) roll up overlapping inputs: at every step each row is
    read once; the losing run deletes its own file, not its inputs, and a later recover cleans up."""
    root = _one_row_per_file(tmp_path / "dataset")
    before = _views(root, tmp_path / "v0")
    partition = compact.Partition(root / "market" / "date=2026-11-25")
    names = [f.name for f in partition.visible()]
    assert len(names) >= 4
    first = compact.Compaction(partition, names[:3], output="compact-1700000000001-a.parquet")
    second = compact.Compaction(partition, names[1:], output="compact-1700000000002-b.parquet")
    for job in (first, second):
        job.stage()
    for job in (first, second):
        job.publish()
        assert _views(root, tmp_path / f"published-{job.output}") == before
    assert second.retire() == 0  # it lost: its own file goes, the inputs only it listed stay
    assert not Path(partition.child(second.output)).exists()
    assert _views(root, tmp_path / "v1") == before
    assert first.retire() == 3
    assert _views(root, tmp_path / "v2") == before
    assert sorted(f.name for f in partition.visible()) == sorted([first.output, *names[3:]])


def test_cli_prints_counts_and_sizes_before_and_after(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _one_row_per_file(tmp_path / "parquet")
    assert cli.main(["dataset", "compact", "--dataset", str(root), "--min-age", "60", "--grace", "0"]) == 0
    out = capsys.readouterr().out
    assert "before: 48 files" in out and "after:  6 files" in out and "median" in out
    assert cli.main(["dataset", "compact", "--dataset", str(tmp_path / "nothing")]) == 1


# --- on S3 -----------------------------------------------------------------------------------
@pytest.mark.stack
def test_compact_on_s3_keeps_the_report(s3_endpoint: Settings, tmp_path: Path) -> None:
    settings = s3_endpoint
    local = _one_row_per_file(tmp_path / "parquet")
    uri = f"s3://{settings.s3_bucket}/test-{uuid.uuid4().hex[:10]}/parquet"
    client = s3_client(settings)
    for path in (p for p in local.rglob("*") if p.is_file()):
        client.put(str(join(uri, *path.relative_to(local).parts)), path.read_bytes())
    before = _analyze(uri, tmp_path / "before")
    panes = _all_panes(uri)
    assert before == _analyze(local, tmp_path / "local")

    partition = compact.Partition(join(uri, "liquidity", "date=2026-11-24"), settings)
    inputs = [f.name for f in partition.visible()]
    job = compact.Compaction(partition, inputs)
    job.stage()
    job.publish()  # crash here: the PUT object and its inputs, each row counted once
    assert _all_panes(uri) == panes and _analyze(uri, tmp_path / "published") == before

    result = compact.compact(uri, min_age=0, grace=0, settings=settings)  # recovers, then the rest
    assert result.recovered["retired"] == len(inputs)
    assert result.after.files == 6
    assert _all_panes(uri) == panes and _analyze(uri, tmp_path / "after") == before
