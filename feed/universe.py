"""The synthetic market: symbols, prices, and where each symbol's volume prints.

A :class:`Market` holds, per symbol, its starting price, volatility, trading
activity and, per venue of the registry (``darkpool.contracts.load_venues()``),
the venue's share of the symbol's *share volume*, its average print size and
the probability that a print there is a block. From these the generator draws
venues per print with probability proportional to ``share / mean size``, so
that the expected share-volume split equals the configured shares.

Two ways to build one:

- :func:`default_market` — about 40 liquid US names at plausible prices; the
  off-exchange (ATS + SDP) share of volume varies by symbol around 45 %.
- :func:`calibrated_market` — follows a FINRA-derived
  :data:`~darkpool.contracts.Calibration` (symbol -> venue MPID -> share,
  average trade size); lit exchanges keep a configurable share of volume.
"""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass

import numpy as np

from darkpool import market
from darkpool.contracts import Calibration, load_venues
from darkpool.errors import DarkpoolError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SymbolSpec:
    """One name of the default universe.

    ``activity`` is a relative weight of its number of prints, ``volatility``
    an annualised volatility, ``dark_share`` its off-exchange share of volume.
    """

    symbol: str
    price: float
    activity: float
    volatility: float
    dark_share: float


# Liquid US names at plausible late-2026 price levels. Retail-heavy names print
# more off-exchange (wholesalers); ETFs less.
DEFAULT_UNIVERSE: tuple[SymbolSpec, ...] = (
    SymbolSpec("AAPL", 271.40, 5.0, 0.26, 0.44),
    SymbolSpec("MSFT", 507.20, 3.5, 0.24, 0.42),
    SymbolSpec("NVDA", 183.10, 8.0, 0.48, 0.46),
    SymbolSpec("AMZN", 229.60, 4.0, 0.32, 0.44),
    SymbolSpec("GOOGL", 289.30, 3.0, 0.30, 0.43),
    SymbolSpec("META", 618.50, 3.0, 0.36, 0.42),
    SymbolSpec("TSLA", 421.70, 7.0, 0.62, 0.52),
    SymbolSpec("AVGO", 352.80, 2.5, 0.45, 0.43),
    SymbolSpec("JPM", 302.10, 1.5, 0.22, 0.41),
    SymbolSpec("V", 338.40, 1.0, 0.20, 0.40),
    SymbolSpec("MA", 561.90, 0.8, 0.21, 0.40),
    SymbolSpec("UNH", 331.20, 1.5, 0.38, 0.45),
    SymbolSpec("XOM", 116.30, 1.5, 0.24, 0.42),
    SymbolSpec("LLY", 948.70, 1.0, 0.34, 0.41),
    SymbolSpec("JNJ", 194.50, 1.0, 0.17, 0.42),
    SymbolSpec("WMT", 104.80, 1.5, 0.20, 0.44),
    SymbolSpec("PG", 149.60, 0.8, 0.17, 0.41),
    SymbolSpec("HD", 361.20, 0.8, 0.23, 0.41),
    SymbolSpec("COST", 921.40, 0.8, 0.22, 0.40),
    SymbolSpec("BAC", 51.85, 2.5, 0.26, 0.47),
    SymbolSpec("KO", 70.15, 1.0, 0.15, 0.45),
    SymbolSpec("PEP", 149.90, 0.8, 0.18, 0.43),
    SymbolSpec("ABBV", 228.70, 0.8, 0.24, 0.42),
    SymbolSpec("CVX", 154.30, 1.0, 0.25, 0.42),
    SymbolSpec("AMD", 238.60, 4.5, 0.55, 0.48),
    SymbolSpec("NFLX", 109.80, 1.5, 0.38, 0.45),
    SymbolSpec("CRM", 241.30, 1.0, 0.33, 0.43),
    SymbolSpec("ORCL", 218.90, 1.5, 0.42, 0.44),
    SymbolSpec("INTC", 37.95, 3.0, 0.50, 0.50),
    SymbolSpec("CSCO", 74.60, 1.2, 0.22, 0.44),
    SymbolSpec("PFE", 25.40, 1.5, 0.24, 0.50),
    SymbolSpec("T", 26.10, 1.2, 0.20, 0.49),
    SymbolSpec("F", 12.35, 2.5, 0.35, 0.54),
    SymbolSpec("PLTR", 178.40, 4.0, 0.70, 0.53),
    SymbolSpec("SOFI", 28.20, 2.5, 0.65, 0.55),
    SymbolSpec("SPY", 668.30, 6.0, 0.16, 0.36),
    SymbolSpec("QQQ", 607.50, 4.0, 0.20, 0.36),
    SymbolSpec("IWM", 243.10, 2.0, 0.21, 0.37),
)

