"""The product's data contracts, in one place.

Every part of the product (feed, pipeline, serving, analytics, tests) imports
topic names, record field lists, the Parquet schemas, the venue registry, the
block limits and dead-letter reasons from here (docs/design.md, "Contracts").
Changing anything here is a versioned change of the contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from darkpool.venues import DARK_VENUE_TYPES as DARK_VENUE_TYPES  # the venue section (see below)
from darkpool.venues import VENUE_TYPES as VENUE_TYPES
from darkpool.venues import Venue as Venue
from darkpool.venues import load_venues as load_venues
from darkpool.venues import venue_type_of as venue_type_of

CONTRACT_VERSION = 1

# --- topics (defaults; every command takes them as options) -----------------
TRADES_TOPIC = "darkpool.trades"
DEADLETTER_TOPIC = "darkpool.deadletter"
LIQUIDITY_TOPIC = "darkpool.liquidity"
MARKET_TOPIC = "darkpool.market"
# the pipeline's Kafka consumer group (its --group-id default; serving reports its lag on /metrics)
PIPELINE_GROUP_ID = "darkpool-pipeline"
ALERTS_TOPIC = "darkpool.alerts"  # live alerts (the alerts section below)
ALL_TOPICS = (TRADES_TOPIC, DEADLETTER_TOPIC, LIQUIDITY_TOPIC, MARKET_TOPIC, ALERTS_TOPIC)

# --- definitions ---------------------------------------------------------------
BLOCK_MIN_SHARES = 10_000
BLOCK_MIN_NOTIONAL = 200_000.0
SIDES = ("B", "S")  # or None: unknown
PANE_TIMINGS = ("EARLY", "ON_TIME", "LATE", "UNKNOWN")

# --- the trade record (value of darkpool.trades) ------------------------------
TRADE_FIELDS = ("trade_id", "event_time", "symbol", "venue", "price", "quantity", "side")


_second_text: dict[int, str] = {}  # epoch ms of a whole second -> "YYYY-MM-DDTHH:MM:SS."
_SECOND_TEXT_LIMIT = 100_000


def format_event_time(epoch_ms: int) -> str:
    """Epoch milliseconds -> ISO-8601 UTC with millisecond precision and a 'Z'.

    Each second's text is computed once and cached (a file backfill formats every trade's time).
    """
    millis = epoch_ms % 1000
    second = epoch_ms - millis
    prefix = _second_text.get(second)
    if prefix is None:
        if len(_second_text) >= _SECOND_TEXT_LIMIT:
            _second_text.clear()
        prefix = _second_text[second] = datetime.fromtimestamp(second // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
    return f"{prefix}{millis:03d}Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_second_ms: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> its epoch ms (a tape repeats each second many times)
_SECOND_CACHE_LIMIT = 200_000


def datetime_to_ms(value: datetime) -> int:
    """A datetime (naive = UTC) -> epoch ms, rounded half up to the millisecond, in exact integer arithmetic."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    delta = aware - _EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1000 + (delta.microseconds + 500) // 1000


def parse_event_time(text: str) -> int:
    """ISO-8601 timestamp (with 'Z' or an offset; naive means UTC; a space for 'T') -> epoch ms.

    The contract's own form ``YYYY-MM-DDTHH:MM:SS.mmmZ`` takes a fast path: each
    second's epoch is computed once and cached (the parse step and the trade-file
    reader call this for every record). Raises ValueError for anything that is
    not an ISO-8601 timestamp.
    """
    if not isinstance(text, str):
        raise ValueError(f"event_time must be a string, got {type(text).__name__}")
    if len(text) == 24 and text[19] == "." and text[23] == "Z" and text[20:23].isdigit():
        prefix = text[:19]
        base = _second_ms.get(prefix)
        if base is None:
            base = _parse_iso(prefix + "Z")
            if len(_second_ms) >= _SECOND_CACHE_LIMIT:
                _second_ms.clear()
            _second_ms[prefix] = base
        return base + int(text[20:23])
    return _parse_iso(text)


def _parse_iso(text: str) -> int:
    """:func:`parse_event_time` without the cache."""
    normalized = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    return datetime_to_ms(datetime.fromisoformat(normalized))


# --- output records (liquidity and market: their schemas below) -------------------
DEADLETTER_FIELDS = (
    "reason", "raw_value", "raw_encoding", "raw_key",
    "source_topic", "source_partition", "source_offset", "rejected_at",
)


