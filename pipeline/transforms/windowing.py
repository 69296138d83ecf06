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

import apache_beam as beam
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration

from pipeline.options import PipelineConfig


def _main_trigger(config: PipelineConfig):
    if config.bounded:
        return trigger.DefaultTrigger()
    return trigger.AfterWatermark(
        early=trigger.AfterProcessingTime(int(config.early_firing_seconds)), late=trigger.AfterCount(1))


class SlidingEventTimeWindows(beam.PTransform):
    """Window timestamped elements into sliding event-time windows with early/on-time/late panes.

    ``deltas=True`` forces discarding panes whatever the configured accumulation
    (the two-stage shape accumulates the deltas itself, in keyed state).
    """

    def __init__(self, config: PipelineConfig, deltas: bool = False) -> None:
        super().__init__()
        self._config = config
        self._deltas = deltas

    def expand(self, pcoll):
        config = self._config
        accumulate = config.accumulating and not self._deltas
        mode = trigger.AccumulationMode.ACCUMULATING if accumulate else trigger.AccumulationMode.DISCARDING
        return pcoll | "SlidingWindows" >> beam.WindowInto(
            window.SlidingWindows(config.window_ms / 1000.0, config.period_ms / 1000.0),
            trigger=_main_trigger(config),
            accumulation_mode=mode,
            allowed_lateness=Duration(micros=config.allowed_lateness_ms * 1000),
        )
