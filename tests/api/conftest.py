from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmos.api.harness import RunningPlane, run_control_plane


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[RunningPlane]:
    with run_control_plane(tmp_path / "home", loop_interval_s=0.05, node_cpus=4) as running:
        yield running


@pytest.fixture(scope="module")
def shared_cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlane]:
    with run_control_plane(tmp_path_factory.mktemp("home"), loop_interval_s=0.05, node_cpus=4) as running:
        yield running
