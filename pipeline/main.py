"""The dark pool liquidity pipeline: trades -> event-time sliding-window liquidity analytics.

Reads trade prints (darkpool.trades, or a file / bounded range for backfill),
validates them (bad records and too-late trades -> darkpool.deadletter),
windows them in event time (sliding, default 5 min every 1 min, early panes
every 2 s, on-time pane at the watermark, late panes within 10 min of allowed
lateness, accumulating), and computes per (window, symbol, venue) liquidity
and per (window, symbol) market structure (dark share, HHI, top venue). Output
goes to darkpool.liquidity / darkpool.market (key symbol|venue|window_start /
symbol|window_start, JSON values) and to a Hive-partitioned Parquet dataset.
See docs/pipeline.md for every option and what is written where.

Run it

- Bounded backfill of a trades file on the DirectRunner (no Java, no broker)::

    .venv/bin/python -m pipeline.main --source file --input trades.csv --output out/parquet

- Streaming on the local Flink cluster, detached (what ``darkpool run`` does)::

    .venv/bin/python -m pipeline.main --detach \\
        --runner=PortableRunner --job_endpoint=127.0.0.1:8099 \\
        --environment_type=EXTERNAL --environment_config=127.0.0.1:8100 \\
        --checkpointing_interval=10000 --state_backend=rocksdb \\
        --state_backend_storage_path=file:///.../.state/flink/checkpoints

  (``darkpool run`` fills these in from the project's settings.)

- A bounded range of the topic (KafkaIO needs the expansion service and a
  portable runner; the Flink stack provides both)::

    .venv/bin/python -m pipeline.main --source kafka-range \\
        --range-start 2026-11-25T14:30:00Z --range-end 2026-11-25T15:00:00Z --runner=PortableRunner ...

Every flag the pipeline does not know is a Beam pipeline option.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from darkpool import logs
from darkpool.contracts import ALERT_SCHEMA, LIQUIDITY_SCHEMA, MARKET_SCHEMA
from darkpool.errors import DarkpoolError
from pipeline.options import PipelineConfig, parse_pipeline_args, runner_args
from pipeline.transforms.analytics import LiquidityAnalytics
from pipeline.transforms.format import alert_kv, deadletter_kv, liquidity_kv, market_kv
from pipeline.transforms.parse import METRICS_NAMESPACE
from pipeline.transforms.read import ReadTradesFile, ReadTradesFromKafka
from pipeline.transforms.sinks import WriteJsonLines, WriteKafkaRecords, WriteParquet

LOG = logging.getLogger("pipeline")


def build_pipeline(pipeline: beam.Pipeline, config: PipelineConfig) -> dict:
    """Add the whole graph (source -> analytics -> sinks) to ``pipeline``; returns the record PCollections."""
    unreadable = None  # a file's rows the reader could not read: dead letters already
    if config.source == "file":
        read = pipeline | "ReadTradesFile" >> ReadTradesFile(config.input_file)
        records, unreadable = read["records"], read["deadletter"]
    else:
        records = pipeline | "ReadTrades" >> ReadTradesFromKafka(
            config.bootstrap_servers, config.trades_topic, config.group_id, config.expansion_service,
            range_start=config.range_start if config.source == "kafka-range" else None,
            reader=config.kafka_reader,
        )
    outputs = records | "LiquidityAnalytics" >> LiquidityAnalytics.from_config(config)
    if unreadable is not None:
        dead = (outputs["deadletter"], unreadable) | "WithUnreadableRows" >> beam.Flatten()
        outputs = {**outputs, "deadletter": dead}

    if config.kafka_output:
        for name, topic, to_kv in (
            ("liquidity", config.liquidity_topic, liquidity_kv),
            ("market", config.market_topic, market_kv),
            ("deadletter", config.deadletter_topic, deadletter_kv),
            *((("alerts", config.alerts_topic, alert_kv),) if "alerts" in outputs else ()),
        ):
            _ = outputs[name] | f"Write{name.capitalize()}ToKafka" >> WriteKafkaRecords(
                config.bootstrap_servers, topic, to_kv, config.expansion_service)
    if config.output_path is not None:
        tables = (("liquidity", LIQUIDITY_SCHEMA), ("market", MARKET_SCHEMA),
                  *((("alerts", ALERT_SCHEMA),) if "alerts" in outputs else ()))
        for name, schema in tables:
            _ = outputs[name] | f"Write{name.capitalize()}Parquet" >> WriteParquet(
                config.output_path, name, schema, config.parquet_batch_rows, config.parquet_flush_seconds)
    if config.deadletter_path is not None:
        _ = outputs["deadletter"] | "WriteDeadLettersJsonl" >> WriteJsonLines(
            config.deadletter_path, config.parquet_batch_rows, config.parquet_flush_seconds)
    return outputs


def metric_totals(result: PipelineResult) -> dict[str, int]:
    """The pipeline's Beam counters (records_in, trades_valid, deadletter_<reason>, too_late, ...)."""
    totals: dict[str, int] = {}
    for counter in result.metrics().query()["counters"]:
        if counter.key.metric.namespace == METRICS_NAMESPACE:
            name = counter.key.metric.name
            value = counter.committed if counter.committed is not None else counter.attempted
            totals[name] = totals.get(name, 0) + int(value or 0)
    return totals


def run(argv: Sequence[str] | None = None) -> PipelineResult:
    """Parse the pipeline's flags (the rest go to PipelineOptions), build, run; wait unless --detach."""
    config, beam_args = parse_pipeline_args(argv)
    options = PipelineOptions(runner_args(config, beam_args))
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, config)
    LOG.info("pipeline: source=%s shape=%s windows=%sm/%sm lateness=%sm early=%ss output=%s kafka_output=%s",
             config.source, config.shape, config.window_minutes, config.period_minutes,
             config.allowed_lateness_minutes, config.early_firing_seconds, config.output_path, config.kafka_output)
    result = pipeline.run()
    if config.detach:
        LOG.info("pipeline submitted (detached); state %s", result.state)
        return result
    result.wait_until_finish()
    totals = metric_totals(result)
    LOG.info("pipeline finished: %s", ", ".join(f"{k}={v}" for k, v in sorted(totals.items())) or "no counters")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.main``: run and print the counters."""
    logs.configure("pipeline")
    try:
        run(argv)
    except DarkpoolError as exc:
        print(f"pipeline: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
