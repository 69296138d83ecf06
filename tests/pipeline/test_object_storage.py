"""The dataset, checkpoints and savepoints on S3-compatible object storage, against a real S3 API server.

The server is S3Proxy (a real S3 REST implementation, filesystem-backed) run by
the project as a local process on the test port; its request log (one line per
request) is how the tests count the requests each file took.

- The Parquet sink on S3: a DirectRunner backfill writes the dataset (and its dead
  letters) to ``s3://``: every object is a complete, readable Parquet/JSON-lines
  file, each was stored with exactly one PUT (no multipart upload, no copy, no
  temporary name), a reader listing the prefix while the pipeline runs never sees
  a partial file, and the panes count every valid trade exactly 5 times.
- Flink with checkpoints and savepoints on S3: the real local cluster checkpoints
  to ``s3://``; a TaskManager killed mid-stream recovers from the last S3
  checkpoint; the job is stopped with a savepoint on S3 and resumed from it; the
  final panes equal an independent recomputation of the whole tape, and the
  Parquet dataset, written to S3 by the Flink workers, agrees with the topics.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flink_support import (
    LIQUIDITY_KEY,
    MARKET_KEY,
    PipelineRun,
    Tape,
    build_tape,
    final_panes,
    read_topic,
    wait_until_consumed,
)
from pyarrow import fs as pafs

from analytics.dataset import open_s3_table
from darkpool.config import Settings
from darkpool.contracts import PARQUET_TABLES
from darkpool.errors import DarkpoolError
from darkpool.stack import flink
from darkpool.stack.s3 import s3proxy_service
from darkpool.stack.services import service_by_name, stack_services
from darkpool.storage import S3Client, fs_path, is_file, join, s3_client
from darkpool.tradefile import REQUIRED_COLUMNS
from feed.generator import FaultConfig, FeedConfig, generate_tape
from pipeline.commands import latest_retained_checkpoint, load_record

pytestmark = [pytest.mark.stack]

REPO = Path(__file__).resolve().parents[2]
REQUEST_LINE = re.compile(r"request: Request\((?P<method>[A-Z]+) (?P<url>\S+)\)")


# --- S3Proxy's request log ------------------------------------------------------------
class RequestLog:
    """The requests S3Proxy logged from now on (method, bucket/key, query), read from its log file."""

    def __init__(self, settings: Settings) -> None:
        self.path = s3proxy_service(settings).log_file
        self.offset = self.path.stat().st_size

    def requests(self, under: str) -> list[tuple[str, str, str]]:
        """(method, "bucket/key", query) of every logged request on keys under an s3:// prefix."""
        prefix = fs_path(under)
        found = []
        with open(self.path, encoding="utf-8", errors="replace") as log:
            log.seek(self.offset)
            for line in log:
                match = REQUEST_LINE.search(line)
                if match:
                    url = urllib.parse.urlsplit(match["url"])
                    key = urllib.parse.unquote(url.path).lstrip("/")
                    if key.startswith(prefix + "/"):
                        found.append((match["method"], key, url.query))
        return found


def objects_under(client: S3Client, uri: str) -> dict[str, int]:
    """bucket/key -> size of every object under an s3:// prefix."""
    infos = client.filesystem().get_file_info(pafs.FileSelector(fs_path(uri), allow_not_found=True, recursive=True))
    return {info.path: info.size for info in infos if info.type == pafs.FileType.File}


def assert_one_put_per_object(log: RequestLog, uri: str, objects: dict[str, int]) -> Counter:
    """Every object under the prefix came from exactly one plain PUT; no other write request touched it."""
    writes = [(method, key, query) for method, key, query in log.requests(uri) if method in ("PUT", "POST", "DELETE")]
    multipart = [w for w in writes if w[0] != "PUT" or w[2]]  # POST ?uploads / PUT ?partNumber= / POST ?uploadId=
    assert multipart == [], f"multipart or other writes: {multipart[:5]}"
    puts = Counter(key for _, key, _ in writes)
    assert set(puts) == set(objects), f"PUT keys and stored objects differ: {set(puts) ^ set(objects)}"
    assert set(puts.values()) == {1}, f"objects written more than once: {[k for k, n in puts.items() if n > 1]}"
    return puts


