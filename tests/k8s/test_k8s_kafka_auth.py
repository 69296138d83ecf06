"""The prod overlay's Kafka authentication, for real: a Kafka broker (the project's own Kafka 4.4 jars)
with a SASL_PLAINTEXT listener, SCRAM-SHA-512 users and Kafka's StandardAuthorizer, the ACLs of the
prod KafkaUsers applied as they are, and the product's clients configured the way the prod manifests
configure them (DARKPOOL_KAFKA_* from the overlay's env, the password from the user's Secret):

- `darkpool feed` as darkpool-feed publishes to darkpool.trades, and may not write elsewhere;
- the pipeline's Java Kafka clients (kafka-clients of the Beam classpath, with the properties
  darkpool/kafka_client.py gives KafkaIO) as darkpool-pipeline consume darkpool.trades in group
  darkpool-pipeline, commit, and produce to darkpool.liquidity;
- serving as darkpool-serving reads both output topics to their end (/api/v1/ready);
- a wrong password is refused.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from darkpool import contracts
from darkpool.config import Settings, load_settings
from darkpool.kafka_client import client_config, java_client_config
from darkpool.stack import jvm
from darkpool.stack.kafka import BROKER_LOG4J2, new_cluster_id
from darkpool.stack.process import java_executable, port_open
from darkpool.stack.topics import product_topic_specs
from deploy import render

pytestmark = [pytest.mark.k8s, pytest.mark.stack]

ADMIN = "admin"
JAVA_CLIENTS = r"""
import java.io.FileReader;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;

/** What KafkaIO does as the pipeline: read a topic in a group, commit, write another topic. */
public class PipelineClients {
    public static void main(String[] args) throws Exception {
        Properties base = new Properties();
        try (FileReader reader = new FileReader(args[0])) { base.load(reader); }
        String in = args[1], out = args[2], group = args[3];
        int expected = Integer.parseInt(args[4]);
        Properties consumerProps = new Properties();
        consumerProps.putAll(base);
        consumerProps.put("group.id", group);
        consumerProps.put("auto.offset.reset", "earliest");
        consumerProps.put("enable.auto.commit", "false");
        consumerProps.put("key.deserializer", "org.apache.kafka.common.serialization.ByteArrayDeserializer");
        consumerProps.put("value.deserializer", "org.apache.kafka.common.serialization.ByteArrayDeserializer");
        int seen = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(consumerProps)) {
            consumer.subscribe(List.of(in));
            long deadline = System.currentTimeMillis() + 60_000;
            while (seen < expected && System.currentTimeMillis() < deadline) {
                seen += consumer.poll(Duration.ofSeconds(1)).count();
            }
            consumer.commitSync();
        }
        Properties producerProps = new Properties();
        producerProps.putAll(base);
        producerProps.put("acks", "all");
        producerProps.put("key.serializer", "org.apache.kafka.common.serialization.ByteArraySerializer");
        producerProps.put("value.serializer", "org.apache.kafka.common.serialization.ByteArraySerializer");
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerProps)) {
            producer.send(new ProducerRecord<>(out, "AAPL|UBSA|x".getBytes(), "{}".getBytes())).get();
        }
        System.out.println("read " + seen + " wrote 1");
    }
}
"""


def broker_properties(port: int, controller_port: int, data: Path, admin_password: str) -> str:
    """One KRaft node; clients on SASL_PLAINTEXT with SCRAM-SHA-512; ACLs enforced (deny when none match)."""
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN}" '
            f'password="{admin_password}";')
    return "\n".join([
        "process.roles=broker,controller", "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners=SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER", "inter.broker.listener.name=SASL_PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms=SCRAM-SHA-512", "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
        f"listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={jaas}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # the controller listener is PLAINTEXT inside the one process: its principal is ANONYMOUS
        f"super.users=User:{ADMIN};User:ANONYMOUS", "allow.everyone.if.no.acl.found=false",
        f"log.dirs={data}", "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1", "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1", "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1", "group.initial.rebalance.delay.ms=0", "",
    ])


@pytest.fixture(scope="module")
def prod_users() -> dict[str, dict]:
    return {u["metadata"]["name"]: u for u in render.render_objects("prod") if u["kind"] == "KafkaUser"}


@pytest.fixture(scope="module")
def scram_broker(tmp_path_factory: pytest.TempPathFactory, prod_users: dict[str, dict]) -> Iterator[dict]:
    """A SCRAM-authenticating, ACL-enforcing broker with the prod users (random passwords) and an admin."""
    settings = load_settings()
    port = int(os.environ["DARKPOOL_TEST_SASL_KAFKA_PORT"])
    controller_port = int(os.environ["DARKPOOL_TEST_SASL_KAFKA_CONTROLLER_PORT"])
    if port_open("127.0.0.1", port):
        pytest.fail(f"port {port} is taken: another SASL test broker runs")
    root = tmp_path_factory.mktemp("sasl-kafka")
    passwords = {name: secrets.token_urlsafe(16) for name in [ADMIN, *prod_users]}
    properties = root / "server.properties"
    properties.write_text(broker_properties(port, controller_port, root / "data", passwords[ADMIN]))
    (root / "log4j2.properties").write_text(BROKER_LOG4J2.format(log_file=root / "server.log"))
    java = [java_executable(), "-Xmx512m", f"-Dlog4j2.configurationFile={root / 'log4j2.properties'}",
            "-cp", jvm.classpath(settings, "kafka")]
    scram = [arg for name, password in passwords.items()
             for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")]
    formatted = subprocess.run([*java, "kafka.tools.StorageTool", "format", f"--cluster-id={new_cluster_id()}",
                                "-c", str(properties), *scram], capture_output=True, text=True, timeout=120)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    with open(root / "stdout.log", "w") as log:
        process = subprocess.Popen([*java, "kafka.Kafka", str(properties)], stdout=log, stderr=subprocess.STDOUT)
    try:
        bootstrap = f"127.0.0.1:{port}"
        admin = AdminClient({"bootstrap.servers": bootstrap, **sasl(ADMIN, passwords[ADMIN])})
        deadline = time.monotonic() + 90
        while True:
            try:
                admin.list_topics(timeout=3)
                break
            except KafkaException:
                assert process.poll() is None, (root / "server.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the SASL broker did not answer within 90 s"
        specs = product_topic_specs(partitions=2)
        futures = admin.create_topics([NewTopic(name, spec.partitions, 1, config=spec.config)
                                       for name, spec in specs.items()])
        for future in futures.values():
            future.result(timeout=30)
        bindings = [binding for user in prod_users.values() for binding in acl_bindings(user)]
        for future in admin.create_acls(bindings).values():
            future.result(timeout=30)
        yield {"bootstrap": bootstrap, "passwords": passwords, "root": root}
    finally:
        process.terminate()
        process.wait(timeout=60)


def sasl(user: str, password: str) -> dict[str, str]:
    """librdkafka properties of a user, from the product's own mapping (darkpool/kafka_client.py)."""
    return client_config(Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                                  kafka_sasl_username=user, kafka_sasl_password=password))


