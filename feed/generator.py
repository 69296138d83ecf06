"""The synthetic tape: numpy-vectorised generation, fault injection and wire encoding.

A :class:`TapeGenerator` turns a :class:`FeedConfig` into :class:`TradeBatch`
objects (columns as numpy arrays), one batch of event times at a time:

1. symbol per print (by activity), venue per print (by the symbol's venue mix,
   :mod:`feed.universe`), side (buy / sell / unknown);
2. a per-symbol random-walk midpoint, a quoted spread on the cent grid, and a
   print price: lit exchanges at the bid or ask, ATSs mostly at the midpoint,
   single-dealer platforms at the midpoint or with sub-penny price improvement;
3. heavy-tailed sizes: a log-normal body (odd lots and round lots) plus a
   Pareto tail of blocks (>= 10,000 shares), per venue;
4. injected faults (:class:`FaultConfig`), each labelled on its record;
5. injected scenarios of unusual dark activity (:mod:`feed.scenarios`, :class:`ScenarioInjector`):
   extra trades, each labelled with the scenario that made it.

:meth:`TradeEncoder.encode` formats a batch into Kafka records (key = symbol,
value = the contract's JSON text, timestamp = event time in ms) in one pass;
:func:`generate_tape` is the simple record-by-record API (tests, scripts: docs/feed.md).

Replay mode spreads a fixed number of prints over a 09:30-16:00 New York
session with a U-shaped intraday intensity; live mode stamps prints "now".
Same seed and configuration -> the identical tape (replay mode).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import orjson

from darkpool.contracts import (
    BLOCK_MIN_NOTIONAL,
    BLOCK_MIN_SHARES,
    REASON_ABSURD_EVENT_TIME,
    REASON_BAD_EVENT_TIME,
    REASON_BAD_JSON,
    REASON_BAD_SIDE,
    REASON_BAD_TYPE,
    REASON_MISSING_FIELD,
    REASON_NON_POSITIVE_PRICE,
    REASON_NON_POSITIVE_QUANTITY,
    REASON_NOT_OBJECT,
    REASON_UNKNOWN_VENUE,
    SIDES,
    TRADE_FIELDS,
    Calibration,
    format_event_time,
    load_venues,
)
from darkpool.errors import DarkpoolError
from feed.scenarios import (
    BLOCK_CLUSTER,
    DARK_SHARE_SURGE,
    DEFAULT_RANDOM_HORIZON_SECONDS,
    MAX_SCENARIOS,
    NO_SCENARIO,
    SIZING_MIN_SECONDS,
    SIZING_WINDOW_SECONDS,
    Scenario,
    ScenarioWindow,
    balancing_shares,
    block_sizes,
    block_times,
    cluster_block_mean,
    max_non_block_shares,
    prints_to_fill,
    random_scenarios,
    resolve_windows,
    topup_shares,
)
from feed.universe import (
    BLOCK_TAIL_ALPHA,
    BLOCK_TAIL_CAP,
    BLOCK_TAIL_MIN,
    DEFAULT_LIT_SHARE,
    Market,
    calibrated_market,
    default_market,
)

log = logging.getLogger(__name__)

NEW_YORK = ZoneInfo("America/New_York")
SESSION_OPEN = dt.time(9, 30)
SESSION_CLOSE = dt.time(16, 0)
TRADING_SECONDS_PER_YEAR = 252 * 6.5 * 3600
BODY_SIGMA = 1.1  # log-normal sigma of the non-block print sizes

# --- fault labels -----------------------------------------------------------------
OUT_OF_ORDER = "out_of_order"
LATE = "late"
DUPLICATE = "duplicate"
# The injectable malformed records, each named by the dead-letter reason (darkpool.contracts) the
# pipeline gives it: a tape with N records labelled malformed:<reason> has N dead letters of <reason>
# (tests/pipeline/test_injected_faults.py). Not injectable: empty (Kafka gives no value), bad_csv_row
# (files only) and too_late (the pipeline's lateness step; the feed's `late` fault aims at it).
MALFORMED_KINDS = (REASON_BAD_JSON, REASON_MISSING_FIELD, REASON_NON_POSITIVE_QUANTITY, REASON_NON_POSITIVE_PRICE,
                   REASON_UNKNOWN_VENUE, REASON_ABSURD_EVENT_TIME, REASON_NOT_OBJECT, REASON_BAD_TYPE,
                   REASON_BAD_SIDE, REASON_BAD_EVENT_TIME)
FAULT_LABELS = (None, OUT_OF_ORDER, LATE, DUPLICATE, *(f"malformed:{k}" for k in MALFORMED_KINDS))
# fault codes in TradeBatch.fault
F_NONE, F_OOO, F_LATE, F_DUP, F_MALFORMED = 0, 1, 2, 3, 4  # malformed kind k -> F_MALFORMED + k

# MPIDs for injected unknown_venue faults: those of the active venue registry are skipped (a user
# registry may declare DARK1, the seed project's venue), see unknown_venues()
UNKNOWN_VENUES = ("XXXX", "ZZZZ", "DARK1")
ABSURD_EVENT_TIMES = ("1970-01-01T00:00:00.000Z", "2999-12-31T23:59:59.999Z", "0001-01-01T00:00:00.000Z")
BAD_EVENT_TIMES = ("not a time", "2026-13-45T25:61:00.000Z", "yesterday")  # none of them parses
BAD_SIDES = ("Q", "?", 7)  # no side alias (B/BUY/S/SELL/...) and not null

SIDE_VALUE = (*SIDES, None)  # TradeBatch.side 0, 1, 2: buy, sell, unknown
SIDE_END = np.array([f"{orjson.dumps(v).decode()}}}" for v in SIDE_VALUE], dtype=object)  # the side, then "}"

# Trade sequence numbers (ids) of scenario trades: scenario i numbers its trades from
# SCENARIO_SEQ_BASE + i x SCENARIO_SEQ_STRIDE ("1", two digits of i, ten of the number: 13 digits), far
# above any tape's own sequence (ids stay unique, and a tape's own trades keep their ids whether
# scenarios run or not).
SCENARIO_SEQ_STRIDE = 10_000_000_000
SCENARIO_SEQ_BASE = 100 * SCENARIO_SEQ_STRIDE

@dataclass(frozen=True)
class FaultConfig:
    """Rates of injected imperfection, each a probability per generated trade.

    - out-of-order: the trade's event time is set 1 ms .. ``max_delay_seconds``
      *before* the latest event time already sent for its symbol (so it arrives
      behind its partition's watermark but within the allowed lateness);
    - late: ``late_offset_ms`` before that latest time, i.e. beyond the
      pipeline's allowed lateness plus one window plus a margin;
    - malformed: one of ``malformed_kinds`` (see docs/feed.md);
    - duplicate: an exact copy of a valid record, sent right after it.
    """

    out_of_order_rate: float = 0.0
    max_delay_seconds: float = 30.0
    late_rate: float = 0.0
    allowed_lateness_seconds: float = 600.0
    window_seconds: float = 300.0
    late_margin_seconds: float = 60.0
    malformed_rate: float = 0.0
    malformed_kinds: tuple[str, ...] = MALFORMED_KINDS
    duplicate_rate: float = 0.0

    @property
    def late_offset_ms(self) -> int:
        """How far behind the latest event time of its symbol a late trade is stamped."""
        return int(round((self.allowed_lateness_seconds + self.window_seconds + self.late_margin_seconds) * 1000))

    @property
    def max_delay_ms(self) -> int:
        return int(round(self.max_delay_seconds * 1000))

    @property
    def any(self) -> bool:
        return any((self.out_of_order_rate, self.late_rate, self.malformed_rate, self.duplicate_rate))

    def validate(self) -> None:
        """Raise DarkpoolError for rates outside [0, 1] or inconsistent delays."""
        rates = {"out-of-order rate": self.out_of_order_rate, "late rate": self.late_rate,
                 "malformed rate": self.malformed_rate, "duplicate rate": self.duplicate_rate}
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0 or math.isnan(rate):
                raise DarkpoolError(f"the {name} must be in [0, 1], got {rate}")
        if self.out_of_order_rate + self.late_rate + self.malformed_rate > 1.0:
            raise DarkpoolError("out-of-order + late + malformed rates add up to more than 1")
        if self.max_delay_seconds <= 0.001:
            raise DarkpoolError(f"--max-delay-seconds must be > 0.001, got {self.max_delay_seconds}")
        for name in ("allowed_lateness_seconds", "window_seconds", "late_margin_seconds"):
            if getattr(self, name) < 0:
                raise DarkpoolError(f"{name.replace('_', ' ')} must be >= 0")
        if self.max_delay_ms >= self.allowed_lateness_seconds * 1000:
            raise DarkpoolError(
                f"out-of-order delay ({self.max_delay_seconds} s) must stay below the allowed lateness "
                f"({self.allowed_lateness_seconds} s), or out-of-order trades would be dropped as too late")
        unknown = [k for k in self.malformed_kinds if k not in MALFORMED_KINDS]
        if unknown or not self.malformed_kinds:
            raise DarkpoolError(f"unknown malformed kind(s) {', '.join(unknown) or '(none given)'}",
                                hint=f"choose from {', '.join(MALFORMED_KINDS)}")


def previous_weekday(today: dt.date | None = None) -> dt.date:
    """The last weekday before ``today`` (the default replay session)."""
    day = (today or dt.datetime.now(dt.UTC).date()) - dt.timedelta(days=1)
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


@dataclass(frozen=True)
class FeedConfig:
    """Everything that determines a synthetic tape.

    ``count`` limits the number of records (faulty ones and duplicates
    included); replay mode stops at the session's end (``session_trades``
    prints) at the latest. ``calibration`` (symbol -> venue -> profile)
    replaces the default universe, keeping ``lit_share`` of the volume on lit
    exchanges. ``batch_size`` is part of the seed's meaning: keep it fixed for
    reproducible tapes.
    """

    seed: int = 1
    mode: str = "replay"
    session_date: dt.date | None = None
    session_trades: int = 2_000_000
    count: int | None = None
    symbols: tuple[str, ...] | None = None
    calibration: Calibration | None = None
    lit_share: float = DEFAULT_LIT_SHARE
    faults: FaultConfig = field(default_factory=FaultConfig)
    id_prefix: str = "T-"
    batch_size: int = 8192
    scenarios: tuple[Scenario, ...] = ()

    def validate(self) -> None:
        if self.mode not in ("replay", "live"):
            raise DarkpoolError(f"mode must be 'replay' or 'live', got {self.mode!r}")
        if self.session_trades < 1:
            raise DarkpoolError(f"session trades must be >= 1, got {self.session_trades}")
        if self.count is not None and self.count < 0:
            raise DarkpoolError(f"count must be >= 0, got {self.count}")
        if self.batch_size < 1:
            raise DarkpoolError("batch size must be >= 1")
        if '"' in self.id_prefix or "\\" in self.id_prefix:
            raise DarkpoolError("the trade-id prefix may not contain quotes or backslashes")
        self.faults.validate()
        if len(self.scenarios) > MAX_SCENARIOS:
            raise DarkpoolError(f"at most {MAX_SCENARIOS} scenarios per feed, got {len(self.scenarios)}")
        for scenario in self.scenarios:
            scenario.validate()

    def market(self) -> Market:
        if self.calibration is not None:
            return calibrated_market(self.calibration, self.lit_share)
        return default_market(list(self.symbols) if self.symbols else None)

    def session_bounds_ms(self) -> tuple[int, int]:
        """Epoch ms of the replay session's open and close (09:30-16:00 New York time)."""
        day = self.session_date or previous_weekday()
        open_ = dt.datetime.combine(day, SESSION_OPEN, NEW_YORK)
        close = dt.datetime.combine(day, SESSION_CLOSE, NEW_YORK)
        return int(open_.timestamp() * 1000), int(close.timestamp() * 1000)


