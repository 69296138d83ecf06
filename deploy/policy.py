"""Policy checks over a rendered overlay: pure functions of the objects, so manifests cannot drift from code.

Each check returns the :class:`Violation` s it finds (none = the overlay passes):

- :func:`check_containers`: every container has CPU and memory requests and limits, probes when it
  serves a port, a non-root user and a read-only root filesystem without privilege escalation; the
  Strimzi pods' resources are set on their custom resources, the Flink pods' on the FlinkDeployment.
- :func:`check_images`: every image is tagged, never ``latest``; the project's images carry the
  project version (``darkpool.__version__``).
- :func:`check_network_policies`: ingress is denied by default; every workload that listens is
  selected by a policy that lets someone in; only the dashboard/API is open to any client; Kafka's
  listeners admit exactly the pipeline, the feed and serving.
- :func:`check_topics`: the KafkaTopics are the product's topics with the partitions and
  retention/compaction of ``darkpool/stack/topics.py`` (``product_topic_specs``), replicated as the
  cluster is.
- :func:`check_pipeline`: the ConfigMap's pipeline arguments parse with the pipeline's own parser
  (``pipeline/options.py``), name the topics of ``darkpool/contracts.py``, carry the Beam options
  ``pipeline/commands.py`` submits with, and point at Services and Kafka listeners that exist.
- :func:`check_flink`: the FlinkDeployment runs Flink 1.19, mirrors the local cluster's settings
  (``darkpool/stack/flink.py``), keeps state on object storage, carries the worker-pool sidecar, and
  has Kubernetes HA when it runs more than one JobManager; the job server's Flink configuration agrees.
- :func:`check_kafka`: a KRaft cluster at a Kafka version Strimzi 0.51 supports, with controller and
  broker node pools; with authorization on, every client has a KafkaUser whose ACLs cover what it uses.
- :func:`check_kafka_clients`: with an authenticated listener, serving, the feed and the submission
  authenticate as their KafkaUser (protocol, mechanism, user, the password from the user's Secret).

The product's defaults come from ``Settings()`` (the class defaults, not the environment): the
manifests must match the product, not whatever a shell exported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import yaml

from darkpool import __version__, contracts
from darkpool.config import Settings
from darkpool.stack import jvm
from darkpool.stack.flink import flink_configuration
from darkpool.stack.topics import product_topic_specs
from deploy.render import object_ref
from deploy.submit import flag_value, parse_args_or_error, read_args

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")
PROJECT_IMAGES = ("darkpool-flink", "darkpool-python")
FLINK_MAIN_CONTAINER = "flink-main-container"
FLINK_VERSION = "v1_19"
STRIMZI_KAFKA_VERSIONS = ("4.1.0", "4.1.1", "4.2.0")  # what Strimzi 0.51 supports
# flink_configuration() keys the FlinkDeployment must carry with the same value (addresses, ports,
# local paths and process sizes differ on purpose: the operator and the pod resources set those)
MIRRORED_FLINK_KEYS = (
    "taskmanager.numberOfTaskSlots", "taskmanager.memory.jvm-metaspace.size",
    "taskmanager.memory.task.off-heap.size", "taskmanager.memory.framework.off-heap.size",
    "parallelism.default", "cluster.evenly-spread-out-slots",
    "execution.buffer-timeout.interval", "state.backend.type", "state.backend.incremental",
    "state.checkpoints.num-retained", "execution.checkpointing.externalized-checkpoint-retention",
    "classloader.check-leaked-classloader", "heartbeat.timeout", "restart-strategy.type",
    "restart-strategy.fixed-delay.attempts", "restart-strategy.fixed-delay.delay", "env.java.opts.all",
)
STATE_DIR_KEYS = ("state.checkpoints.dir", "state.savepoints.dir")
# Beam options whose value is the same wherever the pipeline runs (the others name local addresses and paths)
ENVIRONMENT_FREE_BEAM_FLAGS = ("--runner", "--environment_type", "--checkpointing_interval", "--state_backend")
PIPELINE_CONFIGMAP = "darkpool-pipeline"
ARGS_KEY = "args"
# the worker pool, as darkpool/stack/beam.py worker_pool_service() starts it
WORKER_POOL_MODULE = "darkpool.stack.worker_pool"


@dataclass(frozen=True)
class Violation:
    """One broken rule: which object, which rule, what is wrong."""

    ref: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.ref}: [{self.rule}] {self.message}"


# --- walking the objects ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PodTemplate:
    """The pod a workload runs: its owner, labels, pod spec and role (pipeline / feed / serving / other)."""

    ref: str
    labels: dict
    spec: dict
    role: str


def _by_kind(objects: Iterable[dict], *kinds: str) -> list[dict]:
    return [obj for obj in objects if obj.get("kind") in kinds]


def _name(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def _pod_template_of(obj: dict) -> tuple[dict, dict] | None:
    """(labels, pod spec) of a built-in workload."""
    kind = obj.get("kind")
    if kind == "Pod":
        return (obj.get("metadata") or {}).get("labels") or {}, obj.get("spec") or {}
    template = (obj.get("spec") or {}).get("template")
    if kind == "CronJob":
        template = (((obj.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template")
    if not template:
        return None
    return (template.get("metadata") or {}).get("labels") or {}, template.get("spec") or {}


def _merge_containers(*lists: list[dict]) -> list[dict]:
    """Containers merged by name (later lists win per field), as the Flink operator merges pod templates."""
    merged: dict[str, dict] = {}
    for containers in lists:
        for container in containers or []:
            merged[container["name"]] = {**merged.get(container["name"], {}), **container}
    return list(merged.values())


def flink_pod_templates(flink: dict) -> list[PodTemplate]:
    """The JobManager and TaskManager pods of a FlinkDeployment: the common podTemplate merged with each
    component's, labelled as Flink's native Kubernetes integration labels them."""
    spec = flink.get("spec") or {}
    common = spec.get("podTemplate") or {}
    pods = []
    for component in ("jobManager", "taskManager"):
        own = (spec.get(component) or {}).get("podTemplate") or {}
        common_spec, own_spec = common.get("spec") or {}, own.get("spec") or {}
        pod_spec = {**common_spec, **own_spec,
                    "containers": _merge_containers(common_spec.get("containers"), own_spec.get("containers")),
                    "initContainers": _merge_containers(common_spec.get("initContainers"),
                                                        own_spec.get("initContainers")),
                    "volumes": (common_spec.get("volumes") or []) + (own_spec.get("volumes") or []),
                    "securityContext": own_spec.get("securityContext") or common_spec.get("securityContext") or {}}
        labels = {**((common.get("metadata") or {}).get("labels") or {}),
                  **((own.get("metadata") or {}).get("labels") or {}),
                  "app": _name(flink), "type": "flink-native-kubernetes",
                  "component": component.replace("Manager", "manager")}
        pods.append(PodTemplate(f"{object_ref(flink)} ({component})", labels, pod_spec, "pipeline"))
    return pods


def workload_role(spec: dict) -> str:
    """What a pod does for the product: pipeline (Beam services, submission, Flink), feed, serving, other."""
    for container in spec.get("containers") or []:
        words = [*(container.get("command") or []), *(container.get("args") or [])]
        text = " ".join(words)
        if "beam-job-server" in text or "beam-expansion-service" in text or WORKER_POOL_MODULE in text:
            return "pipeline"
        args = container.get("args") or []
        if args[:2] == ["k8s", "submit"]:
            return "pipeline"
        if args[:1] == ["serve"]:
            return "serving"
        if args[:1] == ["feed"]:
            return "feed"
    return "other"


def pod_templates(objects: Iterable[dict]) -> list[PodTemplate]:
    """Every pod the overlay runs: built-in workloads and the FlinkDeployment's pods."""
    pods = []
    for obj in objects:
        if obj.get("kind") in WORKLOAD_KINDS:
            found = _pod_template_of(obj)
            if found is not None:
                labels, spec = found
                pods.append(PodTemplate(object_ref(obj), labels, spec, workload_role(spec)))
        elif obj.get("kind") == "FlinkDeployment":
            pods.extend(flink_pod_templates(obj))
    return pods


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """A label selector (matchLabels, matchExpressions In/NotIn/Exists/DoesNotExist) against labels."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


# --- containers -------------------------------------------------------------------------------------
def _resources_complete(resources: dict | None) -> list[str]:
    """What is missing from a ResourceRequirements (requests and limits of cpu and memory)."""
    resources = resources or {}
    return [f"{kind}.{what}" for kind in ("requests", "limits") for what in ("cpu", "memory")
            if what not in (resources.get(kind) or {})]


def check_containers(objects: list[dict]) -> list[Violation]:
    """Resources, probes, non-root and read-only root filesystems for every container."""
    found: list[Violation] = []
    for pod in pod_templates(objects):
        pod_context = pod.spec.get("securityContext") or {}
        for container in [*(pod.spec.get("initContainers") or []), *(pod.spec.get("containers") or [])]:
            where = f"{pod.ref} container {container.get('name')}"
            context = container.get("securityContext") or {}
            flink_main = container.get("name") == FLINK_MAIN_CONTAINER and "FlinkDeployment" in pod.ref
            if not flink_main:  # the Flink containers' resources come from the FlinkDeployment (below)
                missing = _resources_complete(container.get("resources"))
                if missing:
                    found.append(Violation(where, "resources", f"no {', '.join(missing)}"))
                if container.get("ports"):
                    for probe in ("readinessProbe", "livenessProbe"):
                        if not container.get(probe):
                            found.append(Violation(where, "probes", f"serves a port but has no {probe}"))
            non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
            user = context.get("runAsUser", pod_context.get("runAsUser"))
            if non_root is not True:
                found.append(Violation(where, "non-root", "runAsNonRoot is not true"))
            if user == 0:
                found.append(Violation(where, "non-root", "runAsUser is 0"))
            if context.get("readOnlyRootFilesystem") is not True:
                found.append(Violation(where, "read-only-root", "readOnlyRootFilesystem is not true"))
            if context.get("allowPrivilegeEscalation") is not False:
                found.append(Violation(where, "privilege", "allowPrivilegeEscalation is not false"))
    for flink in _by_kind(objects, "FlinkDeployment"):
        for component in ("jobManager", "taskManager"):
            resources = ((flink.get("spec") or {}).get(component) or {}).get("resource") or {}
            for what in ("cpu", "memory"):
                if what not in resources:
                    found.append(Violation(object_ref(flink), "resources", f"{component}.resource has no {what}"))
    for pool in _by_kind(objects, "KafkaNodePool"):
        missing = _resources_complete((pool.get("spec") or {}).get("resources"))
        if missing:
            found.append(Violation(object_ref(pool), "resources", f"no {', '.join(missing)}"))
    for kafka in _by_kind(objects, "Kafka"):
        entity = (kafka.get("spec") or {}).get("entityOperator") or {}
        for operator in ("topicOperator", "userOperator"):
            if operator in entity:
                missing = _resources_complete((entity[operator] or {}).get("resources"))
                if missing:
                    found.append(Violation(object_ref(kafka), "resources",
                                           f"entityOperator.{operator}: no {', '.join(missing)}"))
    return found


# --- images -----------------------------------------------------------------------------------------
def image_references(objects: list[dict]) -> Iterator[tuple[str, str]]:
    """(where, image) for every image the overlay names."""
    for pod in pod_templates(objects):
        for container in [*(pod.spec.get("initContainers") or []), *(pod.spec.get("containers") or [])]:
            if "image" in container:
                yield f"{pod.ref} container {container.get('name')}", container["image"]
    for flink in _by_kind(objects, "FlinkDeployment"):
        yield object_ref(flink), (flink.get("spec") or {}).get("image") or ""


def split_image(image: str) -> tuple[str, str | None]:
    """(name, tag or None) of an image reference (a digest counts as a tag)."""
    if "@" in image:
        return image.split("@", 1)[0], image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        return image[: -len(last)] + last.split(":", 1)[0], last.split(":", 1)[1]
    return image, None


def check_images(objects: list[dict], version: str = __version__) -> list[Violation]:
    """Tagged images, never latest; the project's images at the project version."""
    found = []
    for where, image in image_references(objects):
        name, tag = split_image(image)
        if not image:
            found.append(Violation(where, "image", "no image"))
        elif tag is None:
            found.append(Violation(where, "image", f"{image} has no tag"))
        elif tag == "latest":
            found.append(Violation(where, "image", f"{image} uses the tag latest"))
        elif name.rsplit("/", 1)[-1] in PROJECT_IMAGES and tag != version:
            found.append(Violation(where, "image", f"{image}: the project's images carry its version {version}"))
    return found


