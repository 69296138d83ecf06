"""`darkpool feed` as a user runs it: replay, file replay, shift to now, SIGTERM, and clear errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from feed_checks import consume_all

from console.cli import main
from darkpool.contracts import format_event_time, load_venues, parse_event_time

DARKPOOL = str(Path(sys.executable).with_name("darkpool"))


def feed(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DARKPOOL, "feed", *args], capture_output=True, text=True, timeout=timeout, check=False)


def assert_clean_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert "darkpool feed: error:" in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_replay_run_prints_progress_and_summary(kafka_bootstrap: str, unique_topic: str, tmp_path: Path) -> None:
    tape, summary_path = tmp_path / "tape.jsonl", tmp_path / "summary.json"
    result = feed("--bootstrap", kafka_bootstrap, "--topic", unique_topic, "--mode", "replay", "--count", "5000",
                  "--seed", "7", "--session-date", "2026-11-24", "--malformed-rate", "0.02", "--duplicate-rate",
                  "0.01", "--tape-out", str(tape), "--summary-json", str(summary_path), "--processes", "2")
    assert result.returncode == 0, result.stderr
    assert "feed: replay -> topic" in result.stderr and "2 processes" in result.stderr
    assert "acked" in result.stderr  # the progress line
    assert "acknowledged 5,000" in result.stdout and "dark share" in result.stdout
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["sent"] == summary["acked"] == 5000 and summary["seed"] == 7
    assert summary["faults"]["duplicate"] > 0
    assert sum(1 for _ in tape.open()) == 5000
    assert len(consume_all(kafka_bootstrap, unique_topic, 5000)) == 5000


def test_seed_format_csv_replays_into_the_topic(kafka_bootstrap: str, unique_topic: str, tmp_path: Path) -> None:
    path = tmp_path / "seed.csv"
    path.write_text("timestamp,symbol,price,quantity,venue,side,extra\n"
                    "2024-03-01T14:30:00.120Z,AAPL,179.66,100,UBSA,B,x\n"
                    "2024-03-01T14:30:00.480Z,MSFT,415.1,25,XNAS,S,y\n"
                    "2024-03-01T14:30:01.005Z,AAPL,179.655,12000,BIDS,,z\n")
    result = feed("--bootstrap", kafka_bootstrap, "--topic", unique_topic, "--from-file", str(path), "--quiet")
    assert result.returncode == 0, result.stderr
    consumed = sorted(consume_all(kafka_bootstrap, unique_topic, 3), key=lambda r: r[2])
    trades = [orjson.loads(value) for _, _, _, value in consumed]
    assert [(t["symbol"], t["venue"], t["price"], t["quantity"], t["side"]) for t in trades] == [
        ("AAPL", "UBSA", 179.66, 100, "B"), ("MSFT", "XNAS", 415.1, 25, "S"), ("AAPL", "BIDS", 179.655, 12000, None)]
    assert [ts for _, _, ts, _ in consumed] == [parse_event_time(t["event_time"]) for t in trades]
    assert [key for _, key, _, _ in consumed] == ["AAPL", "MSFT", "AAPL"]


def test_shift_to_now_replays_a_past_session_in_real_time(kafka_bootstrap: str, unique_topic: str,
                                                          tmp_path: Path) -> None:
    start = parse_event_time("2024-03-01T14:30:00Z")
    offsets = [0, 200, 450, 900, 1300, 1800]
    path = tmp_path / "past.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"event_time": format_event_time(start + o), "symbol": "AAPL",
                                            "venue": "UBSA", "price": 180.0, "quantity": 100}) + b"\n"
                              for o in offsets))
    before = time.time() * 1000
    result = feed("--bootstrap", kafka_bootstrap, "--topic", unique_topic, "--from-file", str(path),
                  "--shift-to-now", "--quiet")
    assert result.returncode == 0, result.stderr
    stamps = sorted(ts for _, _, ts, _ in consume_all(kafka_bootstrap, unique_topic, len(offsets)))
    assert [ts - stamps[0] for ts in stamps] == offsets
    assert before <= stamps[0] <= before + 30_000  # shifted to the run's start, not 2024


def test_sigterm_stops_a_live_feed_with_a_summary(kafka_bootstrap: str, unique_topic: str) -> None:
    process = subprocess.Popen([DARKPOOL, "feed", "--bootstrap", kafka_bootstrap, "--topic", unique_topic,
                                "--rate", "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if "sent" in line and "acked" in line:
            break
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "feed summary (live" in out and "(interrupted)" in out
    assert "Traceback" not in err


def test_unreachable_broker_gives_a_clear_message() -> None:
    result = feed("--bootstrap", "127.0.0.1:1", "--mode", "replay", "--count", "10")
    assert_clean_error(result, "no Kafka broker answers at 127.0.0.1:1", "darkpool kafka start")
    assert "%3|" not in result.stderr  # no librdkafka log spam


@pytest.mark.parametrize("args, message", [
    (["--malformed-rate", "1.5"], "the malformed rate must be in [0, 1]"),
    (["--rate", "0"], "--rate must be > 0"),
    (["--count", "-1"], "--count must be >= 0"),
    (["--mode", "live", "--shift-to-now"], "--shift-to-now applies to replay mode"),
    (["--session-date", "2026-13-01", "--mode", "replay"], "is not a date"),
    (["--symbols", "AAPL,NOPE"], "unknown symbol(s) NOPE"),
    (["--max-delay-seconds", "700"], "below the allowed lateness"),
    (["--malformed-kinds", "bad_json,oops", "--malformed-rate", "0.1"], "unknown malformed kind(s) oops"),
    (["--from-file", "/nonexistent/trades.csv"], "no such file"),
])
def test_bad_options_give_a_clear_message_and_exit_1(args: list[str], message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """In-process through the CLI's main() (the same path as the command, without a process start)."""
    assert main(["feed", "--bootstrap", "127.0.0.1:1", *args]) == 1
    err = capsys.readouterr().err
    assert "darkpool feed: error:" in err and message in err and "Traceback" not in err


