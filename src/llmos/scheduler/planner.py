"""``srpt-plan``: decide the whole set of running jobs and their device types at once.

The ``srpt-hetero`` cycle has two halves that can disagree: a waiting job
that does not fit preempts lower-ranked jobs, and the freed devices are then
handed by the type allocator to a *different* job (churn). This plug-in makes
one decision per cycle instead, over running and pending jobs together:

1. rank every job by the profile's queue order (SRPT on remaining
   device-seconds: priority classes first, then the least work left);
2. list-schedule them in that order on per-type device pools (all devices of
   the cluster, running ones included): each job takes the device type on
   which it would *finish* earliest given the jobs ranked before it
   (earliest-finish-time list scheduling, the classic heuristic for
   minimising completion times on unrelated machines). A job that can start
   now on some type does (on the one where it finishes earliest among those
   free now) rather than wait for a faster busy one, and moves later if that
   pays (``wait_factor``: pure list scheduling, which waits, idled the K80s
   and measured 0.909x Gavel's best against 0.785x);
3. hysteresis: a running job stays on its type unless another one finishes it
   sooner by clearly more than a restart costs (``move_min_s`` and
   ``move_frac`` of its remaining time); a restart is charged
   ``restart_s`` in the estimate; non-preemptible running jobs keep their
   devices.

The *target set* is the jobs that start now in that list schedule. The
plug-in plays every role of the framework from that one plan: as a filter it
holds back pending jobs outside the target set (with their planned start in
the reason) and pins target jobs to their planned type; as a score it ranks
the planned type first; as a preemption plug-in it names, for a target job,
the running jobs outside the target set on its planned type; as a migration
plug-in it moves running jobs the plan puts on another type. Because the plan
is a function of the jobs' state and stopping a job outside the target set
does not change it, the cycle after a preemption places the job it was made
for; meanwhile the free devices of that type are kept for it (later target
jobs on the type wait a cycle instead of taking them, which would leave it
short again: the churn above). Only the snapshot is read: remaining work is
the spec's steps minus the steps reported done, at the throughput model's
speeds; a running job may move to the types its spec allows
(``RunningTask.allowed_types``; where not reported, the types the model has
measured its workload on).

Quotas keep their meaning: a pending job the quota filter refuses on a type
cannot start there in the plan, and a job within its tenant's guarantee on a
type is never held back by the plan (it places, or reclaims borrowed devices
through ``quota-reclaim``). Jobs without devices are not planned.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

from llmos.core.resources import ResourceRequest
from llmos.scheduler.capacity import NO_DEVICE
from llmos.scheduler.filters import TenantQuota
from llmos.scheduler.framework import CycleContext, JobView, QueueOrder, Status


def _kth(heap: list[float], k: int) -> float:
    """The k-th smallest of a heap (k >= 1), leaving it as it was."""
    if k == 1:
        return heap[0]
    if k <= 6 or len(heap) <= 64:
        # The k smallest lie within the heap's first k levels (each one's ancestors are no larger):
        # sorting those few (or a small heap whole) is cheaper than k pops and pushes.
        return sorted(heap[:(1 << k) - 1])[k - 1]
    popped = [heapq.heappop(heap) for _ in range(k)]
    for x in popped:
        heapq.heappush(heap, x)
    return popped[-1]


# A workload's speed on each of some types, the best, the types it runs on (speed > 0) and
# whether the throughput model has measured the workload.
_Speeds = tuple[dict[str, float], float, list[tuple[str, float]], bool]
# A running job's pool types it runs on with their speeds, the best of them and its current type's speed.
_Pool = tuple[list[tuple[str, float]], float, float]


def _hours(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 360 else f"{max(s, 0) / 60:.0f} min"


@dataclass
class PlannedTypes:
    """One plan per cycle: which jobs run now and on which type (see the module doc)."""

    order: QueueOrder
    name: str = "srpt-plan"
    restart_s: float = 30.0  # charged in the estimate to every restart
    move_min_s: float = 600.0  # a running job moves only if it then finishes this much sooner ...
    move_frac: float = 0.25  # ... and by this fraction of its remaining time on its current type
    unknown_floor_s: float = 1800.0  # seconds left assumed for a job whose spec names no work
    window: int = 100_000  # jobs planned per cycle; later ones are left to ordinary backfill
    # Re-give the types of at most this many jobs starting in one cycle among themselves by
    # regret (see ``_reassign``); 0: off. Off by default: on the dev trace and four perturbed
    # copies it measured worse on four of five (docs/scheduler.md).
    swap_window: int = 0
    # A running job that started less than this long ago keeps its devices and type against the
    # queue order (not against a higher priority class or a quota owner): each restart is paid
    # for by a lease of running. 0: off.
    lease_s: float = 360.0
    displace_s: float = 3600.0  # charged, in choosing a type, for starting where no device is idle
    unknown_speedup: float = 1.5  # a job whose spec names no work moves only to a type this much faster
    # Jobs whose spec names no work are ranked by classes of the order's estimate (powers of this).
    unknown_class_ratio: float = 2.0
    reserve: bool = True  # a job planned to start later holds the free devices of its type until then
    # A job that can start now on some type waits for a busier, faster one only if that finishes
    # it sooner by more than this fraction of the wait's finish time from now. The default (never
    # wait while a device it can use is idle; move later when worth it) measured 0.785x Gavel's
    # best on the dev trace; 0 (pure earliest-finish list scheduling) 0.909x: it idled K80s.
    wait_factor: float = math.inf
    _target: dict[str, str] = field(default_factory=dict, repr=False)  # job -> type it runs on now
    _later: dict[str, tuple[float, str]] = field(default_factory=dict, repr=False)  # job -> (start, type)
    _held: dict[str, str] = field(default_factory=dict, repr=False)  # job -> the job its room is kept for
    _quota: TenantQuota = field(default_factory=TenantQuota, repr=False)
    _speeds_for: object = field(default=None, repr=False)
    _speeds: dict[tuple[str | None, tuple[str, ...]], _Speeds] = field(default_factory=dict, repr=False)
    _cycle_speeds: dict[tuple[str | None, int], _Speeds] = field(default_factory=dict, repr=False)
    _cycle_keep: list[list[str]] = field(default_factory=list, repr=False)  # keeps the ids above valid
    _allowed_memo: dict[ResourceRequest, list[str]] = field(default_factory=dict, repr=False)
    _run_memo: dict[tuple[str | None, tuple[str, ...], str], list[str]] = field(default_factory=dict, repr=False)
    # (workload, spec's types, current type) of a running job -> its pool types with speed > 0 and their
    # speeds, the best of them and its speed on its current type (0: not in the pools); or None where
    # the model has not measured the workload. Valid while ``_pools_for`` (live types, pool types and
    # throughput model) is unchanged, so across cycles.
    _pools: dict[tuple[str | None, tuple[str, ...], str], _Pool | None] = field(default_factory=dict, repr=False)
    _pools_for: tuple[tuple[str, ...], tuple[str, ...]] = field(default=((), ()), repr=False)
    _types: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.restart_s < 0 or self.move_min_s < 0 or self.move_frac < 0 or self.unknown_floor_s <= 0:
            raise ValueError("srpt-plan: restart_s, move_min_s, move_frac >= 0 and unknown_floor_s > 0")
        if self.unknown_class_ratio <= 1:
            raise ValueError("srpt-plan: unknown_class_ratio must be > 1")
        if self.window < 1:
            raise ValueError("srpt-plan: window must be >= 1")

    # -- the plan ---------------------------------------------------------------
    def _times(self, job: JobView, types: list[str], ctx: CycleContext) -> dict[str, float]:
        """Seconds the job still needs on each type (without restart)."""
        tp = ctx.throughput
        if self._speeds_for is not tp:
            self._speeds_for = tp
            self._speeds.clear()
        # Per cycle, keyed by the identity of ``types`` (the lists are memoised for the cycle).
        ckey = (job.workload, id(types))
        hit = self._cycle_speeds.get(ckey)
        if hit is None:
            mkey = (job.workload, tuple(types))
            hit = self._speeds.get(mkey)
            if hit is None:
                if len(self._speeds) > 65536:
                    self._speeds.clear()
                sp = {t: tp.speed(job.workload, t) for t in types}
                hit = self._speeds[mkey] = (sp, max(sp.values(), default=0.0),
                                            [(t, x) for t, x in sp.items() if x > 0], tp.knows(job.workload))
            self._cycle_speeds[ckey] = hit
            self._cycle_keep.append(types)
        speeds, best, pos, known = hit
        rem = job.remaining_steps
        if rem is not None and not known:
            if job.observed_throughput and job.device_type and speeds.get(job.device_type, 0.0) > 0:
                # Unmeasured workload: its own observed speed, scaled to other types by the model's ratios.
                k = job.observed_throughput / speeds[job.device_type]
                scaled = {t: s * k for t, s in speeds.items()}
                return {t: rem / s for t, s in scaled.items() if s > 0}
            rem = None  # steps at an unknown speed say nothing about time
        if rem is not None:
            return {t: rem / s for t, s in pos}
        if best <= 0:
            return {}
        bb = max(self.unknown_floor_s, job.attained_service_s) * best
        return {t: bb / s for t, s in pos}

    def prepare(self, jobs: Sequence[JobView], ctx: CycleContext) -> None:
        self._target = {}
        self._later = {}
        self._held = {}
        self._allowed_memo.clear()  # the live types may differ from the last cycle's
        self._run_memo.clear()
        self._cycle_speeds.clear()
        self._cycle_keep.clear()
        self._types = ctx.device_types
        if not jobs and not any(ctx.capacity.free_by_type.values()):
            return  # nothing waits and nothing is free: every running job stays where it is
        now = ctx.now
        free_now = {t: n for t, n in ctx.capacity.total_by_type.items() if n > 0 and t != NO_DEVICE}
        later: dict[str, list[float]] = {t: [] for t in free_now}
        # Non-preemptible running jobs keep their devices whatever their rank.
        for r in ctx.running.values():
            if not r.preemptible and r.device_type in free_now and r.devices_total:
                self._target[r.job_id] = r.device_type
                free_now[r.device_type] -= r.devices_total
        key = self.order.key
        srpt = hasattr(self.order, "remaining_s")
        per_device = getattr(self.order, "by", "time") == "device"
        ratio = self.unknown_class_ratio
        log_ratio = math.log(ratio)
        lease = self.lease_s
        floor = self.unknown_floor_s
        # Per job: its rank key, it, and either its seconds left per type or, for a running job on a
        # measured workload (most jobs, every cycle), (work, its pool): its seconds left on a type are
        # ``work / speed``, worked out per type only if the job is considered for a move.
        items: list[tuple[tuple[object, ...], JobView, dict[str, float] | None, tuple[float, _Pool] | None]] = []
        usable: dict[int, tuple[list[str], list[str]]] = {}  # id(allowed types) -> (them, those in the pools)
        target = self._target
        pools = self._pools
        sig = (tuple(self._types), tuple(free_now))
        if self._pools_for != sig or self._speeds_for is not ctx.throughput:
            pools.clear()
            self._pools_for = sig
            self._speeds_for = ctx.throughput
            self._speeds.clear()
        for j in [*jobs, *ctx.running.values()]:
            g = j.num_tasks * j.request.devices
            if not g or j.job_id in target:
                continue
            cur = j.device_type
            if srpt and j.running and cur:
                pkey = (j.workload, j.tasks[0].allowed_types if j.tasks else (), cur)
                pool = pools.get(pkey)
                if pool is None and pkey not in pools:
                    pool = pools[pkey] = self._pool(j, free_now, ctx)
                if pool is not None:
                    # As below and in ``_times``, without the per-type dict (the least time is at the best speed).
                    pos, top, _ = pool
                    # (``max`` spelled out: this runs for every running job every cycle.)
                    steps = j.spec_steps
                    if steps is not None:
                        work = steps - j.steps_done
                        if not work > 0.0:
                            work = 0.0
                    else:
                        attained = j.attained_service_s
                        work = (attained if attained > floor else floor) * top
                    rem = work / top if pos else math.inf
                    if per_device:
                        rem *= g
                    if steps is None and rem < math.inf:
                        rem = ratio ** math.floor(math.log(1.0 if rem < 1.0 else rem) / log_ratio)
                    leased = 0 if now - j.started_at < lease else 1
                    items.append(((-j.priority, leased, rem, j.submitted_at, j.job_id), j, None, (work, pool)))
                    continue
            allowed = self._allowed(j, ctx)
            u = usable.get(id(allowed))
            if u is None:
                u = usable[id(allowed)] = (allowed, [t for t in allowed if t in free_now])
            secs = self._times(j, u[1], ctx)
            if not srpt:
                items.append(((key(j, ctx), j.submitted_at, j.job_id), j, secs, None))
                continue
            # The order's remaining time, on every type the job may use (a running job's view
            # holds only its current type), in device-seconds when the order ranks so.
            rem = min(secs.values(), default=math.inf)
            if per_device:
                rem *= g
            if j.remaining_steps is None:
                # The spec names no work: the estimate is attained service, which grows while a
                # job runs. Ranked by classes (powers of ``unknown_class_ratio``, arrival order
                # within one, as Tiresias's queues) so neighbours do not churn.
                rem = ratio ** math.floor(math.log(max(rem, 1.0)) / log_ratio) if rem < math.inf else rem
            # Within a priority class, a running job inside its lease keeps its place and its type.
            leased = 0 if j.running and now - j.started_at < lease else 1
            items.append(((-j.priority, leased, rem, j.submitted_at, j.job_id), j, secs, None))
        items.sort(key=itemgetter(0))
        ranked = [it[1] for it in items]
        all_times = [it[2] for it in items]
        lazy = [it[3] for it in items]
        quotas = any(tp.quota for tp in ctx.tenants.values())
        starts: list[tuple[str, int, dict[str, float]]] = []
        idle = dict(ctx.capacity.free_by_type)
        speedup = self.unknown_speedup
        # The finish times on each type's pool, kept as plain lists (appends are cheap) until a job
        # first needs an order statistic there; from then on a heap (the same multiset either way).
        heaped: set[str] = set()
        at_now = False  # whether a finish time in the pools is now (a start now where no device has room)

        def heap(t: str) -> list[float]:
            h = later[t]
            if t not in heaped:
                heapq.heapify(h)
                heaped.add(t)
            return h

        room = sum(1 for x in free_now.values() if x > 0)  # types with devices not yet spoken for
        for n, job in enumerate(ranked):
            if n >= self.window:
                break
            if not room:
                # Every device is spoken for now: the rest wait (their start is not estimated further).
                for j in ranked[n:self.window]:
                    self._later[j.job_id] = (float("inf"), "")
                break
            g = job.devices_total
            times = all_times[n]
            cur = job.device_type if job.running else None
            stays = False
            here = 0.0
            lz = lazy[n]
            if lz is not None and job.device_type is not None:
                cur = job.device_type
                work, (pos, _best, on_cur) = lz
                if on_cur > 0 and free_now[cur] >= g:  # as ``cur in times`` below
                    here = work / on_cur
                    stays = now - job.started_at < lease
                    if not stays and job.spec_steps is None:
                        stays = True  # the rule below, on the same figures
                        for t, s in pos:
                            if free_now[t] >= g and work / s * speedup <= here:
                                stays = False
                                break
                    elif not stays and not at_now:
                        # Below, a running job that can stay moves only to a type where it starts now
                        # and saves more than the hysteresis bar (a later start keeps it where it is).
                        # It starts now only where there is room (unless a finish time in the pools is
                        # now: ``at_now``); where no such type saves enough, it stays.
                        fin = now + here
                        bar = max(self.move_min_s, self.move_frac * (fin - now))
                        then = now + self.restart_s
                        stays = True
                        for t, s in pos:
                            if t != cur and free_now[t] >= g and fin - (then + work / s) > bar:
                                stays = False
                                break
                    if not stays:
                        # The candidate loop below for this job, reduced to its outcome: it moves only if
                        # the least (cost, finish, start, type) is another type it starts on now and the
                        # move is worth it; mostly a busy, faster type it would start on later wins, and
                        # it stays. Only a move is planned by the loop itself (from the same pools: the
                        # order statistics taken here leave them as they were).
                        stay_fin = now + here
                        lead: tuple[float, float, float, str] = (stay_fin, stay_fin, now, cur)
                        lead_s = on_cur
                        for t, s in pos:
                            if t == cur:
                                continue
                            f = free_now[t]
                            k = g - f if f > 0 else g
                            if k <= 0:
                                start = now
                            elif k <= len(later[t]):
                                start = _kth(heap(t), k)
                                if now > start:
                                    start = now
                            else:
                                continue
                            fin = start + self.restart_s + work / s
                            cand = (fin + (self.displace_s if start <= now and idle.get(t, 0) < g else 0.0),
                                    fin, start, t)
                            if cand < lead:
                                lead, lead_s = cand, s
                        stays = not (lead[3] != cur and lead[2] <= now
                                     and self._worth_move(job, now, here, work / lead_s, stay_fin, lead[1]))
                if not stays:
                    times = {t: work / s for t, s in pos}
            elif times is not None and cur is not None and cur in times and free_now[cur] >= g:
                here = times[cur]
                stays = now - job.started_at < lease
                if not stays and job.spec_steps is None:
                    stays = True
                    for t, p in times.items():
                        if p * speedup <= here and free_now[t] >= g:
                            stays = False
                            break
            if stays and cur is not None:
                # Fast path (most running jobs, every cycle): it stays where it is.
                free_now[cur] -= g
                if not free_now[cur]:
                    room -= 1
                target[job.job_id] = cur
                fin = now + here
                if fin <= now:
                    at_now = True
                lst = later[cur]
                if cur in heaped:
                    for _ in range(g):
                        heapq.heappush(lst, fin)
                else:
                    lst.extend([fin] * g)
                continue
            assert times is not None
            # Candidates are (finish, finish, start, type): the first field is what is minimised.
            best: tuple[float, float, float, str] | None = None
            stay: tuple[float, float, float, str] | None = None
            nowbest: tuple[float, float, float, str] | None = None  # the best start now
            opts: dict[str, float] = {}  # seconds to finish on each type it may use if started now
            for t, p in times.items():
                if t == cur and free_now[t] >= g:
                    start, fin = now, now + p
                else:
                    if (not job.running and free_now[t] >= g and quotas
                            and not self._quota.filter(job, t, ctx).ok):
                        continue  # the quota filter refuses it here now
                    k = g - max(free_now[t], 0)
                    if k <= 0:
                        start = now
                    elif k <= len(later[t]):
                        start = max(_kth(heap(t), k), now)
                    else:
                        continue  # the type is too small for the gang
                    restart = self.restart_s if (job.running or job.attained_service_s > 0) else 0.0
                    fin = start + restart + p
                    opts[t] = restart + p
                # Starting now where no device is idle displaces a running job (a restart, and
                # often a move): prefer idle devices unless the busy type is clearly better.
                cost = fin + (self.displace_s if start <= now and t != cur and idle.get(t, 0) < g else 0.0)
                cand = (cost, fin, start, t)
                if t == cur and start <= now:
                    stay = cand
                if best is None or cand < best:
                    best = cand
                if start <= now and (nowbest is None or cand < nowbest):
                    nowbest = cand
            if best is None:
                continue
            if stay is not None and best[3] != stay[3]:
                # Within its lease it stays put.
                worth = now - job.started_at >= self.lease_s and self._worth_move(
                    job, now, times[stay[3]], times[best[3]], stay[1], best[1])
                if best[2] > now or not worth:
                    best = stay  # hysteresis: not worth a restart (and never idle a running job)
            if best[2] > now and nowbest is not None and nowbest[0] <= best[0] + self.wait_factor * (best[1] - now):
                best = nowbest
            _cost, fin, start, t = best
            if fin <= now:
                at_now = True
            k = g - max(free_now[t], 0)
            if k <= 0:
                free_now[t] -= g
                if not free_now[t]:
                    room -= 1
                if t != cur:
                    idle[t] = max(0, idle.get(t, 0) - g)
                self._target[job.job_id] = t
                if not job.running:
                    starts.append((job.job_id, g, opts))
                for _ in range(g):
                    heapq.heappush(heap(t), fin)
            else:
                for _ in range(k):
                    heapq.heappop(heap(t))
                self._later[job.job_id] = (start, t)
                if self.reserve:
                    if free_now[t] > 0:
                        room -= 1
                    free_now[t] = 0
                for _ in range(k if not self.reserve else g):
                    heapq.heappush(heap(t), fin)

        self._reassign(starts)
        # Target jobs that must wait for victims to stop keep the free devices of their type:
        # a later target job taking them would leave the first one short again next cycle.
        free = dict(ctx.capacity.free_by_type)
        first: dict[str, str] = {}
        for job in ranked:
            want = self._target.get(job.job_id)
            if want is None or job.running:
                continue
            if want in first:
                self._held[job.job_id] = first[want]
            elif free.get(want, 0) >= job.devices_total:
                free[want] -= job.devices_total
            else:
                first[want] = job.job_id

    def _worth_move(self, job: JobView, now: float, here_s: float, there_s: float, stay_fin: float,
                    move_fin: float) -> bool:
        """Hysteresis: whether a running job past its lease should move from a type where it needs
        ``here_s`` more seconds (finishing at ``stay_fin``) to one where it needs ``there_s`` (finishing
        at ``move_fin``, restart included)."""
        if job.spec_steps is None:
            # Its remaining time is a guess (the spec names no work): move only to a type
            # ``unknown_speedup`` x faster, and not within ``move_min_s`` of its start
            # (``faster-type`` migration's rule).
            return here_s >= self.unknown_speedup * there_s and now - job.started_at >= self.move_min_s
        return stay_fin - move_fin > max(self.move_min_s, self.move_frac * (stay_fin - now))

    def _pool(self, job: JobView, pool_types: dict[str, int], ctx: CycleContext) -> _Pool | None:
        """A running job's types in the pools it runs on with their speeds, the best of those speeds
        and its speed on its current type (0: not among them), as ``_times`` reads them; ``None``
        where the model has not measured its workload (``_times`` then scales observed speeds)."""
        tp = ctx.throughput
        if not tp.knows(job.workload):
            return None
        sp = {t: tp.speed(job.workload, t) for t in self._allowed(job, ctx) if t in pool_types}
        pos = [(t, x) for t, x in sp.items() if x > 0]
        return pos, max((x for _, x in pos), default=0.0), sp.get(job.device_type or "", 0.0)

    def _reassign(self, starts: list[tuple[str, int, dict[str, float]]]) -> None:
        """Re-give the types of the jobs that start now among themselves (same devices per type) so
        that the sum of their finish times is small: regret-greedy, the job that would lose most by
        not getting its best remaining type is served first. List scheduling alone hands the fast
        type to whichever ranks first, even when another starting job gains far more from it."""
        if not 1 < len(starts) <= self.swap_window:
            return
        slots: dict[str, int] = {}
        for jid, g, _ in starts:
            slots[self._target[jid]] = slots.get(self._target[jid], 0) + g
        left = list(range(len(starts)))
        new: dict[str, str] = {}
        while left:
            pick: tuple[float, int, str] | None = None
            for i in left:
                _jid, g, opts = starts[i]
                fit = sorted((sec, t) for t, sec in opts.items() if slots.get(t, 0) >= g)
                if not fit:
                    continue
                regret = (fit[1][0] if len(fit) > 1 else 2 * fit[0][0]) - fit[0][0]
                if pick is None or regret > pick[0]:
                    pick = (regret, i, fit[0][1])
            if pick is None:
                return  # gangs left without room together: keep the list schedule's types
            _r, i, t = pick
            slots[t] -= starts[i][1]
            new[starts[i][0]] = t
            left.remove(i)
        self._target.update(new)

    def _allowed(self, job: JobView, ctx: CycleContext) -> list[str]:
        """Device types the job may use. A running job's view holds only its current type; its spec's
        types come from ``RunningTask.allowed_types`` or, where not reported, the types the
        throughput model has *measured* its workload on (as ``faster-type`` migration)."""
        if not job.running or not job.device_type:
            got = self._allowed_memo.get(job.request)
            if got is None:
                got = self._allowed_memo[job.request] = ctx.allowed_types(job)
            return got
        allowed = job.tasks[0].allowed_types if job.tasks else ()
        mkey = (job.workload, allowed, job.device_type)
        hit = self._run_memo.get(mkey)
        if hit is not None:
            return hit
        if not allowed and ctx.throughput.knows(job.workload):
            allowed = tuple(t for t in self._types if (ctx.throughput.measured(job.workload, t) or 0.0) > 0)
        types = [t for t in self._types if t in allowed]
        hit = self._run_memo[mkey] = types if job.device_type in types else [job.device_type, *types]
        return hit

    # -- the plan in every role ----------------------------------------------------
    def _guaranteed(self, job: JobView, device_type: str, ctx: CycleContext) -> bool:
        g = ctx.tenant(job.tenant).quota.get(device_type, 0)
        return bool(g) and ctx.usage.get(job.tenant, {}).get(device_type, 0) + job.devices_total <= g

    def filter(self, job: JobView, device_type: str, ctx: CycleContext) -> Status:
        want = self._target.get(job.job_id)
        if want is not None:
            if want == device_type:
                held = self._held.get(job.job_id)
                if held is not None:
                    return Status.wait(self.name, f"the free {want} devices are kept for {held}, which ranks "
                                                  f"ahead and waits for jobs to stop ({self.name})")
                return Status.success()
            return Status.wait(self.name, f"the plan runs it on {want} ({self.name})")
        later = self._later.get(job.job_id)
        if later is None or self._guaranteed(job, device_type, ctx):
            return Status.success()
        start, t = later
        if t:
            return Status.wait(self.name, f"jobs with less work left hold the devices it would run best on; "
                                          f"planned start on {t} in about {_hours(start - ctx.now)} ({self.name})")
        return Status.wait(self.name, f"every device is planned for jobs with less work left ({self.name})")

    def score(self, job: JobView, device_type: str, ctx: CycleContext) -> float:
        return 100.0 if self._target.get(job.job_id) == device_type or device_type == NO_DEVICE else 0.0

    def victims(self, job: JobView, running: Iterable[JobView], ctx: CycleContext) -> dict[str, str]:
        want = self._target.get(job.job_id)
        if want is None or job.job_id in self._held:
            return {}  # outside the plan, or its room comes once the job it waits behind has its victims
        out: dict[str, str] = {}
        for r in running:
            if not r.preemptible or r.device_type != want:
                continue
            if r.job_id in self._later or self._target.get(r.job_id, want) != want:
                if r.priority < job.priority:
                    out[r.job_id] = (f"preempted for higher-priority job {job.job_id} "
                                     f"(priority {job.priority} > {r.priority})")
                elif r.job_id in self._target:
                    out[r.job_id] = f"moved to {self._target[r.job_id]} to make room for {job.job_id} ({self.name})"
                else:
                    out[r.job_id] = f"preempted for {job.job_id}, which has less work left ({self.name})"
        return out

    def moves(self, running: Sequence[JobView], ctx: CycleContext) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        for r in running:
            t = self._target.get(r.job_id)
            if t is not None and r.device_type is not None and t != r.device_type and r.preemptible:
                out[r.job_id] = (t, f"migrating to {t}: it finishes clearly sooner there ({self.name})")
        return out
