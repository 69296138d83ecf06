"""A single-node Apache Kafka 4.4 broker in KRaft mode (broker + controller in one process).

Its storage is formatted on first start; data and logs live in the state
folder, so they survive restarts.
"""

from __future__ import annotations

import base64
import logging
import subprocess
import uuid
from pathlib import Path

from darkpool.config import Settings
from darkpool.errors import DarkpoolError
from darkpool.stack import jvm
from darkpool.stack.process import Service, java_executable, port_open

BROKER_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def kafka_dir(settings: Settings) -> Path:
    return settings.state_dir / "kafka"


def server_properties(settings: Settings) -> str:
    """The broker's configuration: one KRaft node, loopback listeners, single-replica internals."""
    host = settings.host
    data = kafka_dir(settings) / "data"
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{host}:{settings.kafka_controller_port}",
        f"listeners=PLAINTEXT://{host}:{settings.kafka_port},CONTROLLER://{host}:{settings.kafka_controller_port}",
        f"advertised.listeners=PLAINTEXT://{host}:{settings.kafka_port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={data}",
        "num.partitions=4",
        "auto.create.topics.enable=true",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "log.retention.hours=168",
        "log.segment.bytes=268435456",
        "message.max.bytes=10485760",
        "num.network.threads=2",
        "num.io.threads=4",
        "",
    ])


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, base64url without padding, never starting with '-'.

    Kafka's own ``Uuid.randomUuid`` avoids a leading '-' for the same reason: the storage tool's
    argument parser would read such an id as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _cluster_id(settings: Settings) -> str:
    """A stable KRaft cluster id for this state folder (created once)."""
    path = kafka_dir(settings) / "cluster.id"
    if path.exists():
        return path.read_text().strip()
    cluster_id = new_cluster_id()
    path.write_text(cluster_id)
    return cluster_id


def _java_opts(settings: Settings) -> list[str]:
    return [f"-Xmx{settings.kafka_heap}", f"-Xms{settings.kafka_heap}", "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={kafka_dir(settings) / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={settings.log_dir}"]


def prepare(settings: Settings) -> Path:
    """Write the broker's configuration and format its storage once (first start only)."""
    directory = kafka_dir(settings)
    (directory / "data").mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    properties = directory / "server.properties"
    properties.write_text(server_properties(settings))
    (directory / "log4j2.properties").write_text(
        BROKER_LOG4J2.format(log_file=settings.log_dir / "kafka-server.log"))
    if not (directory / "data" / "meta.properties").exists():
        # no --standalone: controller.quorum.voters already names the single voter
        argv = [java_executable(), *_java_opts(settings)[2:], "-cp", jvm.classpath(settings, "kafka"),
                "kafka.tools.StorageTool", "format", f"--cluster-id={_cluster_id(settings)}", "-c", str(properties),
                "--ignore-formatted"]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DarkpoolError(f"formatting the Kafka storage in {directory / 'data'} failed:\n"
                                f"{result.stdout}{result.stderr}")
    return properties


def broker_service(settings: Settings) -> Service:
    """The Kafka broker as a managed local process."""

    def command() -> list[str]:
        properties = prepare(settings)
        return [java_executable(), *_java_opts(settings), "-cp", jvm.classpath(settings, "kafka"),
                "kafka.Kafka", str(properties)]

    def ready() -> bool:
        return port_open(settings.host, settings.kafka_port) and _metadata_ok(settings)

    return Service(
        name="kafka", port=settings.kafka_port, settings=settings, command=command, ready=ready,
        description="Apache Kafka 4.4 broker (KRaft, single node)",
        extra_ports=(settings.kafka_controller_port,), start_timeout=90,
    )


# librdkafka logs connection refusals loudly while the broker starts; keep them out of the console.
_PROBE_LOGGER = logging.getLogger("darkpool.stack.kafka.probe")
_PROBE_LOGGER.addHandler(logging.NullHandler())
_PROBE_LOGGER.propagate = False


def _metadata_ok(settings: Settings) -> bool:
    """True when the broker answers a metadata request."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers, "socket.timeout.ms": 2000,
                         "logger": _PROBE_LOGGER})
    try:
        admin.list_topics(timeout=2)
        return True
    except KafkaException:
        return False
