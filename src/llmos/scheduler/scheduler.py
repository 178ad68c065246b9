"""The ``Scheduler`` entry point shared by the control plane and the simulator.

One call, one cycle (see :mod:`llmos.scheduler.framework` for the extension
points)::

    order jobs ─► per job: filters per type ─► scores rank types ─► gang placement
                          │ (nothing fits)
                          └─► preemption plug-ins name victims ─► cheapest victims chosen

A gang is placed whole or not at all, on one device type, packed on as few
nodes as possible. A job that must wait gets one sentence in
``plan.pending_reasons`` built from the filters' reasons.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from llmos.core.devices import Node
from llmos.scheduler.capacity import NO_DEVICE, Capacity, GangRequest, HeldResult, NodeCheck, NodeState
from llmos.scheduler.framework import Code, CycleContext, JobView, Status, Usage, pending_sentence
from llmos.scheduler.plan import Placement, Plan, Preemption
from llmos.scheduler.registry import Plugins, Profile, build_plugins, get_profile
from llmos.scheduler.snapshot import ClusterSnapshot, RunningTask
from llmos.scheduler.throughput import CATALOG_MODEL


class Scheduler:
    """Builds a :class:`Plan` from a :class:`ClusterSnapshot` under one profile.

    ``schedule`` reads only the snapshot (no job's true remaining work is in
    it) and returns a plan; it keeps no state between calls that affects the
    result. One instance must not run two ``schedule`` calls at once (plug-ins
    keep per-cycle scratch state); the control plane's single loop and the
    simulator call it sequentially.
    """

    def __init__(self, profile: Profile | None = None) -> None:
        self.profile = profile or get_profile("default")
        self.plugins: Plugins = build_plugins(self.profile)
        # The job and type the node filters are asked about (set before each placement).
        self._check_job: list[JobView] = []
        self._check_type: list[str] = [""]

    @property
    def name(self) -> str:
        return self.profile.name

    # -- the cycle -----------------------------------------------------------
    def schedule(self, snapshot: ClusterSnapshot, now: float) -> Plan:
        ctx = _context(snapshot, now)
        pl = self.plugins
        jobs = [JobView.of_pending(p) for p in snapshot.pending]
        order_key = pl.order.key

        def rank(j: JobView) -> tuple[tuple[float, ...], float, str]:
            return (order_key(j, ctx), j.submitted_at, j.job_id)

        jobs.sort(key=rank)
        for s, _w in pl.scores:
            s.prepare(jobs, ctx)
        node_check = self._node_check(ctx)
        placements: list[Placement] = []
        preemptions: list[Preemption] = []
        reasons: dict[str, str] = {}
        victims_taken: set[str] = set()
        blocked_by: str | None = None
        budget = self.profile.max_preemptions_per_cycle
        for job in self._iterate(jobs, ctx):
            if blocked_by is not None:
                reasons[job.job_id] = (
                    f"Pending: waiting behind {blocked_by}, which is first in line "
                    f"(profile {self.name} runs jobs strictly in order)."
                )
                continue
            placed, why, final = self._try_place(job, ctx, node_check)
            if placed is not None:
                placements.append(placed)
                continue
            if not final and pl.preemption and budget > 0:
                chosen = self._choose_victims(job, ctx, victims_taken, node_check)
                if chosen:
                    budget -= 1
                    for v, reason in chosen:
                        victims_taken.add(v.job_id)
                        for t in v.tasks:
                            preemptions.append(Preemption(t.task_id, v.job_id, reason, self.profile.grace_s))
                    reasons[job.job_id] = (
                        f"Pending: stopping {len(chosen)} job(s) to make room "
                        f"({', '.join(v.job_id for v, _ in chosen)}); they get "
                        f"{self.profile.grace_s:g} s to checkpoint."
                    )
                    if not self.profile.backfill:
                        blocked_by = job.job_id
                    continue
            reasons[job.job_id] = pending_sentence(why)
            if not self.profile.backfill:
                blocked_by = job.job_id
        if pl.migration and budget > 0:
            preemptions.extend(self._migrations(ctx, victims_taken, budget))
        return Plan(placements=tuple(placements), preemptions=tuple(preemptions), pending_reasons=reasons)

    def _iterate(self, jobs: list[JobView], ctx: CycleContext) -> Iterator[JobView]:
        order = self.plugins.order
        if not getattr(order, "dynamic", False):
            yield from jobs
            return
        # Keys only grow as the cycle places jobs (shares rise): a lazy heap re-keys on pop.
        heap = [(order.key(j, ctx), j.submitted_at, j.job_id, i) for i, j in enumerate(jobs)]
        heapq.heapify(heap)
        while heap:
            k, sub, jid, i = heapq.heappop(heap)
            fresh = order.key(jobs[i], ctx)
            if fresh > k:
                heapq.heappush(heap, (fresh, sub, jid, i))
                continue
            yield jobs[i]

    def _node_check(self, ctx: CycleContext) -> NodeCheck | None:
        nfs = self.plugins.node_filters
        if not nfs:
            return None
        job_holder = self._check_job
        type_holder = self._check_type

        def check(st: NodeState) -> str | None:
            for nf in nfs:
                status = nf.filter_node(job_holder[0], st, type_holder[0], ctx)
                if not status.ok:
                    return "; ".join(status.reasons) or f"node {st.node.id} rejected by {nf.name}"
            return None

        return check

    def _ranked_types(self, job: JobView, ctx: CycleContext) -> tuple[list[str], list[Status]]:
        """Types that pass every filter, best score first, and the failures."""
        ok: list[tuple[float, str]] = []
        failed: list[Status] = []
        for t in ctx.allowed_types(job):
            bad = next((st for f in self.plugins.filters if not (st := f.filter(job, t, ctx)).ok), None)
            if bad is not None:
                failed.append(bad)
                continue
            score = sum(w * s.score(job, t, ctx) for s, w in self.plugins.scores)
            ok.append((-score, t))
        ok.sort()
        return [t for _, t in ok], failed

    def _try_place(self, job: JobView, ctx: CycleContext, node_check: NodeCheck | None,
                   ) -> tuple[Placement | None, list[str], bool]:
        """Place the whole gang or explain why not; ``final``: preemption cannot help."""
        allowed = ctx.allowed_types(job)
        if not allowed:
            wanted = ", ".join(job.request.device_types) or "any"
            have = ", ".join(ctx.device_types) or "none"
            return None, [f"no live node has a device of an allowed type (wanted {wanted}; cluster has {have})"], True
        types, failed = self._ranked_types(job, ctx)
        why = [r for st in failed for r in st.reasons]
        final = not types and all(st.code is Code.UNSCHEDULABLE for st in failed)
        req = _gang(job)
        if node_check is not None:
            self._check_job[:] = [job]
        for t in types:
            if node_check is not None:
                self._check_type[0] = t
            tasks, fail = ctx.capacity.place_gang(t, req, node_check)
            if tasks is not None:
                ctx.charge(job, t)
                return Placement(job.job_id, tuple(tasks)), [], False
            why.extend(fail)
        return None, why, final

    def _choose_victims(self, job: JobView, ctx: CycleContext, taken: set[str], node_check: NodeCheck | None,
                        ) -> list[tuple[JobView, str]]:
        """Cheapest set of eligible victims after which ``job`` fits, or []."""
        eligible: dict[str, str] = {}
        running = [r for r in ctx.running.values() if r.job_id not in taken and r.preemptible]
        if not running:
            return []
        for p in self.plugins.preemption:
            for jid, why in p.victims(job, running, ctx).items():
                eligible.setdefault(jid, why)
        if not eligible:
            return []
        types = set(ctx.allowed_types(job))
        cands = [ctx.running[j] for j in eligible if ctx.running[j].device_type in types
                 or (job.request.devices == 0)]
        # Least work lost since the last checkpoint first; then the lowest-ranked.
        order = self.plugins.order
        cands.sort(key=lambda v: (v.lost_work_s(ctx.now), tuple(-x for x in order.key(v, ctx)), v.job_id))
        cap = ctx.capacity
        req = _gang(job)
        if node_check is not None:
            self._check_job[:] = [job]
        chosen: list[JobView] = []
        cap.begin()
        fits = False
        try:
            for v in cands:
                chosen.append(v)
                for t in v.tasks:
                    cap.release(t.node_id, t.device_ids, t.cpus, t.memory_gib)
                if self._fits_somewhere(job, req, ctx, node_check):
                    fits = True
                    break
        finally:
            cap.rollback()
        if not fits:
            return []
        # Drop victims that turned out unnecessary (most expensive first).
        for v in sorted(chosen, key=lambda v: -v.lost_work_s(ctx.now)):
            rest = [c for c in chosen if c is not v]
            cap.begin()
            try:
                for c in rest:
                    for t in c.tasks:
                        cap.release(t.node_id, t.device_ids, t.cpus, t.memory_gib)
                ok = self._fits_somewhere(job, req, ctx, node_check)
            finally:
                cap.rollback()
            if ok:
                chosen = rest
        for v in chosen:
            ctx.charge(v, v.device_type or NO_DEVICE, -1)
        return [(v, eligible[v.job_id]) for v in chosen]

    def _migrations(self, ctx: CycleContext, taken: set[str], budget: int) -> list[Preemption]:
        """Stop running jobs that a migration plug-in moves to a faster free type.

        The target devices are reserved in this cycle's capacity so two moves
        never count on the same devices.
        """
        running = [r for r in ctx.running.values() if r.job_id not in taken]
        out: list[Preemption] = []
        for m in self.plugins.migration:
            for jid, (target, why) in m.moves(running, ctx).items():
                if budget <= 0 or jid in taken:
                    break
                v = ctx.running[jid]
                tasks, _ = ctx.capacity.place_gang(target, _gang(v), None)
                if tasks is None:
                    continue
                taken.add(jid)
                budget -= 1
                out.extend(Preemption(t.task_id, jid, why, self.profile.grace_s) for t in v.tasks)
        return out

    def _fits_somewhere(self, job: JobView, req: GangRequest, ctx: CycleContext, node_check: NodeCheck | None) -> bool:
        types, _ = self._ranked_types(job, ctx)
        for t in types:
            if node_check is not None:
                self._check_type[0] = t
            tasks, _why = ctx.capacity.place_gang(t, req, node_check)
            if tasks is not None:
                return True  # the caller's rollback undoes the trial placement
        return False


def _gang(job: JobView) -> GangRequest:
    r = job.request
    return GangRequest(job.num_tasks, r.devices, r.cpus, r.memory_gib, r.min_device_memory_gib)


def _context(snapshot: ClusterSnapshot, now: float) -> CycleContext:
    nodes = snapshot.nodes
    base = _BASE.get(id(nodes))
    if base is None or base[0] is not nodes:
        _BASE.clear()
        _HELD.clear()
        alive = [n for n in nodes if n.alive]
        base = _BASE[id(nodes)] = (nodes, Capacity(nodes), {n.id: _device_types(n) for n in nodes},
                                   sum(n.cpus for n in alive), sum(n.memory_gib for n in alive))
    _, template, node_types, total_cpus, total_memory = base
    cap = template.copy()
    by_job: dict[str, list[RunningTask]] = {}
    held: dict[str, tuple[list[str], list[float]]] = {}
    for t in snapshot.running:
        tasks = by_job.get(t.job_id)
        if tasks is None:
            by_job[t.job_id] = [t]
        else:
            tasks.append(t)
        h = held.get(t.node_id)
        if h is None:
            held[t.node_id] = (list(t.device_ids), [t.cpus, t.memory_gib])
        else:
            h[0].extend(t.device_ids)
            res = h[1]
            res[0] += t.cpus
            res[1] += t.memory_gib
    memo = _HELD
    for node_id, (ids, res) in held.items():
        key = (node_id, tuple(ids))
        after = memo.get(key)
        if after is None:
            after = template.held_result(node_id, ids)
            if len(memo) < 65536:
                memo[key] = after
        cap.hold_result(node_id, after, res[0], res[1])
    running: dict[str, JobView] = {}
    of_running = JobView.of_running
    for jid, tasks in by_job.items():
        t0 = tasks[0]
        types = node_types.get(t0.node_id)
        dtype = types[0].get(t0.device_ids[0]) if types is not None and t0.device_ids else None
        running[jid] = of_running(tasks if len(tasks) == 1 else _sorted_tasks(tasks), dtype)
    return CycleContext(
        snapshot=snapshot, now=now, capacity=cap,
        throughput=snapshot.throughput or CATALOG_MODEL,
        running=running, tally=lambda: _tally(snapshot.running, node_types), tenants=snapshot.tenants,
        total_cpus=total_cpus, total_memory_gib=total_memory,
    )


def _tally(running: tuple[RunningTask, ...], node_types: dict[str, _TypeMap]) -> Usage:
    """Devices held per tenant and type, and CPUs and GiB held per tenant (``CycleContext.usage``)."""
    usage: dict[str, dict[str, int]] = {}
    cpu_mem: dict[str, tuple[float, float]] = {}
    for t in running:
        tenant = t.tenant
        u = usage.get(tenant)
        if u is None:
            u = usage[tenant] = {}
        for ty, k in _type_counts(t.node_id, t.device_ids, node_types):
            u[ty] = u.get(ty, 0) + k
        cm = cpu_mem.get(tenant)
        cpu_mem[tenant] = (t.cpus, t.memory_gib) if cm is None else (cm[0] + t.cpus, cm[1] + t.memory_gib)
    return usage, cpu_mem


# A node's device id -> type, and a memo of device-id tuples -> (type, count) pairs on it.
_TypeMap = tuple[dict[str, str], dict[tuple[str, ...], tuple[tuple[str, int], ...]]]
_TYPE_MAPS: dict[int, tuple[Node, dict[str, str], dict[tuple[str, ...], tuple[tuple[str, int], ...]]]] = {}
# Per node tuple (the simulator reuses one until a node fails or is repaired; only the last one is
# kept): the tuple, its empty capacity (copied each cycle), each node id's type map and the live
# nodes' CPUs and GiB.
_BASE: dict[int, tuple[tuple[Node, ...], Capacity, dict[str, _TypeMap], float, float]] = {}
# (node id, held device ids) -> what the node's free devices are after the hold, from the template
# above (cleared with it).
_HELD: dict[tuple[str, tuple[str, ...]], HeldResult] = {}


def _device_types(node: Node) -> _TypeMap:
    """Device id -> type for a node, and a memo of device-id tuples -> (type, count) pairs,
    memoised by identity (the node is kept alive by the memo, so its id cannot be reused while cached)."""
    hit = _TYPE_MAPS.get(id(node))
    if hit is None or hit[0] is not node:
        if len(_TYPE_MAPS) > 200_000:
            _TYPE_MAPS.clear()
        hit = _TYPE_MAPS[id(node)] = (node, {d.id: d.type for d in node.devices}, {})
    return hit[1], hit[2]


def _type_counts(node_id: str, device_ids: tuple[str, ...], node_types: dict[str, _TypeMap],
                 ) -> tuple[tuple[str, int], ...]:
    """How many of ``device_ids`` (on ``node_id``) are of each known type, types in order of first appearance."""
    maps = node_types.get(node_id)
    if maps is None:
        return ()
    tt, m = maps
    hit = m.get(device_ids)
    if hit is not None:
        return hit
    out: dict[str, int] = {}
    for d in device_ids:
        ty = tt.get(d)
        if ty is not None:
            out[ty] = out.get(ty, 0) + 1
    res = tuple(out.items())
    if len(m) < 4096:
        m[device_ids] = res
    return res


def _sorted_tasks(tasks: list[RunningTask]) -> list[RunningTask]:
    prev = tasks[0].task_id
    for t in tasks:
        if t.task_id < prev:
            return sorted(tasks, key=lambda t: t.task_id)
        prev = t.task_id
    return tasks  # already in order (the usual case): no keyed sort


def make_scheduler(profile: str = "default") -> Scheduler:
    """Build the scheduler for a named profile (``default``: the measured best).

    Raises :class:`llmos.errors.ValidationError` naming the known profiles
    when ``profile`` is unknown.
    """
    return Scheduler(get_profile(profile))
