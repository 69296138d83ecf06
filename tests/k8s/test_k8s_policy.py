"""Policy checks over the overlays as the real kustomize renders them (deploy/policy.py).

Both overlays pass; deliberately broken variants — of the rendered objects, and of the k8s/ files
themselves (rendered again) — are caught by the rule that guards them. No API server needed.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from k8s_support import pipeline_argv

from darkpool import __version__, contracts
from deploy import policy, render
from deploy.submit import flag_value, read_args

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    """Both overlays, rendered once by kustomize."""
    return {overlay: render.render_objects(overlay) for overlay in render.OVERLAYS}


def find(objects: list[dict], kind: str, name: str) -> dict:
    """The object of that kind whose name is ``name`` (or, for generated ConfigMaps, starts with it)."""
    matches = [o for o in objects if o["kind"] == kind and (o["metadata"]["name"] == name
                                                            or o["metadata"]["name"].startswith(f"{name}-"))]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} matches"
    return matches[0]


def container(objects: list[dict], kind: str, name: str, index: int = 0) -> dict:
    return find(objects, kind, name)["spec"]["template"]["spec"]["containers"][index]


def sidecar(objects: list[dict]) -> dict:
    flink = find(objects, "FlinkDeployment", "darkpool-flink")
    containers = flink["spec"]["taskManager"]["podTemplate"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "python-worker-pool")


def set_args(objects: list[dict], edit: Callable[[list[str]], list[str]]) -> None:
    """Rewrite the pipeline's arguments in the ConfigMap."""
    config_map = find(objects, "ConfigMap", "darkpool-pipeline")
    config_map["data"]["args"] = "\n".join(edit(read_args(config_map["data"]["args"])))


def replace_arg(flag: str, value: str | None) -> Callable[[list[str]], list[str]]:
    """An edit that sets ``flag`` to ``value`` (None: drops the flag)."""
    def edit(argv: list[str]) -> list[str]:
        kept = [a for a in argv if a != flag and not a.startswith(f"{flag}=")]
        return kept if value is None else [*kept, f"{flag}={value}"]
    return edit


def flink_conf(objects: list[dict]) -> dict:
    return find(objects, "FlinkDeployment", "darkpool-flink")["spec"]["flinkConfiguration"]


def topic(objects: list[dict], name: str) -> dict:
    return next(o for o in objects if o["kind"] == "KafkaTopic" and o["spec"]["topicName"] == name)


# --- both overlays pass ---------------------------------------------------------------------------------
@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_overlay_passes_every_policy_check(rendered: dict[str, list[dict]], overlay: str) -> None:
    violations = policy.check_objects(rendered[overlay])
    assert violations == [], "\n".join(map(str, violations))


@pytest.mark.parametrize("overlay", render.OVERLAYS)
def test_overlay_has_what_the_deployment_needs(rendered: dict[str, list[dict]], overlay: str) -> None:
    objects = rendered[overlay]
    kinds = {o["kind"] for o in objects}
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "FlinkDeployment", "Deployment", "Service", "Job", "ConfigMap",
            "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Namespace"} <= kinds
    namespace = find(objects, "Namespace", "darkpool-dev" if overlay == "dev" else "darkpool")["metadata"]["name"]
    assert all(o["metadata"].get("namespace") == namespace for o in objects if o["kind"] != "Namespace")
    images = {image for _, image in policy.image_references(objects)}
    assert images == {f"darkpool-flink:{__version__}", f"darkpool-python:{__version__}"}
    assert {topic(objects, name)["spec"]["topicName"] for name in contracts.ALL_TOPICS} == set(contracts.ALL_TOPICS)


