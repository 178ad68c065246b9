"""The Ray execution backend: the same ``ExecutionBackend`` contract on a Ray cluster.

Ray is imported only here (lazily, in :func:`import_ray`): without it llmos
works with the local backend, and asking for this one raises a
:class:`~llmos.errors.BackendError` that says ``pip install 'llmos[ray]'``.

How a task runs: :meth:`RayBackend.launch` creates a *detached*, named actor
(``llmos-<task_id>-a<attempt>`` in namespace ``llmos``) whose body is
:class:`~llmos.backends.ray_runner.TaskProcess`. The actor is pinned to the
node the llmos scheduler chose (``NodeAffinitySchedulingStrategy(soft=False)``)
and reserves exactly the task's devices (``num_gpus`` / custom resources, see
:mod:`~llmos.backends.ray_inventory`), its CPUs and memory. It runs the
command in its own process group with the same environment contract, log
file and ``RUN_DIR/exit.json`` as the local backend. A gang
(``TaskLaunch.gang_size`` > 1) is held back until every member arrived, then
reserved atomically as one placement group whose bundle *i* is pinned to
member *i*'s node by the ``ray.io/node-id`` label.

Losses: when a node dies, Ray declares its actors dead; :meth:`poll` reports
their tasks ``LOST`` (the job controller reschedules them from their last
checkpoint). The task process cannot outlive its actor (see ``ray_runner``),
so a rescheduled attempt never runs next to the old one.

Artifacts: tasks read and write under ``home`` (``LLMOS_HOME``), which must be
the same path on a filesystem shared by every node (NFS, or one disk when all
Ray nodes run on one machine). Logs, heartbeats and metrics flow as with the
local backend: the task reports to ``LLMOS_URL`` over HTTP with its token.

Thread-safety: the controller thread calls everything; :meth:`inventory` may
also be called from other threads (it takes the lock).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmos.backends.base import TaskHandle, TaskLaunch, TaskStatus
from llmos.backends.ray_inventory import RayNodeView, node_view, ray_resources
from llmos.backends.ray_runner import TaskProcess
from llmos.core.devices import Node
from llmos.core.states import TaskState
from llmos.errors import BackendError

INSTALL_HINT = "the Ray backend needs Ray; install it with: pip install 'llmos[ray]'"
NAMESPACE = "llmos"
# Control-plane variables a task may rely on (models offline, thread counts, llmos
# settings). The rest of the control plane's environment (PATH, HOME, ...) describes
# the head machine, not the node the task runs on, so it is not forwarded.
_FORWARDED_ENV_PREFIXES = ("LLMOS_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "OMP_", "MKL_", "PYTHONPATH")
_SCRUBBED_ENV = ("LLMOS_TOKEN", "LLMOS_DATABASE_URL", "LLMOS_CPU_AFFINITY")
# Concurrent calls one task actor serves: ``wait`` blocks in one thread while
# ``status`` and ``stop`` use others.
_ACTOR_CONCURRENCY = 4
_log = logging.getLogger(__name__)


def ray_available() -> bool:
    """Whether Ray can be imported (without importing it)."""
    return importlib.util.find_spec("ray") is not None


def import_ray() -> Any:
    """Import Ray or raise a :class:`BackendError` saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise BackendError(f"{INSTALL_HINT} ({e})", code="ray_not_installed") from None
    return ray


def actor_name(task: TaskLaunch) -> str:
    return f"llmos-{task.task_id}-a{task.attempt}"


def gang_name(task: TaskLaunch) -> str:
    return f"llmos-gang-{task.job_id}-a{task.attempt}"


@dataclass
class _Tracked:
    handle: TaskHandle
    actor: Any
    wait_ref: Any
    ready_ref: Any | None  # resolves once the actor runs; None once seen
    placement_deadline: float
    run_dir: Path
    gang: str | None = None
    stop_requested: bool = False
    force_stopped: bool = False  # stop(grace_s <= 0): nothing left to wait for


@dataclass
class _Gang:
    pg: Any
    members: set[str] = field(default_factory=set)  # task ids still tracked