# --- network policies -------------------------------------------------------------------------------
def _open_to_anyone(rule: dict) -> bool:
    """An ingress rule that admits any client (no `from`, an all-addresses ipBlock, or every namespace)."""
    peers = rule.get("from")
    if not peers:
        return True
    for peer in peers:
        if (peer.get("ipBlock") or {}).get("cidr") in ("0.0.0.0/0", "::/0"):
            return True
        if "namespaceSelector" in peer and not peer["namespaceSelector"] and "podSelector" not in peer:
            return True
    return False


def _is_default_deny(policy: dict) -> bool:
    spec = policy.get("spec") or {}
    return (not (spec.get("podSelector") or {}) and "Ingress" in (spec.get("policyTypes") or [])
            and not spec.get("ingress"))


def check_network_policies(objects: list[dict]) -> list[Violation]:
    """Default deny; a policy for every workload that listens; only serving open; Kafka for its clients only."""
    found = []
    policies = _by_kind(objects, "NetworkPolicy")
    if not any(_is_default_deny(p) for p in policies):
        found.append(Violation("NetworkPolicy", "network", "no default-deny ingress policy (podSelector {})"))
    pods = pod_templates(objects)
    allowing = [p for p in policies if (p.get("spec") or {}).get("ingress")]
    for pod in pods:
        flink_pod = "FlinkDeployment" in pod.ref  # Flink adds its ports (REST, RPC, blobs, data) itself
        listens = flink_pod or any(c.get("ports") for c in pod.spec.get("containers") or [])
        selected = [p for p in allowing if selector_matches((p.get("spec") or {}).get("podSelector"), pod.labels)]
        if listens and not selected:
            found.append(Violation(pod.ref, "network", "listens but no NetworkPolicy admits its clients"))
        for policy in selected:
            for rule in (policy.get("spec") or {}).get("ingress") or []:
                if _open_to_anyone(rule) and pod.role != "serving":
                    found.append(Violation(object_ref(policy), "network",
                                           f"open to any client, but selects {pod.ref} (only serving may be)"))
    for service in _by_kind(objects, "Service"):
        kind = (service.get("spec") or {}).get("type", "ClusterIP")
        targets = [p for p in pods if selector_matches({"matchLabels": (service.get("spec") or {}).get("selector")},
                                                        p.labels)]
        if kind in ("NodePort", "LoadBalancer") and any(p.role != "serving" for p in targets):
            found.append(Violation(object_ref(service), "network", f"type {kind} exposes a non-serving workload"))
    found.extend(_check_kafka_peers(objects, pods))
    return found


