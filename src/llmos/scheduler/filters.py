"""Filter plug-ins: may this job run on this device type (or node) now?

Every "no" is a :class:`Status` whose reasons are written for the user who
asks why the job waits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmos.scheduler.capacity import NO_DEVICE, NodeState
from llmos.scheduler.framework import CycleContext, JobView, Status

CORDON_LABEL = "llmos.io/unschedulable"


@dataclass
class TypeAvailable:
    """The cluster has enough devices of the type, in all, for the gang."""

    name: str = "type-available"

    def filter(self, job: JobView, device_type: str, ctx: CycleContext) -> Status:
        if device_type == NO_DEVICE:
            return Status.success()
        total = ctx.capacity.total_by_type.get(device_type, 0)
        if total < job.devices_total:
            return Status.unschedulable(
                self.name,
                f"the job needs {job.devices_total} {device_type} devices and the cluster has {total}",
            )
        return Status.success()


@dataclass
class TenantQuota:
    """Per-tenant guaranteed devices per type, with borrowing of idle capacity.

    A tenant may always use up to its guarantee (``TenantPolicy.quota``). Past
    it, a job *borrows*: allowed only if the job is preemptible (borrowed
    devices must be reclaimable) and the free devices left after holding back
    the unused guarantees of other tenants that have jobs waiting for that
    type still cover it. The ``quota-reclaim`` preemption plug-in takes
    borrowed devices back when an owner needs them. Tenants without a quota on
    a type borrow only. No quotas configured at all: the filter passes.
    """

    name: str = "quota"
    _demand_for: CycleContext | None = field(default=None, repr=False)
    _demand: dict[str, set[str]] = field(default_factory=dict, repr=False)

    def _waiting_tenants(self, ctx: CycleContext) -> dict[str, set[str]]:
        # Identity, not id(): a new cycle's context may reuse a freed one's address.
        if self._demand_for is not ctx:
            self._demand = {}
            for p in ctx.snapshot.pending:
                types = [t for t in ctx.device_types if p.request.allows(t)] if p.request.devices else []
                for t in types:
                    self._demand.setdefault(t, set()).add(p.tenant)
            self._demand_for = ctx
        return self._demand

    def filter(self, job: JobView, device_type: str, ctx: CycleContext) -> Status:
        if device_type == NO_DEVICE or not job.devices_total:
            return Status.success()
        if not any(tp.quota for tp in ctx.tenants.values()):
            return Status.success()
        need = job.devices_total
        guarantee = ctx.tenant(job.tenant).quota.get(device_type, 0)
        used = ctx.usage.get(job.tenant, {}).get(device_type, 0)
        if used + need <= guarantee:
            return Status.success()
        if not job.preemptible:
            return Status.wait(
                self.name,
                f"tenant {job.tenant} would exceed its guarantee of {guarantee} {device_type} "
                f"(using {used}) and a non-preemptible job cannot borrow",
            )
        reserved = 0
        for other in self._waiting_tenants(ctx).get(device_type, ()):
            if other == job.tenant:
                continue
            g = ctx.tenant(other).quota.get(device_type, 0)
            reserved += max(0, g - ctx.usage.get(other, {}).get(device_type, 0))
        idle = ctx.capacity.free_by_type.get(device_type, 0) - reserved
        if idle < need:
            return Status.wait(
                self.name,
                f"tenant {job.tenant} is past its guarantee of {guarantee} {device_type} and only "
                f"{max(idle, 0)} idle {device_type} can be borrowed ({reserved} held for other tenants' guarantees)",
            )
        return Status.success()


@dataclass
class NodeHealth:
    """Skips nodes an operator cordoned (label ``llmos.io/unschedulable=true``)."""

    name: str = "node-health"

    def filter_node(self, job: JobView, node: NodeState, device_type: str, ctx: CycleContext) -> Status:
        if node.node.labels.get(CORDON_LABEL, "").lower() == "true":
            return Status.wait(self.name, f"node {node.node.id} is cordoned")
        return Status.success()
