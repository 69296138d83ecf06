"""`darkpool dataset compact`: roll the pipeline's small Parquet files up into larger ones, per partition.

The streaming pipeline writes one file per table and date partition every
``--parquet-flush-seconds`` (10 s by default): about 17,000 files a day, a few
hundred kB each. Compaction rolls the files of each ``<table>/date=D/``
partition that are older than ``min_age`` and smaller than ``target_bytes``
into files of about ``target_bytes``, and never loses or double counts a pane.

One compaction, in three steps, each safe to crash after:

1. **stage**: the inputs' rows, concatenated in name order, are encoded as one
   Parquet file whose footer lists the inputs' names
   (``darkpool.compacted_from``); locally it is written under a hidden name
   (``.compact-<ms>-<id>.parquet.tmp``: no reader looks at hidden files).
2. **publish**: the file appears under its visible name
   (``compact-<ms>-<id>.parquet``): a rename locally, one PUT on S3 (an object is
   visible only once its PUT completed).
3. **retire**: the inputs are deleted.

Between 2 and 3 both the compacted file and (some of) its inputs exist.
Readers therefore apply one rule (:func:`visible_names`, used by
``analytics.dataset``): *a file named in the footer of a visible compacted
file of the same partition is not part of the dataset*. So at every moment,
and after a crash at any point, each row is read exactly once: before
publish only the inputs count, after it only the compacted file. The next
compaction finishes what a crashed one left (:func:`recover`: retire the
inputs of published files, remove stale staged files).

What is never touched: the pipeline's own hidden temporary files
(``.part-*.tmp``) and any file younger than ``min_age`` (by modification
time; a running job only ever writes new files, atomically, so an old
visible file is closed for good). The rows are copied unchanged (same
columns, same values, same order), so the readers' latest-pane-per-key
selection gives the same answer before and after; at-least-once duplicates
the pipeline wrote stay as they were (the readers collapse them as before).
Run one compaction at a time per dataset (locally a lock file under the root
makes a second one wait).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from darkpool import storage
from darkpool.config import Settings, load_settings
from darkpool.contracts import PARQUET_PARTITION_FIELD
from darkpool.errors import DarkpoolError
from darkpool.schema import ALERTS, LIQUIDITY, MARKET

COMPACTED_PREFIX = "compact-"
INPUTS_KEY = b"darkpool.compacted_from"
PARQUET_SUFFIX = ".parquet"
STAGED_SUFFIX = ".parquet.tmp"
TABLES = (LIQUIDITY, MARKET, ALERTS)  # a dataset without an alerts table has no partitions of it
DEFAULT_TARGET_BYTES = 64 << 20
DEFAULT_MIN_AGE_SECONDS = 300.0
DEFAULT_GRACE_SECONDS = 10.0
LOCK_NAME = ".compact.lock"


# --- the rules (pure) ------------------------------------------------------------------
@dataclass(frozen=True)
class DataFile:
    """One entry of a partition: its name, size in bytes and modification time (epoch seconds)."""

    name: str
    size: int
    mtime: float

    @property
    def is_data(self) -> bool:
        """A visible Parquet file (hidden names are temporary files: nobody reads them)."""
        return self.name.endswith(PARQUET_SUFFIX) and not self.name.startswith(".")

    @property
    def is_compacted(self) -> bool:
        return self.is_data and self.name.startswith(COMPACTED_PREFIX)

    @property
    def is_staged(self) -> bool:
        """A compaction's hidden output that was never published."""
        return self.name.startswith("." + COMPACTED_PREFIX) and self.name.endswith(STAGED_SUFFIX)


def superseded(inputs_of: Mapping[str, Iterable[str]]) -> set[str]:
    """The names a partition's visible compacted files hide: what they list, and any compacted file that lost.

    Compacted files are taken in name order (their names start with their write time). One whose inputs
    overlap those of an earlier one was written by a second compaction run at the same time (two hosts,
    or a run beside the soak's): it loses and is hidden itself, so its rows are not read twice. Its inputs
    the winner does not list stay visible. A compacted file listed by another (compacted again) is hidden
    by that one, and what it listed stays hidden with it.
    """
    claimed, losers = _claims(inputs_of)
    return claimed | losers


def losing_compactions(inputs_of: Mapping[str, Iterable[str]]) -> set[str]:
    """The compacted files that lost to an earlier one with overlapping inputs (see :func:`superseded`)."""
    return _claims(inputs_of)[1]