def _check_kafka_peers(objects: list[dict], pods: list[PodTemplate]) -> list[Violation]:
    """Every Kafka listener admits exactly the pipeline's, the feed's and serving's pods."""
    found = []
    clients = {"pipeline", "feed", "serving"}
    for kafka in _by_kind(objects, "Kafka"):
        for listener in ((kafka.get("spec") or {}).get("kafka") or {}).get("listeners") or []:
            where = f"{object_ref(kafka)} listener {listener.get('name')}"
            peers = listener.get("networkPolicyPeers")
            if not peers:
                found.append(Violation(where, "network", "no networkPolicyPeers: any pod reaches the brokers"))
                continue
            if any("podSelector" not in peer or "namespaceSelector" in peer or "ipBlock" in peer for peer in peers):
                found.append(Violation(where, "network", "networkPolicyPeers must be pod selectors of this namespace"))
                continue
            admitted = {pod.ref: pod for pod in pods
                        if any(selector_matches(peer["podSelector"], pod.labels) for peer in peers)}
            for pod in admitted.values():
                if pod.role not in clients:
                    found.append(Violation(where, "network", f"admits {pod.ref}, which is not a Kafka client"))
            for pod in pods:
                if pod.role in clients and pod.ref not in admitted and "(jobManager)" not in pod.ref:
                    found.append(Violation(where, "network", f"does not admit {pod.ref} ({pod.role})"))
    return found


