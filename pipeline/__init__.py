"""The Beam pipeline: Kafka trades -> event-time sliding-window liquidity analytics -> Kafka and Parquet.

Entry point: :func:`pipeline.main.run`. Options: :mod:`pipeline.options`.
Event-time rules: :mod:`pipeline.eventtime` (market math: :mod:`darkpool.market`).
Composite transforms: :mod:`pipeline.transforms`.
"""