class RayBackend:
    """Runs tasks as Ray actors on the nodes of a Ray cluster. ``name = "ray"``.

    ``address``: ``None`` joins ``$RAY_ADDRESS`` if set, else starts a private
    one-node Ray instance (it dies with the control plane); ``"auto"`` joins the cluster
    this machine belongs to (``ray start`` was run here), ``"host:port"``
    joins that cluster's head. ``placement_timeout_s`` bounds how long a task
    may wait for Ray to place its actor before it is reported FAILED.
    """

    name = "ray"

    def __init__(
        self,
        home: Path,
        *,
        address: str | None = "auto",
        cpu_devices: int | None = None,
        placement_timeout_s: float = 300.0,
        namespace: str = NAMESPACE,
    ) -> None:
        self._ray = import_ray()
        self.home = Path(home)
        self.address = address
        self.namespace = namespace
        self.placement_timeout_s = placement_timeout_s
        self._cpu_devices = cpu_devices
        self._lock = threading.Lock()
        self._views: dict[str, RayNodeView] = {}
        self._tasks: dict[str, _Tracked] = {}
        self._gangs: dict[str, _Gang] = {}
        self._gang_buffer: dict[str, list[TaskLaunch]] = {}
        # Outcomes decided without Ray (a gang that never started), reported by the next poll().
        self._settled: list[TaskStatus] = []
        self._owns_ray = False
        self._actor_cls = self._ray.remote(TaskProcess)
        self._connect()

    # -- connection ---------------------------------------------------------------
    def _connect(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            return  # someone in this process (a test, a notebook) already connected
        kwargs: dict[str, Any] = {
            "namespace": self.namespace,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        address = self.address or os.environ.get("RAY_ADDRESS") or "local"
        kwargs["address"] = address
        if address == "local":
            # A private instance for this control plane: no dashboard, fewer processes.
            kwargs["include_dashboard"] = False
        advice = (
            "Start one with `ray start --head` (and `ray start --address HEAD:PORT` on the other "
            "hosts), then pass --ray-address HEAD:PORT or auto."
        )
        # Ray itself retries an unreachable GCS for minutes; fail fast with a clear message.
        _check_gcs_reachable(address, advice)
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise BackendError(
                f"cannot connect to the Ray cluster at {address}: {str(e).rstrip('.')}. {advice}", code="ray_unreachable"
            ) from None
        self._owns_ray = True

    # -- inventory ----------------------------------------------------------------
    def inventory(self) -> Sequence[Node]:
        """Every node Ray knows: alive ones with their devices, dead ones with ``alive=False``."""
        try:
            infos = self._ray.nodes()
        except Exception as e:
            raise BackendError(f"cannot list Ray nodes: {e}") from e
        views = [node_view(info, self._cpu_devices) for info in infos]
        # A restarted raylet on the same host gets a new NodeID; dead entries stay listed by Ray.
        with self._lock:
            self._views = {v.node.id: v for v in views}
        return tuple(v.node for v in views)

    def _view(self, node_id: str) -> RayNodeView:
        with self._lock:
            view = self._views.get(node_id)
        if view is None:
            self.inventory()
            with self._lock:
                view = self._views.get(node_id)
        if view is None:
            raise BackendError(f"unknown Ray node {node_id!r}")
        return view

    def run_dir(self, task_id: str) -> Path:
        return self.home / "runs" / task_id

    # -- launch -------------------------------------------------------------------
    def launch(self, task: TaskLaunch) -> TaskHandle:
        """Start the task's actor (or hold a gang member until the gang is complete); returns at once."""
        if task.task_id in self._tasks or (self.run_dir(task.task_id) / "launch.json").exists():
            raise BackendError(f"task {task.task_id} was already launched")
        view = self._view(task.node_id)
        if not view.node.alive:
            raise BackendError(f"Ray node {task.node_id} is dead")
        try:
            resources = ray_resources(view, task.device_ids)
        except KeyError as e:
            raise BackendError(str(e.args[0])) from None
        handle = self._handle_for(task)
        if task.gang_size <= 1:
            strategy = self._ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                node_id=view.ray_node_id, soft=False
            )
            self._start_actor(task, handle, resources, strategy, gang=None)
            return handle
        key = gang_name(task)
        buffer = self._gang_buffer.setdefault(key, [])
        if any(t.task_id == task.task_id for t in buffer):
            raise BackendError(f"task {task.task_id} was already launched")
        buffer.append(task)
        if len(buffer) == task.gang_size:
            del self._gang_buffer[key]
            members = sorted(buffer, key=lambda t: t.gang_index)
            try:
                self._start_gang(key, members)
            except BackendError as e:
                # This member's launch fails; its siblings already hold handles and must end too.
                self._settled += [
                    TaskStatus(t.task_id, TaskState.FAILED, None, f"gang launch failed: {e.message}")
                    for t in members
                    if t.task_id != task.task_id
                ]
                raise
        return handle

    def launch_gang(self, tasks: Sequence[TaskLaunch]) -> list[TaskHandle]:
        """Launch every member of one gang (``gang_size == len(tasks)``); one reservation."""
        return [self.launch(t) for t in tasks]

    def _task_env(self, task: TaskLaunch, view: RayNodeView) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k.startswith(_FORWARDED_ENV_PREFIXES) and k not in _SCRUBBED_ENV
        }
        env["LLMOS_HOME"] = str(self.home)
        env.update(task.env)
        env["CUDA_VISIBLE_DEVICES"] = ""  # replaced by Ray's GPU ids when the task holds GPUs
        env.setdefault("LLMOS_NODE_ID", view.node.id)
        node_ip = view.node.labels.get("address", "")
        if node_ip and node_ip != self._driver_ip():
            # A serving replica on another host must bind an address the head can reach
            # (the runtime binds LLMOS_SERVE_HOST, 127.0.0.1 by default).
            env.setdefault("LLMOS_SERVE_HOST", node_ip)
        return env

    def _driver_ip(self) -> str:
        try:
            return str(self._ray.util.get_node_ip_address())
        except Exception:
            return ""

    def _start_actor(
        self,
        task: TaskLaunch,
        handle: TaskHandle,
        resources: Mapping[str, float],
        strategy: Any,
        gang: str | None,
    ) -> None:
        view = self._view(task.node_id)
        run_dir = self.run_dir(task.task_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        log_path = task.log_path or str(run_dir / "output.log")
        custom = {k: v for k, v in resources.items() if k != "GPU"}
        gpus = resources.get("GPU", 0.0)
        options: dict[str, Any] = {
            "name": str(handle.ref["actor"]),
            "namespace": self.namespace,
            "lifetime": "detached",  # survives a control-plane restart, so adopt() finds it
            "max_restarts": 0,  # a restarted actor would re-run the command: llmos retries, not Ray
            "max_concurrency": _ACTOR_CONCURRENCY,
            "num_cpus": task.cpus,
            "num_gpus": gpus,
            "resources": custom,
            "scheduling_strategy": strategy,
        }
        if task.memory_gib > 0:
            options["memory"] = int(task.memory_gib * 2**30)
        try:
            actor = self._actor_cls.options(**options).remote(
                list(task.command),
                self._task_env(task, view),
                log_path,
                str(run_dir),
                task.workdir or str(run_dir),
                gpus > 0,
            )
        except Exception as e:  # Ray raises ValueError for a duplicate name, others for bad options
            raise BackendError(f"Ray refused task {task.task_id}: {e}") from e
        (run_dir / "launch.json").write_text(json.dumps(dict(handle.ref)))
        self._track(handle, actor, started=False, gang=gang)

    def _start_gang(self, key: str, members: list[TaskLaunch]) -> None:
        ray = self._ray
        bundles, selectors = [], []
        for t in members:
            view = self._view(t.node_id)
            bundle = {"CPU": t.cpus, **ray_resources(view, t.device_ids)}
            if t.memory_gib > 0:
                bundle["memory"] = int(t.memory_gib * 2**30)
            bundles.append({k: v for k, v in bundle.items() if v})
            selectors.append({"ray.io/node-id": view.ray_node_id})
        try:
            pg = ray.util.placement_group(
                bundles, strategy="PACK", name=key, lifetime="detached", bundle_label_selector=selectors
            )
        except Exception as e:
            raise BackendError(f"Ray refused the placement group for {key}: {e}") from e
        self._gangs[key] = _Gang(pg)
        pg_strategy = ray.util.scheduling_strategies.PlacementGroupSchedulingStrategy
        for i, t in enumerate(members):
            handle = self._handle_for(t)
            strategy = pg_strategy(placement_group=pg, placement_group_bundle_index=i)
            resources = ray_resources(self._view(t.node_id), t.device_ids)
            self._start_actor(t, handle, resources, strategy, gang=key)

    def _handle_for(self, task: TaskLaunch) -> TaskHandle:
        view = self._view(task.node_id)
        return TaskHandle(
            task_id=task.task_id,
            backend=self.name,
            node_id=task.node_id,
            ref={
                "actor": actor_name(task),
                "namespace": self.namespace,
                "ray_node_id": view.ray_node_id,
                "run_dir": str(self.run_dir(task.task_id)),
                "gang": gang_name(task) if task.gang_size > 1 else None,
            },
        )

    def _track(self, handle: TaskHandle, actor: Any, *, started: bool, gang: str | None) -> None:
        tr = _Tracked(
            handle=handle,
            actor=actor,
            wait_ref=actor.wait.remote(),
            ready_ref=None if started else actor.status.remote(),
            placement_deadline=time.monotonic() + self.placement_timeout_s,
            run_dir=Path(str(handle.ref.get("run_dir") or self.run_dir(handle.task_id))),
            gang=gang,
        )
        with self._lock:
            self._tasks[handle.task_id] = tr
        if gang is not None:
            self._gangs.setdefault(gang, _Gang(None)).members.add(handle.task_id)

    # -- stop ---------------------------------------------------------------------
    def stop(self, handle: TaskHandle, grace_s: float) -> None:
        """SIGTERM the task's process group, SIGKILL after ``grace_s`` (done by the actor). Idempotent."""
        with self._lock:
            tr = self._tasks.get(handle.task_id)
        if tr is None:
            self._drop_buffered(handle.task_id)
            return  # not ours or already reaped, as in the local backend
        if tr.stop_requested and grace_s > 0:
            return  # the controller repeats stops every tick; the actor is already on it
        tr.stop_requested = True
        tr.force_stopped = tr.force_stopped or grace_s <= 0
        if tr.ready_ref is not None:
            ready, _ = self._ray.wait([tr.ready_ref], timeout=0, fetch_local=False)
            if not ready:
                # Not placed yet: nothing runs, so there is nothing to signal.
                self._ray.kill(tr.actor, no_restart=True)
                return
        # Fire and forget: the actor escalates to SIGKILL itself, poll() sees the exit.
        tr.actor.stop.remote(max(0.0, grace_s))

    def _drop_buffered(self, task_id: str) -> None:
        """A gang member still waiting for its siblings is stopped: it never ran."""
        for key, members in list(self._gang_buffer.items()):
            if any(t.task_id == task_id for t in members):
                del self._gang_buffer[key]
                self._settled += [
                    TaskStatus(t.task_id, TaskState.LOST, None, "stopped before the gang was complete")
                    for t in members
                ]

    # -- observation --------------------------------------------------------------
    def poll(self) -> Sequence[TaskStatus]:
        ray = self._ray
        settled, self._settled = self._settled, []
        with self._lock:
            items = list(self._tasks.values())
        if not items:
            return settled
        by_wait = {tr.wait_ref: tr for tr in items}
        pending_ready = {tr.ready_ref: tr for tr in items if tr.ready_ref is not None}
        refs = [*by_wait, *pending_ready]
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        done_set = set(done)
        for ref, tr in pending_ready.items():
            if ref in done_set:
                tr.ready_ref = None
        out: list[TaskStatus] = settled
        now = time.monotonic()
        for ref, tr in by_wait.items():
            if ref in done_set:
                out.append(self._outcome(tr))
            elif tr.ready_ref is not None and now > tr.placement_deadline:
                ray.kill(tr.actor, no_restart=True)
                out.append(
                    TaskStatus(
                        tr.handle.task_id,
                        TaskState.FAILED,
                        None,
                        f"Ray could not place the task on node {tr.handle.node_id} within "
                        f"{self.placement_timeout_s:g}s (its resources are held outside llmos?)",
                    )
                )
            else:
                continue
            self._forget(tr)
        return out

    def _outcome(self, tr: _Tracked) -> TaskStatus:
        ray = self._ray
        task_id = tr.handle.task_id
        try:
            result = ray.get(tr.wait_ref, timeout=30)
        except ray.exceptions.RayError as e:
            # The actor died before the command ended: its node died, or stop()
            # killed it before it started.
            # The task's outcome may be on disk; trust it only if the task had finished:
            # a dying worker kills its children first, and that kill is the loss itself.
            recorded = _recorded_outcome(task_id, tr.run_dir)
            if recorded is not None and recorded.state == TaskState.SUCCEEDED:
                return recorded
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            why = "stopped before the task started" if tr.stop_requested else first_line
            return TaskStatus(task_id, TaskState.LOST, None, f"Ray actor lost: {why}")
        code = int(result["exit_code"])
        state = TaskState.SUCCEEDED if code == 0 else TaskState.FAILED
        return TaskStatus(task_id, state, code, str(result.get("message", "")))

    def _forget(self, tr: _Tracked) -> None:
        with contextlib.suppress(Exception):
            # The actor holds the task's resources until killed; its work is done.
            self._ray.kill(tr.actor, no_restart=True)
        with self._lock:
            self._tasks.pop(tr.handle.task_id, None)
        if tr.gang is None:
            return
        gang = self._gangs.get(tr.gang)
        if gang is None:
            return
        gang.members.discard(tr.handle.task_id)
        if not gang.members:
            self._remove_pg(tr.gang, gang.pg)
            del self._gangs[tr.gang]

    def _remove_pg(self, name: str, pg: Any) -> None:
        ray = self._ray
        with contextlib.suppress(Exception):
            if pg is None:  # adopted: find it by name
                pg = ray.util.get_placement_group(name)
            ray.util.remove_placement_group(pg)

    def adopt(self, handle: TaskHandle) -> TaskStatus:
        """Re-attach to the task's actor after a control-plane restart (see the protocol)."""
        ray = self._ray
        name = str(handle.ref.get("actor", ""))
        namespace = str(handle.ref.get("namespace", self.namespace))
        run_dir = Path(str(handle.ref.get("run_dir") or self.run_dir(handle.task_id)))
        gang = handle.ref.get("gang")
        try:
            actor = ray.get_actor(name, namespace=namespace)
        except ValueError:
            actor = None
        if actor is None:
            recorded = _recorded_outcome(handle.task_id, run_dir)
            if gang:
                self._remove_pg(str(gang), None)
            return recorded or TaskStatus(handle.task_id, TaskState.LOST, None, "Ray actor not found")
        self._track(handle, actor, started=False, gang=str(gang) if gang else None)
        try:
            status = ray.get(actor.status.remote(), timeout=30)
        except ray.exceptions.GetTimeoutError:
            return TaskStatus(handle.task_id, TaskState.RUNNING, None, "waiting for Ray to place it")
        except ray.exceptions.RayError:
            with self._lock:
                tr = self._tasks[handle.task_id]
            self._forget(tr)
            return _recorded_outcome(handle.task_id, run_dir) or TaskStatus(
                handle.task_id, TaskState.LOST, None, "Ray actor died"
            )
        if status["running"]:
            return TaskStatus(handle.task_id, TaskState.RUNNING)
        with self._lock:
            tr = self._tasks[handle.task_id]
        outcome = self._outcome(tr)
        self._forget(tr)
        return outcome

    def close(self) -> None:
        """Stop watching; running tasks keep running (detached actors) unless Ray itself was ours.

        Actors whose task already ended, or was force-stopped, are killed: nobody
        would poll them again, and they would hold their resources until an adopt.
        Their outcome stays in ``RUN_DIR/exit.json``.
        """
        with self._lock:
            items = list(self._tasks.values())
            self._tasks.clear()
        if items:
            with contextlib.suppress(Exception):
                refs = [tr.wait_ref for tr in items]
                done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
                ended = set(done)
                for tr in items:
                    if tr.force_stopped or tr.wait_ref in ended:
                        self._ray.kill(tr.actor, no_restart=True)
        self._gangs.clear()
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False


def _check_gcs_reachable(address: str, advice: str, timeout_s: float = 5.0) -> None:
    """Raise ``BackendError`` unless ``HOST:PORT`` accepts TCP connections ("auto"/"local"/ray:// pass)."""
    if address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise BackendError(f"bad Ray address {address!r}: expected HOST:PORT, auto or local", code="invalid_request")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise BackendError(
            f"cannot reach the Ray cluster at {address}: {e.strerror or e}. {advice}", code="ray_unreachable"
        ) from None


def _recorded_outcome(task_id: str, run_dir: Path) -> TaskStatus | None:
    exit_file = run_dir / "exit.json"
    try:
        data = json.loads(exit_file.read_text())
    except (OSError, ValueError):
        return None
    code = int(data["exit_code"])
    state = TaskState.SUCCEEDED if code == 0 else TaskState.FAILED
    return TaskStatus(task_id, state, code, str(data.get("message", "")))


def make_backend(settings: Any) -> RayBackend:
    """The backend ``llmos up --backend ray`` uses (``settings``: :class:`llmos.settings.Settings`).

    ``settings.ray_address`` None: ``$RAY_ADDRESS`` if set, else a private local instance.
    """
    return RayBackend(
        Path(settings.home),
        address=settings.ray_address,
        cpu_devices=settings.cpu_devices,
    )
