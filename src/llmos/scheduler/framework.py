"""The scheduling framework: extension points, outcomes and the per-cycle context.

One scheduling cycle (see :class:`llmos.scheduler.scheduler.Scheduler`):

1. **queue order** ranks every job (pending and running) with a sort key;
2. **filters** decide, per job, whether it may be placed now (quota, type
   availability) and, per node, whether the node may host it; every "no" is a
   :class:`Status` carrying human reasons;
3. **scores** rank the device types a job may run on (0-100 each, weighted by
   the profile); the gang is placed on the best type that fits;
4. **preemption** names running jobs that may be stopped for a job that
   does not fit; the scheduler picks the victims that lose the least work.

Plug-ins are plain objects with a ``name`` satisfying one of the Protocols
below; :mod:`llmos.scheduler.registry` maps names to factories. Outcomes are
values, never exceptions. Plug-ins must be pure and deterministic given the
snapshot (the simulator relies on it for reproducible runs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from llmos.core.resources import ResourceRequest
from llmos.scheduler.capacity import NO_DEVICE, Capacity, NodeState
from llmos.scheduler.snapshot import ClusterSnapshot, PendingJob, RunningTask, TenantPolicy
from llmos.scheduler.throughput import ThroughputModel


class Code(StrEnum):
    """Outcome of a filter."""

    SUCCESS = "Success"
    WAIT = "Wait"  # may fit later (resources busy, quota in use)
    UNSCHEDULABLE = "Unschedulable"  # will not fit as the cluster is built


@dataclass(frozen=True)
class Status:
    """A filter's verdict with the reasons users see as "why is my job pending"."""

    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @property
    def ok(self) -> bool:
        return self.code is Code.SUCCESS

    @staticmethod
    def success() -> Status:
        return _SUCCESS

    @staticmethod
    def wait(plugin: str, *reasons: str) -> Status:
        return Status(Code.WAIT, tuple(reasons), plugin)

    @staticmethod
    def unschedulable(plugin: str, *reasons: str) -> Status:
        return Status(Code.UNSCHEDULABLE, tuple(reasons), plugin)


_SUCCESS = Status()


