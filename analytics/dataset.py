"""Read the pipeline's Parquet dataset with DuckDB and select the panes to analyse.

Layout (darkpool.contracts): ``<root>/liquidity/date=YYYY-MM-DD/*.parquet`` in
``LIQUIDITY_SCHEMA`` and ``<root>/market/date=YYYY-MM-DD/*.parquet`` in
``MARKET_SCHEMA``, one row per pane. A key (``window_start, symbol[, venue]``)
repeats with an increasing ``pane_index`` (EARLY..., ON_TIME, LATE...); with
accumulating panes the *final* pane (highest ``pane_index``, ties broken by the
newest ``emitted_at``) is the window's value, so that is what is analysed by
default.

:func:`load_panes` materialises the selection as two DuckDB temporary tables,
``liquidity`` and ``market``, each with the contract columns plus:

- ``on_grid`` (BOOLEAN): the window starts on the non-overlapping grid of its own
  size (``epoch_ms(window_start) % size == 0``). Sliding windows (5 min every
  1 min) count every trade in 5 windows, so tables that add volume over a period
  use only ``on_grid`` windows: they tile time without overlap and count each
  trade exactly once.

Every liquidity table is such a period total, so ``liquidity`` holds only the
on-grid windows (the filter runs before the final-pane selection: 5x fewer
panes to process with 5-minute windows sliding every minute) and only the
columns the tables use; ``market`` holds every window (per-window dark share
and HHI) and every column.

All work is SQL inside DuckDB; nothing loops over rows in Python.

The optional ``alerts`` table (``<root>/alerts/date=YYYY-MM-DD/*.parquet`` in
``ALERT_SCHEMA``, written by a pipeline run with ``--alerts``) is loaded apart by
:func:`load_alerts` into the temp table ``alerts``: the selection's window_start
range and symbols apply, and an alert re-emitted with a higher severity (same
key ``symbol, kind, window_start``) counts once, as its row of the highest
severity (:func:`darkpool.contracts.severity_rank`), then the latest
``emitted_at``. ``--all-panes`` does not change that: alerts are not panes.

A dataset on S3 (``s3://bucket/prefix``, endpoint and credentials from Settings)
is read with ``pyarrow.dataset`` over ``pyarrow.fs.S3FileSystem`` and handed to
DuckDB as an Arrow dataset (DuckDB pushes its column projection and its filters,
the ``date`` partition pruning included, down into the pyarrow scan). DuckDB's own
S3 reader, the httpfs extension, is not used: DuckDB downloads extensions at run
time.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from analytics.compact import visible_paths, visible_s3_paths
from darkpool import storage
from darkpool.config import Settings, load_settings
from darkpool.contracts import PARQUET_PARTITION_FIELD, SEVERITIES, load_venues, parse_event_time
from darkpool.errors import DarkpoolError
from darkpool.schema import ALERTS, FIELDS, LIQUIDITY, MARKET, SCHEMAS

TABLE_KEYS = {
    LIQUIDITY: ("window_start", "symbol", "venue"),
    MARKET: ("window_start", "symbol"),
}
# the columns the analytics read (projection: fewer columns decoded)
TABLE_COLUMNS = {
    LIQUIDITY: ("window_start", "window_end", "symbol", "venue", "venue_type", "trade_count", "share_quantity",
                  "notional", "block_count", "block_quantity", "pane_timing", "pane_index", "emitted_at"),
    MARKET: FIELDS[MARKET],
}
ALERT_KEYS = ("symbol", "kind", "window_start")
# every liquidity table is a period total, so only on-grid liquidity windows are loaded (5x fewer panes)
GRID_ONLY_TABLES = frozenset({LIQUIDITY})


@dataclass(frozen=True)
class Selection:
    """Which panes to analyse: a half-open window_start range, symbols, final or all panes."""

    start: datetime | None = None  # window_start >= start
    end: datetime | None = None  # window_start < end
    symbols: tuple[str, ...] | None = None
    all_panes: bool = False

    def describe(self) -> str:
        """One line for reports and logs."""
        start = self.start.isoformat() if self.start else "beginning"
        end = self.end.isoformat() if self.end else "end"
        symbols = ",".join(self.symbols) if self.symbols else "all symbols"
        panes = "all panes" if self.all_panes else "final panes"
        return f"window_start in [{start}, {end}), {symbols}, {panes}"


@dataclass
class Progress:
    """Step-by-step progress on stderr (``analyze: [step] message (seconds)``)."""

    prefix: str = "analyze"
    enabled: bool = True
    stream: object = None  # None: sys.stderr at the time of printing
    _t0: float = field(default_factory=time.perf_counter)

    def step(self, message: str) -> None:
        if self.enabled:
            elapsed = time.perf_counter() - self._t0
            print(f"{self.prefix}: {message} [{elapsed:6.1f}s]", file=self.stream or sys.stderr, flush=True)


def parse_time_arg(text: str | None, flag: str) -> datetime | None:
    """An ISO-8601 timestamp or date from the command line -> aware UTC datetime."""
    if text is None or text == "":
        return None
    try:
        epoch_ms = parse_event_time(text)
    except ValueError as exc:
        raise DarkpoolError(
            f"{flag} {text!r} is not an ISO-8601 time", "use e.g. 2026-11-25 or 2026-11-25T14:30:00Z"
        ) from exc
    return datetime.fromtimestamp(epoch_ms / 1000.0, tz=UTC)


def parse_symbols_arg(text: str | None) -> tuple[str, ...] | None:
    """``"AAPL, msft"`` -> ``("AAPL", "MSFT")``; empty or None means all symbols."""
    if not text:
        return None
    symbols = tuple(dict.fromkeys(s.strip().upper() for s in text.split(",") if s.strip()))
    if not symbols:
        raise DarkpoolError(f"--symbols {text!r} names no symbol", "use e.g. --symbols AAPL,MSFT")
    return symbols


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection in UTC, with the venue registry as table ``venues``."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    venues = list(load_venues().values())
    con.execute(
        "CREATE TEMP TABLE venues (mpid VARCHAR, name VARCHAR, operator VARCHAR, registry_type VARCHAR)"
    )
    if venues:
        con.executemany(
            "INSERT INTO venues VALUES (?, ?, ?, ?)",
            [(v.mpid, v.name, v.operator, v.venue_type) for v in venues],
        )
    return con


def table_files(root: Path, table: str) -> list[Path]:
    """The Parquet files of one table (``<root>/<table>/date=*/*.parquet``), sorted, less those a compacted
    file replaced (analytics.compact.visible_paths)."""
    return visible_paths(sorted((root / table).glob(f"{PARQUET_PARTITION_FIELD}=*/*.parquet")))


@dataclass(frozen=True)
class S3Table:
    """One table of a dataset on S3: its Parquet objects as a Hive-partitioned pyarrow dataset."""

    uri: str
    dataset: object  # pyarrow.dataset.FileSystemDataset
    files: int
    size_bytes: int


def open_s3_table(root: str, table: str, settings: Settings | None = None) -> S3Table:
    """``<root>/<table>/date=*/*.parquet`` on S3, read in the contract schema plus the ``date`` partition.

    Files without a column of the contract get nulls (as DuckDB's union_by_name does
    for local files); hidden names (``.*``) are not part of the table.
    """
    import pyarrow.dataset as ds  # noqa: PLC0415
    from pyarrow import fs as pafs  # noqa: PLC0415

    settings = settings or load_settings()
    uri = str(storage.join(root, table))
    filesystem = storage.s3_client(settings).filesystem()
    base = storage.fs_path(uri)
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(base, allow_not_found=True, recursive=True))
    except OSError as exc:
        raise DarkpoolError(f"cannot list {uri} on {settings.s3_endpoint_url}: {exc}",
                            "check DARKPOOL_S3_ENDPOINT/ACCESS_KEY/SECRET_KEY (`darkpool s3 status` for the "
                            "local S3Proxy)") from exc
    files = [info for info in infos
             if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")
             and not info.base_name.startswith(".")
             and info.path.rsplit("/", 2)[-2].startswith(f"{PARQUET_PARTITION_FIELD}=")]
    kept = set(visible_s3_paths([info.path for info in files], filesystem))
    files = [info for info in files if info.path in kept]
    partition = pa.schema([(PARQUET_PARTITION_FIELD, pa.date32())])
    dataset = ds.dataset([info.path for info in files], schema=SCHEMAS[table].append(partition.field(0)),
                         format="parquet", filesystem=filesystem, partition_base_dir=base,
                         partitioning=ds.partitioning(partition, flavor="hive"))
    return S3Table(uri, dataset, len(files), sum(info.size for info in files))