# --- dead-letter reasons (the `reason` field of darkpool.deadletter) ----------
# The feed's injectable faults are named by these too (feed.generator), so an
# injected count and a dead-lettered count match by name.
REASON_EMPTY = "empty"
REASON_BAD_JSON = "bad_json"
REASON_NOT_OBJECT = "not_an_object"
REASON_MISSING_FIELD = "missing_field"
REASON_BAD_TYPE = "bad_type"
REASON_NON_POSITIVE_QUANTITY = "non_positive_quantity"
REASON_NON_POSITIVE_PRICE = "non_positive_price"
REASON_UNKNOWN_VENUE = "unknown_venue"
REASON_BAD_SIDE = "bad_side"
REASON_BAD_EVENT_TIME = "bad_event_time"
REASON_ABSURD_EVENT_TIME = "absurd_event_time"
REASON_BAD_CSV_ROW = "bad_csv_row"  # a trade file's CSV row with the wrong number of fields, or unreadable
REASON_OUT_OF_RANGE = "out_of_range"  # a price or quantity above its limit (MAX_PRICE, MAX_QUANTITY)
REASON_TOO_LONG = "too_long"  # a symbol or trade_id longer than its limit (MAX_SYMBOL_LENGTH, MAX_TRADE_ID_LENGTH)
REASON_TOO_LATE = "too_late"  # decided by the pipeline's lateness step
DEADLETTER_REASONS = (
    REASON_EMPTY, REASON_BAD_JSON, REASON_NOT_OBJECT, REASON_MISSING_FIELD, REASON_BAD_TYPE,
    REASON_NON_POSITIVE_QUANTITY, REASON_NON_POSITIVE_PRICE, REASON_UNKNOWN_VENUE, REASON_BAD_SIDE,
    REASON_BAD_EVENT_TIME, REASON_ABSURD_EVENT_TIME, REASON_BAD_CSV_ROW, REASON_OUT_OF_RANGE, REASON_TOO_LONG,
    REASON_TOO_LATE,
)

# --- limits of a trade's values (beyond them: out_of_range / too_long) -----------
# Far above any real print, low enough that a pane's int64 sums and its Kafka record stay bounded.
MAX_PRICE = 100_000_000.0  # dollars per share
MAX_QUANTITY = 10_000_000_000  # shares in one print
MAX_SYMBOL_LENGTH = 32  # characters
MAX_TRADE_ID_LENGTH = 128  # characters


def liquidity_key(symbol: str, venue: str, window_start: str) -> str:
    """Kafka key of a darkpool.liquidity record (compaction keeps the latest pane)."""
    return f"{symbol}|{venue}|{window_start}"


def market_key(symbol: str, window_start: str) -> str:
    """Kafka key of a darkpool.market record."""
    return f"{symbol}|{window_start}"


_TS = pa.timestamp("ms", tz="UTC")

LIQUIDITY_SCHEMA = pa.schema([
    ("window_start", _TS), ("window_end", _TS),
    ("symbol", pa.string()), ("venue", pa.string()), ("venue_type", pa.string()),
    ("trade_count", pa.int64()), ("share_quantity", pa.int64()),
    ("notional", pa.float64()), ("vwap", pa.float64()),
    ("min_price", pa.float64()), ("max_price", pa.float64()),
    ("avg_trade_size", pa.float64()),
    ("block_count", pa.int64()), ("block_quantity", pa.int64()),
    ("buy_quantity", pa.int64()), ("sell_quantity", pa.int64()),
    ("pane_timing", pa.string()), ("pane_index", pa.int64()), ("emitted_at", _TS),
])

MARKET_SCHEMA = pa.schema([
    ("window_start", _TS), ("window_end", _TS), ("symbol", pa.string()),
    ("trade_count", pa.int64()), ("share_quantity", pa.int64()),
    ("notional", pa.float64()), ("vwap", pa.float64()),
    ("dark_quantity", pa.int64()), ("lit_quantity", pa.int64()),
    ("dark_notional", pa.float64()), ("lit_notional", pa.float64()),
    ("dark_trade_count", pa.int64()), ("lit_trade_count", pa.int64()),
    ("dark_share", pa.float64()),
    ("block_count", pa.int64()), ("block_quantity", pa.int64()),
    ("dark_block_count", pa.int64()),
    ("hhi", pa.float64()), ("venue_count", pa.int64()),
    ("top_venue", pa.string()), ("top_venue_share", pa.float64()),
    ("pane_timing", pa.string()), ("pane_index", pa.int64()), ("emitted_at", _TS),
])