class PrefixReader(threading.Thread):
    """Lists a prefix over and over while a writer runs and reads every object the moment it appears."""

    def __init__(self, client: S3Client, uri: str) -> None:
        super().__init__(daemon=True)
        self.filesystem = client.filesystem()
        self.base = fs_path(uri)
        self.seen: dict[str, int] = {}  # key -> rows (Parquet) or lines (JSON lines), as first read
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            selector = pafs.FileSelector(self.base, allow_not_found=True, recursive=True)
            for info in self.filesystem.get_file_info(selector):
                if info.type != pafs.FileType.File or info.path in self.seen:
                    continue
                try:
                    with self.filesystem.open_input_file(info.path) as handle:
                        data = handle.read()
                    assert len(data) == info.size, f"listed {info.size} bytes, read {len(data)}"
                    if info.path.endswith(".parquet"):
                        self.seen[info.path] = pq.read_table(pa.BufferReader(data)).num_rows
                    else:
                        self.seen[info.path] = len([orjson.loads(line) for line in data.splitlines()])
                except Exception as exc:  # noqa: BLE001 - any failure to read a visible object is the finding
                    self.errors.append(f"{info.path}: {exc!r}")
            time.sleep(0.1)


# --- the Parquet sink on S3 (DirectRunner) ------------------------------------------
@pytest.mark.slow
def test_backfill_to_s3_stores_every_file_whole_with_one_put(s3_endpoint: Settings, tmp_path: Path) -> None:
    settings = s3_endpoint
    client = s3_client(settings)
    trades = 20_000
    config = FeedConfig(seed=9, session_trades=trades, count=trades, symbols=("AAPL", "MSFT", "NVDA"),
                        session_date=dt.date(2026, 11, 24), faults=FaultConfig(malformed_rate=0.005, malformed_kinds=(
                            "bad_json", "missing_field", "non_positive_quantity", "non_positive_price",
                            "unknown_venue")))
    tape = tmp_path / "tape.jsonl"
    labels = Counter()
    with tape.open("w") as out:
        for record in generate_tape(config):
            out.write(record.value + "\n")
            malformed = (record.fault or "").startswith("malformed")
            if record.fault == "malformed:missing_field" and {"event_time", *REQUIRED_COLUMNS} <= set(
                    orjson.loads(record.value)):
                malformed = False  # only side or trade_id left out: optional in a trade file (docs/trade-files.md)
            labels["malformed" if malformed else "valid"] += 1
    assert labels["malformed"] > 0
    root = f"s3://{settings.s3_bucket}/test-{uuid.uuid4().hex[:10]}/parquet"
    log = RequestLog(settings)
    reader = PrefixReader(client, root)
    reader.start()
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pipeline.main", "--source", "file", "--input", str(tape),
                             "--output", root, "--parquet-batch-rows", "1000"],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - started
    time.sleep(0.5)
    reader.stop.set()
    reader.join(timeout=30)
    assert result.returncode == 0, result.stderr[-3000:]
    # the credentials reached the workers through the environment, never the command line
    assert settings.s3_secret_key not in " ".join(result.args)

    objects = objects_under(client, root)
    parquet = {k: v for k, v in objects.items() if k.endswith(".parquet")}
    jsonl = {k: v for k, v in objects.items() if k.endswith(".jsonl")}
    assert set(objects) == set(parquet) | set(jsonl)
    assert all(re.fullmatch(r"part-\d{13}-[0-9a-f]{12}\.(parquet|jsonl)", k.rsplit("/", 1)[1]) for k in objects)
    # the alerts table only where a detector alerted (the backfill runs them, as every job by default)
    assert {"liquidity", "market"} <= {k.split("/")[3] for k in parquet} <= set(PARQUET_TABLES) and jsonl
    puts = assert_one_put_per_object(log, root, objects)

    # every object is a whole file in the contract's schema, and so was every one the reader saw appear
    filesystem = client.filesystem()
    rows: dict[str, int] = {}
    for key in parquet:
        table = pq.read_table(key, filesystem=filesystem)
        assert table.schema.remove_metadata() == PARQUET_TABLES[key.split("/")[3]]
        assert table.num_rows <= 1000
        rows[key] = table.num_rows
    assert reader.errors == []
    assert reader.seen, "the reader saw no object appear"
    assert {k: n for k, n in reader.seen.items() if k in rows} == {k: rows[k] for k in reader.seen if k in rows}

    # the contents: each valid trade in exactly 5 final liquidity panes; every malformed record dead-lettered
    con = duckdb.connect()
    con.register("liquidity", open_s3_table(root, "liquidity", settings).dataset)
    final = con.sql("""
        SELECT window_start, symbol, venue, arg_max(trade_count, pane_index) AS trade_count
        FROM liquidity GROUP BY ALL""").fetchall()
    assert sum(row[3] for row in final) == 5 * labels["valid"]
    dead_letters = sum(reader_lines(filesystem, key) for key in jsonl)
    assert dead_letters == labels["malformed"]
    print(f"\nbackfill to S3: {len(parquet)} Parquet + {len(jsonl)} JSON-lines objects, "
          f"{sum(puts.values())} PUTs, {sum(objects.values()) / 1e6:.1f} MB, reader saw {len(reader.seen)} "
          f"objects appear, {elapsed:.1f} s")


