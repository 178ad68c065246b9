"""The ``Scheduler`` entry point shared by the control plane and the simulator."""

from __future__ import annotations

from llmos.core.resources import ResourceRequest
from llmos.scheduler.plan import Placement, Plan, TaskPlacement
from llmos.scheduler.snapshot import ClusterSnapshot, NodeFree, PendingJob, free_capacity


class Scheduler:
    """Priority-then-FIFO placement with all-or-nothing gangs.

    ``schedule`` is pure: it reads the snapshot and returns a plan; it keeps
    no state between calls and is safe to call from any thread.
    """

    name = "priority-fifo"

    def schedule(self, snapshot: ClusterSnapshot, now: float) -> Plan:
        free = free_capacity(snapshot)
        placements: list[Placement] = []
        reasons: dict[str, str] = {}
        queue = sorted(snapshot.pending, key=lambda j: (-j.priority, j.submitted_at, j.job_id))
        for job in queue:
            tasks, why = _place_gang(job, free)
            if tasks is None:
                reasons[job.job_id] = why
                continue
            placements.append(Placement(job.job_id, tuple(tasks)))
        return Plan(placements=tuple(placements), pending_reasons=reasons)


def _fit_reason(req: ResourceRequest, f: NodeFree) -> str | None:
    if f.cpus < req.cpus:
        return f"node {f.node.id}: {f.cpus:g} CPUs free, {req.cpus:g} needed"
    if f.memory_gib < req.memory_gib:
        return f"node {f.node.id}: {f.memory_gib:g} GiB RAM free, {req.memory_gib:g} needed"
    usable = _usable_devices(req, f)
    if len(usable) < req.devices:
        return f"node {f.node.id}: {len(usable)} suitable devices free, {req.devices} needed"
    return None


def _usable_devices(req: ResourceRequest, f: NodeFree) -> list[str]:
    by_id = {d.id: d for d in f.node.devices}
    return [
        i
        for i in f.free_device_ids
        if req.allows(by_id[i].type) and by_id[i].memory_gib >= req.min_device_memory_gib
    ]


def _place_gang(job: PendingJob, free: dict[str, NodeFree]) -> tuple[list[TaskPlacement] | None, str]:
    """Place every task or none; packs tasks on the fewest nodes it can."""
    req = job.request
    trial = {k: NodeFree(v.node, list(v.free_device_ids), v.cpus, v.memory_gib) for k, v in free.items()}
    tasks: list[TaskPlacement] = []
    last_reason = "no live nodes"
    for i in range(job.num_tasks):
        # Prefer the node with the least room that still fits (packing).
        best: NodeFree | None = None
        for f in sorted(trial.values(), key=lambda x: (len(x.free_device_ids), x.cpus, x.node.id)):
            why = _fit_reason(req, f)
            if why is None:
                best = f
                break
            last_reason = why
        if best is None:
            return None, f"waiting for resources for task {i} of {job.num_tasks}: {last_reason}"
        devs = _usable_devices(req, best)[: req.devices]
        best.free_device_ids = [d for d in best.free_device_ids if d not in devs]
        best.cpus -= req.cpus
        best.memory_gib -= req.memory_gib
        tasks.append(TaskPlacement(i, best.node.id, tuple(devs), req.cpus, req.memory_gib))
    free.update(trial)
    return tasks, ""


def make_scheduler(profile: str = "default") -> Scheduler:
    """Build the scheduler for a named profile."""
    return Scheduler()