def _claims(inputs_of: Mapping[str, Iterable[str]]) -> tuple[set[str], set[str]]:
    claimed: set[str] = set()
    losers: set[str] = set()
    for name in sorted(inputs_of):
        inputs = set(inputs_of[name])
        if inputs & claimed:
            losers.add(name)
            continue
        claimed |= inputs
    return claimed, losers


def visible_names(names: Iterable[str], inputs_of: Mapping[str, Iterable[str]]) -> list[str]:
    """The data files of one partition that are part of the dataset, sorted.

    ``names``: everything listed in the partition; ``inputs_of``: for each visible
    compacted file among them, the input names its footer lists. A file is part of
    the dataset when it is a visible ``.parquet`` that :func:`superseded` does not hide.
    """
    listed = [n for n in names if n.endswith(PARQUET_SUFFIX) and not n.startswith(".")]
    present = set(listed)
    gone = superseded({c: i for c, i in inputs_of.items() if c in present})
    return sorted(n for n in listed if n not in gone)


def _visible_by_folder(paths: list[str], inputs_of: Callable[[str], list[str]]) -> list[str]:
    """The reader rule over ``folder/name`` paths: per folder, :func:`visible_names`."""
    folders: dict[str, list[str]] = {}
    for path in paths:
        folder, _, name = path.rpartition("/")
        folders.setdefault(folder, []).append(name)
    kept: set[str] = set()
    for folder, names in folders.items():
        compacted = {n: inputs_of(f"{folder}/{n}") for n in names
                     if n.startswith(COMPACTED_PREFIX) and n.endswith(PARQUET_SUFFIX)}
        kept.update(f"{folder}/{n}" for n in visible_names(names, compacted))
    return [p for p in paths if p in kept]


def visible_paths(paths: Iterable[Path]) -> list[Path]:
    """The reader rule for local files: ``paths`` less those the compacted files of their folder hide."""
    by_text = {str(path): path for path in paths}
    return [by_text[text] for text in
            _visible_by_folder(list(by_text), lambda path: _footer_inputs(path, path))]


def visible_s3_paths(paths: Iterable[str], filesystem) -> list[str]:
    """The reader rule for S3 objects (``bucket/key`` paths of one pyarrow S3 file system)."""
    return _visible_by_folder(list(paths), lambda path: _footer_inputs(filesystem.open_input_file(path), path))


def _footer_inputs(source, label: str) -> list[str]:
    try:
        return inputs_from_metadata(pq.read_schema(source).metadata)
    except FileNotFoundError as exc:
        raise DarkpoolError(f"{label} was compacted away while the dataset was being read",
                            "run the command again") from exc


def plan_groups(files: Sequence[DataFile], now: float, min_age: float, target_bytes: int,
                min_files: int = 2) -> list[list[DataFile]]:
    """Which files of a partition to roll up together.

    Candidates: visible data files not superseded (``files`` should hold only those),
    last modified at least ``min_age`` seconds before ``now``, smaller than
    ``target_bytes``. In name order (the pipeline's names start with their write time)
    they are cut into consecutive groups of at most ``target_bytes``; a group of fewer
    than ``min_files`` files is left alone.
    """
    candidates = sorted((f for f in files if f.is_data and f.mtime <= now - min_age and f.size < target_bytes),
                        key=lambda f: f.name)
    groups: list[list[DataFile]] = []
    current: list[DataFile] = []
    size = 0
    for entry in candidates:
        if current and size + entry.size > target_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry.size
    if current:
        groups.append(current)
    return [g for g in groups if len(g) >= max(2, min_files)]


def compacted_name(now: float | None = None) -> str:
    """A new compacted file's name: ``compact-<epoch ms>-<random>.parquet``."""
    stamp = int((time.time() if now is None else now) * 1000)
    return f"{COMPACTED_PREFIX}{stamp}-{uuid.uuid4().hex[:12]}{PARQUET_SUFFIX}"


def concat_rows(tables: Sequence[pa.Table]) -> pa.Table:
    """The inputs' rows in order; a column missing from an older file is null there (as the readers see it)."""
    combined = pa.concat_tables([t.replace_schema_metadata(None) for t in tables], promote_options="default")
    return combined.combine_chunks()


def with_inputs(table: pa.Table, inputs: Sequence[str]) -> pa.Table:
    """The table with the names of its inputs in its schema metadata (written to the Parquet footer)."""
    metadata = dict(table.schema.metadata or {})
    metadata[INPUTS_KEY] = json.dumps(list(inputs)).encode()
    return table.replace_schema_metadata(metadata)


