"""The container images, built for real (buildah, chroot isolation, vfs) and run for real.

Builds both images (an unchanged image is not rebuilt: its inputs' hash matches its archive's),
checks their OCI archives and configuration with skopeo, and runs commands and servers inside
them with `buildah run --isolation chroot` (which shares the host's network, so servers started
inside answer on 127.0.0.1 at ports picked free here): the CLI, the imports, the dashboard, a
Beam pipeline on Python's runner, the worker pool over gRPC; in the Flink image Java 17, the Beam
classes, a Flink 1.19.3 JobManager with a TaskManager registered, the expansion service expanding
the project's ReadTradeRecords for the host's pipeline code, and the job server's job API.
"""

from __future__ import annotations

import json
import tarfile
import urllib.error
import urllib.request

import grpc
import pytest
from image_support import free_port, inspect_archive, port_open, session_pids, stop, wait_until

from deploy import images

pytestmark = pytest.mark.slow
CONFIG_YAML = "/opt/flink/conf/config.yaml"



# --- archives and configuration ---------------------------------------------------------------


@pytest.mark.parametrize("key", list(images.IMAGES))
def test_archive_is_an_oci_image_tagged_with_the_version(built, key):
    result = built[key]
    assert result.archive == images.paths().root / f"{images.IMAGES[key].name}-{images.version()}.tar"
    with tarfile.open(result.archive) as archive:
        names = set(archive.getnames())
        assert {"oci-layout", "index.json"} <= names
        layout = json.load(archive.extractfile("oci-layout"))
        index = json.load(archive.extractfile("index.json"))
    assert layout["imageLayoutVersion"] == "1.0.0"
    [manifest] = index["manifests"]
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    ref = manifest["annotations"]["org.opencontainers.image.ref.name"]
    assert ref == f"{images.IMAGES[key].name}:{images.version()}"
    assert not ref.endswith(":latest")
    assert f"blobs/sha256/{manifest['digest'].split(':', 1)[1]}" in names

    info = inspect_archive(result.archive)  # skopeo reads (and verifies) manifest and config
    assert info["Labels"]["org.opencontainers.image.version"] == images.version()
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert len(info["Layers"]) >= 1


def test_image_configs(built):
    flink = inspect_archive(built["flink"].archive)["Config"]
    assert flink["User"] == images.IMAGES["flink"].user == "9999:9999"
    assert flink["Entrypoint"] == ["/docker-entrypoint.sh"]
    env = dict(item.split("=", 1) for item in flink["Env"])
    assert env["FLINK_HOME"] == "/opt/flink"
    assert env["PATH"].split(":")[:2] == ["/opt/flink/bin", "/opt/darkpool/bin"]
    assert flink["Labels"]["io.darkpool.flink.version"] == images.FLINK_VERSION

    python = inspect_archive(built["python"].archive)["Config"]
    assert python["User"] == images.IMAGES["python"].user == "10001:10001"
    assert python["Entrypoint"] == ["/usr/bin/tini", "--", "darkpool"]
    env = dict(item.split("=", 1) for item in python["Env"])
    assert env["PATH"].split(":")[0] == "/opt/venv/bin"
    assert env["VIRTUAL_ENV"] == "/opt/venv"


def test_unchanged_inputs_are_not_rebuilt(built):
    again = images.build_image("python")
    assert not again.built
    assert again.input_digest == built["python"].input_digest
    assert again.seconds < 60


# --- the Python image -------------------------------------------------------------------------


def test_python_smoke_checks(built):
    results = images.smoke("python")
    failed = [f"{r.check.description}: {' '.join(r.check.argv)} -> {r.output[-500:]}" for r in results if not r.ok]
    assert not failed, "\n".join(failed)


def test_python_runs_a_beam_pipeline_inside(python_image):
    program = ("import apache_beam as beam\n"
               "from apache_beam.testing.util import assert_that, equal_to\n"
               "with beam.Pipeline() as p:\n"
               "    total = p | beam.Create(range(1, 101)) | beam.CombineGlobally(sum)\n"
               "    assert_that(total, equal_to([5050]))\n"
               "print('pipeline ok')\n")
    done = python_image.run(["python", "-c", program])
    assert done.returncode == 0 and "pipeline ok" in done.stdout, done.stdout[-2000:]


def test_python_worker_pool_serves_grpc(python_image, tmp_path):
    from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc

    port = free_port()
    log = tmp_path / "worker-pool.log"
    server = python_image.popen(["python", "-m", "darkpool.stack.worker_pool", f"--port={port}"], log=log)
    try:
        wait_until(lambda: port_open(port), 60, "the worker pool did not listen", log)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(channel)
            reply = stub.StopWorker(beam_fn_api_pb2.StopWorkerRequest(worker_id="none"), timeout=10)
        assert reply.error == ""
        assert "worker pool at" in log.read_text()
    finally:
        stop(server)