@dataclass(frozen=True)
class TableSource:
    """Where one table's rows come from: local files, or an S3 dataset registered as ``relation``."""

    location: str
    files: list[Path]
    count: int
    size_bytes: int
    relation: str | None = None
    s3_table: S3Table | None = None

    def describe(self, table: str) -> str:
        return (f"reading {table}: {self.count} files, {self.size_bytes / 1e6:.1f} MB"
                f"{' from S3' if self.s3_table is not None else ''}")


def table_source(root: Path | str, table: str) -> TableSource:
    """The files (or the S3 dataset) of ``<root>/<table>``, with the compaction reader rule applied."""
    location = str(storage.join(root, table))
    if storage.is_s3(root):
        s3_table = open_s3_table(str(root), table)
        return TableSource(location, [], s3_table.files, s3_table.size_bytes, f"_{table}_on_s3", s3_table)
    files = table_files(Path(root), table)
    return TableSource(location, files, len(files), sum(f.stat().st_size for f in files))


def materialise(con: duckdb.DuckDBPyConnection, name: str, sql: str, params: list[object], source: TableSource,
                schema_name: str) -> None:
    """``CREATE OR REPLACE TEMP TABLE name AS sql`` over ``source``; a file the SQL cannot read is a
    DarkpoolError naming the table and the contract schema (``schema_name``) its files must follow."""
    try:
        if source.relation is not None:
            con.register(source.relation, source.s3_table.dataset)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}", params)
    except (duckdb.IOException, duckdb.BinderException, duckdb.InvalidInputException,
            duckdb.ConversionException, pa.ArrowException, OSError) as exc:
        raise DarkpoolError(
            f"cannot read the {Path(source.location).name} table under {source.location}: {exc}",
            f"the files must follow darkpool.contracts.{schema_name}",
        ) from exc
    finally:
        if source.relation is not None:
            con.unregister(source.relation)