# --- topics -----------------------------------------------------------------------------------------
def _kafka_config(objects: list[dict]) -> dict:
    kafkas = _by_kind(objects, "Kafka")
    return (((kafkas[0].get("spec") or {}).get("kafka") or {}).get("config") or {}) if kafkas else {}


def _broker_replicas(objects: list[dict]) -> int:
    return sum((pool.get("spec") or {}).get("replicas", 0) for pool in _by_kind(objects, "KafkaNodePool")
               if "broker" in ((pool.get("spec") or {}).get("roles") or []))


def topic_name(topic: dict) -> str:
    return (topic.get("spec") or {}).get("topicName") or _name(topic)


def check_topics(objects: list[dict]) -> list[Violation]:
    """The KafkaTopics equal ``product_topic_specs`` (at the overlay's partition count), replicated as configured."""
    found = []
    topics = {topic_name(t): t for t in _by_kind(objects, "KafkaTopic")}
    if set(topics) != set(contracts.ALL_TOPICS):
        found.append(Violation("KafkaTopic", "topics", f"topics {sorted(topics)} are not the product's "
                                                       f"{sorted(contracts.ALL_TOPICS)}"))
    trades = topics.get(contracts.TRADES_TOPIC)
    if trades is None:
        return found
    partitions = (trades.get("spec") or {}).get("partitions")
    specs = product_topic_specs(partitions=partitions)
    replication = int(_kafka_config(objects).get("default.replication.factor", 1))
    min_isr = int(_kafka_config(objects).get("min.insync.replicas", 1))
    brokers = _broker_replicas(objects)
    clusters = {_name(k) for k in _by_kind(objects, "Kafka")}
    for name, topic in topics.items():
        if name not in specs:
            continue
        spec, want = topic.get("spec") or {}, specs[name]
        ref = object_ref(topic)
        if spec.get("partitions") != want.partitions:
            found.append(Violation(ref, "topics", f"{spec.get('partitions')} partitions, darkpool topics: "
                                                  f"{want.partitions}"))
        config = {key: str(value) for key, value in (spec.get("config") or {}).items()}
        if config != want.config:
            found.append(Violation(ref, "topics", f"config {config} differs from darkpool topics' {want.config}"))
        if spec.get("replicas") != replication:
            found.append(Violation(ref, "topics", f"replicas {spec.get('replicas')}, the cluster's "
                                                  f"default.replication.factor is {replication}"))
        if isinstance(spec.get("replicas"), int) and spec["replicas"] > brokers:
            found.append(Violation(ref, "topics", f"replicas {spec['replicas']} > {brokers} brokers"))
        if isinstance(spec.get("replicas"), int) and spec["replicas"] > 1 and min_isr >= spec["replicas"]:
            found.append(Violation(ref, "topics", f"min.insync.replicas {min_isr} leaves no broker to lose"))
        if (topic.get("metadata") or {}).get("labels", {}).get("strimzi.io/cluster") not in clusters:
            found.append(Violation(ref, "topics", f"label strimzi.io/cluster is not one of {sorted(clusters)}"))
    return found


# --- the pipeline's arguments ---------------------------------------------------------------------
def pipeline_configmap(objects: list[dict]) -> dict | None:
    """The (generated, hash-suffixed) ConfigMap of the pipeline's arguments."""
    for config_map in _by_kind(objects, "ConfigMap"):
        name = _name(config_map)
        if (name == PIPELINE_CONFIGMAP or name.startswith(f"{PIPELINE_CONFIGMAP}-")) and ARGS_KEY in (
                config_map.get("data") or {}):
            return config_map
    return None


def _services(objects: list[dict]) -> dict[str, set[int]]:
    """Service name -> its ports (plus Strimzi's bootstrap Services and the operator's Flink REST Service)."""
    services = {_name(s): {p.get("port") for p in (s.get("spec") or {}).get("ports") or []}
                for s in _by_kind(objects, "Service")}
    for kafka in _by_kind(objects, "Kafka"):
        ports = {listener.get("port") for listener in ((kafka.get("spec") or {}).get("kafka") or {}).get(
            "listeners") or []}
        services[f"{_name(kafka)}-kafka-bootstrap"] = ports
    for flink in _by_kind(objects, "FlinkDeployment"):
        services[f"{_name(flink)}-rest"] = {8081}
    return services


def _address_exists(address: str, services: dict[str, set[int]]) -> bool:
    host, _, port = address.rpartition(":")
    return port.isdigit() and int(port) in services.get(host.split(".")[0], set())


def _submission_job(objects: list[dict], config_map: dict) -> tuple[dict, dict] | None:
    """(Job, its container) that mounts the pipeline ConfigMap and runs `darkpool k8s submit`."""
    for job in _by_kind(objects, "Job"):
        labels_spec = _pod_template_of(job)
        if labels_spec is None:
            continue
        spec = labels_spec[1]
        volumes = {v["name"]: v for v in spec.get("volumes") or [] if "configMap" in v}
        for container in spec.get("containers") or []:
            if (container.get("args") or [])[:2] != ["k8s", "submit"]:
                continue
            for mount in container.get("volumeMounts") or []:
                volume = volumes.get(mount["name"])
                if volume and volume["configMap"].get("name") == _name(config_map):
                    return job, {**container, "_args_dir": mount["mountPath"]}
    return None


