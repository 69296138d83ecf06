"""Where the JVM classpaths live (copied by Maven at `make setup`, never downloaded at run time)."""

from __future__ import annotations

from pathlib import Path

from darkpool.config import Settings
from darkpool.errors import DarkpoolError

# Java 17 needs these for Flink and for Beam's Flink runner (Flink's own default env.java.opts.all).
JAVA17_OPENS = (
    "-XX:+IgnoreUnrecognizedVMOptions",
    "--add-exports=java.base/sun.net.util=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.api=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.parser=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.tree=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.util=ALL-UNNAMED",
    "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=java.base/java.text=ALL-UNNAMED",
    "--add-opens=java.base/java.time=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED",
)


def classpath(settings: Settings, module: str) -> str:
    """The classpath of a Maven module of jvm/ ("kafka" or "beam"), as a java -cp wildcard."""
    directory = settings.jvm_lib_dir / module
    if not any(directory.glob("*.jar")):
        raise DarkpoolError(f"the JVM artifacts for {module} are missing in {directory}",
                            hint="run `make setup` (resolves them once with Maven into .cache/jvm)")
    return str(directory / "*")


def jars(settings: Settings, module: str) -> list[Path]:
    """The jar files of a Maven module's classpath (empty before `make setup`)."""
    return sorted((settings.jvm_lib_dir / module).glob("*.jar"))


def flink_home() -> Path:
    """The Apache Flink 1.19.3 distribution shipped by the apache-flink-libraries package."""
    try:
        import pyflink  # the apache-flink-libraries package: jars only, no Python API
    except ImportError as exc:
        raise DarkpoolError("the Flink distribution (apache-flink-libraries) is not installed",
                            hint="run `make setup`") from exc
    home = Path(next(iter(pyflink.__path__)))
    if not (home / "lib").is_dir():
        raise DarkpoolError(f"no Flink lib/ folder in {home}", hint="run `make setup`")
    return home


def flink_plugins_dir(settings: Settings) -> Path:
    """The Flink cluster's plugins folder (FLINK_PLUGINS_DIR): <plugins>/s3-fs-presto/ holds the S3 file system,
    copied there by `make setup` (jvm/s3proxy/pom.xml)."""
    return settings.jvm_lib_dir / "flink-plugins"


def flink_classpath() -> str:
    """Flink's lib/ jars with flink-dist last, as Flink's own scripts build it."""
    lib = flink_home() / "lib"
    jars = sorted(str(p) for p in lib.glob("*.jar") if "flink-dist" not in p.name)
    jars += [str(p) for p in lib.glob("flink-dist*.jar")]
    return ":".join(jars)