def _where_clause(selection: Selection) -> tuple[str, list[object]]:
    """SQL filter (with partition pruning on ``date``) and its parameters."""
    clauses: list[str] = []
    params: list[object] = []
    if selection.start is not None:
        clauses.append("window_start >= ?")
        params.append(selection.start)
        # the date partition is a window's (or its pane's) UTC date; a day of slack keeps late panes
        clauses.append(f"{PARQUET_PARTITION_FIELD} >= ?")
        params.append((selection.start - timedelta(days=1)).date())
    if selection.end is not None:
        clauses.append("window_start < ?")
        params.append(selection.end)
        clauses.append(f"{PARQUET_PARTITION_FIELD} <= ?")
        params.append((selection.end + timedelta(days=1)).date())
    if selection.symbols:
        clauses.append("symbol IN (SELECT unnest(?))")
        params.append(list(selection.symbols))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _select_sql(table: str, files: list[Path], selection: Selection,
                source_relation: str | None = None) -> tuple[str, list[object]]:
    """The SELECT that reads one table's files (or a registered Arrow relation) and keeps the selected panes.

    Final panes are picked with a hash aggregate (``arg_max`` of each column by
    pane_index, then emitted_at), which is several times faster than sorting
    for a window function on millions of panes.
    """
    columns = TABLE_COLUMNS[table]
    where, params = _where_clause(selection)
    size_ms = "(epoch_ms(window_end) - epoch_ms(window_start))"
    on_grid = f"({size_ms} > 0 AND epoch_ms(window_start) % {size_ms} = 0)"
    if table in GRID_ONLY_TABLES:
        where = f"{where} AND {on_grid}" if where else f" WHERE {on_grid}"
    if source_relation is not None:
        source = f"SELECT {', '.join(columns)} FROM {source_relation}{where}"
    else:
        source = (
            f"SELECT {', '.join(columns)} FROM read_parquet(?, hive_partitioning = true, union_by_name = true){where}"
        )
        params = [[str(p) for p in files], *params]
    if selection.all_panes:
        return f"SELECT *, {on_grid} AS on_grid FROM ({source})", params
    keys = TABLE_KEYS[table]
    # order panes by (pane_index, emitted_at): emitted_at in epoch ms stays below 2**42
    order = "pane_index * 4398046511104 + coalesce(epoch_ms(emitted_at), 0)"
    values = ", ".join(f"arg_max({c}, _pane_order) AS {c}" for c in columns if c not in keys)
    final = (
        f"SELECT {', '.join(keys)}, {values} FROM (SELECT *, {order} AS _pane_order FROM ({source})) "
        f"GROUP BY {', '.join(keys)}"
    )
    return f"SELECT {', '.join(columns)}, {on_grid} AS on_grid FROM ({final})", params