def intraday_intensity(u: np.ndarray) -> np.ndarray:
    """Relative trading intensity over the session, u in [0, 1] (0 = open, 1 = close).

    U-shaped: busy open, midday lull, busier again into the close.
    """
    return 1.0 + 2.6 * np.exp(-u / 0.07) + 2.0 * np.exp(-(1.0 - u) / 0.06)


class SessionClock:
    """Maps print number i of n to an event time in the session, following the intraday U-shape.

    Prints are stratified in "activity time" (print i at (i + U)/n) and mapped
    through the inverse cumulative intensity, so times never decrease and the
    session holds exactly n prints.
    """

    GRID = 4096

    def __init__(self, open_ms: int, close_ms: int, n: int) -> None:
        self.open_ms, self.close_ms, self.n = open_ms, close_ms, n
        u = np.linspace(0.0, 1.0, self.GRID + 1)
        density = intraday_intensity(u)
        cumulative = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
        self._cum = cumulative / cumulative[-1]
        self._u = u

    def times(self, start: int, jitter: np.ndarray) -> np.ndarray:
        """Event times (epoch ms) of prints start .. start + len(jitter) - 1."""
        activity = (np.arange(start, start + len(jitter)) + jitter) / self.n
        u = np.interp(activity, self._cum, self._u)
        return self.open_ms + np.floor(u * (self.close_ms - self.open_ms)).astype(np.int64)


