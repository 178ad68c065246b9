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
