"""LiquidityAnalytics: raw trade records -> liquidity records, market records and dead letters.

The runner-independent core of the pipeline (no sources, no sinks), so the
same transform runs on Flink, on the DirectRunner over a TestStream, and in a
bounded backfill:

    ParseTrades -> FilterTooLate (streaming only) -> ComputeLiquidity

or, for the darkpool Kafka reader's (partition, record batch) elements,

    ParseAndFilterTooLate (one keyed step) -> ComputeLiquidity

Output: ``{"liquidity": dicts, "market": dicts, "deadletter": dicts}``; the
dead letters are the parse rejections and the too-late trades together. With
detector settings (``--alerts``) also ``"alerts"``: the live alerts
:class:`~pipeline.transforms.alerts.DetectAlerts` derives from the market and
liquidity panes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import apache_beam as beam

from darkpool.alerts import DetectorSettings
from pipeline.options import PipelineConfig
from pipeline.transforms.aggregate import ComputeLiquidity
from pipeline.transforms.alerts import DetectAlerts
from pipeline.transforms.lateness import FilterTooLate, ParseAndFilterPartitionBatches
from pipeline.transforms.parse import ParseTrades
from pipeline.transforms.windowing import Windowing


def windowing_of(config: PipelineConfig) -> Windowing:
    """The window and trigger settings of a job's options."""
    return Windowing(size_ms=config.window_ms, period_ms=config.period_ms,
                     allowed_lateness_ms=config.allowed_lateness_ms,
                     early_firing_seconds=config.early_firing_seconds, accumulating=config.accumulating,
                     bounded=config.bounded)


class LiquidityAnalytics(beam.PTransform):
    """Raw records -> {liquidity, market, deadletter} PCollections of dicts.

    Records are SourceRecord-like rows, or ``(partition, bytes)`` record batches
    of ``trades_topic`` with ``record_batches`` (the ``darkpool`` Kafka reader:
    then parsing and the too-late rule are one keyed step). ``venues`` /
    ``venue_types``: the MPIDs / {MPID: venue type} of the job's registry;
    ``too_late_filter``: apply the too-late rule (streaming runs);
    ``keep_before_ms``: a kafka-range run's end (records stamped at or after it
    are skipped); ``detector_settings``: detect alerts with these settings (None: no alerts output).
    :meth:`from_config` takes them all from a job's options.
    """

    def __init__(self, *, venues: Iterable[str], venue_types: Mapping[str, str], windowing: Windowing, shape: str,
                 max_event_skew_ms: int, record_batches: bool, trades_topic: str, too_late_filter: bool,
                 keep_before_ms: int | None = None, detector_settings: DetectorSettings | None = None) -> None:
        super().__init__()
        self._venues = tuple(sorted(venues))
        self._venue_types = dict(venue_types)
        self._windowing = windowing
        self._shape = shape
        self._max_event_skew_ms = max_event_skew_ms
        self._record_batches = record_batches
        self._trades_topic = trades_topic
        self._too_late_filter = too_late_filter
        self._keep_before_ms = keep_before_ms
        self._detector_settings = detector_settings

    @classmethod
    def from_config(cls, config: PipelineConfig) -> LiquidityAnalytics:
        """The analytics of a job's options (what ``pipeline.main.build_pipeline`` uses)."""
        return cls(venues=config.venue_mpids, venue_types=config.venue_types, windowing=windowing_of(config),
                   shape=config.shape, max_event_skew_ms=config.max_event_skew_ms,
                   record_batches=config.reads_record_batches, trades_topic=config.trades_topic,
                   too_late_filter=config.too_late_filter, keep_before_ms=config.keep_before_ms,
                   detector_settings=config.detector_settings if config.alerts else None)

    def expand(self, records):
        windowing = self._windowing
        if self._record_batches:
            checked = records | "ParseAndFilterTooLate" >> ParseAndFilterPartitionBatches(
                self._trades_topic, self._venues, self._max_event_skew_ms, windowing.period_ms,
                windowing.allowed_lateness_ms, too_late_filter=self._too_late_filter,
                keep_before_ms=self._keep_before_ms)
            trades = checked["trades"]
            dead_letters = [checked["deadletter"]]
        else:
            parsed = records | "ParseTrades" >> ParseTrades(self._venues, self._max_event_skew_ms,
                                                            keep_before_ms=self._keep_before_ms)
            trades = parsed["trades"]
            dead_letters = [parsed["deadletter"]]
            if self._too_late_filter:
                filtered = trades | "FilterTooLate" >> FilterTooLate(windowing.period_ms,
                                                                     windowing.allowed_lateness_ms)
                trades = filtered["trades"]
                dead_letters.append(filtered["deadletter"])
        outputs = trades | "ComputeLiquidity" >> ComputeLiquidity(self._shape, windowing, self._venue_types)
        deadletter = tuple(dead_letters) | "AllDeadLetters" >> beam.Flatten()
        result = {"liquidity": outputs["liquidity"], "market": outputs["market"], "deadletter": deadletter}
        if self._detector_settings is not None:
            result["alerts"] = outputs | "DetectAlerts" >> DetectAlerts(
                self._detector_settings, windowing.period_ms, windowing.size_ms, windowing.allowed_lateness_ms)
        return result