@dataclass
class TradeBatch:
    """A batch of records in send order, as columns.

    ``ts`` is the Kafka record timestamp (= the trade's event time), ``release``
    the nominal stream time used for pacing; ``mid`` and ``half_spread`` the
    quote each print was priced against (not on the wire; for tests).
    ``fault`` holds the fault code (see ``FAULT_LABELS``: code 0 = none, 1 =
    out of order, 2 = late, 3 = duplicate, 4 + k = malformed kind k); ``scenario`` the index (in
    ``FeedConfig.scenarios``) of the scenario that made the trade, or ``NO_SCENARIO`` (-1).
    """

    seq: np.ndarray
    ts: np.ndarray
    release: np.ndarray
    sym: np.ndarray
    venue: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    side: np.ndarray
    mid: np.ndarray
    half_spread: np.ndarray
    fault: np.ndarray
    detail: np.ndarray  # per malformed record: which variant (missing field, absurd time, ...)
    scenario: np.ndarray  # int16: the scenario's index, NO_SCENARIO for the tape's own trades

    def __len__(self) -> int:
        return len(self.seq)

    def take(self, index: np.ndarray | slice) -> TradeBatch:
        """A sub-batch (rows ``index``)."""
        return TradeBatch(**{name: getattr(self, name)[index] for name in self.__dataclass_fields__})


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Boolean mask: True where a new group starts in a sorted key array."""
    starts = np.ones(len(sorted_keys), dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return starts


def previous_max_per_key(keys: np.ndarray, values: np.ndarray, counts: np.ndarray,
                         carried: np.ndarray) -> np.ndarray:
    """For each row i, the max of ``values[j]`` over earlier rows j < i with the same key that
    have ``counts[j]`` True, combined with ``carried[key]`` (state from earlier batches; -1 = none).

    Returns -1 where there is no such row. ``values`` must be in [0, 2**42).
    """
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    k = keys[order].astype(np.int64)
    base = k << 42
    v = np.where(counts[order], values[order], -1) + base
    running = np.maximum.accumulate(v)
    prev = np.empty(n, dtype=np.int64)
    prev[0] = -1
    prev[1:] = running[:-1]
    same_group = (prev >= base) & ~_group_starts(k)
    within = np.where(same_group, prev - base, -1)
    result = np.empty(n, dtype=np.int64)
    result[order] = np.maximum(within, carried[k])
    return result


class FaultInjector:
    """Labels records with faults and stamps their Kafka timestamps (stateful across batches).

    Works on any stream of (symbol index, nominal event time) in send order;
    keeps the latest event time sent per symbol, so out-of-order and late
    records are always behind what their symbol (and so their partition)
    already saw.
    """

    def __init__(self, faults: FaultConfig, n_symbols: int) -> None:
        faults.validate()
        self.faults = faults
        self.max_sent = np.full(n_symbols, -1, dtype=np.int64)
        self._malformed_codes = np.array([F_MALFORMED + MALFORMED_KINDS.index(k) for k in faults.malformed_kinds],
                                         dtype=np.int8)

    def inject(self, sym: np.ndarray, t: np.ndarray, u: np.ndarray, delay_u: np.ndarray,
               kind_u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fault code and Kafka timestamp per record (duplicates are added afterwards)."""
        f = self.faults
        fault = np.zeros(len(t), dtype=np.int8)
        if f.out_of_order_rate or f.late_rate or f.malformed_rate:
            p_ooo, p_late = f.out_of_order_rate, f.out_of_order_rate + f.late_rate
            p_bad = p_late + f.malformed_rate
            fault[u < p_ooo] = F_OOO
            fault[(u >= p_ooo) & (u < p_late)] = F_LATE
            bad = (u >= p_late) & (u < p_bad)
            fault[bad] = self._malformed_codes[(kind_u[bad] * len(self._malformed_codes)).astype(int)]
        ts = t.copy()
        shifted = (fault == F_OOO) | (fault == F_LATE)
        if shifted.any():
            prev = previous_max_per_key(sym, t, ~shifted, self.max_sent)
            # a shifted trade with nothing sent before it for its symbol is not out of order: demote
            orphan = shifted & (prev < 0)
            if orphan.any():
                fault[orphan] = F_NONE
                shifted &= ~orphan
                prev = previous_max_per_key(sym, t, ~shifted, self.max_sent)
            delay = 1 + np.floor(delay_u * f.max_delay_ms).astype(np.int64)
            ts = np.where(fault == F_OOO, prev - delay, ts)
            ts = np.where(fault == F_LATE, np.maximum(prev - f.late_offset_ms, 0), ts)
        setters = ~shifted
        np.maximum.at(self.max_sent, sym[setters], t[setters])
        return fault, ts

    def duplicate(self, batch: TradeBatch, u: np.ndarray) -> TradeBatch:
        """Send a copy of chosen valid, in-order records right after the original."""
        chosen = (u < self.faults.duplicate_rate) & (batch.fault == F_NONE)
        if not chosen.any():
            return batch
        index = np.repeat(np.arange(len(batch)), np.where(chosen, 2, 1))
        out = batch.take(index)
        is_copy = np.zeros(len(index), dtype=bool)
        is_copy[1:] = index[1:] == index[:-1]
        out.fault[is_copy] = F_DUP
        return out


def body_quantity(body: np.ndarray, u_round: np.ndarray) -> np.ndarray:
    """Print sizes from log-normal draws ``body``: odd lots below 100 shares, else mostly (85 %) round lots."""
    odd = body < 100
    rounded = np.where(u_round < 0.85, np.rint(body / 100) * 100, np.rint(body))
    return np.where(odd, np.maximum(1, np.floor(body) + 1), rounded)


def draw_sides(u: np.ndarray, dark: np.ndarray) -> np.ndarray:
    """Side codes (0 buy, 1 sell, 2 unknown) from uniforms: dark 40 / 40 / 20 %, lit 48 / 48 / 4 %."""
    return np.where(u < np.where(dark, 0.40, 0.48), 0, np.where(u < np.where(dark, 0.80, 0.96), 1, 2))


def merge_by_time(batch: TradeBatch, rows: TradeBatch) -> TradeBatch:
    """``rows`` (sorted by time) inserted into ``batch`` after every record of the batch released at or
    before their time; the batch's own records keep their order."""
    at = np.searchsorted(batch.release, rows.release, side="right")
    return TradeBatch(**{name: np.insert(getattr(batch, name), at, getattr(rows, name))
                         for name in batch.__dataclass_fields__})


def block_print_rate(market: Market, body_mu: np.ndarray, s: int) -> np.ndarray:
    """[v] expected block prints (by shares or by notional, darkpool.market.is_block) per print of symbol
    ``s`` on each venue: how often the symbol's normal tape prints a block there."""
    limit = min(float(BLOCK_MIN_SHARES), math.ceil(BLOCK_MIN_NOTIONAL / market.price[s]))
    z = (math.log(limit) - body_mu[s]) / (BODY_SIGMA * math.sqrt(2.0))
    body_tail = 0.5 * np.array([math.erfc(v) for v in z])
    p = market.block_probability[s]
    return market.print_probability[s] * (p + (1 - p) * body_tail)


