"""Fixtures of the runtime tests: a real control plane (HTTP, SQLite, subprocesses) and its registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmos.api.harness import RunningPlane, run_control_plane
from llmos.models.artifacts import ArtifactStore
from llmos.models.family import create_model_dir
from llmos.models.registry import ModelRegistry


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlane]:
    home = tmp_path_factory.mktemp("home")
    with run_control_plane(home, loop_interval_s=0.05, node_cpus=4) as running:
        yield running


@pytest.fixture(scope="module")
def cp_registry(cp: RunningPlane) -> ModelRegistry:
    reg = ModelRegistry(cp.plane.store, ArtifactStore(Path(cp.plane.settings.home) / "artifacts"))
    if not reg.versions():
        src = create_model_dir("llmos-tiny", Path(cp.plane.settings.home) / "src-tiny", seed=0)
        reg.register(src, "tiny")
    return reg
