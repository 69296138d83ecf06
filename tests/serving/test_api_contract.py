"""The exact API contract, on the real server process: every response conforms to the served OpenAPI document.

``darkpool serve`` (granian, as the CLI starts it) runs on a loopback port with its Kafka consumer on
this module's own topics in the test broker, holding the sample tape's panes and sample alerts; a feeder
thread re-sends final panes (and re-emits alerts) during the stream tests so live ``liquidity``, ``market``
and ``alert`` events flow. Then:

* schemathesis (a property-based API fuzzer) runs every phase (examples, coverage, fuzzing; stateful is
  not applicable: the API has no links) with ALL its checks against the served document, bounded:
  deterministic generation, ``DARKPOOL_TEST_FUZZ_EXAMPLES`` (default 25) examples per operation,
  loopback only; its configuration is tests/serving/schemathesis.toml (the same file runs it by hand,
  see docs/serving.md). The test prints a summary (operations, test cases, checks, SSE events) and fails
  on any failure or error;
* explicit cases: 405 + Allow + the declared error body for undeclared methods on every path, 400 with
  the declared error body for each kind of broken parameter (and the document agrees that each value
  breaks its declared schema), boundary values accepted, SSE events of every type parsed and validated
  against the schemas the document declares for them, HEAD on the stream opening no stream.

The whole module takes about a minute (the fuzz run is most of it).
"""

from __future__ import annotations

import base64
import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema_rs
import orjson
import pytest
import requests
from confluent_kafka import Producer
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from sample_panes import Tape, Topics, alert_record, make_topics, produce, sample_alerts
from test_serving_server import DARKPOOL, free_port, wait_ready

from darkpool.contracts import ALERT_KINDS, SEVERITIES, alert_key, liquidity_key, market_key, parse_event_time
from serving import params

ST = str(Path(sys.executable).with_name("st"))
CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = int(os.environ.get("DARKPOOL_TEST_FUZZ_EXAMPLES", "25"))
SEED = os.environ.get("DARKPOOL_TEST_FUZZ_SEED")  # set: random generation from this seed instead of deterministic
# every check schemathesis 4.32 has (`st run -c all`); the summary must show each of them ran
ALL_CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
              "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
              "positive_data_acceptance", "missing_required_header", "unsupported_method",
              "allow_header_conformance", "use_after_free", "ensure_resource_availability", "ignored_auth",
              "object_level_authorization")
UNDECLARED_METHODS = ("POST", "PUT", "PATCH", "DELETE", "TRACE")
ALLOW = "GET, HEAD, OPTIONS"


# -- the real server and live panes -----------------------------------------------------
@pytest.fixture(scope="module")
def contract_topics(kafka_bootstrap: str, tape: Tape) -> Topics:
    topics = make_topics(kafka_bootstrap, alerts=True)
    produce(kafka_bootstrap, topics, tape.liquidity, tape.market, alerts=sample_alerts())
    return topics