def inputs_from_metadata(metadata: Mapping[bytes, bytes] | None) -> list[str]:
    """The input names a compacted file's footer lists (empty for a file the pipeline wrote)."""
    raw = (metadata or {}).get(INPUTS_KEY)
    return list(json.loads(raw)) if raw else []


def median_size(sizes: Sequence[int]) -> float:
    return float(statistics.median(sizes)) if sizes else 0.0


# --- one partition on a file system (local folder or S3) ----------------------------------
class Partition:
    """One ``<table>/date=D`` folder: a local directory or an S3 prefix."""

    def __init__(self, location: storage.Location, settings: Settings | None = None) -> None:
        self.location = location
        self.on_s3 = storage.is_s3(location)
        self.settings = settings
        self._fs = None

    @property
    def filesystem(self):
        """pyarrow's S3 file system (S3 partitions only)."""
        if self._fs is None:
            self._fs = storage.s3_client(self.settings or load_settings()).filesystem()
        return self._fs

    def child(self, name: str) -> storage.Location:
        return storage.join(self.location, name)

    def entries(self) -> list[DataFile]:
        """Everything directly in the partition (hidden names included), with size and mtime."""
        if not self.on_s3:
            folder = Path(self.location)
            if not folder.is_dir():
                return []
            result = []
            for path in folder.iterdir():
                with contextlib.suppress(FileNotFoundError):  # the pipeline renames its temporary files
                    stat = path.stat()
                    if path.is_file():
                        result.append(DataFile(path.name, stat.st_size, stat.st_mtime))
            return result
        from pyarrow import fs as pafs  # noqa: PLC0415

        selector = pafs.FileSelector(storage.fs_path(self.location), allow_not_found=True, recursive=False)
        try:
            infos = self.filesystem.get_file_info(selector)
        except OSError as exc:
            raise DarkpoolError(f"cannot list {self.location}: {exc}", "is the S3 endpoint up?") from exc
        return [DataFile(i.base_name, i.size or 0, i.mtime.timestamp() if i.mtime else 0.0)
                for i in infos if i.type == pafs.FileType.File]

    def source(self, name: str):
        """What pyarrow reads file ``name`` from: a local path, or an S3 input file."""
        return self.filesystem.open_input_file(storage.fs_path(self.child(name))) if self.on_s3 \
            else str(self.child(name))

    def read_inputs_of(self, name: str) -> list[str]:
        """The input names the footer of compacted file ``name`` lists."""
        return inputs_from_metadata(pq.read_schema(self.source(name)).metadata)

    def read(self, name: str) -> pa.Table:
        return pq.read_table(self.source(name))

    def inputs_of_compacted(self, entries: Iterable[DataFile]) -> dict[str, list[str]]:
        """For each visible compacted file: the inputs its footer lists."""
        return {e.name: self.read_inputs_of(e.name) for e in entries if e.is_compacted}

    def visible(self, entries: list[DataFile] | None = None) -> list[DataFile]:
        """The partition's data files that are part of the dataset (see :func:`visible_names`)."""
        entries = self.entries() if entries is None else entries
        keep = set(visible_names([e.name for e in entries], self.inputs_of_compacted(entries)))
        return sorted((e for e in entries if e.name in keep), key=lambda e: e.name)

    def delete(self, name: str) -> bool:
        """Delete one file; False when it was already gone."""
        if not self.on_s3:
            try:
                Path(self.child(name)).unlink()
            except FileNotFoundError:
                return False
            return True
        try:
            self.filesystem.delete_file(storage.fs_path(self.child(name)))
        except FileNotFoundError:
            return False
        except OSError as exc:
            if "not found" in str(exc).lower() or "NoSuchKey" in str(exc):
                return False
            raise DarkpoolError(f"cannot delete {self.child(name)}: {exc}") from exc
        return True


