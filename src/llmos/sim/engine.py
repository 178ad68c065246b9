"""The discrete-event simulator: the live ``Scheduler`` object against a trace.

The simulator owns the truth (each job's remaining work, true throughputs)
and shows the scheduler only a :class:`ClusterSnapshot` — arrivals, elapsed
service, observed throughput, checkpoints — exactly what the control plane
would build. It applies the returned :class:`Plan` like the control plane
does: victims stop (their progress up to the stop is checkpointed during the
grace period), placements start. Every (re)start after a preemption,
migration or failure is charged ``restart_overhead_s`` of no progress.

Two clocks:

* **event mode** (default): the scheduler runs at every arrival, completion
  and node failure, and every ``tick_s`` while jobs wait (so time-based
  policies such as LAS can act);
* **round mode** (``round_s``): Gavel's semantics — the scheduler runs only at
  round boundaries; a round lasts ``round_s`` or until its slowest job ends,
  and jobs arriving mid-round wait for the next boundary.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from llmos.core.devices import Node
from llmos.core.resources import ResourceRequest
from llmos.errors import LLMOSError, ValidationError
from llmos.scheduler.plan import Plan, TaskPlacement
from llmos.scheduler.scheduler import Scheduler
from llmos.scheduler.snapshot import ClusterSnapshot, PendingJob, RunningTask, TenantPolicy
from llmos.sim.metrics import JobRecord, LoadCurve, SimResult, summarize
from llmos.sim.trace import Trace, TraceJob

Progress = Callable[[int, int, float], None]
"""Called as ``progress(finished_jobs, total_jobs, sim_time_s)`` now and then."""


class SimulationError(LLMOSError):
    """The scheduler returned a plan the cluster cannot carry out (a scheduler bug)."""

    code = "simulation_error"


@dataclass(frozen=True)
class SimConfig:
    """How the simulation runs; all times in seconds."""

    round_s: float | None = None
    restart_overhead_s: float = 30.0
    tick_s: float = 360.0
    checkpoint_interval_s: float = 600.0
    node_mtbf_s: float | None = None  # mean time between failures per node; None: no failures
    node_repair_s: float = 3600.0
    seed: int = 0
    max_time_s: float = 1e10
    tenants: Mapping[str, TenantPolicy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.round_s is not None and self.round_s <= 0:
            raise ValidationError("round_s must be > 0")
        if self.restart_overhead_s < 0:
            raise ValidationError("restart_overhead_s must be >= 0")
        if self.tick_s <= 0 or self.checkpoint_interval_s <= 0 or self.node_repair_s <= 0:
            raise ValidationError("tick_s, checkpoint_interval_s and node_repair_s must be > 0")
        if self.node_mtbf_s is not None and self.node_mtbf_s <= 0:
            raise ValidationError("node_mtbf_s must be > 0")


class _Job:
    __slots__ = ("arrived", "attained", "completion", "device_s", "dtype", "pending", "preemptions",
                 "progress_start", "protos", "rate", "remaining", "request", "run_start", "running", "spec",
                 "started_once", "tasks", "version")

    def __init__(self, spec: TraceJob) -> None:
        self.spec = spec
        self.request = ResourceRequest(devices=spec.devices_per_task, device_types=spec.device_types,
                                       cpus=spec.cpus, memory_gib=spec.memory_gib)
        self.remaining = spec.work
        self.attained = 0.0
        self.arrived = False
        self.running = False
        self.started_once = False
        self.run_start = 0.0
        self.progress_start = 0.0
        self.rate = 0.0
        self.tasks: tuple[TaskPlacement, ...] = ()
        # The fields of its running tasks' snapshot entries that stay fixed while it runs.
        self.protos: tuple[dict[str, object], ...] = ()
        self.dtype = ""
        self.version = 0
        self.completion: float | None = None
        self.preemptions = 0
        self.device_s = 0.0
        self.pending: PendingJob | None = None

    def done_at(self, t: float) -> float:
        return self.rate * max(0.0, t - self.progress_start)

    def finish_time(self) -> float:
        return self.progress_start + self.remaining / self.rate

    def checkpoint_at(self, t: float, interval: float) -> float | None:
        k = math.floor(max(0.0, t - self.progress_start) / interval)
        return self.progress_start + k * interval if k >= 1 else None


_ARRIVE, _FINISH, _FAIL, _REPAIR, _TICK = range(5)


class Simulator:
    """Runs one trace on one cluster under one scheduler. Single use: call :meth:`run` once."""

    def __init__(self, trace: Trace, nodes: Sequence[Node], scheduler: Scheduler,
                 config: SimConfig | None = None, progress: Progress | None = None) -> None:
        if not trace.jobs:
            raise ValidationError("the trace has no jobs")
        self.trace = trace
        self.cfg = config or SimConfig()
        self.scheduler = scheduler
        self.progress = progress
        self.nodes: dict[str, Node] = {n.id: n for n in nodes}
        self._node_tuple = tuple(nodes)
        self.dev_type = {(n.id, d.id): d.type for n in nodes for d in n.devices}
        self.free: dict[str, set[str]] = {n.id: {d.id for d in n.devices} for n in nodes}
        self.total_devices = len(self.dev_type)
        self.jobs = [_Job(j) for j in sorted(trace.jobs, key=lambda j: (j.arrival_s, j.job_id))]
        self.by_id = {j.spec.job_id: j for j in self.jobs}
        if len(self.by_id) != len(self.jobs):
            raise ValidationError("job ids in the trace must be unique")
        self.waiting: dict[str, _Job] = {}
        self.running: dict[str, _Job] = {}
        self.finished = 0
        self.calls = 0
        self.preemptions = 0
        self.busy_device_s = 0.0
        self.load = LoadCurve()
        self._heap: list[tuple[float, int, int, str]] = []
        self._seq = 0
        self._tick_pending = False
        self._arrivals_left = len(self.jobs)
        self._rng = np.random.default_rng(self.cfg.seed)
        self._type_count: dict[str, int] = {}
        for (_n, _d), t in self.dev_type.items():
            self._type_count[t] = self._type_count.get(t, 0) + 1

    # -- public --------------------------------------------------------------
    def run(self) -> SimResult:
        wall0 = time.perf_counter()
        for j in self.jobs:
            self._push(j.spec.arrival_s, _ARRIVE, j.spec.job_id)
        if self.cfg.node_mtbf_s is not None:
            for nid in self.nodes:
                self._push(float(self._rng.exponential(self.cfg.node_mtbf_s)), _FAIL, nid)
        if self.cfg.round_s is None:
            self._run_events()
        else:
            self._run_rounds(self.cfg.round_s)
        return self._result(time.perf_counter() - wall0)

    # -- clocks ----------------------------------------------------------------
    def _push(self, t: float, kind: int, key: str) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, key))

    def _unfinished(self) -> bool:
        return self.finished < len(self.jobs)

    def _run_events(self) -> None:
        while self._heap and self._unfinished():
            t = self._heap[0][0]
            if t > self.cfg.max_time_s:
                break
            while self._heap and self._heap[0][0] <= t:
                _, _, kind, key = heapq.heappop(self._heap)
                self._handle(kind, key, t)
            # Even with nobody waiting a cycle may migrate jobs to devices just freed.
            if self.waiting or self._any_free():
                self._cycle(t)
            if not self.running and self._arrivals_left == 0 and all(n.alive for n in self._node_tuple):
                break  # a healthy idle cluster placed nothing and nothing else will arrive: stuck jobs stay unfinished
            if self.waiting and self.running and not self._tick_pending:
                self._tick_pending = True
                self._push(t + self.cfg.tick_s, _TICK, "")
            self._report(t)

    def _run_rounds(self, round_s: float) -> None:
        t = self.jobs[0].spec.arrival_s
        while self._unfinished() and t <= self.cfg.max_time_s:
            # Everything due by the boundary happens first (arrivals wait for a boundary).
            while self._heap and self._heap[0][0] <= t:
                _, _, kind, key = heapq.heappop(self._heap)
                if kind != _TICK:
                    self._handle(kind, key, t)
            # Even with nobody waiting a cycle may migrate jobs to devices just freed.
            if self.waiting or self._any_free():
                self._cycle(t)
            if not self.running:
                nxt = [e for e in self._heap if e[2] in (_ARRIVE, _REPAIR)]
                if not nxt:
                    break
                t = max(t, min(e[0] for e in nxt))
                continue
            ends = [j.finish_time() for j in self.running.values()]
            end = min(t + round_s, max(ends))
            # Failures inside the round strike at their own time.
            while self._heap and self._heap[0][0] < end and self._heap[0][2] in (_FAIL, _REPAIR):
                ft, _, kind, key = heapq.heappop(self._heap)
                self._handle(kind, key, ft)
            for j in sorted(self.running.values(), key=lambda j: j.finish_time()):
                if j.finish_time() <= end + 1e-9:
                    self._finish(j, j.finish_time())
            t = end
            self._report(t)

    # -- events -------------------------------------------------------------------
    def _handle(self, kind: int, key: str, t: float) -> None:
        if kind == _ARRIVE:
            self._arrivals_left -= 1
            j = self.by_id[key]
            j.arrived = True
            self.waiting[key] = j
            self.load.change(j.spec.arrival_s, +1)
        elif kind == _FINISH:
            jid, _, ver = key.partition("#")
            j = self.by_id[jid]
            if j.running and str(j.version) == ver:
                self._finish(j, t)
        elif kind == _FAIL:
            self._fail_node(key, t)
        elif kind == _REPAIR:
            self._set_alive(key, True)
            if self.cfg.node_mtbf_s is not None:
                self._push(t + float(self._rng.exponential(self.cfg.node_mtbf_s)), _FAIL, key)
        elif kind == _TICK:
            self._tick_pending = False

    def _any_free(self) -> bool:
        return any(free for nid, free in self.free.items() if self.nodes[nid].alive)

    def _cycle(self, t: float) -> None:
        for _ in range(4):
            snap = self._snapshot(t)
            self.calls += 1
            plan = self.scheduler.schedule(snap, t)
            self._apply(plan, t)
            if not plan.preemptions:
                break

    def _snapshot(self, t: float) -> ClusterSnapshot:
        running: list[RunningTask] = []
        new = object.__new__
        set_dict = object.__setattr__
        interval = self.cfg.checkpoint_interval_s
        for j in self.running.values():
            ck = j.checkpoint_at(t, interval)
            attained = j.attained + (t - j.run_start)
            observed = j.rate if t > j.progress_start else None
            done = j.spec.work - j.remaining + j.done_at(t)
            for proto in j.protos:
                # A copy of the fields fixed at start plus the ones that move with time: the same
                # RunningTask the constructor builds, without its per-field frozen setattr calls
                # (a dict copy handed over whole is cheaper than filling the instance's own).
                rt = new(RunningTask)
                d = proto.copy()
                set_dict(rt, "__dict__", d)
                d["last_checkpoint_at"] = ck
                d["attained_service_s"] = attained
                d["observed_throughput"] = observed
                d["steps_done"] = done
                running.append(rt)
        pending = []
        for j in self.waiting.values():
            if j.pending is None:
                j.pending = PendingJob(
                    job_id=j.spec.job_id, tenant=j.spec.tenant, request=j.request, num_tasks=j.spec.num_tasks,
                    priority=j.spec.priority, preemptible=j.spec.preemptible, submitted_at=j.spec.arrival_s,
                    attained_service_s=j.attained, workload=j.spec.workload,
                    estimated_duration_s=j.spec.estimated_duration_s, kind="train",
                    # What it executed, never the future: progress kept at its last stop.
                    spec_steps=j.spec.spec_steps, steps_done=j.spec.work - j.remaining,
                )
            pending.append(j.pending)
        return ClusterSnapshot(nodes=self._node_tuple, running=tuple(running), pending=tuple(pending),
                               tenants=self.cfg.tenants, throughput=self.trace.throughput)

    # -- applying plans ----------------------------------------------------------------
    def _apply(self, plan: Plan, t: float) -> None:
        stopped: set[str] = set()
        for p in plan.preemptions:
            if p.job_id in stopped:
                continue
            j = self.running.get(p.job_id)
            if j is None:
                raise SimulationError(f"plan preempts {p.job_id}, which is not running")
            stopped.add(p.job_id)
            self.preemptions += 1
            j.preemptions += 1
            # The grace period lets it checkpoint: progress up to now is kept.
            self._stop(j, t, keep=j.done_at(t))
        for pl in plan.placements:
            j = self.waiting.get(pl.job_id)
            if j is None:
                raise SimulationError(f"plan places {pl.job_id}, which is not waiting")
            self._start(j, pl.tasks, t)

    def _start(self, j: _Job, tasks: Sequence[TaskPlacement], t: float) -> None:
        if len(tasks) != j.spec.num_tasks:
            raise SimulationError(f"{j.spec.job_id}: placed {len(tasks)} of {j.spec.num_tasks} gang tasks")
        types = set()
        for tp in tasks:
            free = self.free.get(tp.node_id)
            if free is None or not self.nodes[tp.node_id].alive:
                raise SimulationError(f"{j.spec.job_id}: node {tp.node_id} is not live")
            if len(tp.device_ids) != j.spec.devices_per_task or not set(tp.device_ids) <= free:
                raise SimulationError(f"{j.spec.job_id}: devices {tp.device_ids} on {tp.node_id} are not free")
            for d in tp.device_ids:
                types.add(self.dev_type[(tp.node_id, d)])
                free.discard(d)
        rate = min((self.trace.throughput.speed(j.spec.workload, ty) for ty in types), default=1.0)
        if j.spec.devices_per_task == 0:
            rate = self.trace.throughput.speed(j.spec.workload, "cpu") or 1.0
        if rate <= 0:
            raise SimulationError(f"{j.spec.job_id}: workload cannot run on {sorted(types)}")
        del self.waiting[j.spec.job_id]
        self.running[j.spec.job_id] = j
        j.running = True
        j.tasks = tuple(tasks)
        j.dtype = next(iter(types), "")
        spec = j.spec
        j.protos = tuple(vars(RunningTask(
            task_id=f"{spec.job_id}/{tp.task_index}", job_id=spec.job_id, tenant=spec.tenant,
            node_id=tp.node_id, device_ids=tp.device_ids, cpus=tp.cpus, memory_gib=tp.memory_gib,
            priority=spec.priority, preemptible=spec.preemptible, started_at=t,
            last_checkpoint_at=None, workload=spec.workload, submitted_at=spec.arrival_s,
            attained_service_s=0.0, observed_throughput=None,
            num_tasks=spec.num_tasks, estimated_duration_s=spec.estimated_duration_s,
            spec_steps=spec.spec_steps, steps_done=0.0, allowed_types=j.request.device_types,
        )).copy() for tp in tasks)
        j.rate = rate
        j.run_start = t
        overhead = self.cfg.restart_overhead_s if j.started_once else 0.0
        j.progress_start = t + overhead
        j.started_once = True
        j.version += 1
        if self.cfg.round_s is None:
            self._push(j.finish_time(), _FINISH, f"{j.spec.job_id}#{j.version}")

    def _stop(self, j: _Job, t: float, keep: float) -> None:
        j.remaining = max(j.remaining - keep, 1e-9)
        j.attained += t - j.run_start
        self._release(j, t)
        j.running = False
        j.pending = None
        del self.running[j.spec.job_id]
        self.waiting[j.spec.job_id] = j

    def _release(self, j: _Job, t: float) -> None:
        n = sum(len(tp.device_ids) for tp in j.tasks)
        secs = (t - j.run_start) * n
        self.busy_device_s += secs
        j.device_s += secs
        for tp in j.tasks:
            self.free[tp.node_id].update(tp.device_ids)
        j.tasks = ()
        j.protos = ()

    def _finish(self, j: _Job, t: float) -> None:
        j.attained += t - j.run_start
        self._release(j, t)
        j.remaining = 0.0
        j.running = False
        j.completion = t
        del self.running[j.spec.job_id]
        self.finished += 1
        self.load.change(t, -1)

    # -- failures --------------------------------------------------------------------
    def _set_alive(self, node_id: str, alive: bool) -> None:
        self.nodes[node_id] = replace(self.nodes[node_id], alive=alive)
        self._node_tuple = tuple(self.nodes[n] for n in self.nodes)

    def _fail_node(self, node_id: str, t: float) -> None:
        self._set_alive(node_id, False)
        for j in [j for j in self.running.values() if any(tp.node_id == node_id for tp in j.tasks)]:
            ck = j.checkpoint_at(t, self.cfg.checkpoint_interval_s)
            kept = j.done_at(ck) if ck is not None else 0.0  # work since the last checkpoint is lost
            self._stop(j, t, keep=kept)
        self._push(t + self.cfg.node_repair_s, _REPAIR, node_id)

    # -- results ---------------------------------------------------------------------
    def _report(self, t: float) -> None:
        if self.progress is not None:
            self.progress(self.finished, len(self.jobs), t)

    def _isolated_s(self, spec: TraceJob) -> float:
        tp = self.trace.throughput
        rate = sum(c * tp.speed(spec.workload, ty) for ty, c in self._type_count.items()
                   if spec.devices_per_task == 0 or not spec.device_types or ty in spec.device_types)
        rate /= max(self.total_devices, 1)
        return spec.work / rate if rate > 0 else math.inf

    def _result(self, wall_s: float) -> SimResult:
        records = [
            JobRecord(j.spec.job_id, j.spec.tenant, j.spec.arrival_s, j.completion, self._isolated_s(j.spec),
                      j.spec.num_tasks * j.spec.devices_per_task, j.preemptions, j.device_s)
            for j in self.jobs
        ]
        config = {
            "round_s": self.cfg.round_s, "restart_overhead_s": self.cfg.restart_overhead_s,
            "tick_s": self.cfg.tick_s, "devices": self.total_devices, "nodes": len(self.nodes),
            "node_mtbf_s": self.cfg.node_mtbf_s,
        }
        return summarize(self.scheduler.name, records, self.load, self.total_devices, self.busy_device_s,
                         self.preemptions, self.calls, wall_s, config)


def simulate(trace: Trace, nodes: Sequence[Node], scheduler: Scheduler, config: SimConfig | None = None,
             progress: Progress | None = None) -> SimResult:
    """Run ``trace`` on ``nodes`` under ``scheduler`` and summarise."""
    return Simulator(trace, nodes, scheduler, config, progress).run()
