"""The local backend: real subprocesses, process groups, device isolation, stop, adoption."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
import pytest

from llmos.backends._discovery import discover_cpu_devices, gpu_type_from_name
from llmos.backends.base import ExecutionBackend, TaskLaunch, TaskStatus
from llmos.backends.local import LocalBackend
from llmos.core.states import TaskState
from llmos.errors import BackendError


def _launch(tmp: Path, task_id: str, cmd: Sequence[str], **kw: object) -> TaskLaunch:
    return TaskLaunch(task_id=task_id, job_id="job", attempt=1, node_id="n", device_ids=tuple(kw.pop("device_ids", ())),  # type: ignore[arg-type]
                      device_indices=(), cpus=1, memory_gib=1, command=tuple(cmd), env={"FOO": "bar"},
                      log_path=str(tmp / f"{task_id}.log"), **kw)  # type: ignore[arg-type]


def _wait(backend: LocalBackend, task_id: str, timeout_s: float = 30) -> TaskStatus:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for st in backend.poll():
            if st.task_id == task_id:
                return st
        time.sleep(0.05)
    raise AssertionError(f"{task_id} did not finish")


def test_inventory_advertises_cpu_devices(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path, node_id="n", cpu_devices=3, node_cpus=6, node_memory_gib=12)
    assert isinstance(b, ExecutionBackend)
    (node,) = b.inventory()
    assert node.id == "n" and node.cpus == 6 and node.memory_gib == 12
    assert [d.id for d in node.devices_of_type("cpu")] == ["cpu0", "cpu1", "cpu2"]
    assert len(discover_cpu_devices(None, 8.0)) == len(os.sched_getaffinity(0))
    assert gpu_type_from_name("NVIDIA A100-SXM4-40GB", 40) == "A100-40G"
    assert gpu_type_from_name("NVIDIA H100 80GB HBM3", 80) == "H100-80G"
    assert gpu_type_from_name("NVIDIA L4", 23) == "L4" and gpu_type_from_name("NVIDIA L40S", 45) == "L40S"


def test_exit_codes_log_env_and_isolation(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path, node_id="n", cpu_devices=1)
    script = ("import os; print('env', os.environ['FOO'], repr(os.environ['CUDA_VISIBLE_DEVICES']), "
              "sorted(os.sched_getaffinity(0)), os.getpgid(0) != os.getpgid(os.getppid()) or 'own-group'); "
              "import sys; sys.stderr.write('err\\n'); sys.exit(3)")
    b.launch(_launch(tmp_path, "t1", [sys.executable, "-c", script], device_ids=("cpu0",)))
    st = _wait(b, "t1")
    assert st.state == TaskState.FAILED and st.exit_code == 3
    log = (tmp_path / "t1.log").read_text()
    core = b.inventory()[0].devices[0].index
    assert f"env bar '' [{core}]" in log and "err" in log
    b.launch(_launch(tmp_path, "t2", ["true"]))
    assert _wait(b, "t2").state == TaskState.SUCCEEDED
    b.launch(_launch(tmp_path, "t3", ["/no/such/binary"]))
    st = _wait(b, "t3")
    assert st.state == TaskState.FAILED and st.exit_code == 127 and "cannot start" in st.message
    with pytest.raises(BackendError):
        b.launch(_launch(tmp_path, "t2", ["true"]))  # the same attempt never runs twice


def test_stop_sigterm_then_sigkill_the_whole_group(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path, node_id="n")
    # A shell that ignores SIGTERM and has a grandchild: both must die.
    h = b.launch(_launch(tmp_path, "stubborn", ["sh", "-c", "trap '' TERM; sleep 60 & echo $! > child.pid; wait"],
                         workdir=str(tmp_path)))
    deadline = time.monotonic() + 10
    while not (tmp_path / "child.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int((tmp_path / "child.pid").read_text())
    t0 = time.monotonic()
    b.stop(h, grace_s=0.5)
    st = _wait(b, "stubborn")
    assert time.monotonic() - t0 >= 0.4  # it got its grace period
    assert st.state == TaskState.LOST and st.exit_code is None  # SIGKILLed with its supervisor
    time.sleep(0.1)
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    b.stop(h, grace_s=0.5)  # idempotent

    h2 = b.launch(_launch(tmp_path, "polite", ["sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.05; done"]))
    time.sleep(0.3)
    b.stop(h2, grace_s=10)
    st2 = _wait(b, "polite")
    assert st2.state == TaskState.FAILED and st2.exit_code == 7


def test_adoption_after_a_restart(tmp_path: Path) -> None:
    b1 = LocalBackend(tmp_path, node_id="n")
    running = b1.launch(_launch(tmp_path, "long", ["sh", "-c", "sleep 1; exit 4"]))
    done = b1.launch(_launch(tmp_path, "short", ["true"]))
    time.sleep(0.5)
    b1.close()  # the control plane "dies"; nothing is stopped
    b2 = LocalBackend(tmp_path, node_id="n")
    assert b2.adopt(running).state == TaskState.RUNNING
    st = _wait(b2, "long")
    assert st.state == TaskState.FAILED and st.exit_code == 4
    adopted_done = b2.adopt(done)
    assert adopted_done.state == TaskState.SUCCEEDED and adopted_done.exit_code == 0
    # A handle with only the task id finds launch.json; one never launched is LOST.
    from llmos.backends.base import TaskHandle

    assert b2.adopt(TaskHandle("short", "local", "n", {})).state == TaskState.SUCCEEDED
    assert b2.adopt(TaskHandle("never", "local", "n", {})).message == "never started"
    # A recycled pid (different create time) is not mistaken for the task.
    fake = TaskHandle("ghost", "local", "n", {"pid": os.getpid(), "create_time": 1.0,
                                               "run_dir": str(tmp_path / "runs" / "ghost")})
    assert b2.adopt(fake).state == TaskState.LOST
