"""``llmos up --backend ray`` without Ray says how to get it; ``--help`` documents the options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Runs the real CLI in a fresh interpreter in which ``import ray`` fails, as on a
# machine where the extra is not installed.
WITHOUT_RAY = (
    "import sys; sys.modules['ray'] = None\n"
    "from llmos.cli.app import main\n"
    "main(sys.argv[1:])\n"
)


def run_cli(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOS_", "RAY_"))}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_RAY, *args],
        capture_output=True, text=True, timeout=60, env=env, cwd=home,
    )


def test_up_with_ray_backend_but_no_ray_says_how_to_install(tmp_path: Path) -> None:
    r = run_cli(["up", "--backend", "ray", "--home", str(tmp_path), "--port", "0"], tmp_path)
    assert r.returncode == 1, r
    assert "pip install 'llmos[ray]'" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_unknown_backend_is_a_clear_error(tmp_path: Path) -> None:
    r = run_cli(["up", "--backend", "slurm", "--home", str(tmp_path), "--port", "0"], tmp_path)
    assert r.returncode == 1 and "unknown backend 'slurm'" in r.stderr, r
    assert "Traceback" not in r.stderr


def test_up_help_lists_backend_options(tmp_path: Path) -> None:
    r = run_cli(["up", "--help"], tmp_path)
    assert r.returncode == 0
    assert "--backend" in r.stdout and "--ray-address" in r.stdout


def test_unreachable_ray_address_fails_fast_and_clearly(tmp_path: Path) -> None:
    import pytest

    pytest.importorskip("ray")
    from llmos.backends.ray_cluster import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOS_", "RAY_"))}
    addr = f"127.0.0.1:{free_port()}"  # nothing listens there
    r = subprocess.run(
        [sys.executable, "-m", "llmos.cli.app", "up", "--backend", "ray", "--ray-address", addr,
         "--home", str(tmp_path), "--port", "0"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )
    assert r.returncode == 1, r
    assert f"cannot reach the Ray cluster at {addr}" in r.stderr and "ray start --head" in r.stderr
    assert "Traceback" not in r.stderr
