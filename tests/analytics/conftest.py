"""Fixtures of the analytics tests: the hand-made dataset and FINRA file (see analytics_handmade)."""

from __future__ import annotations

from pathlib import Path

import pytest
from analytics_handmade import FINRA_ROWS, LIQUIDITY_ROWS, MARKET_ROWS, write_dataset, write_finra


@pytest.fixture
def hand_dataset(tmp_path: Path) -> Path:
    """The hand-made dataset described in analytics_handmade's docstring."""
    return write_dataset(tmp_path / "parquet", LIQUIDITY_ROWS, MARKET_ROWS)


@pytest.fixture
def finra_file(tmp_path: Path) -> Path:
    """A valid FINRA file for the week of 2026-11-16 (week taken from the file name)."""
    return write_finra(tmp_path / "ats_weekly_20261116.txt", FINRA_ROWS)
