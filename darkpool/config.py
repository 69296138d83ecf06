"""Configuration in one place: paths, ports and service defaults.

Every value has a default suitable for the local stack on loopback and can be
overridden by an environment variable named ``DARKPOOL_<FIELD>`` (upper case),
e.g. ``DARKPOOL_KAFKA_PORT=19092``. CLI flags override both.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _default_home() -> Path:
    return Path(os.environ.get("DARKPOOL_HOME", REPO_ROOT))


def _default_state_dir() -> Path:
    return Path(os.environ.get("DARKPOOL_STATE_DIR", _default_home() / ".state"))


@dataclass(frozen=True)
class Settings:
    """Paths and ports of the local stack. Use :func:`load_settings` to build one.

    ``state_dir`` holds runtime data kept across restarts (git-ignored): broker
    data, Flink checkpoints and savepoints, logs, pid files.
    """

    home: Path = field(default_factory=_default_home)
    state_dir: Path = field(default_factory=_default_state_dir)
    host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    flink_rest_port: int = 8081
    flink_rpc_port: int = 6123
    job_server_port: int = 8099
    job_server_artifact_port: int = 8098
    job_server_expansion_port: int = 8091
    expansion_port: int = 8097
    worker_pool_port: int = 8100  # below the kernel's ephemeral range (32768-60999), see stack.process.port_bindable
    serve_port: int = 5001
    # scale-out: how many TaskManagers `darkpool stack up` runs (each with its own slots and memory), and
    # the fixed max parallelism (key groups) of every job, so a savepoint taken at one parallelism
    # restores at any other up to this bound
    taskmanagers: int = 1
    flink_max_parallelism: int = 128
    # Flink TaskManager sizing for this 2-core, 24 GiB machine
    taskmanager_process_memory: str = "6144m"
    taskmanager_slots: int = 4
    taskmanager_metaspace: str = "1024m"
    jobmanager_process_memory: str = "1600m"
    kafka_heap: str = "1g"
    # Kubernetes control plane run locally for the k8s tests (deploy/controlplane.py, docs/kubernetes.md):
    # etcd client and peer ports, the kube-apiserver's secure port, the kube-controller-manager's secure
    # (health) port, and the Flink Kubernetes Operator's health probe port
    etcd_client_port: int = 2379
    etcd_peer_port: int = 2380
    k8s_apiserver_port: int = 6443
    k8s_controller_manager_port: int = 10257
    flink_operator_health_port: int = 8085
    # -- object storage (S3-compatible: AWS S3, MinIO, the local S3Proxy; docs/object-storage.md) --------
    # Where Flink's checkpoints and savepoints and the Parquet dataset live. Empty (the default) = local
    # files under state_dir; an s3:// URI puts them in object storage: flink_state_uri=s3://darkpool/flink
    # keeps checkpoints in <uri>/checkpoints and savepoints in <uri>/savepoints; dataset_uri=
    # s3://darkpool/parquet is the default --output of the pipeline and --dataset of `darkpool analyze`.
    flink_state_uri: str = ""
    dataset_uri: str = ""
    # The S3 API endpoint (path-style requests), e.g. https://s3.eu-west-1.amazonaws.com or
    # http://minio:9000. Empty = the local S3Proxy (`darkpool s3 start`) on host:s3_port, data in <state>/s3.
    s3_endpoint: str = ""
    s3_port: int = 9000
    s3_region: str = "us-east-1"
    s3_bucket: str = "darkpool"  # created on the local S3Proxy at start (with the buckets of the URIs above)
    # Credentials: give them through the environment (DARKPOOL_S3_ACCESS_KEY, DARKPOOL_S3_SECRET_KEY), never
    # on a command line. The defaults are the local S3Proxy's own; both empty = the AWS default chain.
    s3_access_key: str = "darkpool"
    s3_secret_key: str = "darkpool-local-secret"
    # -- Kafka client authentication (darkpool/kafka_client.py; the prod overlay's SCRAM users, k8s/README.md)
    # Empty protocol = PLAINTEXT without credentials (the local broker). SASL_PLAINTEXT / SASL_SSL with a
    # mechanism (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN), a user and its password; SSL / SASL_SSL verify the
    # brokers against kafka_ssl_ca_file (PEM) when set. The password only through the environment
    # (DARKPOOL_KAFKA_SASL_PASSWORD), never on a command line.
    kafka_security_protocol: str = ""
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_ca_file: str = ""
    # -- the venue registry (darkpool/venues.py, docs/venues.md) ------------------------------------------
    # A user registry CSV (the shipped registry's columns) and how it combines with the shipped one:
    # extend (its rows are added; a shipped MPID's row is replaced) or replace (it is the whole registry).
    # `darkpool --venues FILE --venues-mode MODE COMMAND` sets both for every command and its children.
    venues_file: str = ""
    venues_mode: str = "extend"
    # -- logs (darkpool/logs.py, docs/logging.md) -----------------------------------------------------------
    # Every process's log lines: text = logfmt key=value (readable and parseable), json = JSON lines.
    log_format: str = "text"

    # -- derived paths -----------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        """Downloaded artifacts (git-ignored): Maven repo, copied JVM classpaths, npm cache."""
        return self.home / ".cache"

    @property
    def jvm_lib_dir(self) -> Path:
        return self.cache_dir / "jvm"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def flink_rest_url(self) -> str:
        return f"http://{self.host}:{self.flink_rest_port}"

    @property
    def job_endpoint(self) -> str:
        return f"{self.host}:{self.job_server_port}"

    @property
    def expansion_address(self) -> str:
        return f"{self.host}:{self.expansion_port}"

    @property
    def worker_pool_address(self) -> str:
        return f"{self.host}:{self.worker_pool_port}"

    @property
    def parquet_dir(self) -> Path:
        return self.state_dir / "parquet"

    @property
    def dataset_location(self) -> Path | str:
        """The Parquet dataset's root: ``dataset_uri`` (an s3:// URI) when set, else ``parquet_dir``."""
        return self.dataset_uri or self.parquet_dir

    @property
    def s3_endpoint_url(self) -> str:
        """The S3 endpoint: ``s3_endpoint``, else the local S3Proxy on ``host:s3_port``."""
        return self.s3_endpoint.rstrip("/") or f"http://{self.host}:{self.s3_port}"

    @property
    def uses_local_s3(self) -> bool:
        """True when state or dataset are on s3:// and the endpoint is the local S3Proxy (the stack runs it)."""
        uses_s3 = any(uri.startswith("s3://") for uri in (self.flink_state_uri, self.dataset_uri))
        return uses_s3 and not self.s3_endpoint


VENUES_MODES = ("extend", "replace")


def venue_registry_source() -> tuple[str, str]:
    """(venues_file, venues_mode) from ``DARKPOOL_VENUES_FILE`` / ``DARKPOOL_VENUES_MODE``, else the defaults.

    The two settings :func:`darkpool.venues.load_venues` needs, read without building
    the whole :class:`Settings` (it is asked on hot paths).
    """
    return (os.environ.get("DARKPOOL_VENUES_FILE", Settings.venues_file),
            os.environ.get("DARKPOOL_VENUES_MODE", Settings.venues_mode).strip().lower())


def load_settings(**overrides: object) -> Settings:
    """Defaults, then ``DARKPOOL_*`` environment variables, then explicit overrides."""
    values: dict[str, object] = {}
    for f in dataclasses.fields(Settings):
        env = os.environ.get(f"DARKPOOL_{f.name.upper()}")
        if env is None:
            continue
        if f.type in ("int", int):
            values[f.name] = int(env)
        elif f.type in ("Path", Path):
            values[f.name] = Path(env)
        else:
            values[f.name] = env
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
