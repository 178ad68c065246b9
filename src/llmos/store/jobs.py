"""Repository functions for jobs, tasks, events and job metrics.

All functions take an open :class:`~sqlalchemy.orm.Session` and never commit:
the caller's ``with store.session()`` block is the unit of work. State changes
go through :func:`set_job_state` / :func:`set_task_state`, which enforce the
state machines of :mod:`llmos.core.states` and append an event.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from llmos.core.states import JobState, TaskState, check_job_transition, check_task_transition
from llmos.errors import NotFound
from llmos.store.tables import EventRow, JobRow, MetricRow, TaskRow

ACTIVE_TASK_STATES = (TaskState.STARTING.value, TaskState.RUNNING.value)


def new_job_id() -> str:
    return "job-" + uuid.uuid4().hex[:10]


def task_id_for(job_id: str, index: int, attempt: int) -> str:
    return f"{job_id}.{index}.{attempt}"


def insert_job(
    s: Session,
    *,
    tenant: str,
    spec: dict[str, Any],
    num_tasks: int,
    now: float | None = None,
    job_id: str | None = None,
) -> JobRow:
    """Store a validated spec as a new PENDING job."""
    now = time.time() if now is None else now
    row = JobRow(
        id=job_id or new_job_id(),
        tenant=tenant,
        name=spec["name"],
        kind=spec["kind"],
        state=JobState.PENDING.value,
        spec=spec,
        priority=int(spec.get("priority", 0)),
        num_tasks=num_tasks,
        submitted_at=now,
        updated_at=now,
        attempt=0,
        failures=0,
        preemptions=0,
        not_before=0.0,
        attained_service_s=0.0,
        pending_reason="",
        message="",
        cancel_requested=False,
        progress={},
        metrics={},
        checkpoint={},
    )
    s.add(row)
    s.flush()
    add_event(s, row.id, "submitted", f"{row.kind} job {row.name!r} submitted by tenant {tenant}", now=now)
    return row


def get_job(s: Session, job_id: str, *, tenant: str | None = None, for_update: bool = False) -> JobRow:
    """The job, or :class:`NotFound` (also when it belongs to another tenant)."""
    q = select(JobRow).where(JobRow.id == job_id)
    if for_update:
        q = q.with_for_update()
    row = s.execute(q).scalar_one_or_none()
    if row is None or (tenant is not None and row.tenant != tenant):
        raise NotFound(f"no job {job_id!r}")
    return row


def list_jobs(
    s: Session,
    *,
    tenant: str | None,
    states: Sequence[str] = (),
    kind: str | None = None,
    name: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[JobRow], int]:
    """A page of jobs, newest first, and the total that match the filters."""
    q = select(JobRow)
    if tenant is not None:
        q = q.where(JobRow.tenant == tenant)
    if states:
        q = q.where(JobRow.state.in_(list(states)))
    if kind:
        q = q.where(JobRow.kind == kind)
    if name:
        q = q.where(JobRow.name == name)
    total = int(s.execute(select(func.count()).select_from(q.subquery())).scalar_one())
    rows = s.execute(
        q.order_by(JobRow.submitted_at.desc(), JobRow.id.desc()).limit(limit).offset(offset)
    ).scalars()
    return list(rows), total


def jobs_in_states(s: Session, states: Sequence[str]) -> list[JobRow]:
    q = select(JobRow).where(JobRow.state.in_(list(states))).order_by(JobRow.submitted_at)
    return list(s.execute(q).scalars())


def count_jobs_by_state(s: Session) -> dict[str, int]:
    rows = s.execute(select(JobRow.state, func.count()).group_by(JobRow.state)).all()
    return {str(state): int(n) for state, n in rows}


def set_job_state(s: Session, job: JobRow, new: JobState, *, message: str = "", now: float | None = None) -> None:
    """Move ``job`` to ``new`` (legal transitions only) and record an event."""
    now = time.time() if now is None else now
    old = JobState(job.state)
    if old == new:
        return
    check_job_transition(old, new)
    job.state = new.value
    job.updated_at = now
    if new == JobState.RUNNING and job.started_at is None:
        job.started_at = now
    if new.terminal:
        job.finished_at = now
    if message:
        job.message = message
    add_event(s, job.id, "state", f"{old.value} -> {new.value}" + (f": {message}" if message else ""), now=now)


def insert_task(
    s: Session,
    *,
    job_id: str,
    index: int,
    attempt: int,
    node_id: str,
    device_ids: Sequence[str],
    cpus: float,
    memory_gib: float,
    log_path: str,
    now: float | None = None,
) -> TaskRow:
    now = time.time() if now is None else now
    row = TaskRow(
        id=task_id_for(job_id, index, attempt),
        job_id=job_id,
        index=index,
        attempt=attempt,
        state=TaskState.STARTING.value,
        node_id=node_id,
        device_ids=list(device_ids),
        cpus=cpus,
        memory_gib=memory_gib,
        handle=None,
        log_path=log_path,
        message="",
        error_reason="",
        created_at=now,
    )
    s.add(row)
    s.flush()
    return row


def set_task_state(
    s: Session,
    task: TaskRow,
    new: TaskState,
    *,
    exit_code: int | None = None,
    message: str = "",
    now: float | None = None,
) -> None:
    """Move ``task`` to ``new`` (legal transitions only) and record an event."""
    now = time.time() if now is None else now
    old = TaskState(task.state)
    if old == new:
        return
    check_task_transition(old, new)
    task.state = new.value
    if new == TaskState.RUNNING:
        task.started_at = task.started_at or now
    if new.terminal:
        task.finished_at = now
        task.exit_code = exit_code
    if message:
        task.message = message
    detail = f"task {task.index} attempt {task.attempt}: {old.value} -> {new.value}"
    if exit_code is not None and new.terminal:
        detail += f" (exit code {exit_code})"
    if message:
        detail += f": {message}"
    add_event(s, task.job_id, "task", detail, task_id=task.id, now=now)


def get_task(s: Session, task_id: str) -> TaskRow:
    row = s.get(TaskRow, task_id)
    if row is None:
        raise NotFound(f"no task {task_id!r}")
    return row


def tasks_of_job(s: Session, job_id: str, *, attempt: int | None = None) -> list[TaskRow]:
    q = select(TaskRow).where(TaskRow.job_id == job_id)
    if attempt is not None:
        q = q.where(TaskRow.attempt == attempt)
    return list(s.execute(q.order_by(TaskRow.attempt, TaskRow.index)).scalars())


def active_tasks(s: Session) -> list[TaskRow]:
    """Tasks holding resources: STARTING or RUNNING."""
    q = select(TaskRow).where(TaskRow.state.in_(ACTIVE_TASK_STATES)).order_by(TaskRow.created_at)
    return list(s.execute(q).scalars())


def add_event(
    s: Session, job_id: str, kind: str, message: str, *, task_id: str | None = None, now: float | None = None
) -> None:
    s.add(
        EventRow(
            job_id=job_id,
            task_id=task_id,
            at=time.time() if now is None else now,
            kind=kind,
            message=message,
        )
    )


def list_events(s: Session, job_id: str, *, after_id: int = 0, limit: int = 1000) -> list[EventRow]:
    q = (
        select(EventRow)
        .where(EventRow.job_id == job_id, EventRow.id > after_id)
        .order_by(EventRow.id)
        .limit(limit)
    )
    return list(s.execute(q).scalars())


def add_metrics(
    s: Session, *, job_id: str, task_id: str, values: dict[str, Any], step: int | None, now: float | None = None
) -> None:
    s.add(
        MetricRow(
            job_id=job_id,
            task_id=task_id,
            at=time.time() if now is None else now,
            step=step,
            values=values,
        )
    )


def list_metrics(s: Session, job_id: str, *, limit: int = 1000) -> list[MetricRow]:
    q = select(MetricRow).where(MetricRow.job_id == job_id).order_by(MetricRow.id.desc()).limit(limit)
    return list(reversed(list(s.execute(q).scalars())))
