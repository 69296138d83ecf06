"""The dashboard's pure functions (block ranking, time-range steps, the URL view, CSV export, definitions)
under node's test runner, and the definitions' limits against darkpool's."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from darkpool.contracts import BLOCK_MIN_NOTIONAL, BLOCK_MIN_SHARES, DARK_VENUE_TYPES

ROOT = Path(__file__).resolve().parents[1]
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def test_dashboard_unit_tests_pass() -> None:
    run = subprocess.run([NODE, "--test", str(ROOT / "tests" / "js")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout and "# pass 0" not in run.stdout


def test_definitions_state_darkpools_limits() -> None:
    script = (
        "import { BLOCK_MIN_NOTIONAL, BLOCK_MIN_SHARES } from './dashboard/src/definitions.js';"
        "import { DARK_TYPES } from './dashboard/src/metrics.js';"
        "console.log(JSON.stringify({shares: BLOCK_MIN_SHARES, notional: BLOCK_MIN_NOTIONAL, dark: [...DARK_TYPES]}));"
    )
    run = subprocess.run([NODE, "--input-type=module", "-e", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    got = json.loads(run.stdout)
    assert got["shares"] == BLOCK_MIN_SHARES
    assert got["notional"] == BLOCK_MIN_NOTIONAL
    assert sorted(got["dark"]) == sorted(DARK_VENUE_TYPES)
