"""GPU discovery and isolation on a machine with NVIDIA GPUs (skips elsewhere)."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from llmos.backends.base import TaskLaunch
from llmos.backends.local import LocalBackend
from llmos.core.devices import DEVICE_CATALOG
from llmos.core.states import TaskState

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="no NVIDIA GPU (nvidia-smi not found)"),
]


def test_gpus_are_discovered_and_isolated(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path, node_id="n")
    gpus = [d for d in b.inventory()[0].devices if d.type != "cpu"]
    assert gpus, "nvidia-smi is present but no GPU was discovered"
    assert all(d.memory_gib > 1 for d in gpus)
    assert any(d.type in DEVICE_CATALOG for d in gpus), [d.type for d in gpus]
    last = gpus[-1]
    code = "import os, torch; print('visible', os.environ['CUDA_VISIBLE_DEVICES'], torch.cuda.device_count())"
    b.launch(TaskLaunch(task_id="g", job_id="j", attempt=1, node_id="n", device_ids=(last.id,),
                        device_indices=(last.index,), cpus=1, memory_gib=1,
                        command=(sys.executable, "-c", code), log_path=str(tmp_path / "g.log")))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = [s for s in b.poll() if s.task_id == "g"]
        if done:
            assert done[0].state == TaskState.SUCCEEDED, (tmp_path / "g.log").read_text()
            break
        time.sleep(0.1)
    assert f"visible {last.index} 1" in (tmp_path / "g.log").read_text()
