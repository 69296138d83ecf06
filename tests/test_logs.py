"""The one logging set-up (darkpool/logs.py): both formats parse back to the fields that went in."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from local_ports import free_port, wait_until_ready

from darkpool import logs
from darkpool.config import load_settings
from darkpool.errors import DarkpoolError

AWKWARD = 'a "quoted" value = with spaces, a backslash \\ and\na newline\tand a tab, and ünïcödé'


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    """configure() onto a buffer; the root logger's handlers and level are put back afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buffer = io.StringIO()
    yield buffer, logging.getLogger("tests.logs")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


def lines(buffer: io.StringIO) -> list[str]:
    return buffer.getvalue().splitlines()


@pytest.mark.parametrize("fmt", logs.LOG_FORMATS)
def test_service_job_and_position_come_back_as_fields(captured, fmt: str) -> None:
    buffer, log = captured
    logs.configure("serving", job="liquidity-demo", fmt=fmt, stream=buffer)
    log.warning("invalid record %s skipped: %s", "x", AWKWARD,
                extra={**logs.kafka_position("darkpool.liquidity", 3, 12345), "reason": AWKWARD})
    log.info("row rejected", extra=logs.file_position("/data/week 1.csv", 42))
    first, second = lines(buffer)
    got = logs.parse_line(first)
    assert list(got)[:6] == ["ts", "level", "service", "job", "logger", "msg"]
    assert got["level"] == "warning" and got["service"] == "serving" and got["job"] == "liquidity-demo"
    assert got["logger"] == "tests.logs"
    assert got["msg"] == f"invalid record x skipped: {AWKWARD}"
    assert got["reason"] == AWKWARD
    assert (got["topic"], str(got["partition"]), str(got["offset"])) == ("darkpool.liquidity", "3", "12345")
    row = logs.parse_line(second)
    assert (row["level"], row["file"], str(row["line"])) == ("info", "/data/week 1.csv", "42")
    assert row["ts"].endswith("Z") and len(row["ts"]) == len("2026-12-01T17:02:11.532Z")
    if fmt == "json":
        assert isinstance(got["partition"], int) and isinstance(got["offset"], int)  # typed in JSON lines
        assert json.loads(first) == got


@pytest.mark.parametrize("fmt", logs.LOG_FORMATS)
def test_a_traceback_stays_on_its_line(captured, fmt: str) -> None:
    buffer, log = captured
    logs.configure("feed", fmt=fmt, stream=buffer)
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("delivery failed", extra=logs.kafka_position("trades", 0, 7))
    (line,) = lines(buffer)  # one record = one line, whatever the traceback holds
    got = logs.parse_line(line)
    assert got["level"] == "error" and got["msg"] == "delivery failed" and "job" not in got
    assert got["exc"].startswith("Traceback (most recent call last):")
    assert got["exc"].endswith("ValueError: boom\nsecond line")


def test_text_is_bare_when_it_can_be_and_quoted_when_it_must() -> None:
    assert logs.format_keyvalue({"a": "plain", "b": 3, "c": None, "d": True, "e": "", "f": "x=y", "g": 'q"'}) == \
        'a=plain b=3 c=null d=true e="" f="x=y" g="q\\""'
    assert logs.format_keyvalue({"bad key=": 1}) == "bad_key_=1"
    assert logs.parse_keyvalue('ts=1 level=info msg="a \\"b\\" \\\\ c\\nd" x=') == \
        {"ts": "1", "level": "info", "msg": 'a "b" \\ c\nd', "x": ""}


def test_json_writes_nan_and_objects_as_text(captured) -> None:
    buffer, log = captured
    logs.configure("pipeline", fmt="json", stream=buffer)
    log.info("odd values", extra={"ratio": float("nan"), "big": float("inf"), "path": object.__new__(object)})
    got = json.loads(lines(buffer)[0])  # strict JSON: no NaN literal
    assert got["ratio"] == "nan" and got["big"] == "inf" and got["path"].startswith("<object object")


@pytest.mark.parametrize("line", ["", "plain text from somewhere else", "{not json", '{"msg": "no ts"}',
                                  'ts=1 level=info "unterminated'])
def test_what_is_not_a_log_line_is_refused(line: str) -> None:
    with pytest.raises(ValueError):
        logs.parse_line(line)


