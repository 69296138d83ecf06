"""The parallelism rules of `darkpool run` / `darkpool jobs resume --parallelism` (no cluster needed)."""

from __future__ import annotations

import dataclasses
import os

import pytest

from darkpool.config import Settings
from darkpool.errors import DarkpoolError
from darkpool.stack import flink
from pipeline.commands import (
    default_max_parallelism,
    parallelism_of,
    scaling_args,
    with_parallelism,
    without_parallelism,
)


def test_parallelism_is_read_in_both_spellings_and_the_last_one_wins() -> None:
    assert parallelism_of(["--group-id=x"]) is None
    assert parallelism_of(["--parallelism", "3", "--group-id=x"]) == 3
    assert parallelism_of(["--parallelism=2", "--parallelism", "5"]) == 5


def test_resume_replaces_every_parallelism_flag_and_keeps_the_rest() -> None:
    args = ["--trades-topic=t", "--parallelism", "1", "--output=/x", "--parallelism=2"]
    assert without_parallelism(args) == ["--trades-topic=t", "--output=/x"]
    assert with_parallelism(args, 4) == ["--trades-topic=t", "--output=/x", "--parallelism=4"]
    assert parallelism_of(with_parallelism(args, 4)) == 4


def test_the_max_parallelism_is_left_to_flink(settings: Settings) -> None:
    """Set explicitly, Beam splits the Kafka source into that many lockstep readers; Flink's default key
    groups (128 up to a parallelism of 85, then the restored state's) keep savepoints rescalable."""
    assert scaling_args(settings, 1) == ["--parallelism=1"]
    assert scaling_args(settings, 4) == ["--parallelism=4"]
    assert "pipeline.max-parallelism" not in flink.flink_configuration(settings)
    assert [default_max_parallelism(p) for p in (1, 4, 85, 86, 128)] == [128, 128, 128, 256, 256]
    with pytest.raises(DarkpoolError, match="outside 1..128"):
        scaling_args(settings, 129)
    with pytest.raises(DarkpoolError):
        scaling_args(settings, 0)


def test_taskmanagers_are_numbered_and_extra_running_ones_are_kept_in_view(settings: Settings, tmp_path) -> None:
    local = dataclasses.replace(settings, state_dir=tmp_path, taskmanagers=3)
    names = [s.name for s in flink.taskmanager_services(local)]
    assert names == ["flink-taskmanager", "flink-taskmanager-2", "flink-taskmanager-3"]
    assert [flink.taskmanager_index(n) for n in names] == [1, 2, 3]
    one = dataclasses.replace(local, taskmanagers=1)
    assert [s.name for s in flink.taskmanager_services(one)] == ["flink-taskmanager"]
    # a TaskManager 3 still running (its pid file names a live process: this test's own) stays listed
    local.run_dir.mkdir(parents=True)
    (local.run_dir / "flink-taskmanager-3.pid").write_text(str(os.getpid()))
    assert [s.name for s in flink.taskmanager_services(one)] == ["flink-taskmanager", "flink-taskmanager-3"]
