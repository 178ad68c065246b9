"""What a simulation reports: JCTs, makespan, utilisation, shares, fairness ρ."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class JobRecord:
    """One finished (or unfinished) job's outcome."""

    job_id: str
    tenant: str
    arrival_s: float
    completion_s: float | None
    isolated_s: float  # run time alone with an equal share of every device (Themis's t_id base)
    num_devices: int
    preemptions: int
    device_seconds: float

    @property
    def jct_s(self) -> float | None:
        return None if self.completion_s is None else self.completion_s - self.arrival_s


@dataclass(frozen=True)
class SimResult:
    """Summary of one run; ``to_json`` has at least the keys the CLI promises."""

    policy: str
    jobs: int
    finished: int
    avg_jct_s: float
    p50_jct_s: float
    p99_jct_s: float
    makespan_s: float
    utilization: float
    preemptions: int
    worst_rho: float
    avg_rho: float
    tenant_share: Mapping[str, float]
    scheduler_calls: int
    wall_s: float
    config: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["tenant_share"] = dict(self.tenant_share)
        d["config"] = dict(self.config)
        return d


class LoadCurve:
    """Number of jobs in the system over time, with its running integral.

    Themis's finish-time fairness compares a job's JCT with its run time on
    a 1/N share of the cluster, N the average contention over its lifetime.
    Changes may be recorded out of time order (round mode admits arrivals
    late); the curve is built on the first query.
    """

    def __init__(self) -> None:
        self._changes: list[tuple[float, int]] = []
        self._t: list[float] = []
        self._area: list[float] = []
        self._n: list[int] = []

    def change(self, t: float, delta: int) -> None:
        self._changes.append((t, delta))
        self._t = []

    def _build(self) -> None:
        ts: list[float] = []
        areas: list[float] = []
        ns: list[int] = []
        n, area, last = 0, 0.0, 0.0
        for t, d in sorted(self._changes):
            area += n * (t - last)
            n += d
            last = t
            if ts and ts[-1] == t:
                areas[-1], ns[-1] = area, n
            else:
                ts.append(t)
                areas.append(area)
                ns.append(n)
        self._t, self._area, self._n = ts, areas, ns

    def area_until(self, t: float) -> float:
        if not self._t:
            self._build()
        if not self._t or t <= self._t[0]:
            return 0.0
        i = bisect.bisect_right(self._t, t) - 1
        return self._area[i] + self._n[i] * (t - self._t[i])

    def average(self, a: float, b: float) -> float:
        if b <= a:
            return 1.0
        return max(1.0, (self.area_until(b) - self.area_until(a)) / (b - a))


def summarize(policy: str, records: Sequence[JobRecord], load: LoadCurve, total_devices: int,
              busy_device_s: float, preemptions: int, calls: int, wall_s: float,
              config: Mapping[str, Any]) -> SimResult:
    done = [r for r in records if r.completion_s is not None]
    jcts = np.array([r.jct_s for r in done], dtype=float) if done else np.zeros(0)
    start = min((r.arrival_s for r in records), default=0.0)
    end = max((r.completion_s or 0.0 for r in done), default=start)
    makespan = end - start
    rhos = []
    for r in done:
        assert r.completion_s is not None
        contention = load.average(r.arrival_s, r.completion_s)
        # Fair share 1/N of the cluster, but never more than the gang asks for.
        t_id = r.isolated_s * max(1.0, contention * r.num_devices / max(total_devices, 1))
        rhos.append((r.completion_s - r.arrival_s) / t_id if t_id > 0 else 1.0)
    per_tenant: dict[str, float] = {}
    for r in records:
        per_tenant[r.tenant] = per_tenant.get(r.tenant, 0.0) + r.device_seconds
    tot = sum(per_tenant.values()) or 1.0
    return SimResult(
        policy=policy, jobs=len(records), finished=len(done),
        avg_jct_s=float(jcts.mean()) if jcts.size else 0.0,
        p50_jct_s=float(np.percentile(jcts, 50)) if jcts.size else 0.0,
        p99_jct_s=float(np.percentile(jcts, 99)) if jcts.size else 0.0,
        makespan_s=makespan,
        utilization=busy_device_s / (total_devices * makespan) if makespan > 0 and total_devices else 0.0,
        preemptions=preemptions,
        worst_rho=max(rhos, default=0.0), avg_rho=float(np.mean(rhos)) if rhos else 0.0,
        tenant_share={k: v / tot for k, v in sorted(per_tenant.items())},
        scheduler_calls=calls, wall_s=wall_s, config=config,
    )