@dataclass
class JobView:
    """One job as the policies see it, pending or running.

    ``attained_service_s`` is wall seconds the job has run (what a live system
    observes); ``estimated_duration_s`` is the user's own estimate, if any.
    Nothing here is the job's true remaining work.
    """

    job_id: str
    tenant: str
    priority: int
    preemptible: bool
    submitted_at: float
    attained_service_s: float
    num_tasks: int
    request: ResourceRequest
    workload: str | None = None
    estimated_duration_s: float | None = None
    running: bool = False
    tasks: tuple[RunningTask, ...] = ()
    device_type: str | None = None  # type the running job holds
    last_checkpoint_at: float | None = None
    started_at: float = 0.0
    spec_steps: float | None = None  # the spec's requested work (steps), if known
    steps_done: float = 0.0  # progress reported so far
    observed_throughput: float | None = None  # steps/s reported by the running job

    @property
    def remaining_steps(self) -> float | None:
        """Spec steps not yet done (never below 0), or ``None`` if the spec names no work."""
        if self.spec_steps is None:
            return None
        return max(0.0, self.spec_steps - self.steps_done)

    @property
    def devices_total(self) -> int:
        return self.num_tasks * self.request.devices

    @property
    def device_service_s(self) -> float:
        """Attained service in device-seconds (Tiresias's 2D attained service)."""
        return self.attained_service_s * max(1, self.devices_total)

    @staticmethod
    def of_pending(p: PendingJob) -> JobView:
        return JobView(
            job_id=p.job_id, tenant=p.tenant, priority=p.priority, preemptible=p.preemptible,
            submitted_at=p.submitted_at, attained_service_s=p.attained_service_s,
            num_tasks=p.num_tasks, request=p.request, workload=p.workload,
            estimated_duration_s=p.estimated_duration_s, spec_steps=p.spec_steps, steps_done=p.steps_done,
        )

    @staticmethod
    def of_running(tasks: Sequence[RunningTask], device_type: str | None) -> JobView:
        t0 = tasks[0]
        key = (len(t0.device_ids), device_type, t0.cpus, t0.memory_gib)
        req = _REQUESTS.get(key)
        if req is None:
            req = _running_request(*key)
        if len(tasks) == 1:  # the common case, kept cheap for the simulator's hot loop
            n = t0.num_tasks
            return JobView(t0.job_id, t0.tenant, t0.priority, t0.preemptible, t0.submitted_at,
                           t0.attained_service_s, n if n > 1 else 1, req, t0.workload,
                           t0.estimated_duration_s, True, (t0,), device_type, t0.last_checkpoint_at,
                           t0.started_at, t0.spec_steps, t0.steps_done, t0.observed_throughput)
        # One pass over the gang (the simulator's hot loop sees many gangs).
        preemptible = t0.preemptible
        attained = t0.attained_service_s
        ck = t0.last_checkpoint_at
        started = t0.started_at
        done = t0.steps_done
        observed = t0.observed_throughput
        for t in tasks[1:]:
            if not t.preemptible:
                preemptible = False
            if t.attained_service_s > attained:
                attained = t.attained_service_s
            c = t.last_checkpoint_at
            if c is None or ck is None:
                ck = None  # a task without a checkpoint: the gang has none
            elif c < ck:
                ck = c
            if t.started_at < started:
                started = t.started_at
            # A gang progresses in lock-step; the slowest report is the safe one.
            if t.steps_done < done:
                done = t.steps_done
            o = t.observed_throughput
            if o is not None and (observed is None or o < observed):
                observed = o
        return JobView(t0.job_id, t0.tenant, t0.priority, preemptible, t0.submitted_at, attained,
                       max(len(tasks), t0.num_tasks), req, t0.workload, t0.estimated_duration_s, True,
                       tuple(tasks), device_type, ck, started, t0.spec_steps, done, observed)

    def lost_work_s(self, now: float) -> float:
        """Seconds of progress lost if stopped now without a checkpoint."""
        since = self.last_checkpoint_at if self.last_checkpoint_at is not None else self.started_at
        return max(0.0, now - since) * max(1, self.devices_total)


_REQUESTS: dict[tuple[int, str | None, float, float], ResourceRequest] = {}


def _running_request(devices: int, device_type: str | None, cpus: float, memory_gib: float) -> ResourceRequest:
    """What a running task holds, as a request (memoised: validation is not free and
    the simulator asks for the same few shapes thousands of times)."""
    key = (devices, device_type, cpus, memory_gib)
    req = _REQUESTS.get(key)
    if req is None:
        req = ResourceRequest(devices=devices, device_types=(device_type,) if device_type else (),
                              cpus=cpus, memory_gib=memory_gib)
        if len(_REQUESTS) < 4096:
            _REQUESTS[key] = req
    return req


Usage = tuple[dict[str, dict[str, int]], dict[str, tuple[float, float]]]
"""Devices held per tenant and device type, and (CPUs, GiB) held per tenant."""


