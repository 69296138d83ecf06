"""The venue registry: the shipped venues, a user's own registry file, and the active registry.

Every part of the product asks :func:`load_venues` (imported from
:mod:`darkpool.contracts`) which venues exist, their type (ATS, SDP, EXCHANGE)
and where their matching engine is. The answer is the *active* registry:

- the registry shipped with the package (``darkpool/data/venues.csv``), and
- a user registry file when one is configured (``venues_file`` in
  :class:`darkpool.config.Settings`: ``DARKPOOL_VENUES_FILE``, or
  ``darkpool --venues FILE``), with the same columns. With ``venues_mode``
  ``extend`` (the default) its rows are added to the shipped ones, a row whose
  MPID is shipped replacing that venue; with ``replace`` it is the whole registry.

A file that cannot be used raises :class:`~darkpool.errors.DarkpoolError`
naming the file and line. Parts that run where the environment does not reach
(the pipeline's workers on Flink) get the registry's venues as parameters,
taken from :func:`load_venues` where the job is built. See docs/venues.md.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import io
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from darkpool.config import VENUES_MODES, venue_registry_source
from darkpool.errors import DarkpoolError

VENUE_TYPES = ("ATS", "SDP", "EXCHANGE")
DARK_VENUE_TYPES = frozenset({"ATS", "SDP"})
REGISTRY_COLUMNS = ("mpid", "name", "operator", "venue_type", "data_center", "latitude", "longitude")
SHIPPED_REGISTRY = "darkpool/data/venues.csv"
# characters an MPID may not contain: Kafka keys join symbol|venue|window_start, files are CSV
_MPID_FORBIDDEN = frozenset("|,\"'")


@dataclass(frozen=True)
class Venue:
    """One trading venue: its MPID, who runs it, its type and its matching engine's location."""

    mpid: str
    name: str
    operator: str
    venue_type: str  # ATS | SDP | EXCHANGE
    data_center: str
    latitude: float
    longitude: float

    @property
    def is_dark(self) -> bool:
        return self.venue_type in DARK_VENUE_TYPES


def _problem(source: str, line: int, message: str) -> DarkpoolError:
    return DarkpoolError(f"venue registry {source}, line {line}: {message}",
                         hint="columns: " + ",".join(REGISTRY_COLUMNS) + "; see docs/venues.md")


