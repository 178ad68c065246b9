"""Build the scheduler's frozen :class:`ClusterSnapshot` from the store."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from llmos.core.devices import Node
from llmos.core.jobs import Resources
from llmos.core.memory import request_for_spec
from llmos.scheduler import ClusterSnapshot, PendingJob, RunningTask
from llmos.store.tables import JobRow, TaskRow


def _known(cls: type, **kw: Any) -> dict[str, Any]:
    """Keep only fields ``cls`` declares: snapshot types grow fields over time."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in kw.items() if k in names}


def workload_of(spec: dict[str, Any]) -> str | None:
    model = spec.get("base_model") or spec.get("model")
    return f"{spec['kind']}:{model}" if model else None


def pending_job(job: JobRow) -> PendingJob:
    spec = job.spec
    # The memory model's estimate (filled at submit) raises the memory floor the fit filter checks.
    req = request_for_spec(spec, Resources.model_validate(spec.get("resources") or {}).to_request())
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
        )
    )


def running_task(task: TaskRow, job: JobRow, now: float) -> RunningTask:
    ckpt_at = job.checkpoint.get("at") if job.checkpoint else None
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
        )
    )


def build_snapshot(
    s: Session,
    nodes: Sequence[Node],
    active: Iterable[TaskRow],
    pending: Iterable[JobRow],
    now: float,
) -> ClusterSnapshot:
    active = list(active)
    jobs = {j.id: j for j in (s.get(JobRow, jid) for jid in {t.job_id for t in active}) if j is not None}
    running = tuple(running_task(t, jobs[t.job_id], now) for t in active if t.job_id in jobs)
    return ClusterSnapshot(nodes=tuple(nodes), running=running, pending=tuple(pending_job(j) for j in pending))
