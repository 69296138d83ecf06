"""The real Flink Kubernetes Operator 1.7.0, run from its Maven classpath against a ControlPlane.

`make setup` copies the operator's runtime classpath (org.apache.flink:flink-kubernetes-operator
1.7.0, the newest operator jar on Maven Central, plus flink-kubernetes-standalone) into
``.cache/k8s/operator/lib``. It runs on Java 17 with the flags of its own image, watches every
namespace, and reports health on ``Settings.flink_operator_health_port``. It reconciles
``FlinkDeployment``s into JobManager Deployments, Services and ConfigMaps (whose Pods stay
Pending: there is no kubelet here).
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType

from darkpool.errors import DarkpoolError
from darkpool.stack.process import Service, http_ok, java_executable
from deploy import tools
from deploy.controlplane import ControlPlane

OPERATOR_NAME = "flink-kubernetes-operator"
OPERATOR_MAIN = "org.apache.flink.kubernetes.operator.FlinkOperator"
# Java 17 module opens the operator's Flink client and fabric8 need; no in-cluster service-account lookup
JAVA_FLAGS = [
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-exports=java.base/sun.net.util=ALL-UNNAMED",
    "-Dkubernetes.auth.tryServiceAccount=false",
]

# logging of the Flink clusters the operator deploys: it ships this file in their ConfigMaps
FLINK_CONSOLE_LOG4J = """\
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = ConsoleAppender
appender.console.name = ConsoleAppender
appender.console.type = CONSOLE
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
"""

# the operator's own log (stdout, captured into the service log): the same, with quieter clients
OPERATOR_LOG4J = FLINK_CONSOLE_LOG4J + """\
logger.fabric8.name = io.fabric8
logger.fabric8.level = WARN
logger.netty.name = org.apache.flink.shaded.netty4.io.netty
logger.netty.level = WARN
"""


def operator_conf(health_port: int, artifacts_dir: Path, reconcile_interval: str) -> str:
    """The operator's flink-conf.yaml (its default configuration; FLINK_CONF_DIR points at it)."""
    return "\n".join([
        f"kubernetes.operator.reconcile.interval: {reconcile_interval}",
        "kubernetes.operator.observer.progress-check.interval: 5 s",
        f"kubernetes.operator.user.artifacts.base.dir: {artifacts_dir}",
        "kubernetes.operator.health.probe.enabled: true",
        f"kubernetes.operator.health.probe.port: {health_port}",
        "kubernetes.operator.leader-election.enabled: false",
        "",
    ])


class FlinkOperator:
    """The operator process (one Service), configured under ``<state_dir>/k8s/flink-operator``.

    ``namespace`` is the operator's own namespace (created on start); it watches all namespaces.
    """

    def __init__(self, control_plane: ControlPlane, namespace: str = "flink-operator",
                 reconcile_interval: str = "15 s") -> None:
        self.control_plane = control_plane
        self.namespace = namespace
        self.reconcile_interval = reconcile_interval
        settings = control_plane.settings
        self.settings = settings
        self.home = settings.state_dir / "k8s" / "flink-operator"
        self.service = Service(
            name="k8s-flink-operator", port=settings.flink_operator_health_port, settings=settings,
            command=self._command, env=self._env,
            ready=lambda: http_ok(f"http://{settings.host}:{settings.flink_operator_health_port}/"),
            description=f"Flink Kubernetes Operator {tools.FLINK_OPERATOR_VERSION} (watching all namespaces)",
            start_timeout=180.0,
            code_files=lambda: sorted(tools.k8s_dir(settings).joinpath("operator", "lib").glob("*.jar")),
        )

    @property
    def conf_dir(self) -> Path:
        return self.home / "conf"

    @property
    def log_file(self) -> Path:
        return self.service.log_file

    def _command(self) -> list[str]:
        lib = tools.operator_classpath(self.settings)
        self._write_conf()
        return [java_executable(), "-Xmx768m", *JAVA_FLAGS,
                f"-Dlog4j.configurationFile=file:{self.conf_dir / 'log4j-operator.properties'}",
                "-cp", f"{lib}/*", OPERATOR_MAIN]

    def _env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.control_plane.kubeconfig),
            "FLINK_CONF_DIR": str(self.conf_dir),
            "FLINK_PLUGINS_DIR": str(self.home / "plugins"),
            "OPERATOR_NAMESPACE": self.namespace,
            "OPERATOR_NAME": OPERATOR_NAME,
            "HOST_IP": self.settings.host,
        }

    def _write_conf(self) -> None:
        for folder in (self.conf_dir, self.home / "plugins", self.home / "artifacts"):
            folder.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "flink-conf.yaml").write_text(
            operator_conf(self.settings.flink_operator_health_port, self.home / "artifacts", self.reconcile_interval))
        (self.conf_dir / "log4j-operator.properties").write_text(OPERATOR_LOG4J)
        (self.conf_dir / "log4j-console.properties").write_text(FLINK_CONSOLE_LOG4J)

    def running(self) -> bool:
        return self.service.pid() is not None and self.service.ready()

    def start(self) -> FlinkOperator:
        """Start the operator (unless it runs) and wait until its health probe answers."""
        if not self.control_plane.apiserver.ready():
            raise DarkpoolError("the Flink operator needs a running control plane",
                                hint="start deploy.controlplane.ControlPlane first")
        tools.operator_classpath(self.settings)
        self.control_plane.create_namespace(self.namespace, wait_for_service_account=False)
        started = time.monotonic()
        print(f"k8s: starting {self.service.name}: {self.service.description} ...", flush=True)
        status = self.service.start()
        print(f"  {self.service.name} healthy on port {status.port} (pid {status.pid}, "
              f"{time.monotonic() - started:.1f} s)", flush=True)
        return self

    def stop(self) -> None:
        if self.service.stop():
            print(f"k8s: {self.service.name} stopped", flush=True)

    def __enter__(self) -> FlinkOperator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
