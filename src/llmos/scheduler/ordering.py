"""Queue-order plug-ins: who goes first.

Each returns a sort key (smaller first) and a coarse key used to decide
whether a pending job outranks a running one enough to preempt it; a coarse
key with few distinct values (priority class, Tiresias queue) keeps jobs from
preempting each other back and forth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from llmos.core.devices import CPU
from llmos.scheduler.framework import CycleContext, JobView


@dataclass
class FifoOrder:
    """Arrival order (first in, first out); ignores priority."""

    name: str = "fifo"

    def key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]:
        return (job.submitted_at,)

    def coarse_key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]:
        return (0.0,)


@dataclass
class PriorityOrder:
    """Higher ``priority`` first, then arrival order (Kubernetes PrioritySort)."""

    name: str = "priority"

    def key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]:
        return (-job.priority, job.submitted_at)

    def coarse_key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]:
        return (-job.priority,)


@dataclass
class LeastAttainedOrder:
    """Least attained service first (continuous LAS, device-seconds).

    Gavel's max-min fairness gives every job an equal share over time; with
    rounds this amounts to running the jobs that have had the least service.
    ``quantum_s`` makes the coarse key step once per quantum of service so a
    job is preempted only once it is a full quantum ahead.
    """

    name: str = "las"
    quantum_s: float = 360.0

    def key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]:
        return (-job.priority, job.device_service_s, job.submitted_at)

    def coarse_key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]:
        return (-job.priority, math.floor(job.device_service_s / self.quantum_s))


@dataclass
class TiresiasOrder:
    """Tiresias discretised 2D-LAS (Gu et al., NSDI'19).

    Jobs sit in queues by attained device-seconds (thresholds
    ``thresholds_s``, default 0.5 / 2 / 8 / 32 device-hours); lower queues
    first, arrival order within a queue, so a job is preempted only when it
    crosses into a lower queue. (Tiresias's starvation promotion is left out:
    combined with preemption it made promoted and demoted jobs preempt each
    other in turn in our measurements.)
    """

    name: str = "tiresias"
    # Geometric (x4) queue thresholds from half a device-hour; measured best of the
    # variants tried on the dev trace (docs/scheduler.md), not tuned per job.
    thresholds_s: tuple[float, ...] = (1800.0, 7200.0, 28800.0, 115200.0)
    # "device": device-seconds (Tiresias's 2D service: gangs age faster);
    # "time": wall seconds run, whatever the gang size (Gavel-like per-job fairness).
    service: str = "device"

    def __post_init__(self) -> None:
        if self.service not in ("device", "time"):
            raise ValueError("tiresias service must be 'device' or 'time'")

    def level(self, job: JobView, ctx: CycleContext) -> int:
        svc = job.device_service_s if self.service == "device" else job.attained_service_s
        return sum(1 for th in self.thresholds_s if svc >= th)

    def key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]:
        return (-job.priority, self.level(job, ctx), job.submitted_at)

    def coarse_key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]:
        return (-job.priority, self.level(job, ctx))


@dataclass
class GittinsOrder:
    """Gittins-index order for jobs of unknown length (Tiresias's Gittins variant).

    The prior over a job's total service (device-seconds) is log-uniform on
    [``min_s``, ``max_s``] — an operator's belief, not a peek at the job. The
    index of a job with attained service ``a`` is
    max over Δ of P(S − a ≤ Δ | S > a) / E[min(S − a, Δ) | S > a];
    higher index first. Attained service is quantised by ``quantum_s`` so the
    order changes only in steps (and so does preemption).
    """

    name: str = "gittins"
    min_s: float = 60.0
    max_s: float = 7 * 86400.0
    quantum_s: float = 1800.0
    grid_points: int = 400

    def __post_init__(self) -> None:
        if not 0 < self.min_s < self.max_s:
            raise ValueError("gittins: need 0 < min_s < max_s")
        self._grid = np.geomspace(self.min_s, self.max_s, self.grid_points)
        self._cache: dict[int, float] = {}

    def index(self, attained_s: float) -> float:
        q = int(attained_s // self.quantum_s)
        if q not in self._cache:
            self._cache[q] = self._compute(q * self.quantum_s)
        return self._cache[q]

    def _compute(self, a: float) -> float:
        g = self._grid
        lo, hi = math.log(self.min_s), math.log(self.max_s)

        def cdf(x: np.ndarray) -> np.ndarray:
            out: np.ndarray = np.clip((np.log(np.maximum(x, self.min_s)) - lo) / (hi - lo), 0.0, 1.0)
            return out

        surv_a = 1.0 - float(cdf(np.array([a]))[0])
        if surv_a <= 1e-12:
            return math.inf  # past the prior's end: it must be about to finish
        deltas = g[g > a] - a
        if deltas.size == 0:
            return math.inf
        # E[min(S-a, Δ) | S>a] = ∫_0^Δ P(S > a+t | S>a) dt, integrated on a fine log grid.
        ts = np.concatenate(([0.0], deltas))
        surv = (1.0 - cdf(a + ts)) / surv_a
        mid = (surv[1:] + surv[:-1]) / 2.0
        expected = np.cumsum(mid * np.diff(ts))
        done = 1.0 - surv[1:]
        return float(np.max(done / np.maximum(expected, 1e-12)))

    def key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]:
        return (-job.priority, -self.index(job.device_service_s), job.submitted_at)

    def coarse_key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]:
        return (-job.priority, -self.index(job.device_service_s))


@dataclass
class DominantResourceOrder:
    """Weighted Dominant Resource Fairness across tenants (Ghodsi et al., NSDI'11).

    A tenant's dominant share is the largest of its shares of each device type,
    of CPUs and of memory, divided by its weight; the tenant with the smallest
    goes next. The share changes as the cycle places jobs, so the scheduler
    re-evaluates keys lazily (``dynamic``). Within a tenant: priority, arrival.
    """

    name: str = "drf"
    dynamic: bool = True

    def share(self, tenant: str, ctx: CycleContext) -> float:
        cap = ctx.capacity
        shares = [0.0]
        for t, used in ctx.usage.get(tenant, {}).items():
            total = cap.total_by_type.get(t, 0)
            if total:
                shares.append(used / total)
        cpus, mem = ctx.cpu_mem_usage.get(tenant, (0.0, 0.0))
        if ctx.total_cpus:
            shares.append(cpus / ctx.total_cpus)
        if ctx.total_memory_gib:
            shares.append(mem / ctx.total_memory_gib)
        return max(shares) / ctx.tenant(tenant).weight

    def key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]:
        return (self.share(job.tenant, ctx), -job.priority, job.submitted_at)

    def coarse_key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]:
        return (-job.priority,)


@dataclass
class ShortestEstimateOrder:
    """Shortest estimated remaining time first, from the user's own estimate.

    Remaining = ``estimated_duration_s`` − attained service (never below 0);
    jobs without an estimate go after those with one, least attained first.
    The estimate is the user's claim, not the truth the simulator keeps.
    """

    name: str = "sjf-estimate"
    quantum_s: float = 1800.0

    def _remaining(self, job: JobView) -> float:
        if job.estimated_duration_s is None:
            return float("inf")
        return max(0.0, job.estimated_duration_s - job.attained_service_s) * max(1, job.devices_total)

    def key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]:
        return (-job.priority, self._remaining(job), job.device_service_s, job.submitted_at)

    def coarse_key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]:
        rem = self._remaining(job)
        return (-job.priority, math.floor(rem / self.quantum_s) if math.isfinite(rem) else rem)


@dataclass
class ShortestRemainingOrder:
    """Shortest remaining processing time first (SRPT), from the spec's work.

    A job's remaining work is its spec's requested steps minus the steps it
    has reported done (``JobView.remaining_steps``): both are what a live
    system knows. Remaining time is that work at the job's best throughput
    over the types it may use (the throughput model's measured profile, else
    its own observed steps/s), so the order does not change when a job moves
    between types. With ``by="device"`` the key is remaining device-seconds
    (time × gang size): a wide gang blocks more of the cluster.

    Jobs whose spec names no work (or whose speed is unknown) fall back to
    least attained service: their remaining time is taken as their attained
    service (a heavy-tailed prior's mean residual life), at least
    ``unknown_floor_s``, so they interleave with known jobs.
    """

    name: str = "srpt"
    by: str = "time"
    unknown_floor_s: float = 1800.0
    # Coarse classes for preemption are powers of ``class_ratio`` of remaining time.
    class_ratio: float = 2.0

    def __post_init__(self) -> None:
        if self.by not in ("time", "device"):
            raise ValueError("srpt 'by' must be 'time' or 'device'")
        if self.unknown_floor_s <= 0 or self.class_ratio <= 1:
            raise ValueError("srpt: need unknown_floor_s > 0 and class_ratio > 1")
        self._speed: dict[tuple[str | None, tuple[str, ...]], float] = {}
        self._model: object = None

    def best_speed(self, job: JobView, ctx: CycleContext) -> float | None:
        """Best measured throughput over the job's allowed types, else its observed one."""
        if self._model is not ctx.throughput:
            self._model = ctx.throughput
            self._speed.clear()
        if ctx.throughput.knows(job.workload):
            types = ("cpu-only",) if job.request.devices == 0 else (
                tuple(job.request.device_types) or tuple(ctx.device_types))
            key = (job.workload, types)
            hit = self._speed.get(key)
            if hit is None:
                # A task without devices runs on CPU cores: the model keys that speed "cpu".
                hit = self._speed[key] = max(
                    (ctx.throughput.speed(job.workload, t or CPU) for t in ctx.allowed_types(job)), default=0.0)
            if hit > 0:
                return hit
        if job.observed_throughput:
            return job.observed_throughput
        return None

    def remaining_s(self, job: JobView, ctx: CycleContext) -> float:
        """Remaining seconds (or device-seconds) as the order sees them."""
        rem = job.remaining_steps
        speed = self.best_speed(job, ctx) if rem is not None else None
        if rem is None or speed is None:
            est = max(self.unknown_floor_s, job.attained_service_s)
        else:
            est = rem / speed
        return est * max(1, job.devices_total) if self.by == "device" else est

    def key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]:
        return (-job.priority, self.remaining_s(job, ctx), job.submitted_at)

    def coarse_key(self, job: JobView, ctx: CycleContext) -> tuple[float, ...]:
        rem = max(self.remaining_s(job, ctx), 1.0)
        return (-job.priority, math.floor(math.log(rem) / math.log(self.class_ratio)))
