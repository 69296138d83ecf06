"""DetectAlerts: market and liquidity panes -> live alerts on unusual dark activity (darkpool.alerts).

The detectors' scoring and the emission rule are pure functions in
:mod:`darkpool.alerts` (docs/alerts.md); this step feeds them in event time:

    market panes    -> SlimMarketPane    --+
                                            +-> Flatten -> GlobalWindows -> DetectAlertsFn (per symbol)
    liquidity panes -> SlimBlockPane  -----+    (only panes of venues that printed a block)

:class:`DetectAlertsFn` keeps, per symbol in keyed state, the figures of the
symbol's recent windows (each window's latest pane: dark share, top venue share,
the largest block quantity on one venue, and the window's traded quantity and
trades), the block figures of each venue that printed at least
``block_min_blocks`` blocks in a window still open, and the severity already
sent per (kind, window), in three cells written only when a pane changes them.
On every pane of a window it scores that window
(a share figure's score divided by :func:`darkpool.alerts.noise_scale`: an
early pane of a few prints is noisier than the whole windows of the baseline)
against the baseline of the symbol's *earlier, non-overlapping* windows (those
ending at or before the scored window's start; the last ``baseline_windows`` of
them), and sends what :func:`darkpool.alerts.should_emit` allows: the first
pane that crosses a threshold sends the alert (an EARLY pane included), a later
pane only a higher severity (a LATE pane can add or raise one, never lower it).
The alert carries the triggering pane's timing and index.

State stays bounded: windows older than the baseline's reach (plus the window
size and the allowed lateness) are dropped on every pane, with their sent
severities; a window's market and cluster panes once no pane of it can come
any more (with a window length of margin for event-time skew).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from typing import Any

import apache_beam as beam
from apache_beam import coders
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.window import GlobalWindows

from darkpool import alerts
from darkpool.contracts import parse_event_time
from pipeline.transforms.parse import METRICS_NAMESPACE

MARKET = "m"
BLOCKS = "b"
# the market pane fields the detectors read
MARKET_PANE_FIELDS = ("window_start", "window_end", "symbol", "trade_count", "share_quantity", "dark_share",
                      "top_venue", "top_venue_share", "pane_timing", "pane_index")
# the liquidity pane fields the block-cluster detector reads
BLOCK_PANE_FIELDS = ("window_start", "window_end", "symbol", "venue", "trade_count", "share_quantity",
                     "block_count", "block_quantity", "pane_timing", "pane_index")
# one window's figures in state: [window_end ms, dark share, top venue share, largest block quantity on one
# venue, traded quantity, trades, has a market pane]
_END, _DARK, _TOP, _BLOCK, _QUANTITY, _TRADES, _HAS_MARKET = range(7)


def slim(record: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """The fields of a record the detectors read (what crosses the shuffle into the per-symbol step)."""
    return {name: record[name] for name in fields}


class DetectAlertsFn(beam.DoFn):
    """(symbol, (MARKET | BLOCKS, slim pane)) in the global window -> darkpool.alerts records.

    ``settings``: the detectors' thresholds and baseline length; ``period_ms`` / ``window_ms`` /
    ``allowed_lateness_ms``: the job's sliding windows (how far back state must reach).

    Keyed state is three cells, each written only when this pane changed it (most block panes change
    nothing: a venue's block quantity below the window's largest, fewer blocks than a cluster needs):

    - ``figures``: {window start ms: [window end ms, dark share, top venue share, largest block quantity on
      one venue, traded quantity, trades, has a market pane]}, the baseline's windows and the open ones;
    - ``open``: {window start ms: {venue: (block prints, block quantity)}} of the venues with at least
      ``block_min_blocks`` blocks in a window that can still get panes (panes accumulate, so a venue's
      latest figures are its highest: an older pane arriving late changes nothing);
    - ``sent``: {(kind, window start ms): the severity sent}.

    Values are Python objects (``FastPrimitivesCoder``): the SDK's state cache hands back the decoded
    object, so a read costs no decoding once the key is cached.
    """

    FIGURES = ReadModifyWriteStateSpec("alert_figures", coders.FastPrimitivesCoder())
    OPEN = ReadModifyWriteStateSpec("alert_open", coders.FastPrimitivesCoder())
    SENT = ReadModifyWriteStateSpec("alert_sent", coders.FastPrimitivesCoder())
    # the process() parameters of the three cells (for driving the DoFn directly, as tests and benches do)
    STATE_CELLS = ("figures_state", "open_state", "sent_state")

    def __init__(self, settings: alerts.DetectorSettings, period_ms: int, window_ms: int,
                 allowed_lateness_ms: int, clock=time.time) -> None:
        self._settings = settings
        self._period_ms = period_ms
        self._window_ms = window_ms
        self._lateness_ms = allowed_lateness_ms
        self._clock = clock
        # how far back the figures and the sent severities reach, and how long a window stays open: a window
        # gets panes until the watermark passes its end + the lateness; the newest window seen can be ahead
        # of the watermark (a partition ahead of the others), so one more window length of margin
        self._reach_ms = (settings.baseline_windows + 1) * period_ms + window_ms + allowed_lateness_ms
        self._open_ms = 2 * window_ms + allowed_lateness_ms + period_ms
        self._sent = Metrics.counter(METRICS_NAMESPACE, "alerts_sent")

    def process(self, element, figures_state=beam.DoFn.StateParam(FIGURES),  # noqa: B008 - Beam idiom
                open_state=beam.DoFn.StateParam(OPEN), sent_state=beam.DoFn.StateParam(SENT)):  # noqa: B008
        _symbol, (kind, pane) = element
        start = parse_event_time(pane["window_start"])
        figures = figures_state.read() or {}
        row = figures.get(start)
        figures_changed = row is None
        if row is None:
            row = figures[start] = [parse_event_time(pane["window_end"]), None, None, 0.0, 0, 0, 0]
        opened = open_state.read() or {}
        open_changed = False
        if kind == MARKET:
            row[_DARK] = pane["dark_share"]
            row[_TOP] = pane["top_venue_share"]
            row[_QUANTITY] = pane["share_quantity"]
            row[_TRADES] = pane["trade_count"]
            row[_HAS_MARKET] = 1
            figures_changed = True
        else:
            quantity = float(pane["block_quantity"])
            if quantity > row[_BLOCK]:
                row[_BLOCK] = quantity
                figures_changed = True
            count = pane["block_count"]
            if count >= self._settings.block_min_blocks:
                venues = opened.setdefault(start, {})
                seen = venues.get(pane["venue"])
                if seen is None:
                    venues[pane["venue"]] = (count, quantity)
                    open_changed = True
                elif count > seen[0] or quantity > seen[1]:
                    venues[pane["venue"]] = (max(count, seen[0]), max(quantity, seen[1]))
                    open_changed = True
        candidates = self._candidates(figures, start, kind, pane, opened.get(start))
        if candidates:
            sent = sent_state.read() or {}
            sent_changed = False
            for candidate in candidates:
                key = (candidate.kind, start)
                if alerts.should_emit(sent.get(key), candidate):
                    sent[key] = candidate.severity
                    sent_changed = True
                    self._sent.inc()
                    yield alerts.alert_record(candidate, pane["pane_timing"], pane["pane_index"],
                                              int(self._clock() * 1000))
            if self._prune(sent, start - self._reach_ms, lambda key: key[1]) or sent_changed:
                sent_state.write(sent)
        if self._prune(figures, start - self._reach_ms) or figures_changed:
            figures_state.write(figures)
        if self._prune(opened, start - self._open_ms) or open_changed:
            open_state.write(opened)

    def _candidates(self, figures: dict, start: int, kind: str, pane: Mapping[str, Any],
                    venues: dict | None) -> list[alerts.AlertCandidate]:
        """What the window ``start`` scores after this pane (at most one candidate per alert kind)."""
        row = figures[start]
        cluster_possible = bool(venues) and row[_HAS_MARKET]
        if kind != MARKET and not cluster_possible:
            return []  # a block pane of a window without a cluster venue: nothing to score, no baseline needed
        baseline = self._baseline_windows(figures, start)
        candidates = []
        if kind == MARKET:
            trades = [f[_TRADES] for f in baseline if f[_TRADES]]
            typical = float(statistics.median(trades)) if trades else None
            candidates.append(alerts.detect_dark_share_surge(pane, [f[_DARK] for f in baseline], self._settings,
                                                             typical))
            candidates.append(alerts.detect_venue_concentration(pane, [f[_TOP] for f in baseline], self._settings,
                                                                typical))
        if cluster_possible:
            # the window's totals are its latest market pane's; a window with no block printed has a largest
            # block of 0 (not "no value")
            candidates.append(alerts.detect_venue_blocks(pane, venues, row[_QUANTITY], row[_TRADES],
                                                         [float(f[_BLOCK]) for f in baseline], self._settings))
        return [c for c in candidates if c is not None]

    def _baseline_windows(self, figures: dict, start: int) -> list[list]:
        """The figures of the symbol's last ``baseline_windows`` windows that end at or before ``start``, oldest
        first (the baseline: never the scored window, nor a window overlapping it)."""
        earlier = sorted(s for s, f in figures.items() if f[_END] <= start)
        return [figures[s] for s in earlier[-self._settings.baseline_windows:]]

    @staticmethod
    def _prune(cell: dict, oldest_ms: int, start_of=lambda key: key) -> bool:
        """Drop the entries of windows starting before ``oldest_ms`` (reckoned from this pane's window start:
        a pane of an older window prunes less, never more); True when something was dropped."""
        stale = [key for key in cell if start_of(key) < oldest_ms]
        for key in stale:
            del cell[key]
        return bool(stale)


class DetectAlerts(beam.PTransform):
    """{"market": records, "liquidity": records} -> darkpool.alerts records (dicts, contracts.ALERT_FIELDS).

    ``settings``: :class:`darkpool.alerts.DetectorSettings`; ``period_ms`` / ``window_ms`` /
    ``allowed_lateness_ms``: the job's windows. Needs accumulating panes (each pane the window's value
    so far): with discarding panes a pane holds a delta, and the detectors would score fragments.
    """

    def __init__(self, settings: alerts.DetectorSettings, period_ms: int, window_ms: int,
                 allowed_lateness_ms: int) -> None:
        super().__init__()
        self._settings = settings
        self._period_ms = period_ms
        self._window_ms = window_ms
        self._lateness_ms = allowed_lateness_ms

    def expand(self, panes):
        market = panes["market"] | "SlimMarketPane" >> beam.Map(
            lambda r: (r["symbol"], (MARKET, slim(r, MARKET_PANE_FIELDS))))
        blocks = (panes["liquidity"]
                  | "VenuesWithBlocks" >> beam.Filter(lambda r: r["block_count"] > 0)
                  | "SlimBlockPane" >> beam.Map(lambda r: (r["symbol"], (BLOCKS, slim(r, BLOCK_PANE_FIELDS)))))
        return ((market, blocks)
                | "MarketAndBlockPanes" >> beam.Flatten()
                | "AcrossWindows" >> beam.WindowInto(GlobalWindows())
                | "ScoreAndEmit" >> beam.ParDo(DetectAlertsFn(self._settings, self._period_ms, self._window_ms,
                                                              self._lateness_ms))
                .with_input_types(tuple[str, tuple[str, dict[str, Any]]]))