def test_python_image_serves_the_dashboard_and_health(python_image, tmp_path):
    """`darkpool serve` as the image's entrypoint runs it (tini, then the CLI): liveness answers, the
    dashboard comes from the installed package, readiness says 503 while no broker is reachable."""
    port = free_port()
    log = tmp_path / "serve.log"
    server = python_image.popen(["/usr/bin/tini", "--", "darkpool", "serve", f"--port={port}",
                                 f"--bootstrap=127.0.0.1:{free_port()}"], log=log)
    try:
        def get(path: str) -> tuple[int, bytes]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
                    return reply.status, reply.read()
            except urllib.error.HTTPError as error:
                return error.code, error.read()

        status, body = wait_until(lambda: get("/api/v1/health"), 90, "serving did not answer /api/v1/health", log)
        # liveness: 200 whether or not the (absent) broker made the consumer degraded
        assert status == 200 and json.loads(body)["status"] in ("ok", "degraded")
        status, body = get("/")
        assert status == 200 and body == (images.REPO_ROOT / "serving" / "static" / "index.html").read_bytes()
        status, body = get("/api/v1/ready")
        assert status == 503 and json.loads(body)["ready"] is False
        assert len(session_pids(server.pid)) > 2  # buildah, tini, the server (granian: its own group)
    finally:
        stop(server)
    assert session_pids(server.pid) == [], "a process of the server outlived stop()"
    assert not port_open(port)


# --- the Flink image --------------------------------------------------------------------------


def test_flink_smoke_checks(built):
    results = images.smoke("flink")
    failed = [f"{r.check.description}: {' '.join(r.check.argv)} -> {r.output[-500:]}" for r in results if not r.ok]
    assert not failed, "\n".join(failed)


def test_flink_entrypoint_passes_through_and_applies_flink_properties(flink_image):
    done = flink_image.run(["/docker-entrypoint.sh", "bash", "-c", "echo pass-through $0", "ok"])
    assert done.returncode == 0 and "pass-through ok" in done.stdout, done.stdout
    for value in ("first", "second"):
        done = flink_image.run(["/docker-entrypoint.sh", "grep", "-c", "^pipeline.name:", CONFIG_YAML],
                               env={"FLINK_PROPERTIES": f"pipeline.name: image-{value}"})
        assert done.stdout.strip() == "1", done.stdout  # replaced, never duplicated
    done = flink_image.run(["grep", "^pipeline.name:", CONFIG_YAML])
    assert done.stdout.strip() == "pipeline.name: image-second"


def test_flink_cluster_runs_inside_the_image(flink_image, tmp_path):
    rest, rpc, blob = free_port(), free_port(), free_port()
    properties = "\n".join([
        f"rest.port: {rest}", "rest.address: 127.0.0.1", "rest.bind-address: 127.0.0.1",
        f"jobmanager.rpc.port: {rpc}", "jobmanager.rpc.address: 127.0.0.1", f"blob.server.port: {blob}",
        "jobmanager.memory.process.size: 768m", "taskmanager.memory.process.size: 1024m",
        "taskmanager.host: 127.0.0.1", "taskmanager.rpc.port: 0", "taskmanager.data.port: 0",
        # the container's hostname is not in its /etc/hosts (a pod's is): name the TaskManager
        "taskmanager.resource-id: image-test-tm"])
    jm_log, tm_log = tmp_path / "jobmanager.log", tmp_path / "taskmanager.log"
    jobmanager = flink_image.popen(["/docker-entrypoint.sh", "jobmanager"], env={"FLINK_PROPERTIES": properties},
                                   log=jm_log)
    taskmanager = None
    try:
        wait_until(lambda: port_open(rest), 120, "the JobManager's REST API did not listen", jm_log)
        taskmanager = flink_image.popen(["/docker-entrypoint.sh", "taskmanager"], log=tm_log)

        def overview() -> dict | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{rest}/overview", timeout=3) as reply:
                data = json.load(reply)
            return data if data["taskmanagers"] >= 1 and data["slots-total"] >= 1 else None

        data = wait_until(overview, 120, "no TaskManager registered its slot", tm_log)
        assert data["flink-version"] == images.FLINK_VERSION
        assert (data["taskmanagers"], data["slots-total"]) == (1, 1)
        with urllib.request.urlopen(f"http://127.0.0.1:{rest}/taskmanagers", timeout=3) as reply:
            [tm] = json.load(reply)["taskmanagers"]
        assert tm["id"] == "image-test-tm"
    finally:
        for process in (taskmanager, jobmanager):
            if process is not None:
                stop(process)