# --- the three steps ------------------------------------------------------------------------
@dataclass
class Compaction:
    """One roll-up of ``inputs`` into ``output`` in one partition; :meth:`stage`, :meth:`publish`, :meth:`retire`."""

    partition: Partition
    inputs: list[str]
    output: str = field(default_factory=compacted_name)
    rows: int = 0
    output_bytes: int = 0
    published_at: float = 0.0  # time.monotonic() of the publish
    _data: bytes | None = None

    @property
    def staged_name(self) -> str:
        return f".{self.output}.tmp"

    def stage(self) -> None:
        """Read the inputs, write the compacted file where no reader looks (locally a hidden file; on S3 in memory)."""
        table = with_inputs(concat_rows([self.partition.read(name) for name in self.inputs]), self.inputs)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        data = sink.getvalue().to_pybytes()
        self.rows, self.output_bytes = table.num_rows, len(data)
        if self.partition.on_s3:
            self._data = data
            return
        staged = Path(self.partition.child(self.staged_name))
        with open(staged, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def publish(self) -> None:
        """Make the compacted file visible in one atomic step (rename / one PUT); its inputs stop counting."""
        target = self.partition.child(self.output)
        if self.partition.on_s3:
            if self._data is None:
                raise DarkpoolError(f"{target}: publish before stage")
            storage.s3_client(self.partition.settings or load_settings()).put(str(target), self._data)
            self._data = None
        else:
            os.replace(self.partition.child(self.staged_name), target)
            _fsync_dir(Path(self.partition.location))
        self.published_at = time.monotonic()

    def retire(self) -> int:
        """Delete the inputs (already not part of the dataset); returns how many were deleted.

        Only when the compacted file is still part of the dataset: one that lost to another run's file with
        overlapping inputs (:func:`superseded`) is deleted instead, and its inputs are left as they are."""
        entries = self.partition.entries()
        inputs_of = self.partition.inputs_of_compacted(entries)
        if self.output not in inputs_of or self.output in losing_compactions(inputs_of):
            self.partition.delete(self.output)
            return 0
        return sum(self.partition.delete(name) for name in self.inputs)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def recover(partition: Partition, now: float, min_age: float) -> dict[str, int]:
    """Finish what a crashed compaction left: retire inputs of published files, remove stale staged files."""
    entries = partition.entries()
    present = {e.name for e in entries}
    retired = 0
    inputs_of = partition.inputs_of_compacted(entries)
    losers = losing_compactions(inputs_of)
    for name, inputs in inputs_of.items():
        if name in losers:  # a concurrent run's file that lost: removed, its own inputs stay
            partition.delete(name)
            continue
        retired += sum(partition.delete(input_name) for input_name in inputs if input_name in present)
    stale = 0
    for entry in entries:
        if entry.is_staged and entry.mtime <= now - min_age:
            stale += partition.delete(entry.name)
    return {"retired": retired, "stale_staged": stale}


# --- the whole dataset -------------------------------------------------------------------------
def partitions(root: storage.Location, settings: Settings | None = None,
               tables: Sequence[str] = TABLES) -> list[tuple[str, Partition]]:
    """(table, partition) for every ``<root>/<table>/date=*`` folder, sorted."""
    found = []
    for table in tables:
        base = storage.join(root, table)
        names = storage.list_names(base, settings or load_settings()) if storage.is_s3(root) else \
            (sorted(p.name for p in Path(base).iterdir() if p.is_dir()) if Path(base).is_dir() else [])
        for name in names:
            if name.startswith(f"{PARQUET_PARTITION_FIELD}="):
                found.append((table, Partition(storage.join(base, name), settings)))
    return found


@dataclass(frozen=True)
class DatasetStats:
    """File count and sizes of the visible data files of a dataset (every table)."""

    files: int
    total_bytes: int
    median_bytes: float
    rows: int | None = None

    def describe(self) -> str:
        rows = f", {self.rows:,} rows" if self.rows is not None else ""
        return (f"{self.files:,} files, {self.total_bytes / 1e6:,.1f} MB, median {self.median_bytes / 1e3:,.1f} kB"
                f"{rows}")


def dataset_stats(root: storage.Location, settings: Settings | None = None, count_rows: bool = False) -> DatasetStats:
    """Count the dataset's visible data files (the reader rule applied) and their sizes."""
    sizes: list[int] = []
    rows = 0
    for _table, partition in partitions(root, settings):
        for entry in partition.visible():
            sizes.append(entry.size)
            if count_rows:
                source = partition.source(entry.name)
                rows += pq.read_metadata(source).num_rows
    return DatasetStats(len(sizes), sum(sizes), median_size(sizes), rows if count_rows else None)


@dataclass
class CompactResult:
    before: DatasetStats
    after: DatasetStats
    compactions: int
    inputs: int
    recovered: dict[str, int]
    seconds: float


@contextlib.contextmanager
def _exclusive(root: storage.Location) -> Iterator[None]:
    """One compaction at a time per local dataset (a lock file under the root); S3: no lock."""
    if storage.is_s3(root):
        yield
        return
    Path(root).mkdir(parents=True, exist_ok=True)
    with open(Path(root) / LOCK_NAME, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def compact(root: storage.Location, *, min_age: float = DEFAULT_MIN_AGE_SECONDS,
            target_bytes: int = DEFAULT_TARGET_BYTES, grace: float = DEFAULT_GRACE_SECONDS,
            settings: Settings | None = None, now: Callable[[], float] = time.time,
            progress: Callable[[str], None] | None = None) -> CompactResult:
    """Recover, then roll up every partition's old small files; returns the file counts before and after.

    Every group is staged and published first; the inputs are retired ``grace``
    seconds after the last publish (a reader that listed the partition just before
    can still open the files it listed).
    """
    say = progress or (lambda _message: None)
    started = time.monotonic()
    with _exclusive(root):
        before = dataset_stats(root, settings)
        say(f"before: {before.describe()}")
        recovered = {"retired": 0, "stale_staged": 0}
        published: list[Compaction] = []
        for table, partition in partitions(root, settings):
            for key, value in recover(partition, now(), min_age).items():
                recovered[key] += value
            for group in plan_groups(partition.visible(), now(), min_age, target_bytes):
                job = Compaction(partition, [f.name for f in group])
                job.stage()
                job.publish()
                published.append(job)
                say(f"{table}/{Path(str(partition.location)).name}: {len(group)} files "
                    f"({sum(f.size for f in group) / 1e6:,.1f} MB) -> {job.output} ({job.rows:,} rows, "
                    f"{job.output_bytes / 1e6:,.1f} MB)")
        if published:
            wait = grace - (time.monotonic() - last_publish(published))
            if wait > 0:
                say(f"retiring the inputs in {wait:.0f} s (grace for readers that listed them before)")
                time.sleep(wait)
        for job in published:
            job.retire()
        after = dataset_stats(root, settings)
        say(f"after: {after.describe()}")
    return CompactResult(before, after, len(published), sum(len(j.inputs) for j in published), recovered,
                         time.monotonic() - started)


def last_publish(jobs: Sequence[Compaction]) -> float:
    return max(j.published_at for j in jobs)


# --- command line ---------------------------------------------------------------------------
def _size_arg(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("b")
    try:
        return int(float(text[:-1]) * units[text[-1]]) if text and text[-1] in units else int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 64M, 512k, 1000000)") from exc


def cmd_compact(args: argparse.Namespace) -> int:
    settings = load_settings()
    root = storage.parse_location(args.dataset) if args.dataset else settings.dataset_location
    if not storage.is_s3(root) and not Path(root).is_dir():
        raise DarkpoolError(f"no Parquet dataset at {root}", "run the pipeline first or pass --dataset")

    def say(message: str) -> None:
        if not args.quiet:
            print(f"compact: {message}", file=sys.stderr, flush=True)

    result = compact(root, min_age=args.min_age, target_bytes=args.target_size, grace=args.grace, settings=settings,
                     progress=say)
    print(f"compacted {result.inputs:,} files into {result.compactions:,} in {result.seconds:.1f} s "
          f"(recovered: {result.recovered['retired']} inputs retired, {result.recovered['stale_staged']} stale "
          f"staged files removed)")
    print(f"before: {result.before.describe()}")
    print(f"after:  {result.after.describe()}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dataset", help="maintain the Parquet dataset (compact)")
    actions = parser.add_subparsers(dest="dataset_action", metavar="ACTION")
    actions.required = True
    sub = actions.add_parser(
        "compact", help="roll small Parquet files up into larger ones per partition (atomic, exact)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub.add_argument("--dataset", help="dataset root: a folder or s3://bucket/prefix "
                                       "(default: DARKPOOL_DATASET_URI, else <state dir>/parquet)")
    sub.add_argument("--min-age", type=float, default=DEFAULT_MIN_AGE_SECONDS, metavar="SECONDS",
                     help="only files last modified at least this long ago (default %(default)g s)")
    sub.add_argument("--target-size", type=_size_arg, default=DEFAULT_TARGET_BYTES, metavar="SIZE",
                     help="roll files up to about this size (default 64M); larger files are left alone")
    sub.add_argument("--grace", type=float, default=DEFAULT_GRACE_SECONDS, metavar="SECONDS",
                     help="seconds between publishing the compacted files and deleting their inputs "
                          "(default %(default)g s)")
    sub.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    sub.set_defaults(func=cmd_compact)
