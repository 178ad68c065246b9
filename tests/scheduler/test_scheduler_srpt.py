"""Shortest remaining time first from the spec's steps, and the measured throughput model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sched_factories import node, pending, running

from llmos.scheduler import ClusterSnapshot, make_scheduler
from llmos.scheduler.throughput import (
    ThroughputModel,
    ThroughputSample,
    catalog_speed,
    measured_model,
    rate_from_progress,
)
from llmos.sim import SimConfig, build_cluster, read_csv_trace, simulate

MODEL = ThroughputModel({"w": {"V100": 10.0, "K80": 2.0}})


def test_srpt_runs_the_job_with_least_spec_work_left_first() -> None:
    snap = ClusterSnapshot(
        nodes=(node("n", devices=1),),
        pending=(
            replace(pending("long", submitted_at=0, workload="w"), spec_steps=1000.0),
            replace(pending("short-left", submitted_at=1, workload="w"), spec_steps=5000.0, steps_done=4900.0),
            pending("unknown", submitted_at=2, workload="w"),  # no spec steps: least attained service
        ),
        throughput=MODEL,
    )
    plan = make_scheduler("srpt-hetero").schedule(snap, 10.0)
    assert [p.job_id for p in plan.placements] == ["short-left"]  # 10 s left vs 100 s vs unknown


def test_srpt_preempts_only_a_job_with_at_least_twice_the_time_left() -> None:
    nodes = (node("n", devices=1),)
    busy = replace(running("big", "n", ["gpu0"], workload="w"), spec_steps=10_000.0, steps_done=0.0)  # 1000 s left
    sched = make_scheduler("srpt-hetero")
    near = replace(pending("near", workload="w"), spec_steps=8_000.0)  # 800 s left: same class, no churn
    plan = sched.schedule(ClusterSnapshot(nodes, running=(busy,), pending=(near,), throughput=MODEL), 400.0)
    assert plan.preemptions == () and "near" in plan.pending_reasons
    tiny = replace(pending("tiny", workload="w"), spec_steps=100.0)  # 10 s left
    plan = sched.schedule(ClusterSnapshot(nodes, running=(busy,), pending=(tiny,), throughput=MODEL), 400.0)
    assert [p.job_id for p in plan.preemptions] == ["big"]


def test_srpt_does_not_preempt_a_job_within_its_lease() -> None:
    """A job that started less than one round (360 s) ago is not stopped for a shorter one:
    every restart is paid for by at least one round of running."""
    nodes = (node("n", devices=1),)
    busy = replace(running("big", "n", ["gpu0"], workload="w", started_at=100.0),
                   spec_steps=10_000.0, steps_done=0.0)
    tiny = replace(pending("tiny", workload="w"), spec_steps=100.0)
    sched = make_scheduler("srpt-hetero")
    plan = sched.schedule(ClusterSnapshot(nodes, running=(busy,), pending=(tiny,), throughput=MODEL), 459.0)
    assert plan.preemptions == () and "tiny" in plan.pending_reasons
    plan = sched.schedule(ClusterSnapshot(nodes, running=(busy,), pending=(tiny,), throughput=MODEL), 460.0)
    assert [p.job_id for p in plan.preemptions] == ["big"]
    # Priority preemption ignores the lease.
    urgent = replace(pending("urgent", workload="w", priority=5), spec_steps=100_000.0)
    plan = sched.schedule(ClusterSnapshot(nodes, running=(busy,), pending=(urgent,), throughput=MODEL), 101.0)
    assert [p.job_id for p in plan.preemptions] == ["big"]


def test_simulator_reports_executed_steps_only(tmp_path: Path) -> None:
    """The long job is preempted at t=400 (past its 360 s lease) having done 400 of its
    spec's 1000 steps; the short one runs 10 s; the long one resumes
    after the 30 s restart overhead."""
    p = tmp_path / "t.csv"
    p.write_text("arrival_s,duration_s,spec_steps\n0,1000,1000\n400,10,10\n")
    r = simulate(read_csv_trace(p), build_cluster({"V100": 1}), make_scheduler("srpt-hetero"),
                 SimConfig(restart_overhead_s=30))
    assert r.finished == 2 and r.preemptions == 1
    assert r.avg_jct_s == pytest.approx((10 + (410 + 30 + 600)) / 2)


def test_rate_from_progress() -> None:
    assert rate_from_progress([(10.0, 0.0), (12.0, 50.0), (11.0, 20.0)]) == pytest.approx(25.0)
    assert rate_from_progress([(10.0, 5.0)]) is None
    assert rate_from_progress([(10.0, 5.0), (11.0, 5.0)]) is None  # no progress: no rate


def test_measured_model_medians_and_catalog_scaling() -> None:
    samples = [ThroughputSample("w", "V100", v) for v in (9.0, 10.0, 30.0)] + [ThroughputSample("w", "cpu", 0.5)]
    m = measured_model(samples, ["V100", "A100-80G", "cpu"])
    assert m.measured("w", "V100") == 10.0  # median: one slow or fast run does not move it
    assert m.measured("w", "cpu") == 0.5
    # Never run on an A100: the best-measured type scaled by the catalog's relative speed.
    assert m.measured("w", "A100-80G") == pytest.approx(10.0 * catalog_speed("A100-80G") / catalog_speed("V100"))
    assert not m.knows("other")  # unmeasured workloads fall back to the catalog in the scheduler


def test_cpu_only_jobs_use_the_cpu_speed_the_live_model_measured() -> None:
    """Room for one 8-CPU job: the one with less spec work left at the measured CPU speed goes."""
    model = measured_model([ThroughputSample("train:m", "cpu", 2.0)], ["cpu", "V100"])
    jobs = (
        replace(pending("long", devices=0, cpus=8, submitted_at=0, workload="train:m"), spec_steps=400.0),
        replace(pending("short", devices=0, cpus=8, submitted_at=1, workload="train:m"), spec_steps=100.0),
    )
    snap = ClusterSnapshot(nodes=(node("n", devices=0, cpus=8),), pending=jobs, throughput=model)
    plan = make_scheduler("default").schedule(snap, 0.0)
    assert [p.job_id for p in plan.placements] == ["short"]
