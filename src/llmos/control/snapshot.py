"""Build the scheduler's frozen :class:`ClusterSnapshot` from the store.

Besides nodes, running tasks and the queue it hands the scheduler what a live
system knows about speed and progress: a throughput model measured from the
steps tasks reported (per workload × device type, scaled by the catalog for
types never measured), each running task's observed steps/s, and each job's
spec steps and steps done. The arithmetic is pure
(:func:`llmos.scheduler.throughput.measured_model`); only the query is here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from llmos.core.devices import CPU, Node
from llmos.core.jobs import Resources
from llmos.core.memory import request_for_spec
from llmos.core.resources import ResourceRequest
from llmos.scheduler import ClusterSnapshot, PendingJob, RunningTask
from llmos.scheduler.throughput import ThroughputModel, ThroughputSample, measured_model, rate_from_progress
from llmos.store.tables import JobRow, MetricRow, TaskRow

# How many of the latest metric reports feed the measured throughput model.
METRIC_WINDOW_ROWS = 5000


def _known(cls: type, **kw: Any) -> dict[str, Any]:
    """Keep only fields ``cls`` declares: snapshot types grow fields over time."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in kw.items() if k in names}


def workload_of(spec: dict[str, Any]) -> str | None:
    """What the throughput model keys speed by: ``kind:model`` for model jobs;
    ``command:name`` for commands (a recurring job keeps its name), else ``None``."""
    model = spec.get("base_model") or spec.get("model")
    if model:
        return f"{spec['kind']}:{model}"
    if spec.get("kind") == "command" and spec.get("name"):
        return f"command:{spec['name']}"
    return None


def pending_job(job: JobRow) -> PendingJob:
    spec = job.spec
    # The memory model's estimate (filled at submit) raises the memory floor the fit filter checks.
    req = request_for_spec(spec, _spec_request(spec))
    return PendingJob(
        **_known(
            PendingJob,
            job_id=job.id,
            tenant=job.tenant,
            request=req,
            num_tasks=job.num_tasks,
            priority=job.priority,
            preemptible=bool(spec.get("preemptible", True)),
            submitted_at=job.submitted_at,
            attained_service_s=job.attained_service_s,
            workload=workload_of(spec),
            estimated_duration_s=spec.get("estimated_duration_s"),
            kind=job.kind,
            spec_steps=spec_steps(spec),
            # A retry resumes from its checkpoint: that is the progress it keeps.
            steps_done=_number((job.checkpoint or {}).get("step")) or 0.0,
        )
    )


def spec_steps(spec: dict[str, Any]) -> float | None:
    """The work a spec asks for (``steps``), or ``None`` when it names none."""
    v = _number(spec.get("steps"))
    return v if v is not None and v > 0 else None


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def running_task(task: TaskRow, job: JobRow, now: float, observed: float | None = None) -> RunningTask:
    ckpt_at = job.checkpoint.get("at") if job.checkpoint else None
    progress = job.progress or {}
    done = _number(progress.get("step"))
    if done is None:
        done = _number((job.checkpoint or {}).get("step"))
    started = task.started_at or task.created_at
    return RunningTask(
        **_known(
            RunningTask,
            task_id=task.id,
            job_id=job.id,
            tenant=job.tenant,
            node_id=task.node_id,
            device_ids=tuple(task.device_ids),
            cpus=task.cpus,
            memory_gib=task.memory_gib,
            priority=job.priority,
            preemptible=bool(job.spec.get("preemptible", True)),
            started_at=started,
            last_checkpoint_at=ckpt_at,
            workload=workload_of(job.spec),
            submitted_at=job.submitted_at,
            attained_service_s=job.attained_service_s + max(0.0, now - started),
            num_tasks=job.num_tasks,
            observed_throughput=observed,
            spec_steps=spec_steps(job.spec) or _number(progress.get("total_steps")),
            steps_done=done or 0.0,
            # The types its spec allows (as the pending job's request has them), so a whole-cluster
            # planner may rank and move it by every type it may use, not only the one it holds.
            allowed_types=allowed_types(job.spec),
        )
    )


