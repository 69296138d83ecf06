"""All window and trigger settings of the pipeline, in one module.

:class:`SlidingEventTimeWindows`: the product's windows. Sliding event-time
windows (default 5 min every 1 min); a trigger that fires early panes
``early_firing_seconds`` of processing time after the first new element of a
pane, the on-time pane when the watermark passes the window end (always, even
with nothing new), and one late pane per late element (or bundle of them)
within the allowed lateness; accumulating by default.

In a bounded (backfill) run every window fires once, when the input is done
(the default trigger), so each window has exactly one ON_TIME pane.
"""

from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration


@dataclass(frozen=True)
class Windowing:
    """The window and trigger settings (``pipeline.transforms.analytics.windowing_of`` reads a job's)."""

    size_ms: int
    period_ms: int
    allowed_lateness_ms: int
    early_firing_seconds: int
    accumulating: bool = True
    bounded: bool = False  # a backfill: every window fires once, ON_TIME, when the input ends


def _main_trigger(windowing: Windowing):
    if windowing.bounded:
        return trigger.DefaultTrigger()
    return trigger.AfterWatermark(
        early=trigger.AfterProcessingTime(int(windowing.early_firing_seconds)), late=trigger.AfterCount(1))


class SlidingEventTimeWindows(beam.PTransform):
    """Window timestamped elements into sliding event-time windows with early/on-time/late panes.

    ``deltas=True`` forces discarding panes whatever the configured accumulation
    (the two-stage shape accumulates the deltas itself, in keyed state).
    """

    def __init__(self, windowing: Windowing, deltas: bool = False) -> None:
        super().__init__()
        self._windowing = windowing
        self._deltas = deltas

    def expand(self, pcoll):
        settings = self._windowing
        accumulate = settings.accumulating and not self._deltas
        mode = trigger.AccumulationMode.ACCUMULATING if accumulate else trigger.AccumulationMode.DISCARDING
        return pcoll | "SlidingWindows" >> beam.WindowInto(
            window.SlidingWindows(settings.size_ms / 1000.0, settings.period_ms / 1000.0),
            trigger=_main_trigger(settings),
            accumulation_mode=mode,
            allowed_lateness=Duration(micros=settings.allowed_lateness_ms * 1000),
        )
