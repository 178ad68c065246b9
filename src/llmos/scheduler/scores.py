"""Score plug-ins: which device type should a job run on (0-100, higher better)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from llmos.scheduler.capacity import NO_DEVICE
from llmos.scheduler.framework import CycleContext, JobView, Status
from llmos.scheduler.objective import corrected_objective, stated_objective


@dataclass
class ThroughputScore:
    """Greedy heterogeneity: the type where this job runs fastest, relative to
    its best type (normalised throughput)."""

    name: str = "throughput"

    def prepare(self, jobs: Sequence[JobView], ctx: CycleContext) -> None:
        return None

    def score(self, job: JobView, device_type: str, ctx: CycleContext) -> float:
        if device_type == NO_DEVICE:
            return 100.0
        return 100.0 * ctx.throughput.normalized(job.workload, device_type, ctx.allowed_types(job))


@dataclass
class MaxThroughputScore:
    """Gavel-style heterogeneity-aware allocation (Narayanan et al., OSDI'20).

    Each cycle it takes the jobs that will start now and gives device types
    to them so that the sum of normalised throughputs (throughput on the type
    ÷ the job's best throughput) is as large as it can: a regret-greedy
    transportation heuristic — the job that would lose most by not getting its
    best free type is served first. With ``fairness`` the set of jobs that
    start is the queue order's (who runs is fair, where it runs is efficient);
    without it, the most efficient jobs in a ``window`` of the queue start
    first (Gavel's max-sum-throughput, which can starve slow-gaining jobs).
    """

    name: str = "max-throughput"
    fairness: bool = True
    lookahead: float = 1.0
    window: int = 128
    _preferred: dict[str, str] = field(default_factory=dict, repr=False)
    skip: set[str] = field(default_factory=set, repr=False)

    def prepare(self, jobs: Sequence[JobView], ctx: CycleContext) -> None:
        self._preferred = {}
        self.skip = set()
        free = dict(ctx.capacity.free_by_type)
        # With fairness, only the head of the queue competes: as many devices'
        # worth of jobs as are free, times ``lookahead``.
        room = sum(free.values()) * self.lookahead if self.fairness else float("inf")
        cands: list[tuple[JobView, list[str]]] = []
        for job in jobs:
            if len(cands) >= self.window or room <= 0:
                break
            types = [t for t in ctx.allowed_types(job) if t != NO_DEVICE]
            if not types or job.devices_total == 0:
                continue
            if not any(free.get(t, 0) >= job.devices_total for t in types):
                continue
            room -= job.devices_total
            cands.append((job, types))
        left = list(range(len(cands)))
        norm = [
            {t: ctx.throughput.normalized(j.workload, t, types) for t in types} for j, types in cands
        ]
        while left:
            best_i, best_t, best_regret = -1, "", -1.0
            for i in left:
                job, types = cands[i]
                opts = sorted(
                    (norm[i][t] for t in types if free.get(t, 0) >= job.devices_total), reverse=True
                )
                if not opts:
                    continue
                regret = opts[0] - (opts[1] if len(opts) > 1 else 0.0)
                if not self.fairness:
                    regret = opts[0] + regret  # efficiency first when fairness is off
                if regret > best_regret + 1e-12:
                    row = norm[i]
                    top = max((t for t in types if free.get(t, 0) >= job.devices_total),
                              key=lambda t: (row[t], t))
                    best_i, best_t, best_regret = i, top, regret
            if best_i < 0:
                break
            job = cands[best_i][0]
            self._preferred[job.job_id] = best_t
            free[best_t] -= job.devices_total
            left.remove(best_i)
        # Jobs of the window left without a type wait: the ones that gain more take the room.
        self.skip = {j.job_id for j, _ in cands if j.job_id not in self._preferred}

    def filter(self, job: JobView, device_type: str, ctx: CycleContext) -> Status:
        """As a filter: jobs of the window the allocation left out wait this cycle."""
        if job.job_id in self.skip:
            return Status.wait(self.name, "jobs that gain more from the free devices start first (max-throughput)")
        return Status.success()

    def score(self, job: JobView, device_type: str, ctx: CycleContext) -> float:
        want = self._preferred.get(job.job_id)
        if want == device_type:
            return 100.0
        if device_type == NO_DEVICE:
            return 100.0
        return 50.0 * ctx.throughput.normalized(job.workload, device_type, ctx.allowed_types(job))


@dataclass
class RandomTypeScore:
    """A uniformly random type per job, fixed by a hash of its id: Gavel's FIFO
    baseline ("each job gets a uniformly random GPU type"). Deterministic."""

    name: str = "random-type"
    seed: int = 0

    def prepare(self, jobs: Sequence[JobView], ctx: CycleContext) -> None:
        return None

    def score(self, job: JobView, device_type: str, ctx: CycleContext) -> float:
        h = hashlib.blake2b(f"{self.seed}/{job.job_id}/{device_type}".encode(), digest_size=8).digest()
        return 100.0 * int.from_bytes(h, "big") / 2**64


@dataclass
class ObjectiveScore:
    """The brief's objective as a type score, stated or corrected.

    For a job given Cᵢ = its devices on type t, Pᵢ = its throughput there, and
    Eᵢ = its work (the user's estimate in reference-seconds, else
    ``default_work_s``), each type is valued with the objective; the best type
    scores 100 and the others linearly less. ``form="stated"`` reproduces the
    brief's formula, which prefers the *slowest* type (longest run time);
    ``form="corrected"`` prefers short run times. ``lam`` prices each device
    by its relative peak speed so fast devices are not spent on jobs that
    gain little.
    """

    name: str = "objective"
    form: str = "corrected"
    lam: float = 1.0
    default_work_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.form not in ("stated", "corrected"):
            raise ValueError("objective form must be 'stated' or 'corrected'")

    def prepare(self, jobs: Sequence[JobView], ctx: CycleContext) -> None:
        return None

    def _values(self, job: JobView, ctx: CycleContext) -> dict[str, float]:
        types = [t for t in ctx.allowed_types(job) if t != NO_DEVICE]
        speeds = {t: ctx.throughput.speed(job.workload, t) for t in types}
        best = max(speeds.values(), default=0.0)
        if best <= 0:
            return {}
        work = job.estimated_duration_s or self.default_work_s  # seconds on the job's best type
        fn = stated_objective if self.form == "stated" else corrected_objective
        c = max(1, job.devices_total)
        out = {}
        for t, s in speeds.items():
            if s <= 0:
                continue
            # Capability per unit relative to the best type, price per unit likewise.
            p = s / best / c
            out[t] = fn([c], [work / 3600.0], [p], self.lam * (s / best))
        return out

    def score(self, job: JobView, device_type: str, ctx: CycleContext) -> float:
        vals = self._values(job, ctx)
        if device_type not in vals:
            return 100.0 if device_type == NO_DEVICE else 0.0
        hi, lo = max(vals.values()), min(vals.values())
        if hi - lo < 1e-12:
            return 100.0
        return 100.0 * (vals[device_type] - lo) / (hi - lo)