def _spec_request(spec: dict[str, Any]) -> ResourceRequest:
    """The resource request a stored spec's ``resources`` section makes (canonical type names)."""
    return Resources.model_validate(spec.get("resources") or {}).to_request()


def allowed_types(spec: dict[str, Any]) -> tuple[str, ...]:
    """Device types a job's spec allows (canonical names; ``()``: any type)."""
    return _spec_request(spec).device_types


def build_snapshot(
    s: Session,
    nodes: Sequence[Node],
    active: Iterable[TaskRow],
    pending: Iterable[JobRow],
    now: float,
) -> ClusterSnapshot:
    active = list(active)
    jobs = {j.id: j for j in (s.get(JobRow, jid) for jid in {t.job_id for t in active}) if j is not None}
    model, task_rates = measured_throughput(s, nodes)
    running = tuple(running_task(t, jobs[t.job_id], now, task_rates.get(t.id)) for t in active if t.job_id in jobs)
    return ClusterSnapshot(nodes=tuple(nodes), running=running, pending=tuple(pending_job(j) for j in pending),
                           throughput=model)


# (engine id, newest metric row id, device types) -> result: reports arrive far
# less often than the loop runs (every ~0.2 s), so most loops reuse the last model.
# The engine object is kept in the entry so a freed engine's reused id() never matches.
_CACHE: dict[int, tuple[object, tuple[int, tuple[str, ...]], tuple[ThroughputModel | None, dict[str, float]]]] = {}


def measured_throughput(s: Session, nodes: Sequence[Node]) -> tuple[ThroughputModel | None, dict[str, float]]:
    """The measured throughput model and each task's observed steps/s.

    Reads the latest :data:`METRIC_WINDOW_ROWS` metric reports that carry a
    step (finished and running tasks alike); a task's rate is its step
    progress over time (:func:`rate_from_progress`), attributed to its job's
    workload and the device type it held (``cpu`` for no accelerator). No
    measurement at all gives ``None``: the scheduler then uses the catalog.
    """
    newest = s.scalar(select(func.max(MetricRow.id))) or 0
    types = tuple(sorted({d.type for n in nodes for d in n.devices} | {CPU}))
    key = (newest, types)
    engine = s.get_bind()
    hit = _CACHE.get(id(engine))
    if hit is not None and hit[0] is engine and hit[1] == key:
        return hit[2]
    rows = s.execute(
        select(MetricRow.task_id, MetricRow.at, MetricRow.step)
        .where(MetricRow.step.is_not(None))
        .order_by(MetricRow.id.desc())
        .limit(METRIC_WINDOW_ROWS)
    ).all()
    points: dict[str, list[tuple[float, float]]] = {}
    for task_id, at, step in rows:
        if step is not None:
            points.setdefault(task_id, []).append((float(at), float(step)))
    rates = {tid: r for tid, pts in points.items() if (r := rate_from_progress(pts)) is not None}
    samples: list[ThroughputSample] = []
    if rates:
        dev_type = {(n.id, d.id): d.type for n in nodes for d in n.devices}
        tasks = s.execute(select(TaskRow.id, TaskRow.node_id, TaskRow.device_ids, JobRow.spec)
                          .join(JobRow, JobRow.id == TaskRow.job_id)
                          .where(TaskRow.id.in_(list(rates)))).all()
        for tid, node_id, device_ids, spec in tasks:
            workload = workload_of(spec)
            if workload is None:
                continue
            dtype = dev_type.get((node_id, device_ids[0])) if device_ids else CPU
            if dtype is not None:
                samples.append(ThroughputSample(workload, dtype, rates[tid]))
    model = measured_model(samples, types) if samples else None
    result = (model, rates)
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[id(engine)] = (engine, key, result)
    return result