@pytest.fixture(scope="module")
def server(kafka_bootstrap: str, contract_topics: Topics) -> Iterator[str]:
    """`darkpool serve` (granian, the default) on a loopback port, ready (its store rebuilt from the topics)."""
    port = free_port()
    proc = subprocess.Popen(
        [DARKPOOL, "serve", "--host", "127.0.0.1", "--port", str(port), "--bootstrap", kafka_bootstrap,
         "--liquidity-topic", contract_topics.liquidity, "--market-topic", contract_topics.market,
         "--alerts-topic", contract_topics.alerts, "--heartbeat", "0.2", "--stale-after", "1000000000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.fixture(scope="module")
def document(server: str) -> dict[str, Any]:
    return requests.get(f"{server}/api/v1/openapi.json", timeout=5).json()


@dataclass
class PaneFeeder:
    """Re-sends final panes of the tape (same values: the store keeps them) and re-emits an alert (the same
    severity, emitted later: the store takes it) so stream clients get events."""

    bootstrap: str
    topics: Topics
    tape: Tape
    every_s: float = 0.1
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 0})
        liquidity = list(self.tape.final_liquidity.values())
        market = list(self.tape.final_market.values())
        emitted = max(parse_event_time(a["emitted_at"]) for a in sample_alerts())
        while not self._stop.is_set():
            rec, mrec = liquidity[self.sent % len(liquidity)], market[self.sent % len(market)]
            producer.produce(self.topics.liquidity, orjson.dumps(rec),
                             key=liquidity_key(rec["symbol"], rec["venue"], rec["window_start"]))
            producer.produce(self.topics.market, orjson.dumps(mrec),
                             key=market_key(mrec["symbol"], mrec["window_start"]))
            emitted += 1000
            arec = alert_record(4, mrec["symbol"], ALERT_KINDS[self.sent % len(ALERT_KINDS)], SEVERITIES[-1],
                                emitted)
            producer.produce(self.topics.alerts, orjson.dumps(arec),
                             key=alert_key(arec["symbol"], arec["kind"], arec["window_start"]))
            producer.flush(10)
            self.sent += 1
            self._stop.wait(self.every_s)

    def __enter__(self) -> PaneFeeder:
        self._thread = threading.Thread(target=self.run, name="pane-feeder", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture
def feeder(kafka_bootstrap: str, contract_topics: Topics, tape: Tape, server: str) -> Iterator[PaneFeeder]:
    with PaneFeeder(kafka_bootstrap, contract_topics, tape) as running:
        yield running


# -- the fuzzer -----------------------------------------------------------------------------
@dataclass
class FuzzSummary:
    """What a schemathesis run did, read from its NDJSON event report."""

    operations: set[str] = field(default_factory=set)
    cases: collections.Counter = field(default_factory=collections.Counter)  # phase -> test cases
    modes: collections.Counter = field(default_factory=collections.Counter)  # positive/negative -> test cases
    checks: dict[str, collections.Counter] = field(default_factory=lambda: collections.defaultdict(collections.Counter))
    statuses: collections.Counter = field(default_factory=collections.Counter)
    sse_events: collections.Counter = field(default_factory=collections.Counter)

    def table(self) -> str:
        lines = [f"schemathesis: {len(self.operations)} operations, {sum(self.cases.values())} test cases "
                 f"({', '.join(f'{p} {n}' for p, n in sorted(self.cases.items()))}; "
                 f"{', '.join(f'{m} {n}' for m, n in sorted(self.modes.items()))})",
                 "  responses by status: " + ", ".join(f"{s} x{n}" for s, n in sorted(self.statuses.items())),
                 "  SSE events validated: " + ", ".join(f"{e} x{n}" for e, n in sorted(self.sse_events.items())),
                 f"  {'check':<30} {'success':>8} {'failure':>8} {'skip':>6}"]
        for name in sorted(self.checks):
            c = self.checks[name]
            lines.append(f"  {name:<30} {c['success']:>8} {c['failure']:>8} {c['skip']:>6}")
        return "\n".join(lines)


def read_report(path: Path) -> FuzzSummary:
    summary = FuzzSummary()
    for line in path.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished or "cases" not in finished["recorder"]:
            continue
        recorder = finished["recorder"]
        summary.operations.add(recorder["label"])
        for case_id, case in recorder["cases"].items():
            summary.cases[finished["phase"]] += 1
            summary.modes[case["value"]["meta"]["generation"]["mode"]] += 1
            for check in recorder["checks"].get(case_id, []):
                summary.checks[check["name"]][check["status"]] += 1
        for interaction in recorder.get("interactions", {}).values():
            response = interaction.get("response")
            if not response:
                continue
            summary.statuses[response["status_code"]] += 1
            if response["headers"].get("content-type", [""])[0].startswith("text/event-stream"):
                body = base64.b64decode(response["content"].get("$base64", "")) if response.get("content") else b""
                for block in body.split(b"\n\n"):
                    for row in block.splitlines():
                        if row.startswith(b"event: "):
                            summary.sse_events[row[7:].decode()] += 1
    return summary


def test_schemathesis_fuzz_with_all_checks(server: str, feeder: PaneFeeder, tmp_path: Path) -> None:
    """The fuzzer, with every check, finds nothing: statuses, content types, headers, bodies and SSE events all
    conform; schema-valid requests are accepted (200/404), schema-violating ones rejected (400/404), undeclared
    methods answer 405 with Allow."""
    generation = ["--seed", SEED] if SEED else ["--generation-deterministic"]
    command = [ST, "--config-file", str(CONFIG), "run", f"{server}/api/v1/openapi.json", "--checks", "all",
               "--max-examples", str(EXAMPLES), *generation, "--workers", "2", "--no-color",
               "--report", "ndjson", "--report-dir", str(tmp_path)]
    t0 = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    elapsed = time.monotonic() - t0
    summary = read_report(next(tmp_path.glob("*.ndjson")))
    print(f"\n{' '.join(command[2:])}\n{summary.table()}\n  {elapsed:.1f} s, {feeder.sent} pane pairs re-sent")
    assert result.returncode == 0, f"schemathesis found problems:\n{result.stdout[-20000:]}\n{result.stderr[-3000:]}"
    assert len(summary.operations) == 14, sorted(summary.operations)
    assert not set(ALL_CHECKS) - set(summary.checks), f"checks that never ran: {set(ALL_CHECKS) - set(summary.checks)}"
    assert all(c["failure"] == 0 for c in summary.checks.values())
    assert summary.modes["positive"] > 0 and summary.modes["negative"] > 0
    assert {400, 404, 405, 200} <= set(summary.statuses)
    # the fuzzer validated real pane events of the stream, not only heartbeats
    assert {"heartbeat", "liquidity", "market"} <= set(summary.sse_events), summary.sse_events


# -- 405 and Allow ---------------------------------------------------------------------------
def concrete(template: str) -> str:
    return template.replace("{symbol}", "AAPL")


def schema_validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of a (sub)schema of the document, its #/components references resolvable."""
    return Draft202012Validator({**schema, "components": document["components"]})


def validate_json(document: dict[str, Any], response_object: dict[str, Any], body: Any) -> None:
    if "$ref" in response_object:
        response_object = document["components"]["responses"][response_object["$ref"].rsplit("/", 1)[1]]
    schema_validator(document, response_object["content"]["application/json"]["schema"]).validate(body)


PATHS = ["/api/v1/health", "/api/v1/ready", "/api/v1/status", "/api/v1/windows/latest", "/api/v1/windows/current",
         "/api/v1/market", "/api/v1/market/{symbol}", "/api/v1/symbols/{symbol}/timeseries", "/api/v1/venues",
         "/api/v1/symbols", "/api/v1/alerts", "/api/v1/stream", "/api/v1/openapi.json", "/api/heatmap_data",
         "/metrics"]


def test_paths_are_the_documented_ones(document: dict[str, Any]) -> None:
    assert sorted(document["paths"]) == sorted(PATHS)
    assert document["x-undeclared-method"] == {"$ref": "#/components/responses/MethodNotAllowed"}


@pytest.mark.parametrize("template", PATHS)
def test_undeclared_methods_answer_405_with_allow(server: str, document: dict[str, Any], template: str) -> None:
    url = server + concrete(template)
    declared = {m.upper() for m in document["paths"][template] if not m.startswith("x-")}
    assert declared == {"GET"}
    for method in UNDECLARED_METHODS:
        response = requests.request(method, url, timeout=5)
        assert response.status_code == 405, (method, url)
        assert response.headers["Allow"] == ALLOW
        assert response.headers["Content-Type"] == "application/json"
        body = response.json()
        validate_json(document, document["x-undeclared-method"], body)
        assert body["error"]["code"] == 405 and method in body["error"]["message"]
    head = requests.head(url, timeout=5)
    assert head.status_code == 200 and head.content == b""
    options = requests.options(url, timeout=5)
    assert options.status_code == 200 and options.headers["Allow"] == ALLOW


@pytest.mark.parametrize("path", ["/", "/assets/index.js", "/favicon.ico"])
def test_dashboard_paths_answer_405_with_allow_too(server: str, document: dict[str, Any], path: str) -> None:
    """The dashboard's files are not part of the API document, but get the same 405 for other methods."""
    for method in UNDECLARED_METHODS:
        response = requests.request(method, server + path, timeout=5)
        assert (response.status_code, response.headers["Allow"]) == (405, ALLOW), (method, path)
        validate_json(document, document["x-undeclared-method"], response.json())


def test_unknown_path_is_a_declared_error(server: str, document: dict[str, Any]) -> None:
    for method in ("GET", "POST"):
        response = requests.request(method, f"{server}/api/v1/no-such-endpoint", timeout=5)
        assert response.status_code == 404
        schema_validator(document, {"$ref": "#/components/schemas/Error"}).validate(response.json())


# -- 400 for a parameter that breaks its declared schema --------------------------------------
BROKEN = [  # (path, query, the parameter that breaks its schema, a word of the message)
    ("/api/v1/windows/latest", "venue=", "venue", "empty"),
    ("/api/v1/windows/current", "symbol=", "symbol", "empty"),
    ("/api/v1/stream", "symbol=", "symbol", "empty"),
    ("/api/v1/windows/latest", "venue=no-pe", "venue", "MPID"),
    ("/api/v1/windows/latest", "venue=ABCDEFGHIJK", "venue", "MPID"),
    ("/api/v1/windows/latest", "symbol=1BAD", "symbol", "ticker"),
    ("/api/v1/windows/latest", "symbol=%20AAPL", "symbol", "ticker"),
    ("/api/v1/windows/latest", "symbol=AAPL%0A", "symbol", "ticker"),
    ("/api/v1/stream", "symbol=%24%24", "symbol", "ticker"),
    ("/api/v1/market", "window=", "window", "empty"),
    ("/api/v1/market", "window=yesterday", "window", "one of"),
    ("/api/v1/market", "window=LATEST", "window", "one of"),
    ("/api/v1/market", "sort=price", "sort", "one of"),
    ("/api/v1/market", "order=up", "order", "one of"),
    ("/api/heatmap_data", "window=all", "window", "one of"),
    ("/api/v1/market/AAPL", "window=old", "window", "one of"),
    ("/api/v1/market", "limit=", "limit", "empty"),
    ("/api/v1/market", "limit=ten", "limit", "integer"),
    ("/api/v1/market", "limit=1.5", "limit", "integer"),
    ("/api/v1/market", "limit=%205", "limit", "integer"),
    ("/api/v1/market", "limit=1_0", "limit", "integer"),
    ("/api/v1/market", "limit=0", "limit", "between"),
    ("/api/v1/market", "limit=1001", "limit", "between"),
    ("/api/v1/market", "offset=-1", "offset", "at least"),
    ("/api/v1/symbols/AAPL/timeseries", "since=", "since", "empty"),
    ("/api/v1/symbols/AAPL/timeseries", "since=yesterday", "since", "RFC 3339"),
    ("/api/v1/symbols/AAPL/timeseries", "since=2026-11-25", "since", "RFC 3339"),
    ("/api/v1/symbols/AAPL/timeseries", "since=2026-11-25T14:30:00", "since", "RFC 3339"),
    ("/api/v1/symbols/AAPL/timeseries", "until=2026-02-30T00:00:00Z", "until", "RFC 3339"),
    ("/api/v1/symbols/AAPL/timeseries", "until=2026-13-01T00:00:00Z", "until", "RFC 3339"),
    ("/api/v1/symbols/AAPL/timeseries", "venue=", "venue", "empty"),
    ("/api/v1/symbols/AAPL/timeseries", "step=0", "step", "between"),
    ("/api/v1/symbols/AAPL/timeseries", "step=86401", "step", "between"),
    ("/api/v1/symbols/AAPL/timeseries", "step=1m", "step", "integer"),
    ("/api/v1/alerts", "kind=", "kind", "empty"),
    ("/api/v1/alerts", "kind=surge", "kind", "one of"),
    ("/api/v1/alerts", "min_severity=HIGH", "min_severity", "one of"),
    ("/api/v1/alerts", "since=2026-11-25", "since", "RFC 3339"),
    ("/api/v1/alerts", "limit=1001", "limit", "between"),
]
NOT_IN_SCHEMA = [  # violations no parameter schema can state: a repeated or an unknown parameter
    ("/api/v1/market", "limit=1&limit=2", "limit", "more than once"),
    ("/api/v1/windows/latest", "symbol=AAPL&symbol=MSFT", "symbol", "more than once"),
    ("/api/v1/windows/latest", "sybmol=AAPL", "sybmol", "unknown query parameter"),
    ("/api/v1/health", "x=1", "x", "unknown query parameter"),
    ("/metrics", "x=1", "x", "unknown query parameter"),
]


def parameter_schema(document: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    template = next(t for t in document["paths"] if concrete(t) == path)
    return next(p["schema"] for p in document["paths"][template]["get"]["parameters"] if p["name"] == name)


def wire_value_conforms(schema: dict[str, Any], raw: str) -> bool:
    """Whether a query value as sent satisfies a declared schema (integers read from ASCII digits)."""
    value: Any = raw
    if schema.get("type") == "integer":
        if not params.INTEGER_RE.fullmatch(raw):
            return False
        value = int(raw)
    return jsonschema_rs.validator_for(schema, validate_formats=True).is_valid(value)


@pytest.mark.parametrize("path, query, name, word", BROKEN + NOT_IN_SCHEMA)
def test_broken_parameter_answers_400(server: str, document: dict[str, Any], path: str, query: str, name: str,
                                      word: str) -> None:
    if (path, query, name, word) in BROKEN:  # the document agrees the value breaks the parameter's schema
        raw = unquote(query.split("=", 1)[1])
        assert not wire_value_conforms(parameter_schema(document, path, name), raw), query
    response = requests.get(f"{server}{path}?{query}", timeout=5)
    assert response.status_code == 400, (path, query, response.text[:200])
    assert response.headers["Content-Type"] == "application/json"
    template = next(t for t in document["paths"] if concrete(t) == path)
    validate_json(document, document["paths"][template]["get"]["responses"]["400"], response.json())
    message = response.json()["error"]["message"]
    assert response.json()["error"]["code"] == 400 and name in message and word.lower() in message.lower()


@pytest.mark.parametrize("path, query", [
    ("/api/v1/market", "limit=1"), ("/api/v1/market", "limit=1000"), ("/api/v1/market", "limit=%2B5"),
    ("/api/v1/market", "offset=0"), ("/api/v1/market", "offset=100000"), ("/api/v1/market", "sort=symbol&order=asc"),
    ("/api/v1/windows/latest", "symbol=aapl&venue=ubsa"), ("/api/v1/windows/latest", "venue=IEXG"),
    ("/api/v1/symbols/AAPL/timeseries", "since=2026-11-25t14:30:00.123456z"),
    ("/api/v1/symbols/AAPL/timeseries", "since=2024-02-29T23:59:60-00:00&until=9999-12-31T23:59:59-23:59"),
    ("/api/v1/symbols/AAPL/timeseries", "since=2040-01-01T00:00:00Z&until=2020-01-01T00:00:00Z"),
    ("/api/v1/alerts", "symbol=aapl&kind=venue_concentration&min_severity=low&since=2024-02-29T23:59:60-00:00"),
    ("/api/v1/alerts", "symbol=IBM&limit=1000&offset=100000"),
])
def test_boundary_values_are_accepted(server: str, document: dict[str, Any], path: str, query: str) -> None:
    for pair in query.split("&"):
        name, raw = pair.split("=", 1)
        assert wire_value_conforms(parameter_schema(document, path, name), unquote(raw)), pair
    response = requests.get(f"{server}{path}?{query}", timeout=5)
    assert response.status_code == 200, (path, query, response.text[:200])
    template = next(t for t in document["paths"] if concrete(t) == path)
    validate_json(document, document["paths"][template]["get"]["responses"]["200"], response.json())


def test_an_empty_time_range_has_no_points(server: str) -> None:
    body = requests.get(f"{server}/api/v1/symbols/AAPL/timeseries?since=2040-01-01T00:00:00Z"
                        "&until=2020-01-01T00:00:00Z", timeout=5).json()
    assert body == {"symbol": "AAPL", "venues": {}, "market": []}


# -- Server-Sent Events ------------------------------------------------------------------------
def read_events(response: requests.Response, wanted: set[str], timeout_s: float) -> list[dict[str, str]]:
    """Parse SSE events (event name + data lines) until each wanted type was seen or the time is up."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    for line in response.iter_lines(decode_unicode=True):
        if line == "":
            if "data" in current:
                events.append({"event": current.get("event", "message"), "data": current["data"]})
            current = {}
            if wanted <= {e["event"] for e in events} or time.monotonic() > deadline:
                break
            continue
        key, _, value = line.partition(":")
        current[key] = value[1:] if value.startswith(" ") else value
    return events


def test_stream_events_match_their_declared_schemas(server: str, document: dict[str, Any],
                                                    feeder: PaneFeeder) -> None:
    """Every event type the document declares arrives from the real stream and validates: the event against its
    declared item schema, its JSON data against the schema the event declares for it (contentSchema)."""
    media = document["paths"]["/api/v1/stream"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    assert media["itemSchema"] == {"$ref": "#/components/schemas/StreamEvent"}
    declared = {}
    for ref in document["components"]["schemas"]["StreamEvent"]["oneOf"]:
        event_schema = document["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]
        declared[event_schema["properties"]["event"]["const"]] = event_schema
    assert set(declared) == {"heartbeat", "liquidity", "market", "alert"}

    with requests.get(f"{server}/api/v1/stream", stream=True, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-cache"
        events = read_events(response, set(declared), timeout_s=20)
    seen = collections.Counter(e["event"] for e in events)
    assert set(seen) == set(declared), f"event types seen: {dict(seen)}"
    item = schema_validator(document, media["itemSchema"])
    for event in events:
        item.validate(event)
        content = declared[event["event"]]["properties"]["data"]
        assert content["contentMediaType"] == "application/json"
        schema_validator(document, content["contentSchema"]).validate(json.loads(event["data"]))
    print(f"\nSSE events validated: {dict(seen)}")


def test_symbol_stream_only_carries_that_symbol(server: str, document: dict[str, Any], feeder: PaneFeeder) -> None:
    with requests.get(f"{server}/api/v1/stream?symbol=msft", stream=True, timeout=30) as response:
        events = read_events(response, {"liquidity", "market"}, timeout_s=20)
    panes = [json.loads(e["data"]) for e in events if e["event"] != "heartbeat"]
    assert panes and {p["symbol"] for p in panes} == {"MSFT"}


def stream_clients(base: str) -> float:
    for line in requests.get(f"{base}/metrics", timeout=5).text.splitlines():
        if line.startswith("darkpool_serving_stream_clients "):
            return float(line.split()[1])
    raise AssertionError("no stream-client gauge in /metrics")


def test_head_on_the_stream_opens_no_stream(server: str) -> None:
    deadline = time.monotonic() + 10
    while stream_clients(server) != 0 and time.monotonic() < deadline:  # earlier tests' streams end
        time.sleep(0.2)
    for _ in range(5):
        head = requests.head(f"{server}/api/v1/stream", timeout=5)
        assert head.status_code == 200 and head.headers["Content-Type"].startswith("text/event-stream")
    assert stream_clients(server) == 0


# -- the time parser (pure) ----------------------------------------------------------------------
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DATE_TIME = jsonschema_rs.validator_for({"type": "string", "format": "date-time"}, validate_formats=True)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.from_regex(r"[0-9]{4}-[0-1][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-6][0-9]:[0-6][0-9](\.[0-9]{1,9})?"
                     r"([Zz]|[+-][0-2][0-9]:[0-6][0-9])?", fullmatch=True))
def test_rfc3339_parser_agrees_with_json_schema_date_time(text: str) -> None:
    """params.rfc3339_ms accepts exactly what JSON Schema's date-time format accepts, with the right instant."""
    ms = params.rfc3339_ms(text)
    assert (ms is not None) == DATE_TIME.is_valid(text), text
    if ms is not None and text[17:19] != "60" and 1 < int(text[:4]) < 9999:
        parsed = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        assert ms == (parsed - EPOCH) // timedelta(milliseconds=1), text


def test_rfc3339_parser_examples() -> None:
    assert params.rfc3339_ms("1970-01-01T00:00:00Z") == 0
    assert params.rfc3339_ms("2026-11-25T14:30:00.1239Z") == int(datetime(2026, 11, 25, 14, 30, tzinfo=UTC)
                                                                     .timestamp()) * 1000 + 123
    assert params.rfc3339_ms("1970-01-01T05:30:00+05:30") == 0
    assert params.rfc3339_ms("1969-12-31T23:59:60Z") == 0  # a leap second counts as the next second
    assert params.rfc3339_ms("0000-01-01T00:00:00Z") == -62_167_219_200_000
    for bad in ("2026-11-25", "2026-11-25T14:30:00", "2026-11-25 14:30:00Z", "2026-11-25T14:30:60Z",
                "2023-02-29T00:00:00Z", "2026-11-25T14:30:00+24:00", "２０２６-11-25T14:30:00Z"):
        assert params.rfc3339_ms(bad) is None, bad