# Base share of a symbol's *dark* volume by venue (SDP wholesalers ~55 %, ATSs ~45 %)
# and of its *lit* volume by exchange; base average print sizes in shares; and the
# probability that a print is a block drawn from the Pareto tail (block ATSs most).
DARK_BASE_SHARE = {
    "CDRG": 22.0, "NITE": 12.0, "JNST": 13.0, "SOHO": 8.0,
    "UBSA": 7.0, "MSPL": 4.0, "SGMT": 3.0, "JPMX": 4.0, "LATS": 2.0, "ICBX": 3.0,
    "MLIX": 3.0, "INCR": 6.0, "BIDS": 4.0, "LEVL": 3.0, "KCGM": 3.0, "XSTM": 3.0,
}
LIT_BASE_SHARE = {"XNAS": 22.0, "XNYS": 14.0, "ARCX": 10.0, "BATS": 12.0, "EDGX": 12.0, "IEXG": 5.0, "MEMX": 10.0}
BASE_AVG_SIZE = {
    "CDRG": 150.0, "NITE": 120.0, "JNST": 200.0, "SOHO": 130.0,
    "UBSA": 170.0, "MSPL": 180.0, "SGMT": 160.0, "JPMX": 170.0, "LATS": 180.0, "ICBX": 300.0,
    "MLIX": 190.0, "INCR": 130.0, "BIDS": 2400.0, "LEVL": 600.0, "KCGM": 200.0, "XSTM": 160.0,
}
LIT_AVG_SIZE = 110.0
# A venue of a user registry (docs/venues.md) outside the tables above prints like a typical venue of its
# type: this base share (of the dark or the lit volume) and average print size.
TYPICAL_BASE_SHARE = {"ATS": 4.0, "SDP": 10.0, "EXCHANGE": 10.0}
TYPICAL_AVG_SIZE = {"ATS": 170.0, "SDP": 150.0, "EXCHANGE": LIT_AVG_SIZE}
BLOCK_PROBABILITY = {"BIDS": 0.08, "LEVL": 0.01, "ICBX": 0.005}
DEFAULT_BLOCK_PROBABILITY = {"ATS": 0.002, "SDP": 0.0002, "EXCHANGE": 0.0005}

# The block tail: Pareto(alpha) above BLOCK_TAIL_MIN shares, clipped at BLOCK_TAIL_CAP.
BLOCK_TAIL_ALPHA = 1.6
BLOCK_TAIL_MIN = 10_000
BLOCK_TAIL_CAP = 200_000
DEFAULT_LIT_SHARE = 0.55
CALIBRATED_MAX_BLOCK_FRACTION = 0.25


def clipped_pareto_mean(alpha: float, minimum: float, cap: float) -> float:
    """E[min(X, cap)] for X ~ Pareto(alpha, minimum), alpha > 1, cap >= minimum."""
    if alpha <= 1 or cap < minimum:
        raise ValueError("need alpha > 1 and cap >= minimum")
    return minimum * alpha / (alpha - 1) - minimum ** alpha * cap ** (1 - alpha) / (alpha - 1)


BLOCK_TAIL_MEAN = clipped_pareto_mean(BLOCK_TAIL_ALPHA, BLOCK_TAIL_MIN, BLOCK_TAIL_CAP)


@dataclass(frozen=True)
class Market:
    """Per-symbol and per-(symbol, venue) parameters, as numpy arrays.

    Arrays indexed ``[s]`` are per symbol, ``[s, v]`` per symbol and venue
    (venues in registry order, ``venues``). ``volume_share[s]`` sums to 1.
    """

    symbols: tuple[str, ...]
    venues: tuple[str, ...]
    venue_is_dark: np.ndarray      # [v] bool
    venue_is_sdp: np.ndarray       # [v] bool
    price: np.ndarray              # [s] starting mid price
    volatility: np.ndarray         # [s] annualised
    activity: np.ndarray           # [s] probability that a print is of symbol s
    volume_share: np.ndarray       # [s, v]
    avg_size: np.ndarray           # [s, v] mean print size, shares (blocks included)
    block_probability: np.ndarray  # [s, v]
    body_mean: np.ndarray          # [s, v] mean of the non-block (lognormal) part

    @property
    def print_probability(self) -> np.ndarray:
        """[s, v] probability that a print of symbol s is on venue v."""
        weights = self.volume_share / self.avg_size
        return weights / weights.sum(axis=1, keepdims=True)

    @property
    def dark_share(self) -> np.ndarray:
        """[s] expected off-exchange share of each symbol's volume."""
        return self.volume_share[:, self.venue_is_dark].sum(axis=1)

    def expected_dark_share(self) -> float:
        """Expected off-exchange share of the whole tape's share volume."""
        shares_per_print = (self.print_probability * self.avg_size).sum(axis=1)  # [s]
        volume = self.activity * shares_per_print
        return float((volume * self.dark_share).sum() / volume.sum())


