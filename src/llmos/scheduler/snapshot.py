"""The frozen picture of the cluster the scheduler decides on.

The control plane builds one from the store each loop; the simulator builds
one from its event state. A policy sees only what is here, which is only what
a live system can know (no job's true remaining work).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from llmos.core.devices import Node
from llmos.core.resources import ResourceRequest
from llmos.scheduler.throughput import ThroughputModel


@dataclass(frozen=True)
class RunningTask:
    """A task holding resources on a node."""

    task_id: str
    job_id: str
    tenant: str
    node_id: str
    device_ids: tuple[str, ...]
    cpus: float
    memory_gib: float
    priority: int = 0
    preemptible: bool = True
    started_at: float = 0.0
    last_checkpoint_at: float | None = None
    workload: str | None = None
    # Added for the policies (all defaulted so older callers keep working):
    # what a live system observes, never the job's true remaining work.
    submitted_at: float = 0.0
    attained_service_s: float = 0.0  # wall seconds this job has run, this attempt and earlier ones
    observed_throughput: float | None = None  # work units/s the job reports (steps/s)
    num_tasks: int = 1  # size of the job's gang (all its tasks run together)
    estimated_duration_s: float | None = None  # the user's own estimate, if any
    # The work the job was launched with (its spec's ``steps``; Gavel's total_steps),
    # ``None`` when the spec names none, and the progress the task has reported so far.
    # Remaining time = (spec_steps - steps_done) / throughput is what a live system knows.
    spec_steps: float | None = None
    steps_done: float = 0.0
    # The device types the job's spec allows (``()``: not reported; planners then keep the job
    # on the type it holds). Lets a whole-cluster planner move or rank a running job by every
    # type it may use, as it does a pending one.
    allowed_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class PendingJob:
    """A job waiting for placement; all ``num_tasks`` tasks are placed together."""

    job_id: str
    tenant: str
    request: ResourceRequest
    num_tasks: int = 1
    priority: int = 0
    preemptible: bool = True
    submitted_at: float = 0.0
    attained_service_s: float = 0.0
    workload: str | None = None
    estimated_duration_s: float | None = None
    kind: str = "command"
    spec_steps: float | None = None  # work requested in the spec (steps), if it names any
    steps_done: float = 0.0  # progress reported (and checkpointed) by earlier attempts

    def __post_init__(self) -> None:
        if self.num_tasks < 1:
            raise ValueError("num_tasks must be >= 1")


@dataclass(frozen=True)
class TenantPolicy:
    """A tenant's fair-share weight and guaranteed devices per device type."""

    name: str
    weight: float = 1.0
    quota: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError("tenant weight must be > 0")


@dataclass(frozen=True)
class ClusterSnapshot:
    nodes: tuple[Node, ...]
    running: tuple[RunningTask, ...] = ()
    pending: tuple[PendingJob, ...] = ()
    tenants: Mapping[str, TenantPolicy] = field(default_factory=dict)
    # Expected throughput of each workload on each device type; ``None``: the
    # scheduler falls back to relative peak FLOPS from the device catalog.
    throughput: ThroughputModel | None = None


@dataclass
class NodeFree:
    """Mutable free capacity of one node while a plan is being built."""

    node: Node
    free_device_ids: list[str]
    cpus: float
    memory_gib: float


def free_capacity(snapshot: ClusterSnapshot) -> dict[str, NodeFree]:
    """Free devices, CPUs and memory per live node after the running tasks."""
    out: dict[str, NodeFree] = {}
    for n in snapshot.nodes:
        if not n.alive:
            continue
        out[n.id] = NodeFree(n, [d.id for d in n.devices], n.cpus, n.memory_gib)
    for t in snapshot.running:
        f = out.get(t.node_id)
        if f is None:
            continue
        f.free_device_ids = [d for d in f.free_device_ids if d not in t.device_ids]
        f.cpus -= t.cpus
        f.memory_gib -= t.memory_gib
    return out
