"""`darkpool analyze` reads the dataset from S3 (a real S3Proxy) and reports exactly what it reports from local files.

The hand-made dataset (analytics_handmade) on two days, plus a hidden temporary
file that every reader must skip, is written to a local folder and stored object
by object on S3 in the same layout. `darkpool analyze` runs on both, once on
everything and once with a time and symbol selection (the date partition pruned),
and every table of the two reports must be identical.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest
from analytics_handmade import LIQUIDITY_ROWS, MARKET_ROWS, shifted_rows, write_dataset

from console import cli
from darkpool.config import Settings
from darkpool.storage import join, s3_client

pytestmark = [pytest.mark.stack]


def _analyze(dataset: str, out: Path, finra_store: Path, *selection: str) -> dict[str, str]:
    argv = ["analyze", "--dataset", dataset, "--out", str(out), "--no-figures", "-q",
            "--finra-store", str(finra_store), *selection]
    assert cli.main(argv) == 0
    return {path.name: path.read_text() for path in sorted((out / "tables").glob("*.csv"))}


def test_analyze_from_s3_gives_the_same_report_as_from_local_files(s3_endpoint: Settings, tmp_path: Path) -> None:
    settings = s3_endpoint
    local = write_dataset(tmp_path / "parquet", LIQUIDITY_ROWS + shifted_rows(LIQUIDITY_ROWS, 1),
                          MARKET_ROWS + shifted_rows(MARKET_ROWS, 1))
    (local / "liquidity" / "date=2026-11-24" / ".part-0-unfinished.parquet.tmp").write_bytes(b"PAR1 half a file")
    uri = f"s3://{settings.s3_bucket}/test-{uuid.uuid4().hex[:10]}/parquet"
    client = s3_client(settings)
    files = [path for path in local.rglob("*") if path.is_file()]
    for path in files:
        client.put(str(join(uri, *path.relative_to(local).parts)), path.read_bytes())
    assert len(files) == 9  # 2 tables x 2 days x 2 files, and the hidden one

    for run, selection in enumerate([(), ("--from", "2026-11-25", "--symbols", "AAA")]):
        from_local = _analyze(str(local), tmp_path / f"local-{run}", tmp_path / "no-finra", *selection)
        from_s3 = _analyze(uri, tmp_path / f"s3-{run}", tmp_path / "no-finra", *selection)
        assert from_local and from_s3 == from_local
        assert uri in (tmp_path / f"s3-{run}" / "report.html").read_text()
        ranking = pd.read_csv(tmp_path / f"s3-{run}" / "tables" / "venue_ranking.csv").set_index("venue")
        # UBSA's final on-grid panes: W1 2,000 + W3 4,000 shares of AAA per day (W2 is off the grid)
        assert ranking.loc["UBSA", "share_quantity"] == (12_000 if run == 0 else 6_000)
        if run == 1:
            assert "CDRG" not in ranking.index  # BBB's only dark venue: the symbol filter applied on S3
