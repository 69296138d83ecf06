"""The trade feed: a realistic synthetic tape (or a replayed file) published to Kafka.

Modules, in the order data flows through them:

- :mod:`feed.universe`    symbols, prices, venue mixes (default or FINRA-calibrated)
- :mod:`feed.generator`   numpy-vectorised tape generation, fault injection, encoding
- :mod:`feed.replay`      trades read from CSV / JSONL / Parquet files
- :mod:`feed.live`        live mode: prints stamped now, at a steady rate
- :mod:`feed.topic_admin` is a broker answering; the topic created if missing
- :mod:`feed.producer`    the idempotent confluent-kafka producer, delivery accounting, progress
- :mod:`feed.parallel`    several producer processes at once
- :mod:`feed.tape`        tape files (``--tape-out``) written and read back
- :mod:`feed.summary`     what a run sent (FeedSummary)
- :mod:`feed.commands`    the ``darkpool feed`` subcommand

See docs/feed.md for the command, its options and the Python API.
"""
