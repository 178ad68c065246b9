"""Must-show checks on Gavel's dev trace (skipped where ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmos.scheduler import make_scheduler
from llmos.sim import (
    SimConfig,
    build_cluster,
    parse_cluster_spec,
    read_gavel_throughputs,
    read_gavel_trace,
    simulate,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sched"
GAVEL_FIFO_AVG_JCT_S = 363_560
GAVEL_MAX_MIN_FAIRNESS_S = 150_542  # heterogeneity-agnostic LAS
GAVEL_BEST_HETERO_S = 123_639  # max_min_fairness_perf, Gavel's best heterogeneity-aware result

pytestmark = pytest.mark.skipif(not (DATA / "dev-a.trace").exists(), reason="shared scheduler data not present")


@pytest.fixture(scope="module")
def trace():  # type: ignore[no-untyped-def]
    return read_gavel_trace(DATA / "dev-a.trace", read_gavel_throughputs(DATA / "gavel_simulation_throughputs.json"))


def cluster():  # type: ignore[no-untyped-def]
    return build_cluster(parse_cluster_spec("v100=12,p100=12,k80=12"))


def test_reader_maps_gavel_types_and_gangs(trace) -> None:  # type: ignore[no-untyped-def]
    assert len(trace.jobs) == 200
    assert {t for j in trace.jobs for t in j.device_types} == {"V100", "P100", "K80"}
    assert {j.num_tasks for j in trace.jobs} == {1, 2, 4, 8}


def test_fidelity_fifo_matches_gavel_within_10_percent(trace) -> None:  # type: ignore[no-untyped-def]
    r = simulate(trace, cluster(), make_scheduler("fifo"), SimConfig(round_s=360, restart_overhead_s=0))
    assert r.finished == 200 and r.preemptions == 0
    assert abs(r.avg_jct_s / GAVEL_FIFO_AVG_JCT_S - 1) <= 0.10, r.avg_jct_s


def test_default_beats_gavels_best_while_paying_restarts(trace) -> None:  # type: ignore[no-untyped-def]
    """Must show 2: the default (srpt-plan, event mode, 30 s restarts) measured 97,254 s =
    0.787x Gavel's best heterogeneity-aware 123,639 s (worst rho 1.23); the bound is 0.80x."""
    r = simulate(trace, cluster(), make_scheduler("default"), SimConfig(restart_overhead_s=30))
    assert r.finished == 200
    assert r.avg_jct_s < GAVEL_MAX_MIN_FAIRNESS_S, r.avg_jct_s
    assert r.avg_jct_s <= 0.80 * GAVEL_BEST_HETERO_S, r.avg_jct_s
    assert r.utilization > 0.7
    # Worst finish-time fairness no worse than Gavel's policy (re-implemented) under Gavel's semantics.
    g = simulate(trace, cluster(), make_scheduler("gavel"), SimConfig(round_s=360, restart_overhead_s=0))
    assert r.worst_rho <= g.worst_rho, (r.worst_rho, g.worst_rho)
