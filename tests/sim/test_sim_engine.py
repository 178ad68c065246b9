"""The simulator on tiny traces whose every number can be worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmos.errors import ValidationError
from llmos.scheduler import make_scheduler
from llmos.sim import SimConfig, build_cluster, parse_cluster_spec, read_csv_trace, simulate


def csv_trace(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "trace.csv"
    p.write_text(text)
    return p


ONE_V100 = build_cluster({"V100": 1})


def test_two_jobs_in_a_row(tmp_path: Path) -> None:
    tr = read_csv_trace(csv_trace(tmp_path, "arrival_s,duration_s\n0,100\n10,50\n"))
    r = simulate(tr, ONE_V100, make_scheduler("fifo-backfill"), SimConfig())
    assert r.finished == 2
    assert r.avg_jct_s == pytest.approx((100 + 140) / 2)
    assert r.makespan_s == pytest.approx(150)
    assert r.utilization == pytest.approx(1.0)
    assert r.preemptions == 0


def test_preemption_charges_the_restart_overhead(tmp_path: Path) -> None:
    tr = read_csv_trace(csv_trace(tmp_path, "arrival_s,duration_s,priority\n0,100,0\n20,50,10\n"))
    r = simulate(tr, ONE_V100, make_scheduler("priority"), SimConfig(restart_overhead_s=30))
    # low runs 0-20 (20 s done), high 20-70, low restarts at 70, idles 30 s, needs 80 s more: ends 180.
    assert r.preemptions == 1
    assert r.avg_jct_s == pytest.approx((180 + 50) / 2)
    assert r.makespan_s == pytest.approx(180)
    r0 = simulate(tr, ONE_V100, make_scheduler("priority"), SimConfig(restart_overhead_s=0))
    assert r0.makespan_s == pytest.approx(150)


def test_rounds_make_arrivals_wait_for_a_boundary(tmp_path: Path) -> None:
    tr = read_csv_trace(csv_trace(tmp_path, "arrival_s,duration_s\n0,100\n50,10\n"))
    two = build_cluster({"V100": 2})
    r = simulate(tr, two, make_scheduler("fifo-backfill"), SimConfig(round_s=360))
    # The round ends when its only job ends (100 s); the second job starts then, not at 50.
    assert r.avg_jct_s == pytest.approx((100 + 60) / 2)
    ev = simulate(tr, two, make_scheduler("fifo-backfill"), SimConfig())
    assert ev.avg_jct_s == pytest.approx((100 + 10) / 2)


def test_heterogeneous_speeds_and_gangs(tmp_path: Path) -> None:
    from llmos.scheduler import ThroughputModel

    model = ThroughputModel({"w": {"V100": 4.0, "K80": 1.0}})
    tr = read_csv_trace(csv_trace(tmp_path, "arrival_s,work,workload,gang_size\n0,400,w,2\n"), model)
    nodes = build_cluster({"V100": 2, "K80": 2})
    r = simulate(tr, nodes, make_scheduler("default"), SimConfig())
    assert r.avg_jct_s == pytest.approx(100)  # 400 units at 4/s on two V100s
    assert r.utilization == pytest.approx(2 * 100 / (4 * 100))


def test_node_failures_lose_work_since_the_checkpoint_but_every_job_finishes(tmp_path: Path) -> None:
    rows = "".join(f"{i * 10},{2000}\n" for i in range(6))
    tr = read_csv_trace(csv_trace(tmp_path, "arrival_s,duration_s\n" + rows))
    nodes = build_cluster({"V100": 3})
    calm = simulate(tr, nodes, make_scheduler("default"), SimConfig(checkpoint_interval_s=300))
    rough = simulate(tr, nodes, make_scheduler("default"),
                     SimConfig(checkpoint_interval_s=300, node_mtbf_s=3000, node_repair_s=200, seed=1))
    assert calm.finished == rough.finished == 6
    assert rough.makespan_s > calm.makespan_s


def test_tenant_share_and_fairness_are_reported(tmp_path: Path) -> None:
    tr = read_csv_trace(csv_trace(tmp_path, "arrival_s,duration_s,tenant\n0,100,a\n0,100,b\n0,200,a\n"))
    r = simulate(tr, build_cluster({"V100": 1}), make_scheduler("drf"), SimConfig())
    assert r.tenant_share == pytest.approx({"a": 0.75, "b": 0.25})
    assert r.worst_rho >= r.avg_rho > 0
    out = r.to_json()
    for key in ("avg_jct_s", "p99_jct_s", "makespan_s", "utilization", "jobs"):
        assert key in out


def test_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="give exactly one of work and duration_s"):
        read_csv_trace(csv_trace(tmp_path, "arrival_s,work,duration_s\n0,1,1\n"))
    with pytest.raises(ValidationError, match="unknown columns"):
        read_csv_trace(csv_trace(tmp_path, "arrival_s,speed\n0,1\n"))
    with pytest.raises(ValidationError, match=r"trace.csv:2"):
        read_csv_trace(csv_trace(tmp_path, "arrival_s,duration_s\nsoon,1\n"))
    with pytest.raises(ValidationError, match="cannot read trace"):
        read_csv_trace(tmp_path / "missing.csv")
    with pytest.raises(ValidationError, match="unknown device type"):
        parse_cluster_spec("h200=4")
    with pytest.raises(ValidationError, match="TYPE=COUNT"):
        parse_cluster_spec("v100")
    with pytest.raises(ValidationError, match="round_s"):
        SimConfig(round_s=0)


def test_a_job_that_can_never_fit_ends_the_run_unfinished(tmp_path: Path) -> None:
    tr = read_csv_trace(csv_trace(tmp_path, "arrival_s,duration_s,gang_size\n0,10,1\n0,10,4\n"))
    r = simulate(tr, build_cluster({"V100": 2}), make_scheduler("default"),
                 SimConfig(node_mtbf_s=1e6, node_repair_s=10))
    assert r.jobs == 2 and r.finished == 1