def test_second_configure_replaces_the_first_and_set_job_names_the_job(captured) -> None:
    buffer, log = captured
    logging.basicConfig(format="%(message)s", force=True)  # an old-style handler left behind: configure replaces it
    left = logging.getLogger().handlers[-1]
    logs.configure("cli", fmt="text", stream=io.StringIO(), command="jobs")
    handler = logs.configure("pipeline", fmt="text", stream=buffer, command="run")
    root_handlers = logging.getLogger().handlers
    assert left not in root_handlers and [h for h in root_handlers if isinstance(h, logging.StreamHandler)
                                          and type(h).__module__ in ("logging", "darkpool.logs")] == [handler]
    log.info("before")
    logs.set_job("liquidity")
    log.info("after", extra={"command": "mine"})  # a record's own field wins over the static one
    before, after = (logs.parse_line(line) for line in lines(buffer))
    assert before["service"] == "pipeline" and "job" not in before and before["command"] == "run"
    assert after["job"] == "liquidity" and after["command"] == "mine"


def test_without_a_stream_it_follows_stderr(captured, capsys: pytest.CaptureFixture[str]) -> None:
    _, log = captured
    logs.configure("cli", fmt="text")
    log.warning("to the current stderr")
    assert logs.parse_line(capsys.readouterr().err)["msg"] == "to the current stderr"


def test_the_format_setting(monkeypatch: pytest.MonkeyPatch, captured) -> None:
    buffer, log = captured
    assert load_settings().log_format == "text"
    monkeypatch.setenv("DARKPOOL_LOG_FORMAT", "json")
    assert load_settings().log_format == "json"
    logs.configure("feed", stream=buffer)
    log.info("hello")
    assert json.loads(buffer.getvalue())["service"] == "feed"
    with pytest.raises(DarkpoolError, match="DARKPOOL_LOG_FORMAT='xml'"):
        logs.formatter("xml")


def test_server_dictconfig_keeps_the_root_handler_and_routes_a_servers_loggers_to_it(captured) -> None:
    import logging.config

    buffer, _ = captured
    handler = logs.configure("serving", fmt="text", stream=buffer)
    own = logging.getLogger("tests.server.access")
    own.addHandler(logging.StreamHandler(io.StringIO()))  # the server's own handler and format
    own.propagate = False
    logging.config.dictConfig(logs.server_dictconfig("tests.server.access"))  # what the server runs
    own.info("GET / 200")
    logging.getLogger("tests.app").info("from the app")
    assert [logs.parse_line(line)["msg"] for line in lines(buffer)] == ["GET / 200", "from the app"]
    assert own.handlers == [] and handler in logging.getLogger().handlers


# -- the real processes (under the stack lock: they use the test broker) --------------------------------------
DARKPOOL = str(Path(sys.executable).with_name("darkpool"))
TRADES_CSV = ("event_time,symbol,venue,price,quantity,side\n"
              "2026-03-02T14:30:00Z,AAPL,UBSA,189.5,100,B\n"
              "2026-03-02T14:30:01Z,MSFT,XNAS,410.0,-5,S\n"  # line 3: not usable (a non-positive quantity)
              "2026-03-02T14:30:02Z,AAPL,JPMX,189.6,200,S\n")


def parsed_log(path: Path) -> list[dict]:
    """Every line of a process's log file, parsed; fails on the first line that is not a log record."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(logs.parse_line(line))
            except ValueError:
                pytest.fail(f"{path.name}:{number} is not a structured log line: {line!r}")
    assert records, f"{path} is empty"
    return records


def delete_topics(bootstrap: str, topics: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until every deletion is done
    for future in admin.delete_topics(topics).values():
        future.result(timeout=30)


def run_logged(argv: list[str], log_file: Path, fmt: str, timeout: float = 120) -> str:
    """Run a process with its log (stderr) into ``log_file``; returns its output (stdout: a command's result,
    such as the feed's summary, is not a log record)."""
    with open(log_file, "wb") as err:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=err, timeout=timeout, text=True,
                              env={**os.environ, "DARKPOOL_LOG_FORMAT": fmt})
    assert done.returncode == 0, log_file.read_text()
    return done.stdout