def reader_lines(filesystem, key: str) -> int:
    with filesystem.open_input_file(key) as handle:
        return len(handle.read().splitlines())


def test_a_put_with_a_wrong_secret_is_refused(s3_endpoint: Settings) -> None:
    """The server checks signatures: the single PUT the sink relies on is authenticated, not anonymous."""
    settings = s3_endpoint
    key = f"s3://{settings.s3_bucket}/test-{uuid.uuid4().hex[:10]}/probe.bin"
    wrong = dataclasses.replace(s3_client(settings), secret_key="not-the-secret")
    with pytest.raises(DarkpoolError, match="403"):
        wrong.put(key, b"x")
    assert not is_file(key, settings)
    s3_client(settings).put(key, b"payload")
    assert is_file(key, settings)


# --- Flink with checkpoints and savepoints on S3 -------------------------------------------
@pytest.fixture
def s3_flink_stack(flink_stack: Settings, s3_endpoint: Settings) -> Settings:
    """The local stack with the cluster on this S3 endpoint (restarted if it predates the S3 configuration)."""
    settings = flink_stack
    config = {entry["key"]: entry["value"] for entry in flink.rest_get(settings, "/jobmanager/config")}
    if (config.get("s3.endpoint"), config.get("s3.access-key")) != (settings.s3_endpoint_url, settings.s3_access_key):
        # Flink and the Python workers read the S3 settings at start: restart them (the workers write Parquet)
        stale = [s for s in stack_services(settings) if s.name.startswith("flink-") or s.name == "beam-worker-pool"]
        for service in reversed(stale):
            service.stop()
        for service in stale:
            service.start()
    return settings


def _current_tape(seed: int, n: int = 8_000) -> Tape:
    """A tape over the last 2 minutes (still current when a later part is published after a restart)."""
    return build_tape(n, seed=seed, end_ms=int(time.time() * 1000), span_ms=2 * 60_000)