RESOURCES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP, "cluster": ResourceType.BROKER}
PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefix": ResourcePatternType.PREFIXED}
OPERATIONS = {"Read": AclOperation.READ, "Write": AclOperation.WRITE, "Describe": AclOperation.DESCRIBE,
              "IdempotentWrite": AclOperation.IDEMPOTENT_WRITE, "All": AclOperation.ALL}


def acl_bindings(user: dict) -> list[AclBinding]:
    """A KafkaUser's `simple` ACLs as the broker's ACL bindings (what Strimzi's User Operator creates)."""
    principal = f"User:{user['metadata']['name']}"
    bindings = []
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        kind = RESOURCES[resource["type"]]
        name = "kafka-cluster" if resource["type"] == "cluster" else resource["name"]
        pattern = PATTERNS[resource.get("patternType", "literal")] if resource["type"] != "cluster" else \
            ResourcePatternType.LITERAL
        for operation in acl["operations"]:
            bindings.append(AclBinding(kind, name, pattern, principal, acl.get("host", "*"), OPERATIONS[operation],
                                       AclPermissionType.ALLOW))
    return bindings


def client_env(container: dict, password: str, bootstrap: str) -> dict[str, str]:
    """The DARKPOOL_KAFKA_* environment a prod container gets (its password from the user's Secret)."""
    env = os.environ.copy()
    for entry in container.get("env") or []:
        if entry["name"].startswith("DARKPOOL_KAFKA_"):
            if "valueFrom" in entry:
                assert entry["valueFrom"]["secretKeyRef"]["key"] == "password"
                env[entry["name"]] = password
            else:
                env[entry["name"]] = entry["value"]
    env["DARKPOOL_BOOTSTRAP_SERVERS"] = bootstrap
    return env


def prod_container(kind: str, name: str) -> dict:
    objects = render.render_objects("prod")
    workload = next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)
    return workload["spec"]["template"]["spec"]["containers"][0]


