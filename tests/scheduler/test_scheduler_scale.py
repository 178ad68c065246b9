"""A small version of benchmarks/scheduler_scale.py: decisions per second stay high."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from scheduler_scale import big_snapshot, synthetic_trace

from llmos.scheduler import make_scheduler
from llmos.sim import SimConfig, build_cluster, simulate


def test_thousands_of_decisions_per_second_on_a_large_cluster() -> None:
    snap = big_snapshot(n_nodes=1_000, n_jobs=5_000, busy_frac=0.25, seed=0)
    sched = make_scheduler("default")
    t0 = time.process_time()
    plan = sched.schedule(snap, now=100_000.0)
    dt = time.process_time() - t0
    decided = len(plan.placements) + len(plan.pending_reasons)
    assert decided == len(snap.pending)  # every job is placed or told why not
    # Every placement is a whole gang on free devices of one type, never two jobs on one device.
    used: set[tuple[str, str]] = {(t.node_id, d) for t in snap.running for d in t.device_ids}
    for p in plan.placements:
        for task in p.tasks:
            for d in task.device_ids:
                assert (task.node_id, d) not in used
                used.add((task.node_id, d))
    assert decided / dt >= 1_000, f"{decided / dt:.0f} decisions/s"


def test_a_synthetic_trace_simulates_end_to_end() -> None:
    trace = synthetic_trace(80, seed=3)
    nodes = build_cluster({"H100-80G": 8, "A100-80G": 8, "L4": 8, "V100": 8, "P100": 8, "K80": 8}, devices_per_node=8)
    r = simulate(trace, nodes, make_scheduler("default"), SimConfig())
    assert r.finished == 80 and r.makespan_s > 0
