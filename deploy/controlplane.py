"""A real Kubernetes control plane as local processes: etcd, kube-apiserver and kube-controller-manager.

Built by `make setup` (target k8s-tools) from Go modules at v1.34.2 / etcd 3.6.5. There is no
kubelet, scheduler or container runtime here: the API server validates and stores every object
(built-in kinds and the operators' CRDs, with server-side dry-run and strict field validation),
the controller-manager turns Deployments into ReplicaSets and Pods (which stay Pending), collects
garbage and runs foreground deletion, and a real operator (deploy/operator.py) can reconcile
against it.

Authentication is one static admin token in ``system:masters`` (RBAC authorization); the service
account signing key pair and the API server's self-signed serving certificate are generated on
first start. State lives in ``<state_dir>/k8s``; logs and pid files where the other local services
keep theirs (``<state_dir>/logs``, ``<state_dir>/run``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import yaml

from darkpool.config import Settings
from darkpool.errors import DarkpoolError
from darkpool.stack.process import Service
from deploy import tools

log = logging.getLogger(__name__)

ADMIN_USER = "admin"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ETCD_NAME = "darkpool-k8s"


@dataclass(frozen=True)
class ControlPlaneFiles:
    """The control plane's files under ``<state_dir>/k8s``."""

    root: Path

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def pki(self) -> Path:
        """The API server's --cert-dir: it writes its self-signed apiserver.crt/.key here."""
        return self.root / "pki"

    @property
    def ca_file(self) -> Path:
        """The API server's certificate bundle (serving certificate + the CA that signed it)."""
        return self.pki / "apiserver.crt"

    @property
    def service_account_key(self) -> Path:
        return self.pki / "service-account.key"

    @property
    def service_account_pub(self) -> Path:
        return self.pki / "service-account.pub"

    @property
    def admin_token(self) -> Path:
        return self.root / "admin.token"

    @property
    def token_auth_file(self) -> Path:
        return self.root / "tokens.csv"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def start_lock(self) -> Path:
        return self.root / "start.lock"


def control_plane_files(settings: Settings) -> ControlPlaneFiles:
    return ControlPlaneFiles(settings.state_dir / "k8s")


def token_auth_line(token: str) -> str:
    """One line of --token-auth-file: token,user,uid,"groups" (the admin is in system:masters)."""
    return f'{token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'


