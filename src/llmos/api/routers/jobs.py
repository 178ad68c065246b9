"""Jobs: create, list (filters + pagination), get, cancel, logs (follow), events, metrics.

Every route is scoped to the caller's tenant: another tenant's job is a 404,
exactly like a job that does not exist.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import StringConstraints

from llmos.api.deps import Plane, Reader, Writer
from llmos.api.schemas import EventPublic, JobList, JobPublic, MetricPublic
from llmos.control.admission import unplaceable_reason
from llmos.control.plane import ControlPlane
from llmos.core.jobs import JobSpecBase, parse_job_spec, parse_job_text, spec_to_dict
from llmos.core.memory import request_for_spec
from llmos.core.states import JobState, TaskState
from llmos.errors import Conflict, LLMOSError, NotFound, ValidationError
from llmos.models.admission import admit_in
from llmos.store import jobs as repo

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_SPEC_BYTES = 1 << 20
# Integers reach SQL: keep them inside a 32-bit column (PostgreSQL INTEGER) so a huge
# query value is a 400, not an overflow inside the driver.
MAX_INT = 2**31 - 1
_STATES = "|".join(s for st in JobState for s in (st.value, st.value.lower()))
# One or more states, comma-separated (the same rule the handler applies).
STATE_PATTERN = rf"^({_STATES})(,({_STATES}))*$"
_CANCEL_WAIT_S = 3.0


class PayloadTooLarge(LLMOSError):
    code = "payload_too_large"
    http_status = 413


def _parse_body(body: bytes, content_type: str) -> JobSpecBase:
    if len(body) > MAX_SPEC_BYTES:
        raise PayloadTooLarge(f"job spec larger than {MAX_SPEC_BYTES} bytes")
    if not body.strip():
        raise ValidationError("empty request body: send a job spec as JSON or YAML")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("job spec is not UTF-8 text") from None
    if "json" in content_type:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValidationError(f"malformed JSON: {e}") from None
        spec = parse_job_spec(data)
    else:
        spec = parse_job_text(text)
    assert isinstance(spec, JobSpecBase)
    return spec


@router.post("", status_code=201, response_model=JobPublic)
async def create_job(request: Request, plane: Plane, who: Writer) -> JobPublic:
    """Submit a job: the body is a spec in JSON (``application/json``) or YAML (anything else)."""
    body = await request.body()
    # Parsing, admission and the database write block: keep them off the event loop.
    out = await run_in_threadpool(_create, plane, who.tenant, body, request.headers.get("content-type", ""))
    plane.wake()
    return out


def _create(plane: ControlPlane, tenant: str, body: bytes, content_type: str) -> JobPublic:
    spec = _parse_body(body, content_type)
    # Model jobs: unknown models, bad data, adapters for another base fail here, before any device is held.
    spec = admit_in(spec, plane.store, plane.settings.home)
    if plane.settings.reject_unplaceable:
        req = request_for_spec(spec_to_dict(spec), spec.resources.to_request())
        why = unplaceable_reason(plane.controller.known_nodes, req, spec.num_tasks)
        if why:
            raise ValidationError(f"resources impossible on this cluster: {why}")
    with plane.store.session() as s:
        job = repo.insert_job(s, tenant=tenant, spec=spec_to_dict(spec), num_tasks=spec.num_tasks)
        return JobPublic.of(job)


@router.get("", response_model=JobList)
def list_jobs(
    plane: Plane,
    who: Reader,
    state: Annotated[
        list[Annotated[str, StringConstraints(pattern=STATE_PATTERN)]] | None, Query(description="repeat or comma-separate")
    ] = None,
    kind: str | None = None,
    name: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> JobList:
    states = [x.strip().upper() for s in (state or []) for x in s.split(",") if x.strip()]
    for st in states:
        if st not in JobState.__members__:
            raise ValidationError(f"unknown state {st!r}; expected one of: {', '.join(JobState.__members__)}")
    with plane.store.session() as s:
        rows, total = repo.list_jobs(s, tenant=who.tenant, states=states, kind=kind, name=name,
                                     limit=limit, offset=offset)
        return JobList(items=[JobPublic.of(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: str, plane: Plane, who: Reader) -> JobPublic:
    with plane.store.session() as s:
        job = repo.get_job(s, job_id, tenant=who.tenant)
        return JobPublic.of(job, repo.tasks_of_job(s, job_id))


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, plane: Plane, who: Writer) -> JobPublic:
    """Request cancellation; waits briefly for the loop to settle it. Idempotent."""
    with plane.store.session() as s:
        job = repo.get_job(s, job_id, tenant=who.tenant)
        if JobState(job.state).terminal:
            raise Conflict(f"job {job_id} already {job.state}")
        if not job.cancel_requested:
            job.cancel_requested = True
            repo.add_event(s, job_id, "cancel", "cancellation requested")
    plane.wake()
    deadline = time.monotonic() + _CANCEL_WAIT_S
    while True:
        with plane.store.session() as s:
            job = repo.get_job(s, job_id)
            if JobState(job.state).terminal or time.monotonic() > deadline:
                return JobPublic.of(job, repo.tasks_of_job(s, job_id))
        time.sleep(0.05)


@router.get("/{job_id}/events", response_model=list[EventPublic])
def job_events(
    job_id: str, plane: Plane, who: Reader,
    after: Annotated[int, Query(ge=0, le=MAX_INT)] = 0, limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> list[EventPublic]:
    with plane.store.session() as s:
        repo.get_job(s, job_id, tenant=who.tenant)
        return [EventPublic.of(e) for e in repo.list_events(s, job_id, after_id=after, limit=limit)]


@router.get("/{job_id}/metrics", response_model=list[MetricPublic])
def job_metrics(
    job_id: str, plane: Plane, who: Reader, limit: Annotated[int, Query(ge=1, le=100000)] = 1000,
) -> list[MetricPublic]:
    with plane.store.session() as s:
        repo.get_job(s, job_id, tenant=who.tenant)
        return [MetricPublic(at=m.at, step=m.step, task_id=m.task_id, values=m.values)
                for m in repo.list_metrics(s, job_id, limit=limit)]


@router.get("/{job_id}/logs", response_class=PlainTextResponse)
def job_logs(
    job_id: str,
    plane: Plane,
    who: Reader,
    task: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    attempt: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    follow: bool = False,
    offset: Annotated[int, Query(ge=0, le=2**53)] = 0,
) -> StreamingResponse:
    """The log of one task attempt (default: task 0, latest attempt) as text.

    With ``follow=true`` the response streams until the job is terminal and the
    file fully read (or the client disconnects).
    """
    with plane.store.session() as s:
        job = repo.get_job(s, job_id, tenant=who.tenant)
        if task >= job.num_tasks:
            raise NotFound(f"job {job_id} has no task {task} (it has {job.num_tasks})")
        want = attempt or job.attempt
        rows = [t for t in repo.tasks_of_job(s, job_id, attempt=want) if t.index == task]
    if not rows:
        if attempt is not None:
            raise NotFound(f"job {job_id} has no attempt {attempt} of task {task}")
        if not follow:
            return StreamingResponse(iter([b""]), media_type="text/plain; charset=utf-8")
    path = Path(rows[0].log_path) if rows else None
    return StreamingResponse(_stream(plane, job_id, task, path, follow, offset),
                             media_type="text/plain; charset=utf-8")


def _task_done(plane: Plane, job_id: str, task_index: int) -> tuple[bool, Path | None]:
    with plane.store.session() as s:
        job = repo.get_job(s, job_id)
        rows = [t for t in repo.tasks_of_job(s, job_id, attempt=job.attempt) if t.index == task_index]
        path = Path(rows[0].log_path) if rows else None
        done = JobState(job.state).terminal or bool(rows and TaskState(rows[0].state).terminal
                                                      and job.state != JobState.RUNNING.value)
        return done, path


def _stream(plane: Plane, job_id: str, task_index: int, path: Path | None, follow: bool, offset: int) -> Iterator[bytes]:
    pos = offset
    while True:
        # An offset past the end reads nothing (seeking to a huge offset fails mid-stream).
        if path is not None and path.exists() and pos < path.stat().st_size:
            with open(path, "rb") as f:
                f.seek(pos)
                while chunk := f.read(64 * 1024):
                    pos += len(chunk)
                    yield chunk
        if not follow:
            return
        done, new_path = _task_done(plane, job_id, task_index)
        if new_path != path and new_path is not None:
            if path is not None:
                # A retry started a new attempt: continue with its log.
                yield f"\n--- {new_path.name} ---\n".encode()
            path, pos = new_path, 0
            continue
        if done:
            if path is not None and path.exists() and path.stat().st_size > pos:
                continue
            return
        time.sleep(0.2)
