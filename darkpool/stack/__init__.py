"""The local real stack: Kafka broker, Flink session cluster, Beam job server,
expansion service and Python worker pool, each a plain process on loopback."""