def kubeconfig_document(server: str, ca_file: Path, token: str) -> dict:
    """A kubeconfig with one cluster, one user (the admin token) and one current context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "darkpool-local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": ADMIN_USER, "user": {"token": token}}],
        "contexts": [{"name": "darkpool-local", "context": {"cluster": "darkpool-local", "user": ADMIN_USER,
                                                            "namespace": "default"}}],
        "current-context": "darkpool-local",
    }


def etcd_command(settings: Settings, files: ControlPlaneFiles) -> list[str]:
    """etcd: one member on loopback."""
    client = f"http://{settings.host}:{settings.etcd_client_port}"
    peer = f"http://{settings.host}:{settings.etcd_peer_port}"
    return [
        str(tools.etcd(settings)),
        f"--name={ETCD_NAME}",
        f"--data-dir={files.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={ETCD_NAME}={peer}",
        "--log-level=warn",
    ]


def apiserver_command(settings: Settings, files: ControlPlaneFiles) -> list[str]:
    """kube-apiserver on loopback: static token auth, RBAC, a self-generated service-account key pair."""
    return [
        str(tools.kube_apiserver(settings)),
        f"--etcd-servers=http://{settings.host}:{settings.etcd_client_port}",
        f"--bind-address={settings.host}",
        f"--advertise-address={settings.host}",
        f"--secure-port={settings.k8s_apiserver_port}",
        f"--cert-dir={files.pki}",
        f"--token-auth-file={files.token_auth_file}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={files.service_account_pub}",
        f"--service-account-signing-key-file={files.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--authorization-mode=RBAC",
        # all on loopback: the `kubernetes` Service gets no Endpoints (a loopback address is invalid there,
        # and nothing in-cluster runs here to use them)
        "--endpoint-reconciler-type=none",
        "--profiling=false",
    ]


def controller_manager_command(settings: Settings, files: ControlPlaneFiles) -> list[str]:
    """kube-controller-manager: every controller, no leader election, its own secure port on loopback."""
    return [
        str(tools.kube_controller_manager(settings)),
        f"--kubeconfig={files.kubeconfig}",
        "--leader-elect=false",
        "--controllers=*",
        f"--service-account-private-key-file={files.service_account_key}",
        f"--root-ca-file={files.ca_file}",
        f"--bind-address={settings.host}",
        f"--secure-port={settings.k8s_controller_manager_port}",
        "--profiling=false",
    ]


def https_ok(url: str, cafile: Path | None = None, token: str | None = None, timeout: float = 2.0) -> bool:
    """True when a GET on an https URL answers 2xx; verifies against ``cafile`` (or not at all when None)."""
    if cafile is not None and not cafile.exists():
        return False
    context = ssl.create_default_context(cafile=str(cafile)) if cafile is not None else ssl._create_unverified_context()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310 (loopback)
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError, ssl.SSLError):
        return False


def _openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        raise DarkpoolError("openssl is not installed (needed once, for the service-account key pair)",
                            hint="apt-get install -y openssl")
    result = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise DarkpoolError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def prepare_files(settings: Settings, files: ControlPlaneFiles) -> str:
    """Create what the processes read, once: the key pair, the admin token, its auth file, the kubeconfig.

    Returns the admin token.
    """
    files.pki.mkdir(parents=True, exist_ok=True)
    if not files.service_account_key.exists():
        _openssl("genrsa", "-out", str(files.service_account_key), "2048")
    if not files.service_account_pub.exists():
        _openssl("rsa", "-in", str(files.service_account_key), "-pubout", "-out", str(files.service_account_pub))
    if not files.admin_token.exists():
        files.admin_token.write_text(secrets.token_hex(24))
        files.admin_token.chmod(0o600)
    token = files.admin_token.read_text().strip()
    if not files.token_auth_file.exists() or files.token_auth_file.read_text() != token_auth_line(token):
        files.token_auth_file.write_text(token_auth_line(token))
    server = f"https://{settings.host}:{settings.k8s_apiserver_port}"
    files.kubeconfig.write_text(yaml.safe_dump(kubeconfig_document(server, files.ca_file, token), sort_keys=False))
    files.kubeconfig.chmod(0o600)
    return token


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager, started and stopped together.

    ``fresh=True`` (the default) starts from an empty etcd whenever etcd is not already running,
    so every test session sees a new cluster; a control plane that already runs is reused as is.
    """

    def __init__(self, settings: Settings, fresh: bool = True) -> None:
        self.settings = settings
        self.fresh = fresh
        self.files = control_plane_files(settings)
        self._token: str | None = None
        self.etcd = Service(
            name="k8s-etcd", port=settings.etcd_client_port, settings=settings,
            extra_ports=(settings.etcd_peer_port,),
            command=lambda: etcd_command(settings, self.files),
            ready=lambda: _http_json_ok(f"http://{settings.host}:{settings.etcd_client_port}/health", "health"),
            description=f"etcd {tools.ETCD_VERSION} (the control plane's store)", start_timeout=60.0,
            code_files=lambda: [tools.k8s_dir(settings) / "bin" / "etcd"],
        )
        self.apiserver = Service(
            name="k8s-apiserver", port=settings.k8s_apiserver_port, settings=settings,
            command=lambda: apiserver_command(settings, self.files),
            ready=lambda: https_ok(f"{self.server}/readyz", self.files.ca_file, self.token),
            description=f"kube-apiserver {tools.K8S_VERSION} on {self.server}", start_timeout=180.0,
            code_files=lambda: [tools.k8s_dir(settings) / "bin" / "kube-apiserver"],
        )
        self.controller_manager = Service(
            name="k8s-controller-manager", port=settings.k8s_controller_manager_port, settings=settings,
            command=lambda: controller_manager_command(settings, self.files),
            ready=lambda: https_ok(f"https://{settings.host}:{settings.k8s_controller_manager_port}/healthz"),
            description=f"kube-controller-manager {tools.K8S_VERSION}", start_timeout=120.0,
            code_files=lambda: [tools.k8s_dir(settings) / "bin" / "kube-controller-manager"],
        )

    # -- properties ---------------------------------------------------------
    @property
    def services(self) -> list[Service]:
        """The three processes, in start order."""
        return [self.etcd, self.apiserver, self.controller_manager]

    @property
    def server(self) -> str:
        """The API server's URL."""
        return f"https://{self.settings.host}:{self.settings.k8s_apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (use with ``KUBECONFIG=`` or ``--kubeconfig``); written by start()."""
        return self.files.kubeconfig

    @property
    def token(self) -> str:
        """The admin's bearer token."""
        if self._token is None:
            try:
                self._token = self.files.admin_token.read_text().strip()
            except OSError:
                return ""
        return self._token

    # -- lifecycle ----------------------------------------------------------
    def running(self) -> bool:
        """True when all three processes run and the API server is ready."""
        return all(s.pid() is not None for s in self.services) and self.apiserver.ready()

    def start(self) -> ControlPlane:
        """Start whatever is not running yet and wait until each answers (the API server: /readyz)."""
        for binary in (tools.etcd, tools.kube_apiserver, tools.kube_controller_manager, tools.kubectl):
            binary(self.settings)  # a clear "make setup" error before anything starts
        self.files.root.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.files.start_lock):
            self._token = prepare_files(self.settings, self.files)
            if self.fresh and self.etcd.pid() is None and self.files.etcd_data.exists():
                for service in (self.controller_manager, self.apiserver):
                    service.stop()  # never point a running API server at a wiped store
                shutil.rmtree(self.files.etcd_data)
            for service in self.services:
                started = time.monotonic()
                already = service.pid() is not None
                print(f"k8s: {'checking' if already else 'starting'} {service.name}: {service.description} ...",
                      flush=True)
                status = service.start()
                print(f"  {service.name} up on port {status.port} (pid {status.pid}, "
                      f"{time.monotonic() - started:.1f} s)", flush=True)
        return self

    def stop(self) -> None:
        """Stop the controller-manager, the API server and etcd (the data stays until the next fresh start)."""
        for service in reversed(self.services):
            if service.stop():
                print(f"k8s: {service.name} stopped", flush=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # -- kubectl --------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this control plane (text in and out).

        ``check=True`` turns a non-zero exit into a DarkpoolError carrying kubectl's stderr.
        """
        argv = [str(tools.kubectl(self.settings)), f"--kubeconfig={self.kubeconfig}", *args]
        try:
            result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise DarkpoolError(f"kubectl {' '.join(args)} did not finish within {timeout:.0f} s",
                                hint=f"is the API server up? log: {self.apiserver.log_file}") from exc
        if check and result.returncode != 0:
            raise DarkpoolError(f"kubectl {' '.join(args)} failed (exit {result.returncode}):\n"
                                f"{result.stderr.strip() or result.stdout.strip()}",
                                hint=f"API server log: {self.apiserver.log_file}")
        return result

    def get_json(self, *args: str) -> dict:
        """``kubectl get ARGS -o json``, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    # -- CRDs and namespaces ----------------------------------------------------
    def install_crds(self, timeout: float = 120.0) -> list[str]:
        """Install the Flink operator's and Strimzi's CRDs (server-side apply) and wait until Established.

        Returns the CRD names. Idempotent.
        """
        files = [*tools.flink_crd_files(self.settings), *tools.strimzi_crd_files(self.settings)]
        started = time.monotonic()
        print(f"k8s: installing {len(files)} CRD files (Flink operator {tools.FLINK_OPERATOR_CRD_VERSION}, "
              f"Strimzi {tools.STRIMZI_VERSION}) ...", flush=True)
        args = ["apply", "--server-side", "--force-conflicts", "--field-manager=darkpool-tests", "-o", "name"]
        for path in files:
            args += ["-f", str(path)]
        names = [line.split("/", 1)[1] for line in self.kubectl(*args, timeout=timeout).stdout.split()]
        self.kubectl("wait", "--for=condition=Established", f"--timeout={timeout:.0f}s",
                     *[f"customresourcedefinition/{name}" for name in names], timeout=timeout + 10)
        print(f"  {len(names)} CRDs established ({time.monotonic() - started:.1f} s)", flush=True)
        return names

    def create_namespace(self, name: str, wait_for_service_account: bool = True, timeout: float = 60.0) -> None:
        """Create a namespace (idempotent); by default wait until the controller-manager gave it its
        ``default`` service account (Pods cannot be admitted before)."""
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                                                "metadata": {"name": name}}))
        if not wait_for_service_account:
            return
        deadline = time.monotonic() + timeout
        while self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise DarkpoolError(f"namespace {name} got no default service account within {timeout:.0f} s",
                                    hint=f"controller-manager log: {self.controller_manager.log_file}")
            time.sleep(0.3)

    def delete_namespace(self, name: str, wait: bool = True, timeout: float = 120.0) -> None:
        """Delete a namespace and everything in it (the controller-manager empties it)."""
        self.kubectl("delete", "namespace", name, "--ignore-not-found", f"--wait={str(wait).lower()}",
                     f"--timeout={timeout:.0f}s", timeout=timeout + 10)


def _http_json_ok(url: str, key: str) -> bool:
    """True when a GET answers JSON whose ``key`` is "true" (etcd's /health)."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310 (loopback only)
            return str(json.loads(response.read()).get(key)).lower() == "true"
    except (urllib.error.URLError, OSError, ValueError):
        return False


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (two test sessions starting the same control plane)."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