def check_pipeline(objects: list[dict], settings: Settings | None = None) -> list[Violation]:
    """The ConfigMap's arguments: the pipeline's parser accepts them; topics, Beam options, addresses."""
    # the pipeline's own Flink arguments (tests/test_layers.py: deploy may import pipeline)
    from pipeline.commands import DEFAULT_JOB_NAME, flink_beam_args, scaling_args

    settings = settings or Settings()
    config_map = pipeline_configmap(objects)
    if config_map is None:
        return [Violation("ConfigMap", "pipeline", f"no ConfigMap {PIPELINE_CONFIGMAP} with key {ARGS_KEY!r}")]
    ref = object_ref(config_map)
    argv = read_args(config_map["data"][ARGS_KEY])
    found = []
    submission = _submission_job(objects, config_map)
    if submission is None:
        found.append(Violation(ref, "pipeline", "no Job runs `darkpool k8s submit` with this ConfigMap mounted"))
    else:
        job, container = submission
        args_file = flag_value(container.get("args") or [], "--args-file")
        if args_file != f"{container['_args_dir'].rstrip('/')}/{ARGS_KEY}":
            found.append(Violation(object_ref(job), "pipeline", f"--args-file {args_file} is not the ConfigMap's "
                                                                f"{ARGS_KEY} at {container['_args_dir']}"))
    try:
        config, _beam_args = parse_args_or_error(argv)
    except Exception as exc:  # noqa: BLE001 - the parser's rejection is the finding
        return [*found, Violation(ref, "pipeline", str(exc))]
    topics = {"trades_topic": contracts.TRADES_TOPIC, "deadletter_topic": contracts.DEADLETTER_TOPIC,
              "liquidity_topic": contracts.LIQUIDITY_TOPIC, "market_topic": contracts.MARKET_TOPIC,
              "alerts_topic": contracts.ALERTS_TOPIC}
    for field, want in topics.items():
        if getattr(config, field) != want:
            found.append(Violation(ref, "pipeline", f"{field} is {getattr(config, field)!r}, the contract's "
                                                    f"is {want!r}"))
    if config.source != "kafka":
        found.append(Violation(ref, "pipeline", f"--source {config.source}: the deployment runs the streaming job"))
    given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    job_name = flag_value(argv, "--job_name") or DEFAULT_JOB_NAME
    parallelism = config.parallelism or 1
    expected = [*flink_beam_args(settings, job_name), *scaling_args(settings, min(parallelism,
                                                                                   settings.flink_max_parallelism))]
    for flag in sorted({arg.split("=", 1)[0] for arg in expected} - given):
        found.append(Violation(ref, "pipeline", f"no {flag}: `darkpool run` submits with it "
                                                "(pipeline/commands.py)"))
    for flag in ENVIRONMENT_FREE_BEAM_FLAGS:
        want = flag_value(expected, flag)
        if want is not None and flag_value(argv, flag) != want:
            found.append(Violation(ref, "pipeline", f"{flag}={flag_value(argv, flag)}: `darkpool run` submits "
                                                    f"{flag}={want} (pipeline/commands.py)"))
    if flag_value(argv, "--max_parallelism") != str(settings.flink_max_parallelism):
        found.append(Violation(ref, "pipeline", f"--max_parallelism must be the fixed "
                                                f"{settings.flink_max_parallelism} (Settings.flink_max_parallelism)"))
    output = flag_value(argv, "--output")
    if output is not None and output.startswith("s3://") and str(config.output_path) != output:
        found.append(Violation(ref, "pipeline", f"--output {output} parses as {config.output_path!s}: the "
                                                "pipeline does not take an s3:// dataset root"))
    services = _services(objects)
    for what, address in (("--job_endpoint", flag_value(argv, "--job_endpoint")),
                          ("--artifact_endpoint", flag_value(argv, "--artifact_endpoint")),
                          ("--expansion-service", config.expansion_service),
                          ("--bootstrap-servers", config.bootstrap_servers)):
        if address is not None and not _address_exists(address, services):
            found.append(Violation(ref, "pipeline", f"{what} {address}: no such Service port in the overlay"))
    found.extend(_check_against_flink(objects, argv, parallelism, ref))
    found.extend(_check_acls(objects, config))
    return found


def _check_against_flink(objects: list[dict], argv: list[str], parallelism: int, ref: str) -> list[Violation]:
    """Arguments that must agree with the FlinkDeployment and the topics."""
    found = []
    flinks = _by_kind(objects, "FlinkDeployment")
    if not flinks:
        return [Violation(ref, "pipeline", "no FlinkDeployment to run the pipeline")]
    conf = (flinks[0].get("spec") or {}).get("flinkConfiguration") or {}
    storage = flag_value(argv, "--state_backend_storage_path")
    if storage != conf.get("state.checkpoints.dir"):
        found.append(Violation(ref, "pipeline", f"--state_backend_storage_path {storage} is not the cluster's "
                                                f"state.checkpoints.dir {conf.get('state.checkpoints.dir')}"))
    pool_ports = {port.get("containerPort") for pod in flink_pod_templates(flinks[0]) if "taskManager" in pod.ref
                  for c in pod.spec.get("containers") or [] if c.get("name") != FLINK_MAIN_CONTAINER
                  for port in c.get("ports") or []}
    environment = flag_value(argv, "--environment_config") or ""
    host, _, port = environment.rpartition(":")
    if flag_value(argv, "--environment_type") != "EXTERNAL" or host != "localhost" or not port.isdigit() or int(
            port) not in pool_ports:
        found.append(Violation(ref, "pipeline", f"--environment_type/--environment_config must be EXTERNAL at "
                                                f"localhost:<the worker-pool sidecar's port {sorted(pool_ports)}>"))
    topics = {topic_name(t): t for t in _by_kind(objects, "KafkaTopic")}
    partitions = ((topics.get(contracts.TRADES_TOPIC) or {}).get("spec") or {}).get("partitions")
    if isinstance(partitions, int) and parallelism > partitions:
        found.append(Violation(ref, "pipeline", f"--parallelism {parallelism} > {partitions} partitions of "
                                                f"{contracts.TRADES_TOPIC}: scale both together"))
    return found


