"""The Beam pipeline: Kafka trades -> event-time sliding-window liquidity analytics -> Kafka and Parquet.

Entry point: :func:`pipeline.main.run`. Options: :mod:`pipeline.options`.
Finance math: :mod:`pipeline.finance`. Composite transforms: :mod:`pipeline.transforms`.
"""