def scenario_venue_choices(market: Market, body_mu: np.ndarray, kind: str, symbol: str) -> list[str]:
    """The venues a scenario of ``kind`` may pick for ``symbol``, best first: a block cluster, the dark
    venues where the symbol prints blocks least often (those at or below the median rate), so the cluster
    stands out; a takeover, the dark venues by the symbol's volume share, largest first."""
    s = market.symbols.index(symbol)
    dark = np.flatnonzero(market.venue_is_dark)
    if kind == BLOCK_CLUSTER:
        rate = block_print_rate(market, body_mu, s)[dark]
        ranked = dark[np.argsort(rate, kind="stable")]
        return [market.venues[v] for v in ranked[: max(1, (len(ranked) + 1) // 2)]]
    ranked = dark[np.argsort(-market.volume_share[s, dark], kind="stable")]
    return [market.venues[v] for v in ranked]


@dataclass
class ScenarioTrades:
    """A scenario injector's trades for one batch (sorted by time), before pricing."""

    ts: np.ndarray
    sym: np.ndarray
    venue: np.ndarray
    qty: np.ndarray
    side: np.ndarray
    seq: np.ndarray
    scenario: np.ndarray
    u_price: np.ndarray
    w_price: np.ndarray


class ScenarioInjector:
    """Makes the trades of named scenarios (:mod:`feed.scenarios`), batch by batch (stateful).

    On the first batch the scenarios' windows are resolved against its first print (offsets are from
    there). Per batch, each surge or takeover whose window overlaps the batch's time range tops up its
    volume (the symbol's counted trades in the window so far, its own included) to the target share, at
    uniform times within the overlap; a block cluster's print times are drawn at resolution, its sizes
    and balancing prints when the first batch reaches its window (from the symbol's volume in the
    SIZING_WINDOW_SECONDS before it, :func:`feed.scenarios.cluster_block_mean`), and each print is sent
    with the batch that reaches its time. Draws come from the injector's own generator (seeded from the
    feed's seed), never from the tape's: the tape's own trades are the same with or without scenarios.
    """

    def __init__(self, scenarios: Sequence[Scenario], market: Market, body_mu: np.ndarray, seed: int) -> None:
        self.scenarios = tuple(scenarios)
        self.market, self.body_mu = market, body_mu
        self.rng = np.random.default_rng([seed, 0x5CE7])
        self.dark = np.flatnonzero(market.venue_is_dark)
        self.sym = np.array([self._symbol_index(sc) for sc in self.scenarios], dtype=np.int64)
        self.venue = np.array([self._venue_index(sc, int(s)) for sc, s in zip(self.scenarios, self.sym, strict=True)],
                              dtype=np.int64)
        self.windows: tuple[ScenarioWindow, ...] = ()
        n = len(self.scenarios)
        self.inside = np.zeros(n, dtype=np.int64)  # shares in the window so far: on the dark venues / the venue
        self.outside = np.zeros(n, dtype=np.int64)  # elsewhere
        self.sent = np.zeros(n, dtype=np.int64)  # trades made so far (their sequence numbers)
        self.feed_start_ms = 0
        self.plan_times: dict[int, np.ndarray] = {}  # block clusters: print times, drawn at resolution
        self.plan_sizes: dict[int, np.ndarray] = {}  # ... and sizes, drawn when the window is reached
        self.plan_venues: dict[int, np.ndarray] = {}
        self.planned_sent = np.zeros(n, dtype=np.int64)

    def _symbol_index(self, scenario: Scenario) -> int:
        if scenario.symbol not in self.market.symbols:
            raise DarkpoolError(f"scenario {scenario.to_spec()}: unknown symbol {scenario.symbol!r}",
                                hint=f"the feed's symbols: {', '.join(self.market.symbols)}")
        if scenario.name == DARK_SHARE_SURGE and not len(self.dark):
            raise DarkpoolError(f"scenario {scenario.to_spec()}: the venue registry has no dark venue")
        return self.market.symbols.index(scenario.symbol)

    def _venue_index(self, scenario: Scenario, s: int) -> int:
        if scenario.name == DARK_SHARE_SURGE:
            return -1
        venues = self.market.venues
        if scenario.venue is None:
            choices = scenario_venue_choices(self.market, self.body_mu, scenario.name, scenario.symbol)
            if not choices:
                raise DarkpoolError(f"scenario {scenario.to_spec()}: the venue registry has no dark venue to pick; "
                                    "name the venue (KIND:SYMBOL:VENUE)")
            return venues.index(choices[0])
        if scenario.venue not in venues:
            raise DarkpoolError(f"scenario {scenario.to_spec()}: unknown venue {scenario.venue!r}",
                                hint=f"the registry's venues: {', '.join(venues)} (`darkpool venues`)")
        return venues.index(scenario.venue)

    def resolve(self, feed_start_ms: int) -> None:
        """Fix every scenario's window (offsets from ``feed_start_ms``) and plan the block clusters."""
        names = [None if v < 0 else self.market.venues[v] for v in self.venue.tolist()]
        self.windows = resolve_windows(self.scenarios, names, feed_start_ms)
        self.feed_start_ms = feed_start_ms
        for i, (scenario, window) in enumerate(zip(self.scenarios, self.windows, strict=True)):
            log.info("scenario %d: %s from %s to %s", i, window.spec, format_event_time(window.start_ms),
                     format_event_time(window.end_ms),
                     extra={"scenario": window.name, "symbol": window.symbol, "venue": window.venue})
            if window.end_ms <= feed_start_ms:
                log.warning("scenario %d (%s) ends before the feed's first print: it adds nothing", i, window.spec)
            if scenario.name == BLOCK_CLUSTER:
                self.plan_times[i] = block_times(self.rng, window.start_ms, window.end_ms, scenario.blocks)

    def trades(self, batch: TradeBatch, counted: np.ndarray, mid: np.ndarray) -> ScenarioTrades | None:
        """The scenarios' trades within the batch's time range (``counted``: the batch's records the
        pipeline aggregates; ``mid``: each symbol's current midpoint, for the non-block size limit)."""
        if not len(batch):
            return None
        lo, hi = int(batch.release.min()), int(batch.release.max())
        if not self.windows:
            self.resolve(lo)
        parts: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # scenario, times, venues, sizes
        for i, (scenario, window) in enumerate(zip(self.scenarios, self.windows, strict=True)):
            if scenario.name == BLOCK_CLUSTER:
                part = self._planned(i, scenario, window, batch, counted, hi, mid)
                if part is not None:
                    parts.append(part)
            elif hi >= window.start_ms and lo < window.end_ms:
                part = self._top_up(i, scenario, window, batch, counted, lo, hi, mid)
                if part is not None:
                    parts.append(part)
        if not parts:
            return None
        return self._columns(parts)

    def _planned(self, i: int, scenario: Scenario, window: ScenarioWindow, batch: TradeBatch, counted: np.ndarray,
                 hi: int, mid: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray] | None:
        """A block cluster's prints due by ``hi``. Its plan is made when its window is first reached: the
        blocks sized from the symbol's volume (counted trades) in the sizing window before it, and the
        balancing prints (:func:`feed.scenarios.balancing_shares`) that keep its dark share as it was."""
        s = int(self.sym[i])
        if i not in self.plan_sizes:
            since = window.start_ms - int(SIZING_WINDOW_SECONDS * 1000)
            rows = counted & (batch.sym == s) & (batch.ts >= since) & (batch.ts < window.start_ms)
            same_class = self.market.venue_is_dark[batch.venue] == self.market.venue_is_dark[self.venue[i]]
            self.inside[i] += int(batch.qty[rows & same_class].sum())  # before the window: the volume seen
            self.outside[i] += int(batch.qty[rows & ~same_class].sum())
            if hi < window.start_ms:
                return None
            self._plan_cluster(i, scenario, window, (window.start_ms - max(since, self.feed_start_ms)) / 1000.0,
                               int(max_non_block_shares(mid[s])))
        times, venues, sizes = self.plan_times[i], self.plan_venues[i], self.plan_sizes[i]
        first, last = int(self.planned_sent[i]), int(np.searchsorted(times, hi, side="right"))
        if last <= first:
            return None
        self.planned_sent[i] = last
        return i, times[first:last], venues[first:last], sizes[first:last]

    def _plan_cluster(self, i: int, scenario: Scenario, window: ScenarioWindow, seconds_seen: float,
                      cap: int) -> None:
        """The block cluster's blocks (times drawn at resolution) and its balancing prints, sorted by time."""
        s, venue = int(self.sym[i]), int(self.venue[i])
        seen = int(self.inside[i] + self.outside[i])
        mean = scenario.block_shares or cluster_block_mean(seen, seconds_seen, scenario.blocks)
        block_q = block_sizes(self.rng, len(self.plan_times[i]), mean)
        dark = self.market.venue_is_dark
        model_share = float(self.market.dark_share[s]) if dark[venue] else 1.0 - float(self.market.dark_share[s])
        class_share = self.inside[i] / seen if seconds_seen >= SIZING_MIN_SECONDS and seen > 0 else model_share
        need = balancing_shares(int(block_q.sum()), float(class_share))
        others = np.flatnonzero(dark != dark[venue])
        times, venues, sizes = [self.plan_times[i]], [np.full(len(block_q), venue)], [block_q]
        if need > 0 and len(others):
            weights = self.market.print_probability[s, others]
            v, q = self._fill(s, others, need, cap, weights / weights.sum())
            times.append(self.rng.integers(window.start_ms, window.end_ms, size=len(q)))
            venues.append(v)
            sizes.append(q)
        t = np.concatenate(times)
        order = np.argsort(t, kind="stable")
        order = order[t[order] >= self.feed_start_ms]  # a window begun before the feed: only its rest is sent
        self.plan_times[i], self.plan_venues[i] = t[order], np.concatenate(venues)[order]
        self.plan_sizes[i] = np.concatenate(sizes)[order]

    def _top_up(self, i: int, scenario: Scenario, window: ScenarioWindow, batch: TradeBatch, counted: np.ndarray,
                lo: int, hi: int, mid: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray] | None:
        s = int(self.sym[i])
        rows = counted & (batch.sym == s) & (batch.ts >= window.start_ms) & (batch.ts < window.end_ms)
        inside = self.market.venue_is_dark[batch.venue] if scenario.name == DARK_SHARE_SURGE \
            else batch.venue == self.venue[i]
        self.inside[i] += int(batch.qty[rows & inside].sum())
        self.outside[i] += int(batch.qty[rows & ~inside].sum())
        need = int(topup_shares(self.inside[i], self.outside[i], scenario.target_share))
        start, stop = max(lo, window.start_ms), min(hi + 1, window.end_ms)
        if need <= 0 or start >= stop:
            return None
        candidates = self.dark if scenario.name == DARK_SHARE_SURGE else self.venue[i:i + 1]
        venues, sizes = self._fill(s, candidates, need, int(max_non_block_shares(mid[s])))
        self.inside[i] += int(sizes.sum())
        times = np.sort(self.rng.integers(start, stop, size=len(sizes)))
        return i, times, venues, sizes

    def _fill(self, s: int, candidates: np.ndarray, need: int, cap: int,
              weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Prints on ``candidates`` (drawn evenly, or with probabilities ``weights``) of the venues' normal
        sizes, each kept below the block limits (``cap``), until their shares reach ``need``."""
        venues: list[np.ndarray] = []
        sizes: list[np.ndarray] = []
        mean = float(np.minimum(np.exp(self.body_mu[s, candidates] + BODY_SIGMA ** 2 / 2), cap).mean())
        while need > 0:
            k = 2 * math.ceil(need / max(mean, 1.0)) + 8
            v = candidates[self.rng.integers(len(candidates), size=k)] if weights is None \
                else self.rng.choice(candidates, size=k, p=weights)
            body = np.exp(self.body_mu[s, v] + BODY_SIGMA * self.rng.standard_normal(k))
            q = np.minimum(body_quantity(body, self.rng.random(k)), cap).astype(np.int64)
            take = prints_to_fill(q, need)
            venues.append(v[:take])
            sizes.append(q[:take])
            need -= int(q[:take].sum())
        return np.concatenate(venues), np.concatenate(sizes)

    def _columns(self, parts: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]) -> ScenarioTrades:
        seqs = []
        for i, times, _, _ in parts:
            seqs.append(SCENARIO_SEQ_BASE + i * SCENARIO_SEQ_STRIDE + self.sent[i] + np.arange(len(times)))
            self.sent[i] += len(times)
        ts = np.concatenate([p[1] for p in parts]).astype(np.int64)
        order = np.argsort(ts, kind="stable")
        venue = np.concatenate([p[2] for p in parts]).astype(np.int64)[order]
        n = len(ts)
        u = self.rng.random((3, n))
        return ScenarioTrades(
            ts=ts[order], sym=np.concatenate([np.full(len(p[1]), self.sym[p[0]]) for p in parts])[order],
            venue=venue, qty=np.concatenate([p[3] for p in parts]).astype(np.int64)[order],
            side=draw_sides(u[0], self.market.venue_is_dark[venue]).astype(np.int8),
            seq=np.concatenate(seqs).astype(np.int64)[order],
            scenario=np.concatenate([np.full(len(p[1]), p[0], dtype=np.int16) for p in parts])[order],
            u_price=u[1], w_price=u[2])


def feed_random_scenarios(config: FeedConfig, count: int, horizon_seconds: float | None) -> tuple[Scenario, ...]:
    """``count`` random scenarios (:func:`feed.scenarios.random_scenarios`) over the feed's symbols and
    dark venues, from its seed, within ``horizon_seconds`` (None: the replay session's span, or
    DEFAULT_RANDOM_HORIZON_SECONDS)."""
    market = config.market()
    body_mu = np.log(market.body_mean) - 0.5 * BODY_SIGMA ** 2
    if horizon_seconds is None:
        horizon_seconds = replay_span_seconds(config) if config.mode == "replay" else DEFAULT_RANDOM_HORIZON_SECONDS
    return random_scenarios(count, config.seed, market.symbols,
                            lambda kind, symbol: scenario_venue_choices(market, body_mu, kind, symbol),
                            horizon_seconds)


def replay_span_seconds(config: FeedConfig) -> float:
    """Event-time seconds from the replay tape's first print to its last (``count`` cuts it short; faults
    and duplicates ignored)."""
    open_ms, close_ms = config.session_bounds_ms()
    clock = SessionClock(open_ms, close_ms, config.session_trades)
    last = min(config.session_trades, config.count if config.count is not None else config.session_trades)
    ends = clock.times(0, np.array([0.5])), clock.times(max(last - 1, 0), np.array([0.5]))
    return float(ends[1][0] - ends[0][0]) / 1000.0


class TapeGenerator:
    """Stateful, seeded generator of :class:`TradeBatch` objects.

    State carried between batches: the per-symbol midpoints and last print
    times, the latest event time sent per symbol (for fault injection), and the
    trade sequence number.
    """

    def __init__(self, config: FeedConfig) -> None:
        config.validate()
        self.config = config
        self.market = config.market()
        self.rng = np.random.default_rng(config.seed)
        m = self.market
        n_s = len(m.symbols)
        self._activity_cdf = np.cumsum(m.activity)
        self._activity_cdf[-1] = 1.0 + 1e-12
        probs = m.print_probability
        cdf = np.cumsum(probs, axis=1)
        cdf[:, -1] = 1.0 + 1e-12
        self._venue_cdf_flat = (cdf + np.arange(n_s)[:, None]).ravel()
        self._n_venues = len(m.venues)
        self._log_mid = np.log(m.price)
        self._last_t = np.full(n_s, -1, dtype=np.int64)
        self._sigma_per_sqrt_ms = m.volatility / math.sqrt(TRADING_SECONDS_PER_YEAR * 1000.0)
        self._spread_cents = np.maximum(1, np.rint(m.price * 0.5e-4 * 100)).astype(np.int64)
        self.injector = FaultInjector(config.faults, n_s)
        self._body_mu = np.log(m.body_mean) - 0.5 * BODY_SIGMA ** 2
        self.seq = 0
        self.printed = 0  # nominal prints generated (session position)
        open_ms, close_ms = config.session_bounds_ms()
        self.clock = SessionClock(open_ms, close_ms, config.session_trades)
        self.encoder = TradeEncoder(m.symbols, m.venues, config.id_prefix)
        self.scenarios = ScenarioInjector(config.scenarios, m, self._body_mu, config.seed) if config.scenarios else None

    # -- the pieces -----------------------------------------------------------------
    def _walk_mids(self, sym: np.ndarray, t: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Advance each symbol's log-midpoint along its prints; returns the mid at each print."""
        order = np.argsort(sym, kind="stable")
        s_sorted, t_sorted = sym[order], t[order]
        starts = _group_starts(s_sorted)
        prev_t = np.empty_like(t_sorted)
        prev_t[1:] = t_sorted[:-1]
        first_prev = self._last_t[s_sorted]
        prev_t[starts] = np.where(first_prev[starts] < 0, t_sorted[starts], first_prev[starts])
        dt_ms = np.maximum(t_sorted - prev_t, 0).astype(float)
        steps = self._sigma_per_sqrt_ms[s_sorted] * np.sqrt(dt_ms) * z[order]
        cums = np.cumsum(steps)
        group_id = np.cumsum(starts) - 1
        offsets = np.concatenate([[0.0], cums])[np.flatnonzero(starts)]
        log_mid_sorted = self._log_mid[s_sorted] + cums - offsets[group_id]
        # carry the state: last value per symbol
        ends = np.flatnonzero(np.append(starts[1:], True))
        self._log_mid[s_sorted[ends]] = log_mid_sorted[ends]
        self._last_t[s_sorted[ends]] = t_sorted[ends]
        result = np.empty_like(log_mid_sorted)
        result[order] = log_mid_sorted
        return np.exp(result)

    def _prices(self, sym: np.ndarray, venue: np.ndarray, side: np.ndarray, mid_true: np.ndarray,
                u: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Quote on the cent grid around the true mid, then a print price by venue type."""
        m = self.market
        spread_c = self._spread_cents[sym]
        bid_c = np.rint(mid_true * 100 - spread_c / 2).astype(np.int64)
        bid_c = np.maximum(bid_c, 1)
        ask_c = bid_c + spread_c
        mid = (bid_c + ask_c) / 200.0
        half = spread_c / 200.0
        dark = m.venue_is_dark[venue]
        sdp = m.venue_is_sdp[venue]
        # lit: buyer lifts the ask, seller hits the bid, unknown either
        lit_at_ask = (side == 0) | ((side == 2) & (w < 0.5))
        lit_price = np.where(lit_at_ask, ask_c, bid_c) / 100.0
        # ATS: 70 % at the midpoint, else a cent price inside or at the quote
        inside_c = bid_c + np.floor(w * (spread_c + 1)).astype(np.int64)
        ats_price = np.where(u < 0.70, mid, inside_c / 100.0)
        # SDP: 45 % at the midpoint, else sub-penny improvement on the side's far quote
        improvement = np.round(1e-4 + w * (half - 1e-4), 4)
        sdp_improved = np.where(side == 1, bid_c / 100.0 + improvement, ask_c / 100.0 - improvement)
        sdp_price = np.where(u < 0.45, mid, sdp_improved)
        price = np.where(dark, np.where(sdp, sdp_price, ats_price), lit_price)
        return np.round(price, 4), mid, half

    def _sizes(self, sym: np.ndarray, venue: np.ndarray, z: np.ndarray, u_block: np.ndarray,
               u_tail: np.ndarray, u_round: np.ndarray) -> np.ndarray:
        """Heavy-tailed sizes: log-normal body (odd and round lots) plus a Pareto block tail."""
        m = self.market
        body_q = body_quantity(np.exp(self._body_mu[sym, venue] + BODY_SIGMA * z), u_round)
        block = np.minimum(BLOCK_TAIL_CAP, np.floor(BLOCK_TAIL_MIN * u_tail ** (-1.0 / BLOCK_TAIL_ALPHA)))
        block = np.rint(block / 100) * 100
        is_block = u_block < m.block_probability[sym, venue]
        return np.where(is_block, block, body_q).astype(np.int64)

    # -- a batch ------------------------------------------------------------------------
    def batch(self, times: np.ndarray) -> TradeBatch:
        """Generate one batch of prints at the given nominal event times (epoch ms, sorted)."""
        n = len(times)
        rng = self.rng
        t = np.asarray(times, dtype=np.int64)
        u = rng.random((12, n))
        z = rng.standard_normal((2, n))
        sym = np.searchsorted(self._activity_cdf, u[0], side="right").astype(np.int64)
        venue = (np.searchsorted(self._venue_cdf_flat, sym + u[1], side="right") - sym * self._n_venues)
        side = draw_sides(u[2], self.market.venue_is_dark[venue])
        mid_true = self._walk_mids(sym, t, z[0])
        price, mid, half = self._prices(sym, venue, side, mid_true, u[3], u[4])
        qty = self._sizes(sym, venue, z[1], u[5], u[6], u[7])
        fault, ts = self.injector.inject(sym, t, u[8], u[9], u[10])
        seq = np.arange(self.seq, self.seq + n, dtype=np.int64)
        self.seq += n
        detail = np.floor(u[11] * 1e6).astype(np.int64)  # which field / which absurd time
        batch = TradeBatch(seq=seq, ts=ts, release=t, sym=sym, venue=venue, price=price, qty=qty,
                           side=side.astype(np.int8), mid=mid, half_spread=half, fault=fault, detail=detail,
                           scenario=np.full(len(seq), NO_SCENARIO, dtype=np.int16))
        if self.config.faults.duplicate_rate:
            batch = self.injector.duplicate(batch, rng.random(n))
        if self.scenarios is not None:
            batch = self._add_scenario_trades(batch)
        return batch

    def _add_scenario_trades(self, batch: TradeBatch) -> TradeBatch:
        """The scenarios' trades for this batch's time range, priced like any print and merged in by time."""
        assert self.scenarios is not None
        counted = (batch.fault == F_NONE) | (batch.fault == F_OOO)
        extra = self.scenarios.trades(batch, counted, np.exp(self._log_mid))
        if extra is None:
            return batch
        price, mid, half = self._prices(extra.sym, extra.venue, extra.side, np.exp(self._log_mid[extra.sym]),
                                        extra.u_price, extra.w_price)
        n = len(extra.ts)
        rows = TradeBatch(seq=extra.seq, ts=extra.ts, release=extra.ts, sym=extra.sym, venue=extra.venue,
                          price=price, qty=extra.qty, side=extra.side, mid=mid, half_spread=half,
                          fault=np.full(n, F_NONE, dtype=np.int8), detail=np.zeros(n, dtype=np.int64),
                          scenario=extra.scenario)
        return merge_by_time(batch, rows)

    def encode(self, batch: TradeBatch, with_release: bool = False) -> EncodedBatch:
        """:meth:`TradeEncoder.encode`, with the run's resolved scenario windows (for the summary)."""
        windows = self.scenarios.windows if self.scenarios is not None else ()
        return self.encoder.encode(batch, with_release=with_release, scenarios=windows)

    # -- whole tapes --------------------------------------------------------------------
    def replay_batches(self, shift_to_ms: int | None = None) -> Iterator[TradeBatch]:
        """The replay session in batches, cut at ``config.count`` records.

        With ``shift_to_ms`` every event time is moved by the same offset so the
        session's first print falls at that instant (gaps kept).
        """
        remaining = self.config.count
        total = self.config.session_trades
        offset: int | None = None
        while self.printed < total and (remaining is None or remaining > 0):
            n = min(self.config.batch_size, total - self.printed)
            jitter = self.rng.random(n)
            times = self.clock.times(self.printed, jitter)
            if shift_to_ms is not None:
                offset = shift_to_ms - int(times[0]) if offset is None else offset
                times = times + offset
            self.printed += n
            batch = self.batch(times)
            if remaining is not None:
                if len(batch) > remaining:
                    batch = batch.take(slice(0, remaining))
                remaining -= len(batch)
            yield batch


class TapeRecord(NamedTuple):
    """One Kafka record as sent: key, record timestamp (ms), value text, fault label; for a trade a
    scenario made, the scenario's name and its index in the run (else None)."""

    key: str
    timestamp_ms: int
    value: str
    fault: str | None
    scenario: str | None = None
    scenario_index: int | None = None

    def to_json(self) -> bytes:
        """The tape-out JSONL line (without the newline); ``scenario`` and ``scenario_index`` only on a
        scenario's trades, so a tape without scenarios reads as it always did."""
        row: dict[str, object] = {"key": self.key, "timestamp_ms": self.timestamp_ms, "value": self.value,
                                  "fault": self.fault}
        if self.scenario is not None:
            row["scenario"], row["scenario_index"] = self.scenario, self.scenario_index
        return orjson.dumps(row)


@dataclass
class EncodedBatch:
    """Records ready for the producer, plus the columns the run summary counts.

    ``venue`` indexes ``venue_names`` (registry MPIDs, or the venues of a replayed file);
    ``valid`` marks trades the pipeline should aggregate (not malformed, not
    duplicates); ``release`` (optional) is the wall-clock epoch ms before which a
    record must not be sent (pacing). ``scenario`` (None when the run has no
    scenarios) holds each record's scenario index (``NO_SCENARIO``: none) into
    ``scenarios``, the run's resolved scenario windows.
    """

    keys: list[bytes]
    values: list[str]
    timestamps: list[int]
    faults: np.ndarray  # fault codes
    venue: np.ndarray
    qty: np.ndarray
    valid: np.ndarray
    venue_names: np.ndarray  # object array of MPIDs, indexed by ``venue``
    release: np.ndarray | None = None
    scenario: np.ndarray | None = None
    scenarios: tuple[ScenarioWindow, ...] = ()

    def __len__(self) -> int:
        return len(self.values)

    def slice(self, start: int, stop: int) -> EncodedBatch:
        return EncodedBatch(
            keys=self.keys[start:stop], values=self.values[start:stop], timestamps=self.timestamps[start:stop],
            faults=self.faults[start:stop], venue=self.venue[start:stop], qty=self.qty[start:stop],
            valid=self.valid[start:stop], venue_names=self.venue_names,
            release=None if self.release is None else self.release[start:stop],
            scenario=None if self.scenario is None else self.scenario[start:stop], scenarios=self.scenarios)

    def scenario_labels(self) -> list[tuple[str | None, int | None]]:
        """Per record: (scenario name, scenario index), or (None, None) for the tape's own trades."""
        if self.scenario is None:
            return [(None, None)] * len(self)
        names = [w.name for w in self.scenarios]
        return [(None, None) if i < 0 else (names[i], i) for i in self.scenario.tolist()]

    def records(self) -> Iterator[TapeRecord]:
        for key, ts, value, code, (name, index) in zip(self.keys, self.timestamps, self.values,
                                                       self.faults.tolist(), self.scenario_labels(), strict=True):
            yield TapeRecord(key.decode("utf-8"), ts, value, FAULT_LABELS[code], name, index)

    def tape_lines(self) -> bytes:
        """The batch's ``--tape-out`` lines (:meth:`TapeRecord.to_json`, one per record, newline-terminated)."""
        if self.scenario is None:
            dumps = orjson.dumps
            labels = [FAULT_LABELS[c] for c in self.faults.tolist()]
            return b"".join(
                dumps({"key": k.decode("utf-8"), "timestamp_ms": t, "value": v, "fault": f}) + b"\n"
                for k, t, v, f in zip(self.keys, self.timestamps, self.values, labels, strict=True))
        return b"".join(record.to_json() + b"\n" for record in self.records())


def event_time_texts(ts: np.ndarray) -> list[str]:
    """Epoch ms -> 'YYYY-MM-DDTHH:MM:SS.mmm' (no zone letter), vectorised."""
    return np.datetime_as_string(ts.astype("datetime64[ms]"), unit="ms").tolist()


def unknown_venues() -> tuple[str, ...]:
    """The venues of :data:`UNKNOWN_VENUES` that the active registry does not have (never none)."""
    registry = load_venues()
    unknown = tuple(m for m in UNKNOWN_VENUES if m not in registry)
    n = 0
    while not unknown:
        n += 1
        unknown = (f"XXXX{n}",) if f"XXXX{n}" not in registry else ()
    return unknown


def malformed_value(kind: str, trade: dict[str, object], detail: int) -> str:
    """The value text of a malformed record of ``kind`` (a dead-letter reason), derived from a valid trade.

    ``detail`` (any non-negative int) picks the variant deterministically.
    """
    record = dict(trade)
    if kind == REASON_BAD_JSON:
        text = orjson.dumps(record).decode()
        return text[: 1 + detail % (len(text) - 2)]  # cut short: never parses
    if kind == REASON_NOT_OBJECT:  # valid JSON, but an array, a string or a number
        return orjson.dumps((list(record.values()), record["trade_id"], record["quantity"])[detail % 3]).decode()
    if kind == REASON_MISSING_FIELD:
        del record[TRADE_FIELDS[detail % len(TRADE_FIELDS)]]
    elif kind == REASON_BAD_TYPE:  # a number as text, or text as a number
        field_name = ("price", "quantity", "symbol")[detail % 3]
        record[field_name] = str(record[field_name]) if field_name != "symbol" else 1
    elif kind == REASON_NON_POSITIVE_QUANTITY:
        record["quantity"] = -int(record["quantity"]) if detail % 2 else 0
    elif kind == REASON_NON_POSITIVE_PRICE:
        record["price"] = -float(record["price"]) if detail % 2 else 0.0
    elif kind == REASON_UNKNOWN_VENUE:
        unknown = unknown_venues()
        record["venue"] = unknown[detail % len(unknown)]
    elif kind == REASON_BAD_SIDE:
        record["side"] = BAD_SIDES[detail % len(BAD_SIDES)]
    elif kind == REASON_BAD_EVENT_TIME:
        record["event_time"] = BAD_EVENT_TIMES[detail % len(BAD_EVENT_TIMES)]
    elif kind == REASON_ABSURD_EVENT_TIME:
        record["event_time"] = ABSURD_EVENT_TIMES[detail % len(ABSURD_EVENT_TIMES)]
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    return orjson.dumps(record).decode()


class TradeEncoder:
    """Formats :class:`TradeBatch` rows into Kafka records, fast.

    The contract's JSON is produced by one ``%`` template per record, with the
    symbol/venue part precomputed per (symbol, venue) pair and the event times
    formatted vectorised, which is several times cheaper than building a dict
    and calling a JSON encoder. Malformed records are re-encoded one by one.
    Symbols, venues and trade ids are JSON-escaped.
    """

    def __init__(self, symbols: Sequence[str], venues: Sequence[str], id_prefix: str = "T-") -> None:
        self.symbol_names = np.array(list(symbols), dtype=object)
        self.venue_names = np.array(list(venues), dtype=object)
        self.symbol_keys = np.array([s.encode("utf-8") for s in symbols], dtype=object)
        self.id_prefix = id_prefix
        self._middle = np.array(
            [[f',"symbol":{_json_str(s)},"venue":{_json_str(v)},"price":' for v in venues] for s in symbols],
            dtype=object).reshape(len(symbols), len(venues))
        prefix = _json_str(id_prefix)[1:-1].replace("%", "%%")
        self._seq_template = '{"trade_id":"' + prefix + '%010d","event_time":"%sZ"%s%r,"quantity":%d,"side":%s'
        self._id_template = '{"trade_id":%s,"event_time":"%sZ"%s%r,"quantity":%d,"side":%s'

    def trade_id(self, seq: int) -> str:
        return f"{self.id_prefix}{seq:010d}"

    def encode(self, batch: TradeBatch, trade_ids: list[str] | None = None,
               with_release: bool = False, scenarios: tuple[ScenarioWindow, ...] = ()) -> EncodedBatch:
        """Kafka records of a batch: key = symbol, value = JSON text, timestamp = event time.

        ``trade_ids`` (one per row) replace the generated ``<prefix><seq>`` ids; ``scenarios`` (the run's
        resolved scenario windows) makes the records carry the batch's scenario labels.
        """
        ts = batch.ts
        times = event_time_texts(ts)
        middle = self._middle[batch.sym, batch.venue].tolist()
        prices = batch.price.tolist()
        qtys = batch.qty.tolist()
        sides = SIDE_END[batch.side].tolist()
        if trade_ids is None:
            ids: list = batch.seq.tolist()
            template = self._seq_template
        else:
            ids = [_json_str(i) for i in trade_ids]
            template = self._id_template
        values = [template % row for row in zip(ids, times, middle, prices, qtys, sides, strict=True)]
        for i in np.flatnonzero(batch.fault >= F_MALFORMED).tolist():
            kind = MALFORMED_KINDS[int(batch.fault[i]) - F_MALFORMED]
            trade = {"trade_id": self.trade_id(ids[i]) if trade_ids is None else trade_ids[i],
                     "event_time": format_event_time(int(ts[i])),
                     "symbol": self.symbol_names[batch.sym[i]], "venue": self.venue_names[batch.venue[i]],
                     "price": prices[i], "quantity": qtys[i], "side": SIDE_VALUE[batch.side[i]]}
            values[i] = malformed_value(kind, trade, int(batch.detail[i]))
        return EncodedBatch(keys=self.symbol_keys[batch.sym].tolist(), values=values, timestamps=ts.tolist(),
                            faults=batch.fault, venue=batch.venue, qty=batch.qty, valid=batch.fault < F_DUP,
                            venue_names=self.venue_names, release=batch.release if with_release else None,
                            scenario=batch.scenario if scenarios else None, scenarios=scenarios)


def _json_str(text: str) -> str:
    """A JSON string literal (with quotes)."""
    return orjson.dumps(text).decode("utf-8")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the symbols whose index modulo ``count`` is ``index``.

    Every shard generates the whole tape (cheap) and sends only its symbols'
    records, so the shards together send exactly the single-process tape, with
    each symbol's records in the same order (Kafka orders per key only).
    """

    index: int = 0
    count: int = 1

    def select(self, batch: TradeBatch) -> TradeBatch:
        if self.count == 1:
            return batch
        return batch.take(batch.sym % self.count == self.index)


def generate_batches(config: FeedConfig, shift_to_ms: int | None = None,
                     shard: Shard | None = None) -> Iterator[EncodedBatch]:
    """Replay-mode tape as encoded batches (what the publisher sends); see TapeGenerator.replay_batches."""
    if config.mode != "replay":
        raise DarkpoolError("generate_batches builds replay tapes; live mode is paced by the publisher "
                            "(feed.live.live_batches)")
    generator = TapeGenerator(config)
    shard = shard or Shard()
    for batch in generator.replay_batches(shift_to_ms):
        mine = shard.select(batch)
        if len(mine):
            yield generator.encode(mine, with_release=True)


def generate_tape(config: FeedConfig) -> Iterator[TapeRecord]:
    """The replay tape, record by record (key, timestamp ms, value text, fault label)."""
    for encoded in generate_batches(config):
        yield from encoded.records()