def _acl_allows(user: dict, resource_type: str, name: str, operation: str) -> bool:
    for acl in (((user.get("spec") or {}).get("authorization") or {}).get("acls") or []):
        resource = acl.get("resource") or {}
        operations = acl.get("operations") or ([acl["operation"]] if "operation" in acl else [])
        if resource.get("type") != resource_type or not ({operation, "All"} & set(operations)):
            continue
        pattern = resource.get("patternType", "literal")
        wanted = resource.get("name", "")
        if wanted == "*" or (pattern == "literal" and wanted == name) or (
                pattern == "prefix" and name.startswith(wanted)):
            return True
    return False


def _check_acls(objects: list[dict], config) -> list[Violation]:
    """With authorization on: the KafkaUsers of the pipeline, feed and serving can do what the product does."""
    found = []
    kafkas = _by_kind(objects, "Kafka")
    if not kafkas or not ((kafkas[0].get("spec") or {}).get("kafka") or {}).get("authorization"):
        return found
    users = {_name(u): u for u in _by_kind(objects, "KafkaUser")}
    needs = {
        "darkpool-pipeline": [("topic", config.trades_topic, "Read"), ("group", config.group_id, "Read"),
                              ("topic", config.liquidity_topic, "Write"), ("topic", config.market_topic, "Write"),
                              ("topic", config.deadletter_topic, "Write"), ("topic", config.alerts_topic, "Write")],
        "darkpool-serving": [("topic", config.liquidity_topic, "Read"), ("topic", config.market_topic, "Read"),
                             ("topic", contracts.ALERTS_TOPIC, "Read"), ("group", "darkpool-serving-1", "Read")],
        "darkpool-feed": [("topic", config.trades_topic, "Write")],
    }
    for user_name, wanted in needs.items():
        user = users.get(user_name)
        if user is None:
            found.append(Violation(object_ref(kafkas[0]), "acls", f"authorization is on but no KafkaUser {user_name}"))
            continue
        for resource_type, name, operation in wanted:
            if not _acl_allows(user, resource_type, name, operation):
                found.append(Violation(object_ref(user), "acls", f"no {operation} on {resource_type} {name}"))
    return found


