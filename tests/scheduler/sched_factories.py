"""Factories for hand-made clusters whose right answer is known."""

from __future__ import annotations

from collections.abc import Sequence

from llmos.core.devices import Device, Node
from llmos.core.resources import ResourceRequest
from llmos.scheduler import PendingJob, RunningTask


def node(node_id: str, dtype: str = "V100", devices: int = 4, cpus: float = 32, memory_gib: float = 256,
         **labels: str) -> Node:
    devs = tuple(Device(f"gpu{i}", dtype, i, 16.0) for i in range(devices))
    return Node(node_id, cpus, memory_gib, devs, labels=dict(labels))


def pending(job_id: str, devices: int = 1, tasks: int = 1, *, tenant: str = "t", priority: int = 0,
            submitted_at: float = 0.0, types: Sequence[str] = (), workload: str | None = None,
            preemptible: bool = True, attained_s: float = 0.0, cpus: float = 1.0) -> PendingJob:
    return PendingJob(job_id, tenant, ResourceRequest(devices=devices, device_types=tuple(types), cpus=cpus,
                                                      memory_gib=1.0),
                      num_tasks=tasks, priority=priority, preemptible=preemptible, submitted_at=submitted_at,
                      attained_service_s=attained_s, workload=workload)


def running(job_id: str, node_id: str, device_ids: Sequence[str], *, tenant: str = "t", priority: int = 0,
            preemptible: bool = True, started_at: float = 0.0, checkpoint_at: float | None = None,
            attained_s: float = 0.0, workload: str | None = None, task: int = 0, num_tasks: int = 1,
            ) -> RunningTask:
    return RunningTask(f"{job_id}/{task}", job_id, tenant, node_id, tuple(device_ids), 1.0, 1.0,
                       priority=priority, preemptible=preemptible, started_at=started_at,
                       last_checkpoint_at=checkpoint_at, workload=workload, attained_service_s=attained_s,
                       num_tasks=num_tasks)
