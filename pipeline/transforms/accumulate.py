"""AccumulatePanes: turn per-symbol delta panes into accumulated market and liquidity records.

The two-stage shape fires its sliding windows with *discarding* panes: each
pane of a (symbol, window) holds only the partials that arrived since the
previous pane (a delta). Accumulating inside the window operator would make
every firing re-read and re-merge everything the window received so far (the
portable Flink runner buffers a window's values and hands the whole buffer to
Python at each firing). Instead this stateful DoFn keeps, per (symbol, window)
in keyed state (checkpointed, garbage-collected when the window expires), the
running {venue: VenueStats} totals, merges each delta once, and emits:

- one darkpool.market record per pane, with the pane's timing and index;
- one darkpool.liquidity record per venue that has new data in the pane, and
  for every venue of the window at the ON_TIME pane (as a per-venue window
  would fire). A venue's ``pane_index`` counts that venue's records in the
  window, like a per-(symbol, venue) window's panes.

With ``accumulating`` False (``--accumulation discarding``) the records carry
the deltas instead of the totals.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import apache_beam as beam
from apache_beam import coders
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils.windowed_value import PaneInfoTiming

from darkpool.contracts import format_event_time
from pipeline.codec import SYMBOL_PARTIAL_PANE, VenueStatsCoder
from pipeline.records import (
    SymbolStats,
    VenueStats,
    liquidity_values,
    market_values,
    merge_symbol_stats_into,
    window_fields,
)

LIQUIDITY_TAG = "liquidity"
ON_TIME = "ON_TIME"


class AccumulatePanesFn(beam.DoFn):
    """(symbol, [partial, ...]) per sliding-window pane -> market records (main) + liquidity records (tagged).

    Consumes the GroupByKey's output directly (a stateful DoFn must start its
    stage: fused with the grouping's consumer, each pane crosses one fewer stage).
    ``venue_types``: {MPID: venue type} of the job's registry.
    """

    # per (symbol, window): ({venue: running totals}, {venue: records emitted so far})
    TOTALS = ReadModifyWriteStateSpec("window_totals", coders.TupleCoder([
        coders.MapCoder(coders.StrUtf8Coder(), VenueStatsCoder()),
        coders.MapCoder(coders.StrUtf8Coder(), coders.VarIntCoder())]))

    def __init__(self, accumulating: bool, venue_types: Mapping[str, str]) -> None:
        self._accumulating = accumulating
        self._venue_types = dict(venue_types)

    def process(self, element, win=beam.DoFn.WindowParam,  # noqa: B008 - Beam idiom
                pane=beam.DoFn.PaneInfoParam,  # noqa: B008
                totals_state=beam.DoFn.StateParam(TOTALS)):  # noqa: B008
        symbol, partials = element
        timing, index = PaneInfoTiming.to_string(pane.timing), pane.index
        delta: SymbolStats = {}
        for partial in partials:
            merge_symbol_stats_into(delta, partial)
        saved = totals_state.read()
        totals, venue_panes = saved if saved is not None else ({}, {})
        merge_symbol_stats_into(totals, delta)

        window = window_fields(int(win.start.micros // 1000), int(win.end.micros // 1000))
        emitted_at = format_event_time(int(time.time() * 1000))
        values = totals if self._accumulating else delta
        market = dict(window)
        market.update(market_values(symbol, values, self._venue_types))
        market.update({"pane_timing": timing, "pane_index": index, "emitted_at": emitted_at})
        yield market

        venues = sorted(totals) if timing == ON_TIME else sorted(delta)
        for venue in venues:
            venue_index = venue_panes.get(venue, 0)
            venue_panes[venue] = venue_index + 1
            stats = values.get(venue) or VenueStats()
            liquidity = dict(window)
            liquidity.update(liquidity_values(symbol, venue, stats, self._venue_types))
            liquidity.update({"pane_timing": timing, "pane_index": venue_index, "emitted_at": emitted_at})
            yield beam.pvalue.TaggedOutput(LIQUIDITY_TAG, liquidity)
        totals_state.write((totals, venue_panes))


class AccumulatePanes(beam.PTransform):
    """Grouped delta panes (symbol, [{venue: VenueStats}, ...]) -> {"liquidity": records, "market": records}."""

    def __init__(self, accumulating: bool, venue_types: Mapping[str, str]) -> None:
        super().__init__()
        self._accumulating = accumulating
        self._venue_types = dict(venue_types)

    def expand(self, deltas):
        outputs = (
            deltas
            | "RunningTotals" >> beam.ParDo(AccumulatePanesFn(self._accumulating, self._venue_types))
            .with_input_types(SYMBOL_PARTIAL_PANE)
            .with_outputs(LIQUIDITY_TAG, main="market")
        )
        return {"liquidity": outputs[LIQUIDITY_TAG], "market": outputs.market}
