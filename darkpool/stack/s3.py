"""Local object storage: S3Proxy 2.6.0, a real S3 API server on loopback, backed by files in <state>/s3.

S3Proxy (``org.gaul:s3proxy`` from Maven Central, classpath in .cache/jvm/s3proxy)
speaks the S3 REST API (AWS Signature V2 and V4, multipart uploads, listings) and
stores each object as a file through jclouds' ``filesystem-nio2`` provider. It
runs when object storage is configured against the local endpoint
(``Settings.uses_local_s3``: `darkpool stack up` starts it before the other
services) or on demand (`darkpool s3 start`). At start it creates the configured
buckets (``s3_bucket`` and those of ``flink_state_uri`` and ``dataset_uri``).

Its log (<state>/logs/s3proxy.log) has one line per request
(``request: Request(PUT http://.../bucket/key)``): how the tests count the PUTs
of each file.

This module also holds what Flink needs to reach the same endpoint: the
options of Flink's S3 file system plugin (``flink-s3-fs-presto``).
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from darkpool.config import Settings
from darkpool.errors import DarkpoolError
from darkpool.stack import jvm
from darkpool.stack.process import Service, java_executable, port_open
from darkpool.storage import S3Client, buckets_of, s3_client

S3PROXY_MAIN = "org.gaul.s3proxy.Main"
# S3Proxy buffers a V4-signed PUT that is not aws-chunked in memory, up to this size (its default is 32 MiB)
MAX_SINGLE_PUT_BYTES = 128 * 1024 * 1024

LOGBACK = """\
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{yyyy-MM-dd HH:mm:ss.SSS} %-5level %logger{0} - %msg%n</pattern></encoder>
  </appender>
  <!-- the request log: one DEBUG line per request -->
  <logger name="org.gaul.s3proxy.S3ProxyHandler" level="DEBUG"/>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
"""


def s3_dir(settings: Settings) -> Path:
    return settings.state_dir / "s3"


def data_dir(settings: Settings) -> Path:
    """Where S3Proxy keeps the objects: <state>/s3/data/<bucket>/<key>."""
    return s3_dir(settings) / "data"


def local_endpoint(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.s3_port}"


def s3proxy_properties(settings: Settings) -> str:
    """S3Proxy's configuration: the endpoint, its credentials (the Settings' S3 keys) and the file store."""
    return "\n".join([
        f"s3proxy.endpoint={local_endpoint(settings)}",
        "s3proxy.authorization=aws-v2-or-v4",
        f"s3proxy.identity={settings.s3_access_key}",
        f"s3proxy.credential={settings.s3_secret_key}",
        f"s3proxy.v4-max-non-chunked-request-size={MAX_SINGLE_PUT_BYTES}",
        "jclouds.provider=filesystem-nio2",
        f"jclouds.identity={settings.s3_access_key}",
        f"jclouds.credential={settings.s3_secret_key}",
        f"jclouds.filesystem.basedir={data_dir(settings)}",
        "",
    ])


def prepare(settings: Settings) -> Path:
    """Write the properties (readable by the owner only: they hold the secret) and the log configuration."""
    if settings.s3_endpoint:
        raise DarkpoolError(f"DARKPOOL_S3_ENDPOINT is {settings.s3_endpoint}: the local S3Proxy is not used",
                            hint="unset DARKPOOL_S3_ENDPOINT to use the local S3Proxy on "
                                 f"{local_endpoint(settings)}")
    if not (settings.s3_access_key and settings.s3_secret_key):
        raise DarkpoolError("the local S3Proxy needs credentials (DARKPOOL_S3_ACCESS_KEY, DARKPOOL_S3_SECRET_KEY)")
    directory = s3_dir(settings)
    data_dir(settings).mkdir(parents=True, exist_ok=True)
    properties = directory / "s3proxy.properties"
    properties.touch(mode=0o600)
    os.chmod(properties, 0o600)
    properties.write_text(s3proxy_properties(settings))
    (directory / "logback.xml").write_text(LOGBACK)
    return properties


def ensure_buckets(settings: Settings, client: S3Client | None = None) -> list[str]:
    """Create the configured buckets that do not exist yet; returns their names."""
    client = client or s3_client(settings)
    names = buckets_of(settings)
    for name in names:
        client.create_bucket(name)
    return names


def s3proxy_service(settings: Settings) -> Service:
    """S3Proxy as a managed local process (ready once it answers and the configured buckets exist)."""

    def command() -> list[str]:
        properties = prepare(settings)
        return [java_executable(), "-Xms64m", "-Xmx512m",
                f"-Dlogback.configurationFile={s3_dir(settings) / 'logback.xml'}",
                "-cp", jvm.classpath(settings, "s3proxy"), S3PROXY_MAIN, "--properties", str(properties)]

    def ready() -> bool:
        if not port_open(settings.host, settings.s3_port):
            return False
        try:
            ensure_buckets(settings)
        except DarkpoolError:
            return False
        return True

    return Service(
        name="s3proxy", port=settings.s3_port, settings=settings, command=command, ready=ready,
        description=f"S3Proxy 2.6.0 (S3 API on {local_endpoint(settings)}, objects in {data_dir(settings)})",
        start_timeout=60, code_files=lambda: jvm.jars(settings, "s3proxy"),
    )


def s3_services(settings: Settings) -> list[Service]:
    """The local S3Proxy when the configuration puts state or the dataset on it, else nothing."""
    return [s3proxy_service(settings)] if settings.uses_local_s3 else []


# --- Flink's view of the same endpoint -------------------------------------------------
def flink_s3_configuration(settings: Settings) -> dict[str, str]:
    """Options of Flink's S3 file system plugin (flink-s3-fs-presto) for the configured endpoint.

    Always part of the cluster's configuration: the plugin connects only when a
    job uses an s3:// path, so whether checkpoints go to S3 is decided per job by
    ``flink_state_uri``. Empty credentials leave Presto's default chain (instance
    profile, environment) in charge.
    """
    endpoint = settings.s3_endpoint_url
    options = {
        "s3.endpoint": endpoint,
        "s3.path.style.access": "true",
        "s3.ssl.enabled": str(urllib.parse.urlparse(endpoint).scheme == "https").lower(),
    }
    if settings.s3_access_key and settings.s3_secret_key:
        options["s3.access-key"] = settings.s3_access_key
        options["s3.secret-key"] = settings.s3_secret_key  # Flink masks keys named *secret* in its UI and logs
    return options