@dataclass
class CycleContext:
    """What every plug-in may read during one ``schedule`` call.

    ``capacity`` and ``usage`` change as the cycle places jobs. Plug-ins may
    keep per-cycle notes in ``notes`` (e.g. an allocator's preferred types).
    ``usage`` and ``cpu_mem_usage`` are counted by ``tally`` when first read:
    counting is a pass over every running task, and profiles without quotas
    or a fair-share order never read them.
    """

    snapshot: ClusterSnapshot
    now: float
    capacity: Capacity
    throughput: ThroughputModel
    running: dict[str, JobView]
    tally: Callable[[], Usage]
    tenants: Mapping[str, TenantPolicy]
    total_cpus: float = 0.0
    total_memory_gib: float = 0.0
    notes: dict[str, dict[str, str]] = field(default_factory=dict)
    _usage: Usage | None = field(default=None, init=False, repr=False)
    # ``charge`` calls made before the first read, applied in order once counted (the same sums).
    _charges: list[tuple[JobView, str, int]] = field(default_factory=list, init=False, repr=False)

    @property
    def usage(self) -> dict[str, dict[str, int]]:
        """Tenant -> device type -> devices held."""
        return (self._usage or self._count())[0]

    @property
    def cpu_mem_usage(self) -> dict[str, tuple[float, float]]:
        """Tenant -> (CPUs, GiB) held."""
        return (self._usage or self._count())[1]

    def _count(self) -> Usage:
        self._usage = self.tally()
        for job, device_type, sign in self._charges:
            self._charge(job, device_type, sign)
        self._charges.clear()
        return self._usage

    @property
    def device_types(self) -> list[str]:
        """Device types present in the cluster (live nodes), sorted."""
        return sorted(t for t, n in self.capacity.total_by_type.items() if n > 0)

    def allowed_types(self, job: JobView) -> list[str]:
        """Device types this job may use that the cluster has."""
        if job.request.devices == 0:
            return [NO_DEVICE]
        return [t for t in self.device_types if job.request.allows(t)]

    def tenant(self, name: str) -> TenantPolicy:
        return self.tenants.get(name) or TenantPolicy(name)

    def charge(self, job: JobView, device_type: str, sign: int = 1) -> None:
        """Account a placement (sign=1) or a release (sign=-1) to the job's tenant."""
        if self._usage is None:
            self._charges.append((job, device_type, sign))
        else:
            self._charge(job, device_type, sign)

    def _charge(self, job: JobView, device_type: str, sign: int) -> None:
        if job.request.devices:
            u = self.usage.setdefault(job.tenant, {})
            u[device_type] = u.get(device_type, 0) + sign * job.devices_total
        c, m = self.cpu_mem_usage.get(job.tenant, (0.0, 0.0))
        self.cpu_mem_usage[job.tenant] = (
            c + sign * job.request.cpus * job.num_tasks,
            m + sign * job.request.memory_gib * job.num_tasks,
        )


@runtime_checkable
class QueueOrder(Protocol):
    """Ranks jobs: smaller ``key`` goes first. Also used to compare a pending job
    with running ones when looking for victims."""

    name: str

    def key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]: ...

    def coarse_key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]: ...


@runtime_checkable
class Filter(Protocol):
    """Job-level check for one candidate device type (quota, type availability)."""

    name: str

    def filter(self, job: JobView, device_type: str, ctx: CycleContext) -> Status: ...


@runtime_checkable
class NodeFilter(Protocol):
    """Whether one node may host tasks of a job on a device type."""

    name: str

    def filter_node(self, job: JobView, node: NodeState, device_type: str, ctx: CycleContext) -> Status: ...


@runtime_checkable
class Score(Protocol):
    """Scores a device type for a job, 0 (worst) to 100 (best).

    ``prepare`` is called once per cycle with the jobs in queue order before
    any ``score`` call (a batch allocator computes its assignment there).
    """

    name: str

    def prepare(self, jobs: Sequence[JobView], ctx: CycleContext) -> None: ...

    def score(self, job: JobView, device_type: str, ctx: CycleContext) -> float: ...


@runtime_checkable
class Preemption(Protocol):
    """Names running jobs that may be stopped so ``job`` can run, with why."""

    name: str

    def victims(self, job: JobView, running: Iterable[JobView], ctx: CycleContext) -> dict[str, str]: ...


@runtime_checkable
class Migration(Protocol):
    """Names running jobs worth moving to a faster device type that is free now.

    Runs after placement, on the capacity no waiting job could use. Returns
    job id → (target type, reason); the scheduler stops the job (a preemption
    with a grace period) and reserves the target devices for it.
    """

    name: str

    def moves(self, running: Sequence[JobView], ctx: CycleContext) -> dict[str, tuple[str, str]]: ...


def pending_sentence(reasons: Sequence[str]) -> str:
    """Join filter reasons into the one sentence a user reads for a pending job."""
    uniq: list[str] = []
    for r in reasons:
        if r and r not in uniq:
            uniq.append(r)
    if not uniq:
        return "Waiting for the next scheduling cycle."
    text = "; ".join(uniq[:4])
    return f"Pending: {text}."