def test_overlays_differ_where_they_should(rendered: dict[str, list[dict]]) -> None:
    dev, prod = rendered["dev"], rendered["prod"]
    # the feed only in dev
    assert any(o["kind"] == "Deployment" and o["metadata"]["name"] == "darkpool-feed" for o in dev)
    assert not any(o["kind"] == "Deployment" and o["metadata"]["name"] == "darkpool-feed" for o in prod)
    # prod: 3 brokers/3 controllers, replication 3, min.insync.replicas 2, more partitions, users, HA
    pools = {p["metadata"]["name"]: p["spec"]["replicas"] for p in prod if p["kind"] == "KafkaNodePool"}
    assert pools == {"controller": 3, "broker": 3}
    config = find(prod, "Kafka", "darkpool")["spec"]["kafka"]["config"]
    assert (config["default.replication.factor"], config["min.insync.replicas"]) == (3, 2)
    assert topic(prod, contracts.TRADES_TOPIC)["spec"]["partitions"] > topic(dev, contracts.TRADES_TOPIC)["spec"][
        "partitions"]
    assert {u["metadata"]["name"] for u in prod if u["kind"] == "KafkaUser"} == {
        "darkpool-pipeline", "darkpool-feed", "darkpool-serving"}
    assert find(prod, "Kafka", "darkpool")["spec"]["kafka"]["listeners"][0]["authentication"]["type"] == "scram-sha-512"
    assert flink_conf(prod)["high-availability.type"] == "kubernetes"
    assert find(prod, "FlinkDeployment", "darkpool-flink")["spec"]["jobManager"]["replicas"] == 2
    dev_args, prod_args = pipeline_argv(dev), pipeline_argv(prod)
    assert int(flag_value(prod_args, "--parallelism")) > int(flag_value(dev_args, "--parallelism"))
    assert "KafkaUser" not in {o["kind"] for o in dev}


# --- broken variants of the rendered objects ---------------------------------------------------------
def _no_limits(o: list[dict]) -> None:
    del container(o, "Deployment", "darkpool-serving")["resources"]["limits"]


def _no_readiness(o: list[dict]) -> None:
    del container(o, "Deployment", "darkpool-serving")["readinessProbe"]


