"""Framework contracts: registry, profiles, statuses, the plan shape, purity."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from sched_factories import node, pending

from llmos.errors import LLMOSError, ValidationError
from llmos.scheduler import PROFILES, ClusterSnapshot, Code, Profile, Status, get_profile, make_scheduler
from llmos.scheduler.framework import Filter, NodeFilter, Preemption, QueueOrder, Score, pending_sentence
from llmos.scheduler.registry import build_plugins


def test_every_profile_builds_and_plugins_satisfy_their_protocols() -> None:
    assert "default" not in PROFILES  # an alias, resolved by get_profile
    for name in ["default", *PROFILES]:
        plugins = build_plugins(get_profile(name))
        assert isinstance(plugins.order, QueueOrder)
        assert all(isinstance(f, Filter) for f in plugins.filters)
        assert all(isinstance(f, NodeFilter) for f in plugins.node_filters)
        assert all(isinstance(s, Score) for s, _ in plugins.scores)
        assert all(isinstance(p, Preemption) for p in plugins.preemption)
        for p in [plugins.order, *plugins.filters, *plugins.preemption]:
            assert p.name


def test_unknown_profile_is_a_clear_llmos_error() -> None:
    with pytest.raises(ValidationError) as e:
        make_scheduler("nope")
    assert isinstance(e.value, LLMOSError)
    assert "unknown scheduler profile 'nope'" in e.value.message and "default" in e.value.message


def test_profile_rejects_unknown_plugins() -> None:
    with pytest.raises(ValueError, match="unknown score plug-in 'fast'"):
        Profile("x", "bad", scores={"fast": 1.0})


def test_status_values_and_sentence() -> None:
    assert Status.success().ok
    s = Status.wait("quota", "tenant a is past its guarantee")
    assert s.code is Code.WAIT and not s.ok and s.plugin == "quota"
    assert pending_sentence(["a", "b", "a"]) == "Pending: a; b."


def test_pending_reason_is_a_sentence_naming_the_shortfall() -> None:
    snap = ClusterSnapshot((node("n1", "V100", 2),), pending=(pending("big", devices=2, tasks=2, types=["V100"]),))
    plan = make_scheduler("default").schedule(snap, 0.0)
    assert plan.placements == ()
    reason = plan.pending_reasons["big"]
    assert reason.startswith("Pending: ") and reason.endswith(".")
    assert "needs 4 V100 devices and the cluster has 2" in reason


def test_unknown_type_reason() -> None:
    snap = ClusterSnapshot((node("n1", "K80", 2),), pending=(pending("j", types=["A100-80G"]),))
    reason = make_scheduler("default").schedule(snap, 0.0).pending_reasons["j"]
    assert "no live node has a device of an allowed type" in reason and "A100-80G" in reason


def test_schedulers_only_import_core_stdlib_numpy() -> None:
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {'torch', 'sqlalchemy', 'fastapi', 'ray', 'rich', 'pydantic', 'yaml'}:
                    raise ImportError('blocked: ' + name)
                return None
        sys.meta_path.insert(0, Block())
        import llmos.scheduler, llmos.sim
        from llmos.scheduler import make_scheduler
        make_scheduler('default')
        bad = [m for m in sys.modules if m.split('.')[0] in {'torch', 'sqlalchemy', 'fastapi', 'ray', 'rich'}]
        assert not bad, bad
        print('ok')
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_memoised_hold_leaves_the_same_capacity_as_hold() -> None:
    """``held_result`` + ``hold_result`` (the cycle context's memo) must equal ``hold``, index order included."""
    from llmos.core.devices import Device, Node
    from llmos.scheduler.capacity import Capacity

    nodes = tuple(
        Node(f"n{i}", 32.0, 256.0, tuple(Device(f"g{k}", "A" if k % 2 else "B", k, 40.0) for k in range(4)))
        for i in range(3)
    )
    template = Capacity(nodes)
    held = [("n1", ("g0", "g1"), 4.0, 16.0), ("n0", ("g3",), 2.0, 8.0)]
    plain, memo = template.copy(), template.copy()
    for nid, ids, c, m in held:
        plain.hold(nid, ids, c, m)
        memo.hold_result(nid, template.held_result(nid, ids), c, m)
    assert plain.free_by_type == memo.free_by_type
    assert {t: [list(k) for k in b] for t, b in plain._buckets.items()} == \
        {t: [list(k) for k in b] for t, b in memo._buckets.items()}
    for nid, st in plain.nodes.items():
        st2 = memo.nodes[nid]
        assert (st.free, st.cpus, st.memory_gib) == (st2.free, st2.cpus, st2.memory_gib)
    assert template.held_result("missing", ("g0",)) is None


def test_usage_is_counted_on_first_read_with_earlier_charges_applied_in_order() -> None:
    """``CycleContext.usage`` is counted lazily; charges made before the first read must leave the
    same figures as charging after an eager count."""
    from sched_factories import running

    from llmos.scheduler.framework import JobView
    from llmos.scheduler.scheduler import _context

    nodes = (node("a", "A100", 4), node("v", "V100", 4))
    tasks = (running("x", "a", ["gpu0", "gpu1"], tenant="t1"), running("y", "v", ["gpu0"], tenant="t2"),
             running("z", "v", ["gpu1", "gpu2"], tenant="t1"))
    snap = ClusterSnapshot(nodes, running=tasks)
    newcomer = JobView.of_pending(pending("new", devices=2, tenant="t2", cpus=2.5))
    eager, lazy = _context(snap, 0.0), _context(snap, 0.0)
    assert eager.usage == {"t1": {"A100": 2, "V100": 2}, "t2": {"V100": 1}}
    assert eager.cpu_mem_usage == {"t1": (2.0, 2.0), "t2": (1.0, 1.0)}
    for ctx in (eager, lazy):
        ctx.charge(newcomer, "A100")
        ctx.charge(ctx.running["x"], "A100", -1)
    assert lazy._usage is None  # nothing read yet: the charges wait for the count
    assert (lazy.usage, lazy.cpu_mem_usage) == (eager.usage, eager.cpu_mem_usage)
    assert lazy.usage == {"t1": {"A100": 0, "V100": 2}, "t2": {"V100": 1, "A100": 2}}
    assert lazy.cpu_mem_usage == {"t1": (1.0, 1.0), "t2": (3.5, 2.0)}
