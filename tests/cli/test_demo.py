"""``make run``'s demo brings examples/hello.yaml to SUCCEEDED through a real ``llmos up``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from llmos.control.launch import free_port

ROOT = Path(__file__).parents[2]


def test_demo_runs_hello_to_succeeded(tmp_path: Path) -> None:
    env = {**os.environ, "LLMOS_HOME": str(tmp_path / "home"), "LLMOS_PORT": str(free_port()),
           "LLMOS_DEMO_EXIT": "1", "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-m", "llmos.cli.demo"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout
    assert lines.index("PENDING") < lines.index("RUNNING") < lines.index("SUCCEEDED")
    assert "hello from llmos job" in lines
    assert (tmp_path / "home" / "config").exists()