# The liquidity / market records' field names, in order, are the schemas' (kinds and
# nullability of each field: darkpool.schema).
LIQUIDITY_FIELDS = tuple(LIQUIDITY_SCHEMA.names)
MARKET_FIELDS = tuple(MARKET_SCHEMA.names)

# --- alerts (darkpool.alerts: the detectors and the emission rule; docs/alerts.md) --------
# ALERTS_TOPIC (with the topics above) is compacted: one record per (symbol, kind, window), re-sent
# only when its severity rises, so compaction keeps each key's highest severity.

ALERT_DARK_SHARE_SURGE = "dark_share_surge"  # the symbol's dark share far above its own baseline
ALERT_BLOCK_CLUSTER = "block_cluster"  # many block prints on one venue in one window
ALERT_VENUE_CONCENTRATION = "venue_concentration"  # one venue suddenly printing most of the volume
ALERT_KINDS = (ALERT_DARK_SHARE_SURGE, ALERT_BLOCK_CLUSTER, ALERT_VENUE_CONCENTRATION)

SEVERITY_LOW = "low"
SEVERITY_MEDIUM = "medium"
SEVERITY_HIGH = "high"
SEVERITIES = (SEVERITY_LOW, SEVERITY_MEDIUM, SEVERITY_HIGH)  # in rising order


def severity_rank(severity: str) -> int:
    """The rank of a severity in :data:`SEVERITIES` (low 0 < medium 1 < high 2); ValueError for another text."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(f"unknown severity {severity!r}; expected one of {', '.join(SEVERITIES)}") from None


def alert_key(symbol: str, kind: str, window_start: str) -> str:
    """Kafka key of a darkpool.alerts record (compaction keeps the latest, i.e. highest-severity, alert)."""
    return f"{symbol}|{kind}|{window_start}"


# venue: the venue the alert names (block_cluster, venue_concentration), null for dark_share_surge;
# observed: the window's figure; baseline / baseline_spread: the median / scaled MAD of the symbol's
# earlier windows' figures; baseline_windows: how many windows formed them; pane_timing / pane_index:
# the pane that triggered the alert (pane_timing one of PANE_TIMINGS); emitted_at: when it was sent.
ALERT_SCHEMA = pa.schema([
    ("window_start", _TS), ("window_end", _TS),
    ("symbol", pa.string()), ("kind", pa.string()), ("venue", pa.string()),
    ("observed", pa.float64()), ("baseline", pa.float64()), ("baseline_spread", pa.float64()),
    ("baseline_windows", pa.int64()),
    ("score", pa.float64()), ("severity", pa.string()),
    ("pane_timing", pa.string()), ("pane_index", pa.int64()), ("emitted_at", _TS),
])
ALERT_FIELDS = tuple(ALERT_SCHEMA.names)
# the fields an alert record may leave null (every other one is required): venue, for a dark_share_surge
ALERT_NULLABLE_FIELDS = frozenset({"venue"})


# Parquet dataset layout: <root>/<table>/date=YYYY-MM-DD/<file>.parquet
PARQUET_TABLES = {"liquidity": LIQUIDITY_SCHEMA, "market": MARKET_SCHEMA, "alerts": ALERT_SCHEMA}
PARQUET_PARTITION_FIELD = "date"


# --- venue registry ------------------------------------------------------------
# Venue, VENUE_TYPES, DARK_VENUE_TYPES, load_venues() (the active registry: shipped,
# or extended / replaced by a user's file) and venue_type_of() live in darkpool.venues
# and are imported at the top of this module: import them from here.


# --- feed calibration (produced by darkpool.finra_file, consumed by the feed) -
@dataclass(frozen=True)
class VenueProfile:
    """How much of a symbol's volume a venue prints, and its average print size.

    ``share`` is the venue's fraction of the symbol's share volume (a symbol's
    shares sum to 1 over its venues); ``avg_trade_size`` is in shares.
    """

    share: float
    avg_trade_size: float


# symbol -> venue MPID -> profile
Calibration = dict[str, dict[str, VenueProfile]]
