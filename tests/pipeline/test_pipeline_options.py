"""Options: defaults, validation with a usage message, and the arguments handed to Beam."""

from __future__ import annotations

from pathlib import Path

import pytest

from darkpool.config import load_settings
from pipeline.options import PORTABLE_DEFAULT_ARGS, parse_pipeline_args, runner_args


def test_defaults_follow_design_and_settings():
    config, beam_args = parse_pipeline_args(["--runner=DirectRunner"])
    settings = load_settings()
    assert beam_args == ["--runner=DirectRunner"]
    assert (config.window_ms, config.period_ms, config.allowed_lateness_ms) == (300_000, 60_000, 600_000)
    assert config.accumulating and config.shape == "two-stage" and config.source == "kafka"
    assert config.bootstrap_servers == settings.bootstrap_servers
    assert config.expansion_service == settings.expansion_address
    assert config.output_path == settings.parquet_dir and config.kafka_output
    assert config.too_late_filter and not config.bounded


def test_file_source_defaults_to_parquet_and_jsonl_dead_letters(tmp_path: Path):
    trades = tmp_path / "t.csv"
    trades.write_text("timestamp,symbol,price,quantity,venue,side\n")
    config, _ = parse_pipeline_args(["--source", "file", "--input", str(trades), "--output", str(tmp_path / "o")])
    assert config.bounded and not config.too_late_filter and not config.kafka_output
    assert config.deadletter_path == tmp_path / "o" / "deadletter"


@pytest.mark.parametrize("argv,message", [
    (["--window-minutes", "5", "--period-minutes", "2"], "must be a multiple"),
    (["--source", "file"], "needs --input"),
    (["--source", "file", "--input", "/nonexistent/trades.csv"], "no such file"),
    (["--source", "kafka-range"], "needs --range-start"),
    (["--source", "file", "--input", __file__], "not a trades file"),
    (["--source", "kafka-range", "--range-start", "2026-11-25T15:00:00Z", "--range-end", "2026-11-25T14:00:00Z"],
     "must be after"),
    (["--range-start", "yesterday"], "not an ISO-8601 time"),
    (["--early-firing-seconds", "0"], "must be > 0"),
    (["--accumulation", "sometimes"], "invalid choice"),
    (["--no-parquet", "--no-kafka-output"], "nothing to write"),
])
def test_bad_options_fail_early_with_usage(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_pipeline_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and message in err


def test_runner_args_streaming_parallelism_and_flink_bundles():
    config, beam_args = parse_pipeline_args(["--parallelism", "2", "--runner=PortableRunner",
                                             "--max_bundle_size=5000"])
    args = runner_args(config, beam_args)
    assert "--streaming" in args and "--parallelism=2" in args
    assert "--max_bundle_size=5000" in args and "--max_bundle_size=100000" not in args
    assert f"--max_bundle_time_mills={PORTABLE_DEFAULT_ARGS['--max_bundle_time_mills']}" in args
    direct, direct_args = parse_pipeline_args(["--runner", "DirectRunner"])
    assert not any(a.startswith("--max_bundle") for a in runner_args(direct, direct_args))


@pytest.mark.parametrize(("argv", "on"), [
    ([], True),
    (["--alerts"], True),
    (["--no-alerts"], False),
    (["--accumulation=discarding"], False),  # the detectors need accumulating panes: off unless asked for
    (["--accumulation=discarding", "--no-alerts"], False),
])
def test_alerts_are_on_by_default_unless_panes_are_discarding(argv: list[str], on: bool):
    config, _ = parse_pipeline_args(argv)
    assert config.alerts is on


def test_alerts_asked_for_with_discarding_panes_is_a_usage_error(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        parse_pipeline_args(["--accumulation=discarding", "--alerts"])
    assert exited.value.code == 2
    assert "--alerts needs accumulating panes" in capsys.readouterr().err
