"""Preemption plug-ins: which running jobs may be stopped for a waiting one.

Each names *eligible* victims with a reason; the scheduler then picks, among
all eligible ones, those that lose the least work since their last checkpoint
until the waiting job fits, and gives each a grace period to checkpoint.
Only preemptible jobs are ever victims.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from llmos.scheduler.framework import CycleContext, JobView, QueueOrder
from llmos.scheduler.throughput import ThroughputModel


@dataclass
class PriorityPreemption:
    """A job may stop preemptible jobs of a strictly lower priority class."""

    name: str = "priority"

    def victims(self, job: JobView, running: Iterable[JobView], ctx: CycleContext) -> dict[str, str]:
        return {
            r.job_id: f"preempted for higher-priority job {job.job_id} (priority {job.priority} > {r.priority})"
            for r in running
            if r.preemptible and r.priority < job.priority
        }


@dataclass
class QuotaReclaim:
    """An owner within its guarantee takes back devices other tenants borrowed.

    Victims are preemptible jobs of tenants using more of that device type
    than their own guarantee, on the types the waiting job may use.
    """

    name: str = "quota-reclaim"

    def victims(self, job: JobView, running: Iterable[JobView], ctx: CycleContext) -> dict[str, str]:
        out: dict[str, str] = {}
        mine = ctx.tenant(job.tenant).quota
        types = set(ctx.allowed_types(job))
        need = job.devices_total
        usage: dict[str, dict[str, int]] | None = None  # read once, when first needed (it is counted then)
        for r in running:
            t = r.device_type
            if not r.preemptible or r.tenant == job.tenant or t is None or t not in types:
                continue
            if usage is None:
                usage = ctx.usage
            guarantee = mine.get(t, 0)
            if usage.get(job.tenant, {}).get(t, 0) + need > guarantee:
                continue  # the waiting job would itself be borrowing: nothing to reclaim
            theirs = ctx.tenant(r.tenant).quota.get(t, 0)
            if usage.get(r.tenant, {}).get(t, 0) > theirs:
                out[r.job_id] = (
                    f"reclaimed: tenant {r.tenant} borrowed {t} beyond its guarantee of {theirs} "
                    f"and tenant {job.tenant} needs its own"
                )
        return out


@dataclass
class QueueOrderPreemption:
    """Stop jobs the queue order ranks in a lower coarse class (LAS / Tiresias / Gittins).

    Needs the profile's queue order; the coarse key (priority, queue level)
    makes preemption happen only across classes, not between neighbours.

    ``min_run_s`` is a lease (Gavel's round): a job that started less than
    that long ago is not a victim of queue order, so every restart is paid
    for by at least one lease of running (a restart overhead of R costs at
    most R / ``min_run_s`` of a job's time) and a job placed in one cycle is
    not stopped by the next. Priority and quota preemption ignore the lease.
    """

    order: QueueOrder
    name: str = "queue-order"
    min_run_s: float = 0.0

    def __post_init__(self) -> None:
        if self.min_run_s < 0:
            raise ValueError("queue-order min_run_s must be >= 0")

    def victims(self, job: JobView, running: Iterable[JobView], ctx: CycleContext) -> dict[str, str]:
        mine = self.order.coarse_key(job, ctx)
        out: dict[str, str] = {}
        for r in running:
            if ctx.now - r.started_at < self.min_run_s:
                continue  # still within its lease
            if r.preemptible and self.order.coarse_key(r, ctx) > mine:
                out[r.job_id] = f"preempted for {job.job_id}, which has had less service ({self.order.name} order)"
        return out


@dataclass
class FasterTypeMigration:
    """Move a running job to a faster free device type (Gavel's jobs change type
    between rounds; here a move costs a checkpoint and a restart, so only a
    speed-up of at least ``min_speedup`` by the throughput model is worth it).

    Biggest speed-up first. Never looks at remaining work, which a live system
    does not know.
    """

    name: str = "faster-type"
    min_speedup: float = 1.5
    # A job must have run this long since its last (re)start before it may move again:
    # bounds the churn when the next cycle hands the moved job a different type.
    min_run_s: float = 600.0
    _memo: dict[tuple[str | None, str, tuple[str, ...]], list[tuple[float, str]]] = field(
        default_factory=dict, repr=False)
    _memo_model: ThroughputModel | None = field(default=None, repr=False)

    def _faster(self, ctx: CycleContext, workload: str | None, cur: str, types: list[str]) -> list[tuple[float, str]]:
        """Types at least ``min_speedup`` faster than ``cur`` for the workload, fastest first."""
        if self._memo_model is not ctx.throughput:
            # A different model (the control plane may build one per loop): start afresh.
            self._memo_model = ctx.throughput
            self._memo.clear()
        key = (workload, cur, tuple(types))
        hit = self._memo.get(key)
        if hit is None:
            here = ctx.throughput.speed(workload, cur)
            hit = []
            if here > 0:
                hit = sorted(((ctx.throughput.speed(workload, t) / here, t) for t in types if t != cur),
                             reverse=True)
                hit = [(g, t) for g, t in hit if g >= self.min_speedup]
            if len(self._memo) > 65536:
                self._memo.clear()
            self._memo[key] = hit
        return hit

    def moves(self, running: Sequence[JobView], ctx: CycleContext) -> dict[str, tuple[str, str]]:
        free = ctx.capacity.free_by_type
        if not any(free.values()):
            return {}
        cands: list[tuple[float, str, str, str]] = []
        types = ctx.device_types
        for r in running:
            cur = r.device_type
            if not r.preemptible or cur is None or not r.devices_total or not ctx.throughput.knows(r.workload):
                continue  # only measured speed-ups justify a restart
            if ctx.now - r.started_at < self.min_run_s:
                continue
            for gain, t in self._faster(ctx, r.workload, cur, types):
                if free.get(t, 0) >= r.devices_total:
                    cands.append((-gain, r.job_id, t, f"migrating to {t}, {gain:.1f}x faster for its workload"))
                    break
        cands.sort()
        out: dict[str, tuple[str, str]] = {}
        for _g, jid, t, why in cands:
            if jid not in out:
                out[jid] = (t, why)
        return out
