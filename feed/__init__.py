"""The trade feed: a realistic synthetic tape (or a replayed file) published to Kafka.

Modules, in the order data flows through them:

- :mod:`feed.universe`  symbols, prices, venue mixes (default or FINRA-calibrated)
- :mod:`feed.generator` numpy-vectorised tape generation, fault injection, encoding
- :mod:`feed.replay`    trades read from CSV / JSONL / Parquet files
- :mod:`feed.publisher` the idempotent confluent-kafka producer, progress and summary
- :mod:`feed.commands`  the ``darkpool feed`` subcommand

See docs/feed.md for the command, its options and the Python API.
"""
