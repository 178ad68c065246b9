"""Each policy on a small hand-made cluster whose right answer is known."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sched_factories import node, pending, running

from llmos.scheduler import ClusterSnapshot, TenantPolicy, ThroughputModel, make_scheduler
from llmos.scheduler.ordering import GittinsOrder


def placed(plan: object) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    return {p.job_id: [(t.node_id, t.device_ids) for t in p.tasks] for p in plan.placements}  # type: ignore[attr-defined]


def test_fifo_is_strict_and_backfill_is_not() -> None:
    nodes = (node("n1", devices=2),)
    queue = (pending("head", devices=4, submitted_at=0), pending("small", devices=1, submitted_at=1))
    strict = make_scheduler("fifo").schedule(ClusterSnapshot(nodes, pending=queue), 0.0)
    assert strict.placements == ()
    assert "waiting behind head" in strict.pending_reasons["small"]
    loose = make_scheduler("fifo-backfill").schedule(ClusterSnapshot(nodes, pending=queue), 0.0)
    assert list(placed(loose)) == ["small"]
    assert "head" in loose.pending_reasons


def test_gang_is_all_or_nothing_and_packed_on_one_node() -> None:
    # 4 free devices in all but only one node holds 2: a gang of 2 tasks x 2 devices waits whole.
    nodes = (node("a", devices=2), node("b", devices=1), node("c", devices=1))
    plan = make_scheduler("default").schedule(ClusterSnapshot(nodes, pending=(pending("g", 2, tasks=2),)), 0.0)
    assert plan.placements == ()
    assert "only 1 of the gang's 2 tasks fit" in plan.pending_reasons["g"]
    # With one roomy node, the gang lands on it whole (not spread over the half-empty ones).
    nodes = (node("a", devices=2), node("b", devices=2), node("big", devices=8))
    plan = make_scheduler("default").schedule(ClusterSnapshot(nodes, pending=(pending("g", 2, tasks=3),)), 0.0)
    assert {n for n, _ in placed(plan)["g"]} == {"big"}
    assert len(placed(plan)["g"]) == 3
    # Best fit: a 2-device job takes the 2-device node, leaving the 8-device node whole.
    plan = make_scheduler("default").schedule(ClusterSnapshot(nodes, pending=(pending("s", 2),)), 0.0)
    assert placed(plan)["s"][0][0] in ("a", "b")


def test_priority_preemption_picks_the_victim_losing_least_work() -> None:
    nodes = (node("n1", devices=2),)
    now = 10_000.0
    run = (
        running("old-ckpt", "n1", ["gpu0"], started_at=0, checkpoint_at=1_000),  # 9000 s since checkpoint
        running("fresh-ckpt", "n1", ["gpu1"], started_at=0, checkpoint_at=9_900),  # 100 s since checkpoint
    )
    snap = ClusterSnapshot(nodes, running=run, pending=(pending("urgent", 1, priority=10),))
    plan = make_scheduler("priority").schedule(snap, now)
    assert [p.job_id for p in plan.preemptions] == ["fresh-ckpt"]
    assert plan.preemptions[0].grace_s == 30.0
    assert "higher-priority" in plan.preemptions[0].reason
    assert "stopping 1 job(s)" in plan.pending_reasons["urgent"]


def test_only_preemptible_lower_priority_jobs_are_victims() -> None:
    nodes = (node("n1", devices=2),)
    run = (
        running("pinned", "n1", ["gpu0"], preemptible=False),
        running("same-class", "n1", ["gpu1"], priority=10),
    )
    snap = ClusterSnapshot(nodes, running=run, pending=(pending("urgent", 1, priority=10),))
    plan = make_scheduler("priority").schedule(snap, 100.0)
    assert plan.preemptions == () and plan.placements == ()


def test_quota_borrowing_and_reclaim() -> None:
    nodes = (node("n1", devices=4),)
    tenants = {"a": TenantPolicy("a", quota={"V100": 2}), "b": TenantPolicy("b", quota={"V100": 2})}
    # b is idle: a may borrow all 4 devices.
    snap = ClusterSnapshot(nodes, pending=(pending("a1", 4, tenant="a"),), tenants=tenants)
    assert list(placed(make_scheduler("priority").schedule(snap, 0.0))) == ["a1"]
    # a non-preemptible job cannot borrow.
    snap = ClusterSnapshot(nodes, pending=(pending("a2", 4, tenant="a", preemptible=False),), tenants=tenants)
    why = make_scheduler("priority").schedule(snap, 0.0).pending_reasons["a2"]
    assert "cannot borrow" in why
    # a borrowed 4 (two jobs of 2); b wants its guaranteed 2 back: one of a's jobs is reclaimed.
    run = (
        running("a-x", "n1", ["gpu0", "gpu1"], tenant="a", checkpoint_at=50),
        running("a-y", "n1", ["gpu2", "gpu3"], tenant="a", checkpoint_at=90),
    )
    snap = ClusterSnapshot(nodes, running=run, pending=(pending("b1", 2, tenant="b"),), tenants=tenants)
    plan = make_scheduler("priority").schedule(snap, 100.0)
    assert {p.job_id for p in plan.preemptions} == {"a-y"}  # least work since its checkpoint
    assert "reclaimed" in plan.preemptions[0].reason
    # b asking beyond its guarantee reclaims nothing.
    snap = ClusterSnapshot(nodes, running=run, pending=(pending("b2", 4, tenant="b"),), tenants=tenants)
    assert make_scheduler("priority").schedule(snap, 100.0).preemptions == ()


def test_idle_capacity_is_held_for_waiting_owners() -> None:
    nodes = (node("n1", devices=4),)
    tenants = {"a": TenantPolicy("a", quota={"V100": 2}), "b": TenantPolicy("b", quota={"V100": 2})}
    run = (running("a-x", "n1", ["gpu0", "gpu1"], tenant="a"),)
    # b's job (guaranteed) and a's borrowing job wait together: b's 2 devices are not lent to a.
    snap = ClusterSnapshot(nodes, running=run, tenants=tenants,
                           pending=(pending("a-more", 2, tenant="a", submitted_at=0),
                                    pending("b1", 2, tenant="b", submitted_at=1, priority=-1)))
    plan = make_scheduler("priority").schedule(snap, 0.0)
    assert list(placed(plan)) == ["b1"]
    assert "held for other tenants' guarantees" in plan.pending_reasons["a-more"]


def test_drf_serves_the_tenant_with_the_smallest_weighted_share() -> None:
    nodes = (node("n1", devices=4),)
    run = (running("a-run", "n1", ["gpu0"], tenant="a"),)
    queue = (pending("a-next", 1, tenant="a", submitted_at=0), pending("b1", 1, tenant="b", submitted_at=5),
             pending("b2", 1, tenant="b", submitted_at=6), pending("b3", 1, tenant="b", submitted_at=7))
    plan = make_scheduler("drf").schedule(ClusterSnapshot(nodes, running=run, pending=queue), 0.0)
    # 3 free devices: b (share 0) gets two before a (share 1/4) gets its next; ties go to a's earlier job.
    assert set(placed(plan)) == {"b1", "b2", "a-next"}
    heavy = {"a": TenantPolicy("a", weight=4.0)}
    plan = make_scheduler("drf").schedule(ClusterSnapshot(nodes, running=run, pending=queue, tenants=heavy), 0.0)
    assert "a-next" in placed(plan)


def test_tiresias_preempts_across_queues_only() -> None:
    nodes = (node("n1", devices=1),)
    long_runner = (running("long", "n1", ["gpu0"], attained_s=7_200, started_at=0),)  # 2 device-hours
    snap = ClusterSnapshot(nodes, running=long_runner, pending=(pending("new", 1, submitted_at=7_000),))
    plan = make_scheduler("tiresias").schedule(snap, 7_200.0)
    assert [p.job_id for p in plan.preemptions] == ["long"]
    young = (running("young", "n1", ["gpu0"], attained_s=600, started_at=0),)
    snap = ClusterSnapshot(nodes, running=young, pending=(pending("new", 1, submitted_at=500),))
    assert make_scheduler("tiresias").schedule(snap, 600.0).preemptions == ()


def test_gittins_index_prefers_fresh_jobs_under_a_heavy_tailed_prior() -> None:
    g = GittinsOrder(min_s=60, max_s=7 * 86400, quantum_s=60)
    assert g.index(0) > g.index(3600) > g.index(86400)


THROUGHPUT = ThroughputModel({
    "resnet": {"V100": 10.0, "K80": 1.0},  # gains 10x on V100
    "a3c": {"V100": 2.0, "K80": 1.0},  # gains 2x
})


def test_heterogeneity_gives_the_fast_type_to_the_job_that_gains_most() -> None:
    nodes = (node("v", "V100", 1), node("k", "K80", 1))
    # The job that gains little arrives first; a greedy policy would hand it the V100.
    queue = (pending("a3c", 1, workload="a3c", submitted_at=0), pending("resnet", 1, workload="resnet", submitted_at=1))
    snap = ClusterSnapshot(nodes, pending=queue, throughput=THROUGHPUT)
    # Gavel-style type allocation (max normalised throughput), with and without SRPT order.
    for profile in ("srpt-hetero", "gavel"):
        plan = make_scheduler(profile).schedule(snap, 0.0)
        assert placed(plan) == {"resnet": [("v", ("gpu0",))], "a3c": [("k", ("gpu0",))]}, profile
    # srpt-plan (the default) ranks by time left on the best type, so with the same work named
    # the job that gains most finishes first on the V100 and is planned there.
    sized = tuple(replace(p, spec_steps=36_000.0) for p in queue)
    plan = make_scheduler("default").schedule(ClusterSnapshot(nodes, pending=sized, throughput=THROUGHPUT), 0.0)
    assert placed(plan) == {"resnet": [("v", ("gpu0",))], "a3c": [("k", ("gpu0",))]}
    greedy = make_scheduler("fifo-backfill").schedule(snap, 0.0)
    assert placed(greedy)["a3c"][0][0] == "v"


def test_migration_moves_a_job_to_a_faster_free_type() -> None:
    nodes = (node("v", "V100", 1), node("k", "K80", 1))
    run = (running("resnet", "k", ["gpu0"], workload="resnet", started_at=0.0),)
    snap = ClusterSnapshot(nodes, running=run, throughput=THROUGHPUT)
    plan = make_scheduler("default").schedule(snap, 1_000.0)
    assert [p.job_id for p in plan.preemptions] == ["resnet"]
    assert "migrating to V100" in plan.preemptions[0].reason
    # Just (re)started: it stays put for a while, so a job cannot bounce between types.
    assert make_scheduler("default").schedule(snap, 60.0).preemptions == ()


def test_stated_objective_picks_the_slowest_type_corrected_the_fastest() -> None:
    nodes = (node("v", "V100", 1), node("k", "K80", 1))
    snap = ClusterSnapshot(nodes, pending=(pending("j", 1, workload="resnet"),), throughput=THROUGHPUT)
    assert placed(make_scheduler("objective").schedule(snap, 0.0))["j"][0][0] == "v"
    assert placed(make_scheduler("objective-stated").schedule(snap, 0.0))["j"][0][0] == "k"


def test_cordoned_nodes_are_skipped() -> None:
    nodes = (node("bad", devices=4, **{"llmos.io/unschedulable": "true"}), node("ok", devices=1))
    plan = make_scheduler("default").schedule(ClusterSnapshot(nodes, pending=(pending("j", 1),)), 0.0)
    assert placed(plan)["j"][0][0] == "ok"
    plan = make_scheduler("default").schedule(ClusterSnapshot(nodes, pending=(pending("j2", 2),)), 0.0)
    assert "cordoned" in plan.pending_reasons["j2"]


def test_dead_nodes_and_busy_devices_are_not_used() -> None:
    nodes = (replace(node("dead", devices=4), alive=False), node("n", devices=2))
    run = (running("r", "n", ["gpu0"]),)
    plan = make_scheduler("default").schedule(ClusterSnapshot(nodes, running=run, pending=(pending("j", 1),)), 0.0)
    assert placed(plan) == {"j": [("n", ("gpu1",))]}


@pytest.mark.parametrize("profile", ["fifo", "priority", "drf", "tiresias", "gittins", "gavel", "max-throughput"])
def test_every_profile_places_a_simple_job(profile: str) -> None:
    snap = ClusterSnapshot((node("n", devices=2),), pending=(pending("j", 1, workload="resnet"),),
                           throughput=THROUGHPUT)
    assert list(placed(make_scheduler(profile).schedule(snap, 0.0))) == ["j"]


def test_tiresias_service_dimension_for_gangs() -> None:
    from llmos.scheduler.framework import JobView
    from llmos.scheduler.ordering import TiresiasOrder

    gang = JobView.of_pending(pending("g", devices=1, tasks=4, attained_s=1000))  # 4000 device-seconds
    assert TiresiasOrder().level(gang, None) == 1  # type: ignore[arg-type]
    assert TiresiasOrder(service="time").level(gang, None) == 0  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="service"):
        TiresiasOrder(service="gpu")


def test_cpu_only_gangs_are_all_or_nothing_with_a_reason() -> None:
    from llmos.core.devices import Node

    n = (Node("local", 4, 16),)
    run = (running("busy", "local", [], task=0),)  # holds 1 CPU
    snap = ClusterSnapshot(n, running=run, pending=(pending("g", devices=0, tasks=2, cpus=2),))
    plan = make_scheduler("default").schedule(snap, 0.0)
    assert plan.placements == ()
    assert "only 1 of the job's 2 tasks fit in the free CPUs and RAM" in plan.pending_reasons["g"]
    snap = ClusterSnapshot(n, running=run, pending=(pending("g", devices=0, tasks=2, cpus=2, priority=5),))
    plan = make_scheduler("priority").schedule(snap, 0.0)
    assert [p.job_id for p in plan.preemptions] == ["busy"]