def load_panes(
    con: duckdb.DuckDBPyConnection,
    root: Path | str,
    selection: Selection,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Materialise the selected panes as temp tables ``liquidity`` and ``market``; return row counts.

    ``root`` is a folder or an ``s3://bucket/prefix`` URI. Raises DarkpoolError when
    the dataset has no files, a file does not match the contract, or nothing
    matches the selection.
    """
    progress = progress or Progress(enabled=False)
    on_s3 = storage.is_s3(root)
    if not on_s3:
        root = Path(root)
        if not root.is_dir():
            raise DarkpoolError(
                f"no Parquet dataset at {root}",
                "run the pipeline (darkpool run / make demo) or pass --dataset DIR",
            )
    counts: dict[str, int] = {}
    for table in (LIQUIDITY, MARKET):
        source = table_source(root, table)
        if not source.count:
            raise DarkpoolError(
                f"no Parquet files under {source.location}/{PARQUET_PARTITION_FIELD}=*/",
                "the pipeline writes <dataset>/liquidity and <dataset>/market; check --dataset",
            )
        progress.step(source.describe(table))
        sql, params = _select_sql(table, source.files, selection, source_relation=source.relation)
        materialise(con, table, sql, params, source, table.upper() + "_SCHEMA")
        counts[table] = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        progress.step(f"{table}: {counts[table]:,} {'panes' if selection.all_panes else 'final panes'} selected")
    if counts["liquidity"] == 0 and counts["market"] == 0:
        raise DarkpoolError(
            f"no panes in {root} match {selection.describe()}",
            "widen --from/--to or check --symbols",
        )
    return counts


def severity_rank_sql(column: str) -> str:
    """SQL of :func:`darkpool.contracts.severity_rank` over ``column`` (NULL for a text not in SEVERITIES)."""
    cases = " ".join(f"WHEN '{severity}' THEN {rank}" for rank, severity in enumerate(SEVERITIES))
    return f"(CASE {column} {cases} ELSE NULL END)"


def _alerts_source_sql(files: list[Path], selection: Selection,
                       source_relation: str | None = None) -> tuple[str, list[object]]:
    """The SELECT that reads the selected alert rows (every emission) of the files or an Arrow relation."""
    columns = FIELDS[ALERTS]
    where, params = _where_clause(selection)
    if source_relation is not None:
        return f"SELECT {', '.join(columns)} FROM {source_relation}{where}", params
    source = f"SELECT {', '.join(columns)} FROM read_parquet(?, hive_partitioning = true, union_by_name = true){where}"
    return source, [[str(p) for p in files], *params]


def latest_alerts_sql(relation: str) -> str:
    """The SELECT keeping one row per alert key of ``relation``: the highest severity, then the latest emitted_at."""
    columns = FIELDS[ALERTS]
    # order rows by (severity rank, emitted_at): emitted_at in epoch ms stays below 2**42
    order = f"{severity_rank_sql('severity')} * 4398046511104 + coalesce(epoch_ms(emitted_at), 0)"
    values = ", ".join(f"arg_max({c}, _alert_order) AS {c}" for c in columns if c not in ALERT_KEYS)
    final = (
        f"SELECT {', '.join(ALERT_KEYS)}, {values} FROM (SELECT *, {order} AS _alert_order FROM {relation}) "
        f"GROUP BY {', '.join(ALERT_KEYS)}"
    )
    return f"SELECT {', '.join(columns)} FROM ({final})"


def load_alerts(
    con: duckdb.DuckDBPyConnection,
    root: Path | str,
    selection: Selection,
    progress: Progress | None = None,
) -> int | None:
    """Materialise the selected alerts as temp table ``alerts`` (one row per key); return its row count.

    None (and no table) when the dataset has no alerts table: a pipeline run without
    ``--alerts``. Raises DarkpoolError when a file does not match the contract or an
    alert's severity is not one of darkpool.contracts.SEVERITIES.
    """
    progress = progress or Progress(enabled=False)
    source = table_source(root, ALERTS)
    location = source.location
    if not source.count:
        progress.step(f"no {ALERTS} table under {location}")
        return None
    progress.step(source.describe(ALERTS))
    sql, params = _alerts_source_sql(source.files, selection, source_relation=source.relation)
    emitted = f"_{ALERTS}_emitted"
    materialise(con, emitted, sql, params, source, "ALERT_SCHEMA")
    unknown = con.execute(
        f"SELECT DISTINCT severity FROM {emitted} WHERE {severity_rank_sql('severity')} IS NULL ORDER BY 1"
    ).fetchall()
    if unknown:
        con.execute(f"DROP TABLE {emitted}")
        raise DarkpoolError(
            f"the {ALERTS} table under {location} has alerts of unknown severity "
            f"{', '.join(repr(row[0]) for row in unknown)}",
            f"a severity is one of {', '.join(SEVERITIES)} (darkpool.contracts.SEVERITIES)",
        )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {ALERTS} AS {latest_alerts_sql(emitted)}")
    con.execute(f"DROP TABLE {emitted}")
    rows = con.execute(f"SELECT count(*) FROM {ALERTS}").fetchall()[0][0]
    progress.step(f"{ALERTS}: {rows:,} alerts selected (one per symbol, kind and window)")
    return rows
