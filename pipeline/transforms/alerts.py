"""DetectAlerts: market and liquidity panes -> live alerts on unusual dark activity (darkpool.alerts).

The detectors' scoring and the emission rule are pure functions in
:mod:`darkpool.alerts` (docs/alerts.md); this step feeds them in event time:

    market panes    -> SlimMarketPane    --+
                                            +-> Flatten -> GlobalWindows -> DetectAlertsFn (per symbol)
    liquidity panes -> SlimBlockPane  -----+    (only panes of venues that printed a block)

:class:`DetectAlertsFn` keeps, per symbol in keyed state, the figures of the
symbol's recent windows (each window's latest pane: dark share, top venue share,
the largest block quantity on one venue, and the window's traded quantity and
trades), the latest pane of each venue that printed at least
``block_min_blocks`` blocks in a window still open, and the severity already
sent per (kind, window). On every pane of a window it scores that window
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
from collections.abc import Iterable, Mapping
from typing import Any

import apache_beam as beam
import orjson
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
    """

    STATE = ReadModifyWriteStateSpec("alert_state", coders.BytesCoder())

    def __init__(self, settings: alerts.DetectorSettings, period_ms: int, window_ms: int,
                 allowed_lateness_ms: int, clock=time.time) -> None:
        self._settings = settings
        self._period_ms = period_ms
        self._window_ms = window_ms
        self._lateness_ms = allowed_lateness_ms
        self._clock = clock
        self._sent = Metrics.counter(METRICS_NAMESPACE, "alerts_sent")

    def process(self, element, state=beam.DoFn.StateParam(STATE)):  # noqa: B008 - Beam idiom
        _symbol, (kind, pane) = element
        saved = state.read()
        memory = orjson.loads(saved) if saved else {"w": {}, "c": {}, "s": {}}
        start = pane["window_start"]
        figures = memory["w"].setdefault(start, [parse_event_time(pane["window_end"]), None, None, 0.0, 0, 0, 0])
        if kind == MARKET:
            figures[_DARK] = pane["dark_share"]
            figures[_TOP] = pane["top_venue_share"]
            figures[_QUANTITY] = pane["share_quantity"]
            figures[_TRADES] = pane["trade_count"]
            figures[_HAS_MARKET] = 1
            memory.setdefault("p", {})[start] = pane
        else:
            figures[_BLOCK] = max(figures[_BLOCK], float(pane["block_quantity"]))
            if pane["block_count"] >= self._settings.block_min_blocks:
                venues = memory["c"].setdefault(start, {})
                seen = venues.get(pane["venue"])
                if seen is None or pane["pane_index"] >= seen["pane_index"]:
                    venues[pane["venue"]] = pane
        yield from self._detect(memory, start, kind, pane)
        self._prune(memory, parse_event_time(start))
        state.write(orjson.dumps(memory))

    def _detect(self, memory: dict, start: str, kind: str, pane: Mapping[str, Any]) -> Iterable[dict]:
        """The alerts the window ``start`` sends after this pane (at most one per alert kind)."""
        figures = memory["w"][start]
        market = memory.get("p", {}).get(start)
        baseline = self._baseline_windows(memory, start)
        candidates = []
        if kind == MARKET:
            trades = [f[_TRADES] for f in baseline if f[_TRADES]]
            typical = float(statistics.median(trades)) if trades else None
            candidates.append(alerts.detect_dark_share_surge(pane, [f[_DARK] for f in baseline], self._settings,
                                                             typical))
            candidates.append(alerts.detect_venue_concentration(pane, [f[_TOP] for f in baseline], self._settings,
                                                                typical))
        cluster = memory["c"].get(start)
        if cluster and market is not None and figures[_HAS_MARKET]:
            # a window with no block printed has a largest block of 0 (not "no value")
            candidates.append(alerts.detect_block_cluster(cluster.values(), [float(f[_BLOCK]) for f in baseline],
                                                          self._settings, market_pane=market))
        for candidate in candidates:
            if candidate is None:
                continue
            key = f"{candidate.kind}|{start}"
            if alerts.should_emit(memory["s"].get(key), candidate):
                memory["s"][key] = candidate.severity
                self._sent.inc()
                yield alerts.alert_record(candidate, pane["pane_timing"], pane["pane_index"],
                                          int(self._clock() * 1000))

    def _baseline_windows(self, memory: dict, start: str) -> list[list]:
        """The figures of the symbol's last ``baseline_windows`` windows that end at or before ``start``, oldest
        first (the baseline: never the scored window, nor a window overlapping it); the median prints of those
        with a market pane is the ``typical_trades`` of the share figures' noise scale."""
        start_ms = parse_event_time(start)
        earlier = sorted((parse_event_time(s), f) for s, f in memory["w"].items() if f[_END] <= start_ms)
        return [f for _, f in earlier[-self._settings.baseline_windows:]]

    def _prune(self, memory: dict, newest_start_ms: int) -> None:
        """Drop what no pane can use any more, reckoned from this pane's window start (a pane of an older window
        prunes less, never more)."""
        reach = (self._settings.baseline_windows + 1) * self._period_ms + self._window_ms + self._lateness_ms
        for start in [s for s in memory["w"] if parse_event_time(s) < newest_start_ms - reach]:
            del memory["w"][start]
        # a window gets panes until the watermark passes its end + the lateness; the newest window seen can be
        # ahead of the watermark (a partition ahead of the others), so one more window length of margin
        closed = newest_start_ms - 2 * self._window_ms - self._lateness_ms - self._period_ms
        for section in ("c", "p"):
            for start in [s for s in memory.get(section, {}) if parse_event_time(s) < closed]:
                del memory[section][start]
        # the severities sent (a few keys) stay as long as the figures: a late pane never re-sends or lowers one
        for key in [k for k in memory["s"] if parse_event_time(k.rsplit("|", 1)[1]) < newest_start_ms - reach]:
            del memory["s"][key]


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

