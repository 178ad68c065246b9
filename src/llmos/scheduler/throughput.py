"""The throughput model: how fast a workload runs on each device type.

Heterogeneity-aware placement and the simulator both read it. Figures are
work units per second for the *whole job* (one gang) on one device type, e.g.
training steps/s as measured by Gavel, or by llmos itself where it has run the
workload before. Where no measurement exists the model estimates from the
device catalog's relative peak FLOPS, which is only good for ranking types.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from llmos.core.devices import DEVICE_CATALOG, canonical_device_type


@dataclass(frozen=True)
class ThroughputModel:
    """Measured throughput per workload and device type.

    ``table[workload][device_type]`` is work units/s of one job of that
    workload using its whole gang of that type. Device type names are
    canonicalised on construction. Immutable and safe to share across threads.
    """

    table: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        canon: dict[str, dict[str, float]] = {}
        for workload, per_type in self.table.items():
            row: dict[str, float] = {}
            for t, v in per_type.items():
                if v < 0:
                    raise ValueError(f"throughput of {workload!r} on {t!r} must be >= 0")
                row[canonical_device_type(t)] = float(v)
            canon[workload] = row
        object.__setattr__(self, "table", canon)
        # Memo of speed(); the table is immutable so entries never go stale.
        object.__setattr__(self, "_speed_memo", {})

    def measured(self, workload: str | None, device_type: str) -> float | None:
        """Measured throughput, or ``None`` when this pair was never measured."""
        if workload is None:
            return None
        row = self.table.get(workload)
        if row is None:
            return None
        return row.get(device_type)

    def knows(self, workload: str | None) -> bool:
        return workload is not None and workload in self.table

    def speed(self, workload: str | None, device_type: str) -> float:
        """Throughput if measured, else the catalog's peak TFLOPS (a relative speed).

        A measured 0 means the workload cannot run on that type (e.g. it does
        not fit in memory) and is returned as 0.
        """
        memo: dict[tuple[str | None, str], float] = self._speed_memo  # type: ignore[attr-defined]
        key = (workload, device_type)
        hit = memo.get(key)
        if hit is None:
            hit = memo[key] = self._speed(workload, device_type)
        return hit

    def _speed(self, workload: str | None, device_type: str) -> float:
        m = self.measured(workload, device_type)
        if m is not None:
            return m
        if self.knows(workload):
            return 0.0  # measured on other types only: treat this one as unusable
        dt = DEVICE_CATALOG.get(device_type)
        return dt.bf16_tflops if dt is not None else 1.0

    def normalized(self, workload: str | None, device_type: str, types: Iterable[str]) -> float:
        """Speed on ``device_type`` divided by the best speed over ``types`` (0..1)."""
        best = max((self.speed(workload, t) for t in types), default=0.0)
        if best <= 0:
            return 0.0
        return self.speed(workload, device_type) / best


CATALOG_MODEL = ThroughputModel()
"""A model with no measurements: every speed comes from the catalog."""


@dataclass(frozen=True)
class ThroughputSample:
    """One measured rate: a task of ``workload`` ran ``steps_per_s`` on ``device_type``.

    The live control plane derives these from what tasks report (steps over
    time); ``device_type`` is ``"cpu"`` for tasks that hold no accelerator.
    """

    workload: str
    device_type: str
    steps_per_s: float


def catalog_speed(device_type: str) -> float:
    """A relative speed from the catalog: the geometric mean of peak TFLOPS and
    memory bandwidth (training steps are partly compute-, partly memory-bound).
    Good for scaling a measurement to a type never measured, not as an absolute."""
    dt = DEVICE_CATALOG.get(canonical_device_type(device_type))
    if dt is None:
        return 1.0
    return float((dt.bf16_tflops * dt.mem_bandwidth_gbs) ** 0.5)


def rate_from_progress(points: Iterable[tuple[float, float]]) -> float | None:
    """Steps/s from one task's ``(time_s, step)`` reports, or ``None`` if they
    span no time or no progress. Uses the first and last report, so an early
    slow step (warm-up) weighs in only once."""
    pts = sorted(points)
    if len(pts) < 2:
        return None
    (t0, s0), (t1, s1) = pts[0], pts[-1]
    if t1 - t0 <= 0 or s1 - s0 <= 0:
        return None
    return (s1 - s0) / (t1 - t0)


def measured_model(samples: Iterable[ThroughputSample], device_types: Iterable[str] = ()) -> ThroughputModel:
    """The throughput model the live scheduler uses, built from measurements.

    Per (workload, device type): the median of its samples (robust to one slow
    run). For each measured workload, every type in ``device_types`` that was
    never measured gets an estimate: the workload's best-measured type scaled
    by :func:`catalog_speed` ratios. (An unmeasured pair must not read as 0,
    which would mean "cannot run there".) Workloads never measured stay out of
    the table, so the scheduler falls back to the catalog for them. Pure.
    """
    rates: dict[str, dict[str, list[float]]] = {}
    for s in samples:
        if s.steps_per_s > 0:
            rates.setdefault(s.workload, {}).setdefault(canonical_device_type(s.device_type), []).append(s.steps_per_s)
    types = [canonical_device_type(t) for t in device_types]
    table: dict[str, dict[str, float]] = {}
    for workload, per_type in rates.items():
        row = {t: _median(v) for t, v in per_type.items()}
        ref = max(row, key=lambda t: (len(per_type[t]), row[t]))
        for t in types:
            if t not in row:
                row[t] = row[ref] * catalog_speed(t) / catalog_speed(ref)
        table[workload] = row
    return ThroughputModel(table)


def _median(values: list[float]) -> float:
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2.0