def _coordinate(source: str, line: int, column: str, text: str, bound: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _problem(source, line, f"{column} {text!r} is not a number") from None
    if math.isnan(value) or not -bound <= value <= bound:
        raise _problem(source, line, f"{column} {text!r} is outside [-{bound:g}, {bound:g}]")
    return value


def _venue(source: str, line: int, row: Mapping[str, str]) -> Venue:
    """One CSV row (values stripped) -> a Venue, or a DarkpoolError naming the line."""
    mpid = row["mpid"]
    if not mpid:
        raise _problem(source, line, "empty mpid")
    if any(c.isspace() or c in _MPID_FORBIDDEN for c in mpid):
        raise _problem(source, line, f"mpid {mpid!r} may not contain spaces, '|', ',' or quotes")
    venue_type = row["venue_type"].upper()
    if venue_type not in VENUE_TYPES:
        raise _problem(source, line, f"venue {mpid}: venue_type {row['venue_type']!r} is not one of "
                                     f"{', '.join(VENUE_TYPES)}")
    return Venue(
        mpid=mpid, name=row["name"] or mpid, operator=row["operator"], venue_type=venue_type,
        data_center=row["data_center"],
        latitude=_coordinate(source, line, "latitude", row["latitude"], 90.0),
        longitude=_coordinate(source, line, "longitude", row["longitude"], 180.0),
    )


def parse_registry(text: str, source: str) -> dict[str, Venue]:
    """Registry CSV text -> {MPID: Venue} in file order; ``source`` names the file in errors.

    The header must have every column of :data:`REGISTRY_COLUMNS` (in any order;
    other columns are ignored). Raises DarkpoolError, naming ``source`` and the
    line, for a missing column, a row with too few or too many values, an empty,
    malformed or duplicate MPID, an unknown venue_type, or a latitude / longitude
    that is not a number in range.
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    header = next(reader, None)
    if header is None:
        raise _problem(source, 1, "the file is empty (expected a header row)")
    columns = [c.strip().lower() for c in header]
    missing = [c for c in REGISTRY_COLUMNS if c not in columns]
    if missing:
        raise _problem(source, reader.line_num, f"missing column(s) {', '.join(missing)} in the header")
    position = {c: columns.index(c) for c in REGISTRY_COLUMNS}
    venues: dict[str, Venue] = {}
    lines: dict[str, int] = {}
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue  # blank line
        if len(values) != len(columns):
            raise _problem(source, line, f"{len(values)} values for {len(columns)} columns")
        venue = _venue(source, line, {c: values[i].strip() for c, i in position.items()})
        if venue.mpid in venues:
            raise _problem(source, line, f"duplicate mpid {venue.mpid} (first on line {lines[venue.mpid]})")
        venues[venue.mpid] = venue
        lines[venue.mpid] = line
    return venues


def read_registry_file(path: Path | str) -> dict[str, Venue]:
    """A user registry file -> {MPID: Venue}; DarkpoolError if unreadable or invalid (see :func:`parse_registry`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DarkpoolError(f"venue registry {path}: no such file",
                            hint="check --venues / DARKPOOL_VENUES_FILE") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DarkpoolError(f"venue registry {path}: cannot read it ({exc})") from None
    return parse_registry(text, str(path))


@functools.lru_cache(maxsize=1)
def shipped_venues() -> dict[str, Venue]:
    """The registry shipped with the package (``darkpool/data/venues.csv``), keyed by MPID."""
    text = resources.files("darkpool").joinpath("data/venues.csv").read_text(encoding="utf-8")
    return parse_registry(text, SHIPPED_REGISTRY)


def check_mode(mode: str) -> str:
    """``mode`` if it is a venues mode (extend, replace), else a DarkpoolError naming the setting."""
    if mode not in VENUES_MODES:
        raise DarkpoolError(f"venues mode {mode!r} is not one of {', '.join(VENUES_MODES)}",
                            hint="set --venues-mode / DARKPOOL_VENUES_MODE")
    return mode


def combine(shipped: Mapping[str, Venue], user: Mapping[str, Venue], mode: str) -> dict[str, Venue]:
    """The registry that ``user`` rows make with ``mode`` (extend: shipped order, overridden in place, then new
    venues in file order; replace: the user rows alone)."""
    if check_mode(mode) == "replace":
        if not user:
            raise DarkpoolError("the user venue registry is empty and would replace every shipped venue",
                                hint="declare at least one venue, or use --venues-mode extend")
        return dict(user)
    combined = dict(shipped)
    combined.update(user)
    return combined


@functools.lru_cache(maxsize=8)
def registry_for(venues_file: str, mode: str) -> dict[str, Venue]:
    """The registry of a user file (empty: none) and mode, cached; what :func:`load_venues` uses."""
    if check_mode(mode) == "replace" and not venues_file:
        raise DarkpoolError("venues mode 'replace' needs a venue registry file",
                            hint="give --venues FILE / DARKPOOL_VENUES_FILE, or use --venues-mode extend")
    if not venues_file:
        return shipped_venues()
    return combine(shipped_venues(), read_registry_file(venues_file), mode)


def load_venues() -> dict[str, Venue]:
    """The active venue registry, keyed by MPID: shipped, extended or replaced by the configured user file.

    Cached per (file, mode); do not modify the returned dict.
    """
    return registry_for(*venue_registry_source())


def venue_type_of(mpid: str) -> str | None:
    """The registry type of a venue, or None when the MPID is unknown."""
    venue = load_venues().get(mpid)
    return venue.venue_type if venue else None


def venue_types(venues: Iterable[Venue]) -> dict[str, str]:
    """{MPID: venue_type} of some venues (what the pipeline's steps take as a parameter)."""
    return {v.mpid: v.venue_type for v in venues}


def describe_active_registry() -> str:
    """One line saying which registry is active, e.g. for a command's log."""
    venues_file, mode = venue_registry_source()
    venues = load_venues()
    if not venues_file:
        return f"venue registry: shipped ({len(venues)} venues)"
    user = read_registry_file(venues_file)
    if mode == "replace":
        return f"venue registry: {venues_file} replaces the shipped one ({len(venues)} venues)"
    overridden = sum(1 for m in user if m in shipped_venues())
    return (f"venue registry: shipped + {venues_file} ({len(user) - overridden} added, {overridden} overridden; "
            f"{len(venues)} venues)")


def export_registry(venues_file: str | None, mode: str | None) -> None:
    """Make a user registry the active one for this process and every process it starts, and check it.

    Sets ``DARKPOOL_VENUES_FILE`` (absolute path) / ``DARKPOOL_VENUES_MODE`` for the
    given values (None leaves a setting as it is), then loads the registry so that a
    bad file fails now, with its line (DarkpoolError). The CLI's ``--venues`` /
    ``--venues-mode`` do this before any command runs.
    """
    if venues_file is not None:
        os.environ["DARKPOOL_VENUES_FILE"] = str(Path(venues_file).resolve()) if venues_file else ""
    if mode is not None:
        os.environ["DARKPOOL_VENUES_MODE"] = check_mode(mode)
    load_venues()


# --- `darkpool venues`: show (and so check) the active registry --------------------
def _print_registry(args: argparse.Namespace) -> int:
    active = load_venues()
    if args.json:
        print(json.dumps([dataclasses.asdict(v) for v in active.values()], indent=2))
        return 0
    print(describe_active_registry())
    print(f"{'MPID':8} {'TYPE':8} {'LAT':>9} {'LON':>10}  NAME (DATA CENTER)")
    for v in active.values():
        print(f"{v.mpid:8} {v.venue_type:8} {v.latitude:9.4f} {v.longitude:10.4f}  {v.name} ({v.data_center})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """The `darkpool venues` command."""
    p = subparsers.add_parser(
        "venues", help="show the active venue registry (check a user file: darkpool --venues FILE venues)",
        description="Print the active venue registry: the shipped one, or extended / replaced by the file of "
                    "--venues / DARKPOOL_VENUES_FILE (an invalid file fails with its line). See docs/venues.md.")
    p.add_argument("--json", action="store_true", help="print the venues as JSON")
    p.set_defaults(func=_print_registry)
