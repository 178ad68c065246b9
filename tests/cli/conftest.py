from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llmos.api.harness import RunningPlane, run_control_plane

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlane]:
    with run_control_plane(tmp_path_factory.mktemp("home"), loop_interval_s=0.05, node_cpus=4) as running:
        yield running


@pytest.fixture
def llmos(cp: RunningPlane, tmp_path: Path) -> Run:
    """Run the real ``llmos`` CLI in a subprocess against the test control plane."""

    def run(*args: str, env: dict[str, str] | None = None, use_env: bool = True) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if k not in ("LLMOS_URL", "LLMOS_TOKEN")}
        base["LLMOS_HOME"] = str(tmp_path / "cli-home")
        base["COLUMNS"] = "200"
        if use_env:
            base.update({"LLMOS_URL": cp.url, "LLMOS_TOKEN": cp.admin_token})
        base.update(env or {})
        return subprocess.run([sys.executable, "-m", "llmos.cli.app", *args], capture_output=True, text=True,
                              env=base, timeout=120, cwd=Path(__file__).parents[2])

    return run