@pytest.mark.slow
def test_checkpoints_and_savepoints_on_s3_survive_a_taskmanager_kill_and_a_resume(
        s3_flink_stack: Settings, tmp_path: Path) -> None:
    prefix = f"s3://{s3_flink_stack.s3_bucket}/test-{uuid.uuid4().hex[:10]}"
    settings = dataclasses.replace(s3_flink_stack, flink_state_uri=f"{prefix}/flink")
    run = PipelineRun(settings, tmp_path)
    dataset = f"{prefix}/parquet"
    run.args = [arg for arg in run.args if not arg.startswith("--output=")] + [f"--output={dataset}"]
    log = RequestLog(settings)
    started = time.monotonic()

    def phase(name: str) -> None:
        print(f"\n[{time.monotonic() - started:6.1f} s] {name}", flush=True)

    try:
        first = _current_tape(seed=15)
        run.publish(first.records)
        job_id = run.submit()
        wait_until_consumed(settings.bootstrap_servers, run.job_name, run.topics["trades"], timeout=300)
        phase("first part consumed through a checkpoint")

        # a completed checkpoint on S3, found by `darkpool jobs resume` the way it lists checkpoints
        latest = flink.rest_get(settings, f"/jobs/{job_id}/checkpoints")["latest"]["completed"]["external_path"]
        assert latest.startswith(f"{prefix}/flink/checkpoints/{job_id}/chk-"), latest
        retained = latest_retained_checkpoint(settings, load_record(settings, run.job_name))
        assert retained is not None and retained.startswith(f"{prefix}/flink/checkpoints/{job_id}/chk-")
        assert int(retained.rsplit("-", 1)[1]) >= int(latest.rsplit("-", 1)[1])
        assert is_file(join(retained, "_metadata"), settings)

        # a TaskManager dies mid-stream; the job restores from its last checkpoint on S3
        taskmanager = service_by_name(settings, "flink-taskmanager")
        taskmanager.kill()
        second = _current_tape(seed=25)
        run.publish(second.records)  # while the job has lost its TaskManager
        taskmanager.start()
        phase("TaskManager killed and restarted")
        wait_until_consumed(settings.bootstrap_servers, run.job_name, run.topics["trades"], timeout=300)
        phase("second part consumed after the restore")
        checkpoints = flink.rest_get(settings, f"/jobs/{job_id}/checkpoints")
        assert checkpoints["counts"]["restored"] >= 1
        assert checkpoints["latest"]["restored"]["external_path"].startswith(f"{prefix}/flink/checkpoints/")

        # stopped with a savepoint on S3, resumed from it
        savepoint = flink.stop_with_savepoint(settings, job_id)
        assert savepoint.startswith(f"{prefix}/flink/savepoints/"), savepoint
        assert is_file(join(savepoint, "_metadata"), settings)
        phase("savepoint taken")
        resumed = run.submit(savepoint=savepoint)
        flink.wait_job_running(settings, resumed)
        phase("resumed")
        third = _current_tape(seed=35)
        run.publish(third.records)
        whole = Tape(first.records + second.records + third.records)
        run.settle(whole)
        phase("settled")
        figures = run.check_against(whole, check_parquet=False)
        _check_parquet_on_s3(run, settings, dataset, log)
        phase("checked")
        print(f"\nS3 checkpoints, TaskManager kill, S3 savepoint + resume: {figures}")
    finally:
        run.cancel()


def _check_parquet_on_s3(run: PipelineRun, settings: Settings, dataset: str, log: RequestLog) -> None:
    """The final panes of the Parquet dataset on S3 equal the topic's; every object came from one PUT."""
    liquidity = final_panes(read_topic(settings.bootstrap_servers, run.topics["liquidity"]), LIQUIDITY_KEY)
    market = final_panes(read_topic(settings.bootstrap_servers, run.topics["market"]), MARKET_KEY)
    deadline = time.monotonic() + 90
    while True:  # the sink writes a file per flush interval: wait for the last one
        con = duckdb.connect()
        con.register("liquidity_s3", open_s3_table(dataset, "liquidity", settings).dataset)
        con.register("market_s3", open_s3_table(dataset, "market", settings).dataset)
        rows = con.sql("""
            SELECT epoch_ms(window_start) AS window_start, symbol, venue, trade_count, share_quantity
            FROM liquidity_s3
            QUALIFY row_number() OVER (PARTITION BY window_start, symbol, venue
                                       ORDER BY pane_index DESC, emitted_at DESC) = 1""").df()
        merged = rows.merge(liquidity, on=LIQUIDITY_KEY, suffixes=("_parquet", "_kafka"))
        if len(rows) == len(liquidity) == len(merged) and (
                merged["trade_count_parquet"] == merged["trade_count_kafka"]).all():
            break
        assert time.monotonic() < deadline, "the Parquet dataset on S3 did not catch up with the topic"
        time.sleep(3)
    assert (merged["share_quantity_parquet"] == merged["share_quantity_kafka"]).all()
    markets = con.sql("SELECT count(DISTINCT (window_start, symbol)) FROM market_s3").fetchall()[0][0]
    assert markets == len(market)
    objects = objects_under(s3_client(settings), dataset)
    assert objects and all(key.endswith(".parquet") for key in objects)
    assert_one_put_per_object(log, dataset, objects)
