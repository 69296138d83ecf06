"""The one logging set-up (darkpool/logs.py): both formats parse back to the fields that went in."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

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
    logging.basicConfig(format="%(message)s")  # an old-style handler someone left: configure replaces it
    logs.configure("cli", fmt="text", stream=io.StringIO(), command="jobs")
    logs.configure("pipeline", fmt="text", stream=buffer, command="run")
    assert len(logging.getLogger().handlers) == 1
    log.info("before")
    logs.set_job("liquidity")
    log.info("after", extra={"command": "mine"})  # a record's own field wins over the static one
    before, after = (logs.parse_line(line) for line in lines(buffer))
    assert before["service"] == "pipeline" and "job" not in before and before["command"] == "run"
    assert after["job"] == "liquidity" and after["command"] == "mine"


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


def test_propagating_dictconfig_routes_a_servers_own_loggers_to_the_root(captured) -> None:
    import logging.config

    buffer, _ = captured
    logs.configure("serving", fmt="text", stream=buffer)
    own = logging.getLogger("tests.server.access")
    own.addHandler(logging.StreamHandler(io.StringIO()))
    own.propagate = False
    logging.config.dictConfig(logs.propagating_dictconfig("tests.server.access"))
    own.info("GET / 200")
    assert logs.parse_line(lines(buffer)[0])["msg"] == "GET / 200"
    assert own.handlers == []