def user_of(container: dict) -> str:
    return next(e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]
                if e["name"] == "DARKPOOL_KAFKA_SASL_PASSWORD")


def test_feed_publishes_as_its_user_and_nowhere_else(scram_broker: dict, tmp_path: Path) -> None:
    env = os.environ.copy()
    env.update({"DARKPOOL_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "DARKPOOL_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "DARKPOOL_KAFKA_SASL_USERNAME": "darkpool-feed",
                "DARKPOOL_KAFKA_SASL_PASSWORD": scram_broker["passwords"]["darkpool-feed"]})
    result = subprocess.run([sys.executable, "-m", "console.cli", "feed", f"--bootstrap={scram_broker['bootstrap']}",
                             f"--topic={contracts.TRADES_TOPIC}", "--no-create-topic", "--mode=replay", "--count=500",
                             "--seed=3", "--quiet", f"--summary-json={tmp_path / 'summary.json'}"],
                            capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["sent"], summary["acked"], summary["failed"]) == (500, 500, 0), summary

    producer = Producer({"bootstrap.servers": scram_broker["bootstrap"],
                         **sasl("darkpool-feed", scram_broker["passwords"]["darkpool-feed"])})
    errors: list[str] = []
    producer.produce(contracts.LIQUIDITY_TOPIC, b"x", callback=lambda err, _msg: errors.append(str(err)))
    producer.flush(30)
    assert errors and "TOPIC_AUTHORIZATION_FAILED" in errors[0]  # no ACL: the feed writes trades only


def test_pipeline_java_clients_read_commit_and_write_as_their_user(scram_broker: dict, tmp_path: Path) -> None:
    container = prod_container("Job", "darkpool-submit")
    user = user_of(container)
    assert user == "darkpool-pipeline"
    env = client_env(container, scram_broker["passwords"][user], scram_broker["bootstrap"])
    settings = Settings(kafka_security_protocol=env["DARKPOOL_KAFKA_SECURITY_PROTOCOL"],
                        kafka_sasl_mechanism=env["DARKPOOL_KAFKA_SASL_MECHANISM"],
                        kafka_sasl_username=env["DARKPOOL_KAFKA_SASL_USERNAME"],
                        kafka_sasl_password=env["DARKPOOL_KAFKA_SASL_PASSWORD"])
    properties = {**java_client_config(settings), "bootstrap.servers": scram_broker["bootstrap"]}
    (tmp_path / "client.properties").write_text(
        "".join(f"{key}={value.replace(chr(92), chr(92) * 2)}\n" for key, value in properties.items()))
    (tmp_path / "PipelineClients.java").write_text(JAVA_CLIENTS)
    beam_classpath = jvm.classpath(load_settings(), "beam")  # the pipeline's own kafka-clients
    result = subprocess.run([java_executable(), "-cp", beam_classpath, str(tmp_path / "PipelineClients.java"),
                             str(tmp_path / "client.properties"), contracts.TRADES_TOPIC, contracts.LIQUIDITY_TOPIC,
                             "darkpool-pipeline", "1"], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "wrote 1" in result.stdout


def test_serving_reads_the_output_topics_as_its_user(scram_broker: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from serving import create_app, start_consumer

    container = prod_container("Deployment", "darkpool-serving")
    user = user_of(container)
    assert user == "darkpool-serving"
    for key, value in client_env(container, scram_broker["passwords"][user], scram_broker["bootstrap"]).items():
        if key.startswith("DARKPOOL_KAFKA_"):
            monkeypatch.setenv(key, value)
    app = create_app({"BOOTSTRAP_SERVERS": scram_broker["bootstrap"], "LAG_CHECK_SECONDS": 1.0})
    start_consumer(app)
    try:
        client = app.test_client()
        deadline = time.monotonic() + 60
        while (response := client.get("/api/v1/ready")).status_code != 200:
            assert time.monotonic() < deadline, response.get_json()
            time.sleep(0.5)
    finally:
        app.extensions["darkpool"].close()


def test_a_wrong_password_is_refused(scram_broker: dict) -> None:
    errors: list[KafkaError] = []
    admin = AdminClient({"bootstrap.servers": scram_broker["bootstrap"], **sasl("darkpool-serving", "not-it"),
                         "error_cb": errors.append, "log_level": 0})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        admin.poll(0.5)  # serves the error callbacks
    assert any(error.code() == KafkaError._AUTHENTICATION for error in errors), errors