def test_expansion_service_in_the_image_expands_read_trade_records(flink_image, tmp_path):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from pipeline.transforms.read import READ_TRADE_RECORD_BATCHES_URN, ReadTradesFromKafka

    port = free_port()
    log = tmp_path / "expansion.log"
    server = flink_image.popen(["/docker-entrypoint.sh", "expansion-service", str(port),
                                "--defaultEnvironmentType=EMBEDDED", "--experiments=use_deprecated_read"], log=log)
    try:
        wait_until(lambda: port_open(port), 120, "the expansion service did not listen", log)
        options = PipelineOptions([])
        options.view_as(StandardOptions).streaming = True
        pipeline = beam.Pipeline(options=options)
        _ = pipeline | ReadTradesFromKafka("127.0.0.1:9", "trades", "image-test", f"127.0.0.1:{port}")
        proto = pipeline.to_runner_api()
        transforms = proto.components.transforms.values()
        [read] = [t for t in transforms if t.unique_name.endswith("ReadTradeRecords")]
        assert read.subtransforms, "the expansion service returned no Java sub-transforms"
        urns = {proto.components.transforms[s].spec.urn for s in read.subtransforms}
        assert urns - {READ_TRADE_RECORD_BATCHES_URN}, urns
        environments = {env.urn for env in proto.components.environments.values()}
        assert "EMBEDDED" in environments, environments  # the Java code runs inside the TaskManager
    finally:
        stop(server)


def test_job_server_in_the_image_serves_the_job_api(flink_image, tmp_path):
    from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc

    job, artifact, expansion = free_port(), free_port(), free_port()
    log = tmp_path / "job-server.log"
    server = flink_image.popen(["/docker-entrypoint.sh", "job-server", f"--flink-master=127.0.0.1:{free_port()}",
                                "--job-host=127.0.0.1", f"--job-port={job}", f"--artifact-port={artifact}",
                                f"--expansion-port={expansion}", "--artifacts-dir=/tmp/beam-artifacts"], log=log)
    try:
        wait_until(lambda: port_open(job), 120, "the job server did not listen", log)
        with grpc.insecure_channel(f"127.0.0.1:{job}") as channel:
            stub = beam_job_api_pb2_grpc.JobServiceStub(channel)
            reply = wait_until(lambda: stub.GetJobs(beam_job_api_pb2.GetJobsRequest(), timeout=10), 30,
                               "GetJobs did not answer", log)
        assert list(reply.job_info) == []
        assert port_open(artifact)
    finally:
        stop(server)


def test_flink_s3_plugin_matches_the_label(built, flink_image):
    label = inspect_archive(built["flink"].archive)["Config"]["Labels"]["io.darkpool.flink.s3-plugin"]
    expected = [jar.name for jar in images.s3_plugin_jars(images.load_settings())]
    done = flink_image.run(["bash", "-c", "ls /opt/flink/plugins/s3-fs-presto/ 2>/dev/null || true"])
    assert sorted(done.stdout.split()) == sorted(expected)
    assert label == ("present" if expected else "absent")


def test_native_kubernetes_jobmanager_command_starts(flink_image, tmp_path):
    """The JobManager command the Flink Kubernetes Operator gives a session cluster's pod, run as it
    runs it (entrypoint + `bash -c "kubernetes-jobmanager.sh kubernetes-session"`): Flink's
    KubernetesSessionClusterEntrypoint starts and serves REST (it reaches the API server only when
    it needs TaskManager pods; there is no kubelet here to run them)."""
    rest = free_port()
    properties = "\n".join([f"rest.port: {rest}", f"jobmanager.rpc.port: {free_port()}",
                            f"blob.server.port: {free_port()}", "jobmanager.memory.process.size: 768m",
                            "kubernetes.cluster-id: image-test"])
    log = tmp_path / "native-jobmanager.log"
    operator_command = ["/docker-entrypoint.sh", "bash", "-c", "kubernetes-jobmanager.sh kubernetes-session"]
    jobmanager = flink_image.popen(operator_command, env={"FLINK_PROPERTIES": properties}, log=log)
    try:
        def config() -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{rest}/config", timeout=3) as reply:
                return json.load(reply)

        data = wait_until(config, 120, "the native-Kubernetes JobManager did not serve REST", log)
        assert data["flink-version"] == images.FLINK_VERSION
        text = log.read_text(errors="replace")
        assert "Starting KubernetesSessionClusterEntrypoint" in text
        assert "--add-opens=java.base/java.util=ALL-UNNAMED" in text  # the Java 17 options reached the JVM
    finally:
        stop(jobmanager)
