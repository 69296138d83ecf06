"""LiquidityAnalytics: raw trade records -> liquidity records, market records and dead letters.

The runner-independent core of the pipeline (no sources, no sinks), so the
same transform runs on Flink, on the DirectRunner over a TestStream, and in a
bounded backfill:

    ParseTrades -> FilterTooLate (streaming only) -> ComputeLiquidity

or, for the darkpool Kafka reader's (partition, record batch) elements,

    ParseAndFilterTooLate (one keyed step) -> ComputeLiquidity

Output: ``{"liquidity": dicts, "market": dicts, "deadletter": dicts}``; the
dead letters are the parse rejections and the too-late trades together.
"""

from __future__ import annotations

import apache_beam as beam

from pipeline.options import PipelineConfig
from pipeline.transforms.aggregate import ComputeLiquidity
from pipeline.transforms.lateness import FilterTooLate, ParseAndFilterPartitionBatches
from pipeline.transforms.parse import ParseTrades


class LiquidityAnalytics(beam.PTransform):
    """Raw records -> {liquidity, market, deadletter} PCollections of dicts.

    Records are SourceRecord-like rows, or ``(partition, bytes)`` record batches
    when the config reads Kafka with the ``darkpool`` reader (then parsing and the
    too-late rule are one keyed step). A kafka-range run keeps the
    records before its range end (default: the time the pipeline is built).
    """

    def __init__(self, config: PipelineConfig) -> None:
        super().__init__()
        self._config = config

    def expand(self, records):
        config = self._config
        if config.reads_record_batches:
            checked = records | "ParseAndFilterTooLate" >> ParseAndFilterPartitionBatches(
                config.trades_topic, config.max_event_skew_ms, config.period_ms, config.allowed_lateness_ms,
                too_late_filter=config.too_late_filter, keep_before_ms=config.keep_before_ms)
            trades = checked["trades"]
            dead_letters = [checked["deadletter"]]
        else:
            parsed = records | "ParseTrades" >> ParseTrades(config.max_event_skew_ms,
                                                            keep_before_ms=config.keep_before_ms)
            trades = parsed["trades"]
            dead_letters = [parsed["deadletter"]]
            if config.too_late_filter:
                filtered = trades | "FilterTooLate" >> FilterTooLate(config.period_ms, config.allowed_lateness_ms)
                trades = filtered["trades"]
                dead_letters.append(filtered["deadletter"])
        outputs = trades | "ComputeLiquidity" >> ComputeLiquidity(config)
        deadletter = tuple(dead_letters) | "AllDeadLetters" >> beam.Flatten()
        return {"liquidity": outputs["liquidity"], "market": outputs["market"], "deadletter": deadletter}