def _root_job_server(o: list[dict]) -> None:
    find(o, "Deployment", "beam-job-server")["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = False


def _writable_sidecar(o: list[dict]) -> None:
    sidecar(o)["securityContext"]["readOnlyRootFilesystem"] = False


def _sidecar_without_requests(o: list[dict]) -> None:
    del sidecar(o)["resources"]["requests"]


def _latest(o: list[dict]) -> None:
    container(o, "Deployment", "darkpool-serving")["image"] = "darkpool-python:latest"


def _untagged(o: list[dict]) -> None:
    find(o, "FlinkDeployment", "darkpool-flink")["spec"]["image"] = "darkpool-flink"


def _old_version(o: list[dict]) -> None:
    container(o, "Deployment", "beam-job-server")["image"] = "registry.example/darkpool-flink:0.0.9"


def _no_default_deny(o: list[dict]) -> None:
    o.remove(find(o, "NetworkPolicy", "default-deny-ingress"))


def _no_serving_policy(o: list[dict]) -> None:
    o.remove(find(o, "NetworkPolicy", "darkpool-serving"))


def _job_server_open(o: list[dict]) -> None:
    del find(o, "NetworkPolicy", "beam-job-server")["spec"]["ingress"][0]["from"]


def _job_server_load_balancer(o: list[dict]) -> None:
    find(o, "Service", "beam-job-server")["spec"]["type"] = "LoadBalancer"


def _kafka_open(o: list[dict]) -> None:
    del find(o, "Kafka", "darkpool")["spec"]["kafka"]["listeners"][0]["networkPolicyPeers"]


def _serving_not_a_kafka_client(o: list[dict]) -> None:
    del find(o, "Deployment", "darkpool-serving")["spec"]["template"]["metadata"]["labels"]["darkpool.io/kafka-client"]


def _wrong_topic(o: list[dict]) -> None:
    set_args(o, replace_arg("--trades-topic", "darkpool.trade"))


def _parser_rejects(o: list[dict]) -> None:
    set_args(o, replace_arg("--period-minutes", "2"))  # the 5-minute window is no multiple of it


def _no_finish_bundle(o: list[dict]) -> None:
    set_args(o, replace_arg("--finish_bundle_before_checkpointing", None))


def _other_max_parallelism(o: list[dict]) -> None:
    set_args(o, replace_arg("--max_parallelism", "64"))


def _slower_checkpoints(o: list[dict]) -> None:
    set_args(o, replace_arg("--checkpointing_interval", "60000"))


def _nowhere_job_server(o: list[dict]) -> None:
    set_args(o, replace_arg("--job_endpoint", "beam-job-srv:8099"))


def _checkpoints_elsewhere(o: list[dict]) -> None:
    set_args(o, replace_arg("--state_backend_storage_path", "s3://other/checkpoints"))


def _parallelism_beyond_partitions(o: list[dict]) -> None:
    set_args(o, replace_arg("--parallelism", "64"))


def _loopback_environment(o: list[dict]) -> None:
    set_args(o, replace_arg("--environment_type", "LOOPBACK"))


def _job_reads_other_key(o: list[dict]) -> None:
    args = find(o, "Job", "darkpool-submit")["spec"]["template"]["spec"]["containers"][0]["args"]
    args[args.index("--args-file=/etc/darkpool/pipeline/args")] = "--args-file=/etc/darkpool/pipeline/argv"


def _retention(o: list[dict]) -> None:
    topic(o, contracts.TRADES_TOPIC)["spec"]["config"]["retention.ms"] = "86400000"


def _not_compacted(o: list[dict]) -> None:
    topic(o, contracts.MARKET_TOPIC)["spec"]["config"]["cleanup.policy"] = "delete"


def _deadletter_partitions(o: list[dict]) -> None:
    topic(o, contracts.DEADLETTER_TOPIC)["spec"]["partitions"] = 3


def _missing_topic(o: list[dict]) -> None:
    o.remove(topic(o, contracts.LIQUIDITY_TOPIC))


def _under_replicated(o: list[dict]) -> None:
    topic(o, contracts.TRADES_TOPIC)["spec"]["replicas"] = 2


def _buffer_timeout(o: list[dict]) -> None:
    flink_conf(o)["execution.buffer-timeout.interval"] = "100 ms"


def _local_checkpoints(o: list[dict]) -> None:
    flink_conf(o)["state.checkpoints.dir"] = "file:///tmp/checkpoints"


def _flink_118(o: list[dict]) -> None:
    find(o, "FlinkDeployment", "darkpool-flink")["spec"]["flinkVersion"] = "v1_18"


def _no_sidecar(o: list[dict]) -> None:
    find(o, "FlinkDeployment", "darkpool-flink")["spec"]["taskManager"]["podTemplate"]["spec"]["containers"] = []


def _sidecar_first(o: list[dict]) -> None:
    template = find(o, "FlinkDeployment", "darkpool-flink")["spec"]["taskManager"]["podTemplate"]["spec"]
    template["containers"].reverse()


def _no_s3_conf(o: list[dict]) -> None:
    del find(o, "FlinkDeployment", "darkpool-flink")["spec"]["podTemplate"]["spec"]["initContainers"]


def _flink_reads_the_mounted_conf(o: list[dict]) -> None:
    main = find(o, "FlinkDeployment", "darkpool-flink")["spec"]["podTemplate"]["spec"]["containers"][0]
    main["env"] = [e for e in main["env"] if e["name"] != "FLINK_CONF_DIR"]


def _init_without_limits(o: list[dict]) -> None:
    init = find(o, "FlinkDeployment", "darkpool-flink")["spec"]["podTemplate"]["spec"]["initContainers"][0]
    del init["resources"]["limits"]


def _two_jobmanagers_no_ha(o: list[dict]) -> None:
    find(o, "FlinkDeployment", "darkpool-flink")["spec"]["jobManager"]["replicas"] = 2
    flink_conf(o).pop("high-availability.type", None)


def _job_server_conf_drift(o: list[dict]) -> None:
    config_map = find(o, "ConfigMap", "beam-job-server-conf")
    config_map["data"]["flink-conf.yaml"] = config_map["data"]["flink-conf.yaml"].replace(
        "pipeline.max-parallelism: 128", "pipeline.max-parallelism: 256")


def _kafka_4_0(o: list[dict]) -> None:
    find(o, "Kafka", "darkpool")["spec"]["kafka"]["version"] = "4.0.0"


def _no_controllers(o: list[dict]) -> None:
    find(o, "KafkaNodePool", "controller")["spec"]["roles"] = ["broker"]


def _pipeline_cannot_read(o: list[dict]) -> None:
    user = find(o, "KafkaUser", "darkpool-pipeline")
    user["spec"]["authorization"]["acls"] = [a for a in user["spec"]["authorization"]["acls"]
                                             if a["resource"].get("name") != contracts.TRADES_TOPIC]


def _env(o: list[dict], kind: str, name: str) -> dict[str, dict]:
    return {e["name"]: e for e in find(o, kind, name)["spec"]["template"]["spec"]["containers"][0]["env"]}


def _serving_as_the_pipeline(o: list[dict]) -> None:
    _env(o, "Deployment", "darkpool-serving")["DARKPOOL_KAFKA_SASL_USERNAME"]["value"] = "darkpool-pipeline"


def _password_of_another_user(o: list[dict]) -> None:
    _env(o, "Job", "darkpool-submit")["DARKPOOL_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] = "admin"


def _sasl_on_a_plain_listener(o: list[dict]) -> None:
    container = find(o, "Deployment", "darkpool-feed")["spec"]["template"]["spec"]["containers"][0]
    container["env"].append({"name": "DARKPOOL_KAFKA_SECURITY_PROTOCOL", "value": "SASL_PLAINTEXT"})


def _unauthenticated_listener(o: list[dict]) -> None:
    del find(o, "Kafka", "darkpool")["spec"]["kafka"]["listeners"][0]["authentication"]


BROKEN = [
    # (overlay, mutation, rule, text expected in the message)
    ("dev", _no_limits, "resources", "limits.cpu"),
    ("dev", _no_readiness, "probes", "readinessProbe"),
    ("dev", _root_job_server, "non-root", "runAsNonRoot"),
    ("dev", _writable_sidecar, "read-only-root", "python-worker-pool"),
    ("prod", _sidecar_without_requests, "resources", "requests.memory"),
    ("dev", _latest, "image", "latest"),
    ("dev", _untagged, "image", "no tag"),
    ("dev", _old_version, "image", __version__),
    ("dev", _no_default_deny, "network", "default-deny"),
    ("dev", _no_serving_policy, "network", "darkpool-serving"),
    ("dev", _job_server_open, "network", "open to any client"),
    ("dev", _job_server_load_balancer, "network", "LoadBalancer"),
    ("prod", _kafka_open, "network", "networkPolicyPeers"),
    ("dev", _serving_not_a_kafka_client, "network", "does not admit"),
    ("dev", _wrong_topic, "pipeline", "darkpool.trade'"),
    ("dev", _parser_rejects, "pipeline", "multiple of --period-minutes"),
    ("dev", _no_finish_bundle, "pipeline", "--finish_bundle_before_checkpointing"),
    ("prod", _other_max_parallelism, "pipeline", "--max_parallelism"),
    ("dev", _slower_checkpoints, "pipeline", "--checkpointing_interval=10000"),
    ("dev", _nowhere_job_server, "pipeline", "beam-job-srv:8099"),
    ("dev", _checkpoints_elsewhere, "pipeline", "state.checkpoints.dir"),
    ("prod", _parallelism_beyond_partitions, "pipeline", "scale both together"),
    ("dev", _loopback_environment, "pipeline", "EXTERNAL"),
    ("dev", _job_reads_other_key, "pipeline", "--args-file"),
    ("dev", _retention, "topics", "retention.ms"),
    ("prod", _not_compacted, "topics", "compact"),
    ("dev", _deadletter_partitions, "topics", "3 partitions"),
    ("dev", _missing_topic, "topics", contracts.LIQUIDITY_TOPIC),
    ("prod", _under_replicated, "topics", "default.replication.factor"),
    ("dev", _buffer_timeout, "flink", "execution.buffer-timeout.interval"),
    ("dev", _local_checkpoints, "flink", "object storage"),
    ("dev", _flink_118, "flink", "v1_18"),
    ("dev", _no_sidecar, "flink", "worker-pool sidecar"),
    ("prod", _sidecar_first, "flink", "operator 1.7 would merge them"),
    ("dev", _no_s3_conf, "flink", "no init container writes the S3 endpoint"),
    ("prod", _flink_reads_the_mounted_conf, "flink", "FLINK_CONF_DIR=None"),
    ("dev", _init_without_limits, "resources", "flink-s3-conf"),
    ("dev", _two_jobmanagers_no_ha, "flink", "high-availability.type"),
    ("dev", _job_server_conf_drift, "flink", "pipeline.max-parallelism"),
    ("dev", _kafka_4_0, "kafka", "4.0.0"),
    ("dev", _no_controllers, "kafka", "controller"),
    ("prod", _pipeline_cannot_read, "acls", f"Read on topic {contracts.TRADES_TOPIC}"),
    ("prod", _unauthenticated_listener, "kafka", "no authentication"),
    ("prod", _serving_as_the_pipeline, "kafka-auth", "must be darkpool-serving"),
    ("prod", _password_of_another_user, "kafka-auth", "Secret darkpool-pipeline"),
    ("dev", _sasl_on_a_plain_listener, "kafka-auth", "needs PLAINTEXT"),
]


@pytest.mark.parametrize(("overlay", "mutate", "rule", "text"), BROKEN, ids=[b[1].__name__.strip("_") for b in BROKEN])
def test_broken_variant_is_caught(rendered: dict[str, list[dict]], overlay: str, mutate: Callable, rule: str,
                                  text: str) -> None:
    objects = copy.deepcopy(rendered[overlay])
    mutate(objects)
    violations = policy.check_objects(objects)
    matching = [v for v in violations if v.rule == rule and text in str(v)]
    assert matching, f"no [{rule}] violation mentioning {text!r}; got:\n" + "\n".join(map(str, violations))


# --- broken k8s/ files, rendered again by kustomize --------------------------------------------------
@pytest.fixture
def k8s_copy(tmp_path: Path) -> Path:
    """A copy of the k8s/ folder to break."""
    root = tmp_path / "k8s"
    shutil.copytree(render.K8S_DIR, root)
    return root


def test_a_topic_renamed_in_the_args_file_is_caught_after_rendering(k8s_copy: Path) -> None:
    args_file = k8s_copy / "overlays" / "prod" / "pipeline.args"
    args_file.write_text(args_file.read_text().replace("--market-topic=darkpool.market", "--market-topic=market"))
    prod = policy.check_objects(render.render_objects("prod", k8s_copy))
    assert any(v.rule == "pipeline" and "market_topic is 'market'" in v.message for v in prod)
    assert policy.check_objects(render.render_objects("dev", k8s_copy)) == []  # dev has its own (base) file


def test_a_version_bump_without_retagging_is_caught(k8s_copy: Path) -> None:
    images = k8s_copy / "components" / "images" / "kustomization.yaml"
    images.write_text(images.read_text().replace(f'newTag: "{__version__}"', 'newTag: "9.9.9"'))
    violations = policy.check_objects(render.render_objects("dev", k8s_copy))
    assert {v.ref.split(" ")[0] for v in violations if v.rule == "image"} >= {
        "FlinkDeployment/darkpool-dev/darkpool-flink", "Deployment/darkpool-dev/darkpool-serving",
        "Deployment/darkpool-dev/darkpool-feed", "Job/darkpool-dev/darkpool-submit"}


def test_a_topic_spec_change_in_the_base_is_caught(k8s_copy: Path) -> None:
    topics = k8s_copy / "base" / "kafka" / "topics.yaml"
    topics.write_text(topics.read_text().replace('retention.ms: "2419200000"', 'retention.ms: "604800000"'))
    for overlay in render.OVERLAYS:
        violations = policy.check_objects(render.render_objects(overlay, k8s_copy))
        assert any(v.rule == "topics" and contracts.DEADLETTER_TOPIC.replace(".", "-") in v.ref for v in violations)


def test_render_reports_kustomize_errors(k8s_copy: Path) -> None:
    (k8s_copy / "base" / "serving" / "serving.yaml").unlink()
    with pytest.raises(Exception, match="kustomize could not render"):
        render.render("dev", k8s_copy)


def test_args_file_reading() -> None:
    text = "# comment\n\n  --a=1  \n--b\n2\n# --c=3\n"
    assert read_args(text) == ["--a=1", "--b", "2"]
    assert flag_value(["--a=1", "--b", "2", "--a=4"], "--a") == "4"
    assert flag_value(["--a=1", "--b", "2"], "--b") == "2"
    assert flag_value(["--b", "--c"], "--b") is None