def _symbol_rng(symbol: str) -> np.random.Generator:
    """A generator fixed per symbol, so market structure does not depend on the feed seed."""
    return np.random.default_rng(zlib.crc32(symbol.encode("utf-8")))


def _venue_tables() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    venues = load_venues()
    mpids = tuple(venues)
    is_dark = np.array([market.is_dark(venues[m].venue_type) for m in mpids])
    is_sdp = np.array([venues[m].venue_type == "SDP" for m in mpids])
    return mpids, is_dark, is_sdp


def _block_probability(mpid: str, venue_type: str) -> float:
    return BLOCK_PROBABILITY.get(mpid, DEFAULT_BLOCK_PROBABILITY[venue_type])


def _base_shares(mpids: tuple[str, ...], is_dark: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per venue of the registry: (base share of the dark volume, base share of the lit volume).

    Venues of the tables above keep their shares; any other venue of the active registry
    gets the typical share of its type, so every registry venue (and no other) prints.
    """
    venues = load_venues()
    dark = np.array([DARK_BASE_SHARE.get(m, TYPICAL_BASE_SHARE[venues[m].venue_type]) for m in mpids]) * is_dark
    lit = np.array([LIT_BASE_SHARE.get(m, TYPICAL_BASE_SHARE[venues[m].venue_type]) for m in mpids]) * ~is_dark
    return dark, lit


def _split(dark_share: float, dark: np.ndarray, lit: np.ndarray) -> np.ndarray:
    """Venue shares of a symbol: ``dark_share`` of it over the dark venues, the rest over the lit ones
    (all of it on one side when the registry has no venue of the other)."""
    if not dark.sum():
        return lit / lit.sum()
    if not lit.sum():
        return dark / dark.sum()
    return dark_share * dark / dark.sum() + (1 - dark_share) * lit / lit.sum()


def _avg_sizes(mpids: tuple[str, ...]) -> np.ndarray:
    venues = load_venues()
    return np.array([BASE_AVG_SIZE.get(m, TYPICAL_AVG_SIZE[venues[m].venue_type]) for m in mpids])


def _finish(symbols: list[str], price: list[float], vol: list[float], activity: list[float],
            share: np.ndarray, avg: np.ndarray, block_p: np.ndarray, mpids: tuple[str, ...],
            is_dark: np.ndarray, is_sdp: np.ndarray, max_block_fraction: float = 0.5) -> Market:
    """Derive body means (so blocks + body average to ``avg``) and freeze a Market.

    At most ``max_block_fraction`` of a venue's average print size may come
    from blocks (this keeps the body mean positive and bounds the variance).
    """
    block_p = np.minimum(block_p, max_block_fraction * avg / BLOCK_TAIL_MEAN)
    body = (avg - block_p * BLOCK_TAIL_MEAN) / (1.0 - block_p)
    act = np.asarray(activity, dtype=float)
    return Market(
        symbols=tuple(symbols), venues=mpids, venue_is_dark=is_dark, venue_is_sdp=is_sdp,
        price=np.asarray(price, dtype=float), volatility=np.asarray(vol, dtype=float),
        activity=act / act.sum(), volume_share=share / share.sum(axis=1, keepdims=True),
        avg_size=avg, block_probability=block_p, body_mean=body,
    )


def default_market(symbols: list[str] | None = None) -> Market:
    """The default universe (optionally restricted to ``symbols``) with jittered venue mixes.

    Each symbol's dark venues share ``dark_share`` of its volume and the lit
    exchanges the rest; within each group the base shares are perturbed per
    symbol (log-normal, sigma 0.35) so that venue rankings differ by name.
    """
    specs = list(DEFAULT_UNIVERSE)
    if symbols:
        known = {s.symbol: s for s in specs}
        unknown = [s for s in symbols if s not in known]
        if unknown:
            raise DarkpoolError(f"unknown symbol(s) {', '.join(unknown)} for the default universe",
                                hint=f"choose from {', '.join(known)}, or use --calibrate FILE")
        specs = [known[s] for s in dict.fromkeys(symbols)]
    mpids, is_dark, is_sdp = _venue_tables()
    venues = load_venues()
    dark_base, lit_base = _base_shares(mpids, is_dark)
    base_size = _avg_sizes(mpids)
    n_s, n_v = len(specs), len(mpids)
    share = np.zeros((n_s, n_v))
    avg = np.zeros((n_s, n_v))
    block_p = np.zeros((n_s, n_v))
    for s, spec in enumerate(specs):
        rng = _symbol_rng(spec.symbol)
        jitter = np.exp(rng.normal(0.0, 0.35, n_v))
        size_jitter = np.exp(rng.normal(0.0, 0.15, n_v))
        share[s] = _split(spec.dark_share, dark_base * jitter, lit_base * jitter)
        avg[s] = base_size * size_jitter
        block_p[s] = [_block_probability(m, venues[m].venue_type) for m in mpids]
    return _finish([s.symbol for s in specs], [s.price for s in specs], [s.volatility for s in specs],
                   [s.activity for s in specs], share, avg, block_p, mpids, is_dark, is_sdp)


def _fallback_price(symbol: str) -> float:
    """A plausible, stable price for a symbol outside the default universe ($5 .. $800)."""
    return float(np.clip(round(60.0 * math.exp(_symbol_rng(symbol).normal(0.0, 1.0)), 2), 5.0, 800.0))


def calibrated_market(calibration: Calibration, lit_share: float = DEFAULT_LIT_SHARE) -> Market:
    """A market that follows a FINRA-derived calibration.

    The calibration's symbols form the universe. For each symbol, the
    calibrated venues (those in the registry; others are skipped with a
    warning) share ``1 - lit_share`` of its volume in the calibration's
    proportions, at the calibration's average trade sizes; the lit exchanges
    share ``lit_share`` in the default lit proportions. With ``lit_share=0``
    the tape follows the file alone.
    """
    if not 0.0 <= lit_share < 1.0:
        raise DarkpoolError(f"lit share must be in [0, 1), got {lit_share}")
    if not calibration:
        raise DarkpoolError("the calibration is empty (no symbols)")
    mpids, is_dark, is_sdp = _venue_tables()
    venues = load_venues()
    index = {m: i for i, m in enumerate(mpids)}
    defaults = {s.symbol: s for s in DEFAULT_UNIVERSE}
    _, lit_base = _base_shares(mpids, is_dark)
    if not lit_base.sum():
        if lit_share:
            log.warning("calibration: the venue registry has no lit venue; the tape follows the file alone")
        lit_share, lit_base = 0.0, np.zeros(len(mpids))
    else:
        lit_base = lit_base / lit_base.sum()
    skipped: set[str] = set()
    symbols, prices, vols, activity, shares, avgs, blocks = [], [], [], [], [], [], []
    for symbol, profiles in calibration.items():
        share = np.zeros(len(mpids))
        avg = np.full(len(mpids), LIT_AVG_SIZE)
        for mpid, profile in profiles.items():
            if mpid not in index:
                skipped.add(mpid)
                continue
            if profile.share < 0 or profile.avg_trade_size <= 0:
                raise DarkpoolError(f"calibration of {symbol} at {mpid}: share must be >= 0 and average "
                                    f"trade size > 0, got {profile.share}, {profile.avg_trade_size}")
            share[index[mpid]] = profile.share
            avg[index[mpid]] = profile.avg_trade_size
        if share.sum() <= 0:
            log.warning("calibration: %s has no volume at a registry venue; skipped", symbol)
            continue
        calibrated = share > 0
        share = (1 - lit_share) * share / share.sum() + lit_share * lit_base * ~calibrated
        spec = defaults.get(symbol)
        symbols.append(symbol)
        prices.append(spec.price if spec else _fallback_price(symbol))
        vols.append(spec.volatility if spec else 0.35)
        activity.append(spec.activity if spec else 1.0)
        shares.append(share)
        avgs.append(avg)
        blocks.append([_block_probability(m, venues[m].venue_type) for m in mpids])
    if skipped:
        log.warning("calibration: venue(s) not in the registry skipped: %s", ", ".join(sorted(skipped)))
    if not symbols:
        raise DarkpoolError("no symbol of the calibration has volume at a venue of the registry",
                            hint="check the file's MPIDs against the venue registry (`darkpool venues`)")
    # blocks carry at most a quarter of each calibrated average, so venue shares converge on shorter tapes
    return _finish(symbols, prices, vols, activity, np.array(shares), np.array(avgs), np.array(blocks),
                   mpids, is_dark, is_sdp, max_block_fraction=CALIBRATED_MAX_BLOCK_FRACTION)
