"""The ``ExecutionBackend`` protocol every backend implements.

The job controller is the only caller. It records an assignment in the store
*before* calling :meth:`ExecutionBackend.launch`, and persists the returned
:class:`TaskHandle`, so after a control-plane crash it can ask the backend to
:meth:`~ExecutionBackend.adopt` the task again or declare it lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from llmos.core.devices import Node
from llmos.core.states import TaskState


@dataclass(frozen=True)
class TaskLaunch:
    """Everything a backend needs to start one attempt of one task.

    ``device_indices`` are the indices the task may see (``CUDA_VISIBLE_DEVICES``);
    ``log_path`` is the file stdout and stderr go to for this attempt.
    The controller launches all members of a gang (``gang_size`` > 1) in one go,
    in ``gang_index`` order.
    """

    task_id: str
    job_id: str
    attempt: int
    node_id: str
    device_ids: tuple[str, ...]
    device_indices: tuple[int, ...]
    cpus: float
    memory_gib: float
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    log_path: str = ""
    # Gang membership (task ``gang_index`` of ``gang_size`` of one job attempt). A backend
    # that can reserve a whole gang atomically (Ray: one placement group) waits until it
    # has seen every member; others ignore these. The controller fills them for gangs.
    gang_size: int = 1
    gang_index: int = 0


@dataclass(frozen=True)
class TaskHandle:
    """How a backend finds a task again; stored as JSON by the controller."""

    task_id: str
    backend: str
    node_id: str
    ref: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskStatus:
    """An observed change: a task is running, has exited, or was lost."""

    task_id: str
    state: TaskState
    exit_code: int | None = None
    message: str = ""


@runtime_checkable
class ExecutionBackend(Protocol):
    name: str

    def inventory(self) -> Sequence[Node]:
        """The nodes and devices this backend can run tasks on, as of now."""
        ...

    def launch(self, task: TaskLaunch) -> TaskHandle:
        """Start the task; returns at once. Raises ``BackendError`` on failure."""
        ...

    def stop(self, handle: TaskHandle, grace_s: float) -> None:
        """Ask the task to stop (SIGTERM or equivalent), force it after ``grace_s``. Idempotent."""
        ...

    def poll(self) -> Sequence[TaskStatus]:
        """Tasks whose state changed since the last call (exits, losses)."""
        ...

    def adopt(self, handle: TaskHandle) -> TaskStatus:
        """After a control-plane restart: re-attach to a task and report its state.

        Returns RUNNING if it still runs (and is tracked from now on), its final
        state if it ended while nobody watched, or LOST if nothing can be known.
        """
        ...

    def close(self) -> None:
        """Release backend resources; running tasks are left running."""
        ...