def test_unreadable_file_rows_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,symbol,price,quantity,venue,side\n2024-03-01T14:30:00Z,AAPL,-1,100,UBSA,B\n")
    assert_clean_error(feed("--bootstrap", "127.0.0.1:1", "--from-file", str(path)),
                       "line 2: non_positive_price: price '-1' must be > 0")


def test_malformed_syntax_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["feed", "--rate", "fast"])
    assert exit_.value.code == 2 and "invalid float value: 'fast'" in capsys.readouterr().err


def test_calibrate_from_a_finra_file(kafka_bootstrap: str, unique_topic: str, tmp_path: Path) -> None:
    finra = tmp_path / "ats_week.txt"
    finra.write_text(
        "tierDescription|issueSymbolIdentifier|issueName|marketParticipantName|MPID|totalWeeklyShareQuantity|"
        "totalWeeklyTradeCount|lastUpdateDate\n"
        "NMS Tier 1|AAPL|Apple Inc.|UBS ATS|UBSA|6000000|30000|2026-11-16\n"
        "NMS Tier 1|AAPL|Apple Inc.|JPM-X|JPMX|4000000|20000|2026-11-16\n"
        "NMS Tier 2|XYZQ|XYZ Corp|IntelligentCross|INCR|1000000|8000|2026-11-16\n")
    summary_path = tmp_path / "summary.json"
    result = feed("--bootstrap", kafka_bootstrap, "--topic", unique_topic, "--mode", "replay", "--count", "3000",
                  "--seed", "2", "--calibrate", str(finra), "--lit-share", "0.5", "--summary-json",
                  str(summary_path), "--quiet")
    assert result.returncode == 0, result.stderr
    summary = orjson.loads(summary_path.read_bytes())
    dark_venues = {m for m in summary["by_venue"] if load_venues()[m].is_dark}
    assert dark_venues == {"UBSA", "JPMX", "INCR"}
    assert 0.3 < summary["dark_share"] < 0.7
    keys = {key for _, key, _, _ in consume_all(kafka_bootstrap, unique_topic, 3000)}
    assert keys == {"AAPL", "XYZQ"}
