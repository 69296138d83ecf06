"""Fixtures of the image tests: both images built (or found up to date), one working container of each."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from deploy import images


@pytest.fixture(scope="session")
def built() -> dict[str, images.BuildResult]:
    missing = [tool for tool in images.HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run `make setup` (it installs them)")
    images.prepare()
    return {key: images.build_image(key) for key in images.IMAGES}


@pytest.fixture(scope="session")
def python_image(built) -> Iterator[images.Container]:
    with images.Container("python") as container:
        yield container


@pytest.fixture(scope="session")
def flink_image(built) -> Iterator[images.Container]:
    with images.Container("flink") as container:
        yield container
