"""Dark Pool Liquidity Dashboard, the bottom layer: the contracts every part shares (topics,
records, schemas, venues, dead-letter reasons, market definitions, the trade-file reader),
configuration, errors, the client plumbing every part uses the same way (``kafka_client``:
Kafka authentication; ``storage``: local folders and S3), and the local stack (``stack/``).

It imports no part (feed, pipeline, serving, analytics, deploy) and not the ``darkpool``
command line, which lives in ``console/`` (tests/test_layers.py checks it)."""

__version__ = "0.1.0"