@pytest.mark.parametrize("fmt", logs.LOG_FORMATS)
def test_serving_log_lines_parse_and_name_the_bad_records_position(kafka_bootstrap: str, tmp_path: Path,
                                                                  fmt: str) -> None:
    from confluent_kafka import Producer

    from darkpool.stack.topics import TopicSpec, create_topics

    suffix = uuid.uuid4().hex[:8]
    liquidity, market = f"test.logs.liquidity.{suffix}", f"test.logs.market.{suffix}"
    create_topics(kafka_bootstrap, {liquidity: TopicSpec(1, {"cleanup.policy": "compact"}),
                                    market: TopicSpec(1, {"cleanup.policy": "compact"})})
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for value in (b"{not json", b'{"symbol": "AAPL"}'):  # offsets 0 and 1: records serving must reject
        producer.produce(liquidity, value, key=b"AAPL|UBSA|bad", partition=0)
    assert producer.flush(30) == 0
    port, log_file = free_port(), tmp_path / "serve.log"
    with open(log_file, "wb") as out:  # stdout and stderr, as the stack runs it: the server prints nothing else
        proc = subprocess.Popen([DARKPOOL, "serve", "--host", "127.0.0.1", "--port", str(port), "--bootstrap",
                                 kafka_bootstrap, "--liquidity-topic", liquidity, "--market-topic", market],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "DARKPOOL_LOG_FORMAT": fmt})
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", lambda: proc.poll() is None, log_file.read_text)
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        delete_topics(kafka_bootstrap, [liquidity, market])
    records = parsed_log(log_file)
    assert {r["service"] for r in records} == {"serving"}
    loggers = {r["logger"] for r in records}
    assert {"serving.commands", "serving.consumer", "_granian"} <= loggers  # ours and the server's own lines
    invalid = [r for r in records if r["logger"] == "serving.consumer" and "offset" in r]
    assert [(r["level"], r["topic"], str(r["partition"]), str(r["offset"])) for r in invalid] == \
        [("warning", liquidity, "0", "0"), ("warning", liquidity, "0", "1")]
    assert all(r["reason"] for r in invalid)


def test_feed_pipeline_and_worker_pool_log_lines_parse(kafka_bootstrap: str, tmp_path: Path) -> None:
    trades = tmp_path / "trades.csv"
    trades.write_text(TRADES_CSV)
    topic = f"test.logs.trades.{uuid.uuid4().hex[:8]}"
    feed_log = tmp_path / "feed.log"
    run_logged([DARKPOOL, "feed", "--from-file", str(trades), "--skip-bad-rows", "--topic", topic,
                "--partitions", "1", "--bootstrap", kafka_bootstrap], feed_log, "text")
    run_logged([DARKPOOL, "feed", "--mode", "live", "--rate", "200", "--duration", "2", "--topic", topic,
                "--bootstrap", kafka_bootstrap], tmp_path / "feed-live.log", "json")
    pipeline_log = tmp_path / "run.log"
    output = run_logged([DARKPOOL, "run", "--runner", "direct", "--job-name", "logs-test", "--source", "file",
                         "--input", str(trades), "--output", str(tmp_path / "parquet")], pipeline_log, "text", 300)
    assert "pipeline finished" in output
    pool_log, port = tmp_path / "pool.log", free_port()
    with open(pool_log, "wb") as out:  # as the stack runs it
        pool = subprocess.Popen([sys.executable, "-m", "darkpool.stack.worker_pool", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "worker pool at" not in pool_log.read_text():
            assert pool.poll() is None and time.monotonic() < deadline, pool_log.read_text()
            time.sleep(0.2)
    finally:
        pool.send_signal(signal.SIGINT)
        try:
            pool.wait(30)
        except subprocess.TimeoutExpired:
            pool.kill()
            pool.wait()
    delete_topics(kafka_bootstrap, [topic])

    feed = parsed_log(feed_log)
    assert {r["service"] for r in feed} == {"feed"}
    skipped = [r for r in feed if r.get("file") == str(trades) and "line" in r]
    assert [(r["level"], str(r["line"]), r["reason"]) for r in skipped] == \
        [("warning", "3", "non_positive_quantity")], feed
    live = parsed_log(tmp_path / "feed-live.log")  # JSON lines
    assert {r["service"] for r in live} == {"feed"}
    progress = [r for r in live if r["msg"] == "feed progress"]
    assert progress and progress[-1]["sent"] == progress[-1]["acked"] > 0  # typed counts, all acknowledged
    assert any(r.get("topic") == topic and r.get("mode") == "live" for r in live)
    pipeline = parsed_log(pipeline_log)
    assert {(r["service"], r.get("job")) for r in pipeline} == {("pipeline", "logs-test")}
    assert any(r["logger"] == "pipeline" and r["msg"].startswith("pipeline finished") for r in pipeline)
    pool_records = parsed_log(pool_log)
    assert {r["service"] for r in pool_records} == {"worker-pool"}
