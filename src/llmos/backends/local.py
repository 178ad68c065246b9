"""The local execution backend: every task a supervised subprocess on this machine.

Contract (see :mod:`llmos.backends.base`): :meth:`LocalBackend.launch` starts
``python -I -S .../_supervisor.py RUN_DIR -- CMD`` as a new session (its
own process group), stdout and stderr appended to the attempt's log file, with
only the task's devices visible (``CUDA_VISIBLE_DEVICES``) and, when the task
holds ``cpu`` devices, pinned to those cores. The handle records the
supervisor's pid and create time, so a restarted control plane can tell a
live task from a finished one (``RUN_DIR/exit.json``) from a lost one, without
mistaking a recycled pid for the task.

Thread-safety: all methods may be called from the controller thread only,
except :meth:`inventory`, which is read-only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from llmos.backends._discovery import discover_cpu_devices, discover_gpus, host_cpus_and_memory
from llmos.backends._supervisor import write_json_atomic
from llmos.backends.base import TaskHandle, TaskLaunch, TaskStatus
from llmos.core.devices import CPU, Node
from llmos.core.states import TaskState
from llmos.errors import BackendError

# Variables of the control plane that must not leak into tasks (the admin token above all).
_SCRUBBED_ENV = ("LLMOS_TOKEN", "LLMOS_DATABASE_URL", "LLMOS_CPU_AFFINITY")
# Run by path in isolated mode without site: stdlib only, fastest start.
_SUPERVISOR = str(Path(__file__).with_name("_supervisor.py"))


@dataclass
class _Tracked:
    handle: TaskHandle
    run_dir: Path
    proc: subprocess.Popen[bytes] | None  # None when adopted after a restart
    pid: int
    create_time: float
    kill_at: float | None = None


class LocalBackend:
    """Runs tasks as subprocesses of this machine. ``name = "local"``."""

    name = "local"

    def __init__(
        self,
        home: Path,
        *,
        node_id: str | None = None,
        cpu_devices: int | None = None,
        node_cpus: float | None = None,
        node_memory_gib: float | None = None,
    ) -> None:
        self.home = Path(home)
        self.node_id = node_id or socket.gethostname() or "local"
        self._cpu_devices = cpu_devices
        self._node_cpus = node_cpus
        self._node_memory_gib = node_memory_gib
        self._tasks: dict[str, _Tracked] = {}
        self._lock = threading.Lock()
        self._gpus = discover_gpus()

    # -- inventory -----------------------------------------------------------------
    def inventory(self) -> Sequence[Node]:
        cpus, mem = host_cpus_and_memory()
        cpus = self._node_cpus if self._node_cpus is not None else cpus
        mem = self._node_memory_gib if self._node_memory_gib is not None else mem
        devices = (*self._gpus, *discover_cpu_devices(self._cpu_devices, mem))
        labels = {"backend": "local", "address": "127.0.0.1", "hostname": socket.gethostname()}
        return (Node(id=self.node_id, cpus=cpus, memory_gib=round(mem, 2), devices=devices, labels=labels),)

    def run_dir(self, task_id: str) -> Path:
        return self.home / "runs" / task_id

    # -- launch / stop ---------------------------------------------------------------
    def launch(self, task: TaskLaunch) -> TaskHandle:
        run_dir = self.run_dir(task.task_id)
        if (run_dir / "launch.json").exists():
            # Launching the same attempt twice would run it twice; the controller must adopt instead.
            raise BackendError(f"task {task.task_id} was already launched")
        run_dir.mkdir(parents=True, exist_ok=True)
        log_path = Path(task.log_path or run_dir / "output.log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env.update(task.env)
        gpu_indices = [d.index for d in self._gpus if d.id in task.device_ids]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpu_indices)
        cpu_cores = [d.index for d in self.inventory()[0].devices if d.type == CPU and d.id in task.device_ids]
        if cpu_cores:
            env["LLMOS_CPU_AFFINITY"] = ",".join(str(c) for c in sorted(set(cpu_cores)))
        workdir = task.workdir or str(run_dir)
        cmd = [sys.executable, "-I", "-S", _SUPERVISOR, str(run_dir), "--", *task.command]
        try:
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=env, cwd=workdir, start_new_session=True,
                )
        except OSError as e:
            raise BackendError(f"cannot start task {task.task_id}: {e}") from e
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            create_time = 0.0
        ref: dict[str, Any] = {"pid": proc.pid, "create_time": create_time, "run_dir": str(run_dir)}
        write_json_atomic(run_dir / "launch.json", ref)
        handle = TaskHandle(task_id=task.task_id, backend=self.name, node_id=self.node_id, ref=ref)
        with self._lock:
            self._tasks[task.task_id] = _Tracked(handle, run_dir, proc, proc.pid, create_time)
        return handle

    def stop(self, handle: TaskHandle, grace_s: float) -> None:
        with self._lock:
            tr = self._tasks.get(handle.task_id)
        if tr is None:
            return  # not ours or already reaped: nothing to stop
        if tr.kill_at is None:
            tr.kill_at = time.monotonic() + max(0.0, grace_s)
            self._signal(tr, signal.SIGTERM)
        if grace_s <= 0:
            self._signal(tr, signal.SIGKILL)

    def _alive(self, tr: _Tracked) -> bool:
        if tr.proc is not None:
            return tr.proc.poll() is None
        try:
            p = psutil.Process(tr.pid)
            return abs(p.create_time() - tr.create_time) < 0.01 and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _signal(self, tr: _Tracked, sig: signal.Signals) -> None:
        if not self._alive(tr):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(tr.pid, sig)

    # -- observation -----------------------------------------------------------------
    def _outcome(self, tr: _Tracked) -> TaskStatus:
        exit_file = tr.run_dir / "exit.json"
        if exit_file.exists():
            data = json.loads(exit_file.read_text())
            code = int(data["exit_code"])
            state = TaskState.SUCCEEDED if code == 0 else TaskState.FAILED
            return TaskStatus(tr.handle.task_id, state, code, str(data.get("message", "")))
        # The supervisor died without recording an outcome: SIGKILLed (by our stop or by someone else).
        return TaskStatus(tr.handle.task_id, TaskState.LOST, None, "supervisor killed before the task exited")

    def poll(self) -> Sequence[TaskStatus]:
        out: list[TaskStatus] = []
        now = time.monotonic()
        with self._lock:
            items = list(self._tasks.items())
        for task_id, tr in items:
            if self._alive(tr):
                if tr.kill_at is not None and now >= tr.kill_at:
                    self._signal(tr, signal.SIGKILL)
                continue
            out.append(self._outcome(tr))
            with self._lock:
                self._tasks.pop(task_id, None)
        return out

    def adopt(self, handle: TaskHandle) -> TaskStatus:
        run_dir = Path(handle.ref.get("run_dir") or self.run_dir(handle.task_id))
        ref = dict(handle.ref)
        if "pid" not in ref and (run_dir / "launch.json").exists():
            ref = json.loads((run_dir / "launch.json").read_text())
        if "pid" not in ref:
            # Never launched (the controller died between recording and launching).
            return TaskStatus(handle.task_id, TaskState.LOST, None, "never started")
        handle = TaskHandle(handle.task_id, self.name, handle.node_id or self.node_id, ref)
        tr = _Tracked(handle, run_dir, None, int(ref["pid"]), float(ref.get("create_time", 0.0)))
        if self._alive(tr):
            with self._lock:
                self._tasks[handle.task_id] = tr
            return TaskStatus(handle.task_id, TaskState.RUNNING)
        return self._outcome(tr)

    def close(self) -> None:
        with self._lock:
            self._tasks.clear()