# --- Flink ------------------------------------------------------------------------------------------
def _normal(value: object) -> str:
    """A configuration value compared as Flink reads it (booleans lower case, runs of blanks as one)."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return " ".join(text.split())


def check_flink(objects: list[dict], settings: Settings | None = None) -> list[Violation]:
    """The FlinkDeployment and the job server's Flink configuration against the local cluster's."""
    settings = settings or Settings()
    local = flink_configuration(settings)
    found = []
    flinks = _by_kind(objects, "FlinkDeployment")
    if len(flinks) != 1:
        return [Violation("FlinkDeployment", "flink", f"{len(flinks)} FlinkDeployments, expected one session cluster")]
    flink = flinks[0]
    ref, spec = object_ref(flink), flink.get("spec") or {}
    conf = spec.get("flinkConfiguration") or {}
    if spec.get("flinkVersion") != FLINK_VERSION:
        found.append(Violation(ref, "flink", f"flinkVersion {spec.get('flinkVersion')}, the product runs Flink 1.19"))
    if spec.get("job"):
        found.append(Violation(ref, "flink", "has a job: the product runs a session cluster (jobs come from Beam)"))
    for key in MIRRORED_FLINK_KEYS:
        if _normal(conf.get(key)) != _normal(local[key]):
            found.append(Violation(ref, "flink", f"{key} is {conf.get(key)!r}, the local cluster's is {local[key]!r} "
                                                 "(darkpool/stack/flink.py)"))
    # the overlays still fix the key groups (the local stack leaves them to Flink: docs/scale-out.md)
    if _normal(conf.get("pipeline.max-parallelism")) != _normal(str(settings.flink_max_parallelism)):
        found.append(Violation(ref, "flink", f"pipeline.max-parallelism is {conf.get('pipeline.max-parallelism')!r}, "
                                             f"expected {settings.flink_max_parallelism} "
                                             "(Settings.flink_max_parallelism)"))
    if _normal(conf.get("env.java.opts.all")) != _normal(" ".join(jvm.JAVA17_OPENS)):
        found.append(Violation(ref, "flink", "env.java.opts.all is not the Java 17 list of darkpool/stack/jvm.py"))
    for key in STATE_DIR_KEYS:
        if not str(conf.get(key, "")).startswith("s3://"):
            found.append(Violation(ref, "flink", f"{key} {conf.get(key)!r} is not on object storage (s3://)"))
    replicas = (spec.get("jobManager") or {}).get("replicas", 1)
    if conf.get("high-availability.type") == "kubernetes" or replicas > 1:
        if conf.get("high-availability.type") != "kubernetes":
            found.append(Violation(ref, "flink", f"{replicas} JobManagers need high-availability.type: kubernetes"))
        if not str(conf.get("high-availability.storageDir", "")).startswith("s3://"):
            found.append(Violation(ref, "flink", "high-availability.storageDir must be on object storage (s3://)"))
    taskmanager = next(pod for pod in flink_pod_templates(flink) if "taskManager" in pod.ref)
    pools = [c for c in taskmanager.spec.get("containers") or []
             if WORKER_POOL_MODULE in " ".join([*(c.get("command") or []), *(c.get("args") or [])])]
    if not pools:
        found.append(Violation(ref, "flink", f"no worker-pool sidecar ({WORKER_POOL_MODULE}) in the TaskManager pods"))
    found.extend(_check_template_positions(flink))
    found.extend(_check_s3_configuration(flink))
    if not spec.get("serviceAccount"):
        found.append(Violation(ref, "flink", "no serviceAccount (the JobManager creates TaskManager pods)"))
    found.extend(_check_job_server_conf(objects, local, conf))
    return found


def _check_s3_configuration(flink: dict) -> list[Violation]:
    """State on s3:// needs the S3 endpoint and keys in the Flink configuration of every Flink pod: an init
    container writes them (from the Secret darkpool-s3) into the FLINK_CONF_DIR Flink starts with."""
    ref = object_ref(flink)
    found = []
    for pod in flink_pod_templates(flink):
        main = next((c for c in pod.spec.get("containers") or [] if c.get("name") == FLINK_MAIN_CONTAINER), {})
        conf_dir = {e["name"]: e.get("value") for e in main.get("env") or []}.get("FLINK_CONF_DIR")
        writers = []
        for init in pod.spec.get("initContainers") or []:
            env = {e["name"]: e for e in init.get("env") or []}
            secrets = {((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") for e in env.values()}
            script = " ".join(init.get("command") or [])
            if "s3.endpoint" in script and "s3.secret-key" in script and "darkpool-s3" in secrets:
                writers.append((env.get("FLINK_CONF_DIR") or {}).get("value"))
        if not writers:
            found.append(Violation(ref, "flink", f"{pod.ref}: no init container writes the S3 endpoint and keys "
                                                 "(Secret darkpool-s3) into the Flink configuration"))
        elif conf_dir is None or conf_dir not in writers:
            written = ", ".join(map(str, writers))
            found.append(Violation(ref, "flink", f"{pod.ref}: Flink starts with FLINK_CONF_DIR={conf_dir}, not the "
                                                 f"configuration with the S3 settings ({written})"))
    return found


def _check_template_positions(flink: dict) -> list[Violation]:
    """Operator 1.7 merges a component's podTemplate into the common one list element by list element
    (1.10 by name): a container of the common template must sit at the same index in the component's,
    or the two containers' fields are mixed up (seen here: the sidecar got the main container's env)."""
    found = []
    spec = flink.get("spec") or {}
    common = ((spec.get("podTemplate") or {}).get("spec") or {}).get("containers") or []
    for component in ("jobManager", "taskManager"):
        own = ((((spec.get(component) or {}).get("podTemplate") or {}).get("spec") or {}).get("containers")) or []
        for index, (base, mine) in enumerate(zip(common, own, strict=False)):
            if base.get("name") != mine.get("name"):
                found.append(Violation(object_ref(flink), "flink",
                                       f"{component}.podTemplate container {index} is {mine.get('name')!r} but the "
                                       f"podTemplate's is {base.get('name')!r}: operator 1.7 would merge them"))
    return found


def _check_job_server_conf(objects: list[dict], local: dict[str, str], cluster: dict) -> list[Violation]:
    """The job server's flink-conf.yaml (Beam builds each job from it) agrees with the local cluster's."""
    found = []
    for config_map in _by_kind(objects, "ConfigMap"):
        text = (config_map.get("data") or {}).get("flink-conf.yaml")
        if text is None:
            continue
        conf = yaml.safe_load(text) or {}
        for key, value in conf.items():
            if key in local and key in MIRRORED_FLINK_KEYS and _normal(value) != _normal(local[key]):
                found.append(Violation(object_ref(config_map), "flink", f"{key} is {value!r}, the local cluster's "
                                                                        f"is {local[key]!r}"))
            if key in cluster and _normal(value) != _normal(cluster[key]):
                found.append(Violation(object_ref(config_map), "flink", f"{key} is {value!r}, the "
                                                                        f"FlinkDeployment's is {cluster[key]!r}"))
    return found


# --- Kafka ------------------------------------------------------------------------------------------
def check_kafka(objects: list[dict]) -> list[Violation]:
    """A KRaft cluster with node pools, at a version Strimzi 0.51 supports; authentication where users exist."""
    found = []
    kafkas = _by_kind(objects, "Kafka")
    if len(kafkas) != 1:
        return [Violation("Kafka", "kafka", f"{len(kafkas)} Kafka clusters, expected one")]
    kafka = kafkas[0]
    ref, spec = object_ref(kafka), (kafka.get("spec") or {}).get("kafka") or {}
    annotations = (kafka.get("metadata") or {}).get("annotations") or {}
    for key in ("strimzi.io/kraft", "strimzi.io/node-pools"):
        if annotations.get(key) != "enabled":
            found.append(Violation(ref, "kafka", f"annotation {key}: enabled is missing"))
    if spec.get("version") not in STRIMZI_KAFKA_VERSIONS:
        found.append(Violation(ref, "kafka", f"Kafka {spec.get('version')}: Strimzi 0.51 supports "
                                             f"{', '.join(STRIMZI_KAFKA_VERSIONS)}"))
    pools = [p for p in _by_kind(objects, "KafkaNodePool")
             if (p.get("metadata") or {}).get("labels", {}).get("strimzi.io/cluster") == _name(kafka)]
    roles = {role for p in pools for role in (p.get("spec") or {}).get("roles") or []}
    if not {"controller", "broker"} <= roles:
        found.append(Violation(ref, "kafka", f"node pools have roles {sorted(roles)}: KRaft needs controller and "
                                             "broker"))
    controllers = sum((p.get("spec") or {}).get("replicas", 0) for p in pools
                      if "controller" in ((p.get("spec") or {}).get("roles") or []))
    if controllers % 2 == 0:
        found.append(Violation(ref, "kafka", f"{controllers} KRaft controllers: use an odd number for a quorum"))
    users = _by_kind(objects, "KafkaUser")
    listeners = spec.get("listeners") or []
    if users and any(not (listener.get("authentication") or {}).get("type") for listener in listeners):
        found.append(Violation(ref, "kafka", "KafkaUsers exist but a listener has no authentication"))
    if users and not spec.get("authorization"):
        found.append(Violation(ref, "kafka", "KafkaUsers with ACLs need spec.kafka.authorization"))
    return found


# the KafkaUser each Kafka client authenticates as, when the cluster has authorization on
CLIENT_USERS = {"serving": "darkpool-serving", "feed": "darkpool-feed", "submit": "darkpool-pipeline"}
MECHANISMS = {"scram-sha-512": "SCRAM-SHA-512", "scram-sha-256": "SCRAM-SHA-256", "plain": "PLAIN"}


def _client_kind(pod: PodTemplate) -> str | None:
    """serving / feed / submit for the pods that talk to Kafka with their own credentials, else None."""
    for container in pod.spec.get("containers") or []:
        args = container.get("args") or []
        if args[:2] == ["k8s", "submit"]:
            return "submit"
        if args[:1] in (["serve"], ["feed"]):
            return args[0].replace("serve", "serving")
    return None


def check_kafka_clients(objects: list[dict]) -> list[Violation]:
    """With authentication on the listener: serving, the feed and the submission authenticate (darkpool/
    kafka_client.py's DARKPOOL_KAFKA_*) as their KafkaUser, the password from the user's Secret, with the
    listener's protocol and mechanism. Without it: no client asks for SASL."""
    kafkas = _by_kind(objects, "Kafka")
    if not kafkas:
        return []
    listeners = ((kafkas[0].get("spec") or {}).get("kafka") or {}).get("listeners") or []
    listener = listeners[0] if listeners else {}
    authentication = (listener.get("authentication") or {}).get("type")
    protocol = ("SASL_SSL" if listener.get("tls") else "SASL_PLAINTEXT") if authentication else "PLAINTEXT"
    users = {_name(u) for u in _by_kind(objects, "KafkaUser")}
    found = []
    for pod in pod_templates(objects):
        kind = _client_kind(pod)
        if kind is None:
            continue
        container = next(c for c in pod.spec["containers"] if (c.get("args") or [])[:1] in (["k8s"], ["serve"],
                                                                                           ["feed"]))
        env = {e["name"]: e for e in container.get("env") or []}
        given = (env.get("DARKPOOL_KAFKA_SECURITY_PROTOCOL") or {}).get("value", "PLAINTEXT")
        if given != protocol:
            found.append(Violation(pod.ref, "kafka-auth", f"DARKPOOL_KAFKA_SECURITY_PROTOCOL is {given}, the "
                                                          f"listener {listener.get('name')} needs {protocol}"))
        if not authentication:
            continue
        user = CLIENT_USERS[kind]
        mechanism = (env.get("DARKPOOL_KAFKA_SASL_MECHANISM") or {}).get("value")
        if mechanism != MECHANISMS.get(authentication):
            found.append(Violation(pod.ref, "kafka-auth", f"DARKPOOL_KAFKA_SASL_MECHANISM is {mechanism}, the "
                                                          f"listener authenticates with {authentication}"))
        if (env.get("DARKPOOL_KAFKA_SASL_USERNAME") or {}).get("value") != user:
            found.append(Violation(pod.ref, "kafka-auth", f"DARKPOOL_KAFKA_SASL_USERNAME must be {user}"))
        if user not in users:
            found.append(Violation(pod.ref, "kafka-auth", f"no KafkaUser {user}"))
        secret = ((env.get("DARKPOOL_KAFKA_SASL_PASSWORD") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        if (secret.get("name"), secret.get("key")) != (user, "password"):
            found.append(Violation(pod.ref, "kafka-auth", f"DARKPOOL_KAFKA_SASL_PASSWORD must come from the Secret "
                                                          f"{user}, key password (the User Operator's)"))
    return found


CHECKS: tuple[Callable[[list[dict]], list[Violation]], ...] = (
    check_containers, check_images, check_network_policies, check_topics, check_pipeline, check_flink, check_kafka,
    check_kafka_clients,
)


def check_objects(objects: list[dict]) -> list[Violation]:
    """Every check over one rendered overlay."""
    return [violation for check in CHECKS for violation in check(objects)]


def describe(objects: list[dict]) -> str:
    """A one-line summary of an overlay for progress output: object counts by kind."""
    counts: dict[str, int] = {}
    for obj in objects:
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    return ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items()))

