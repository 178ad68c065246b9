"""Worker reports: ``POST /v1/tasks/{task_id}/report`` with the task's own token."""

from __future__ import annotations

from fastapi import APIRouter

from llmos.api.deps import CurrentPrincipal, Plane
from llmos.api.schemas import ReportReply, TaskReport
from llmos.control.reports import apply_report
from llmos.errors import NotFound, PermissionDenied
from llmos.store.tokens import TASK_ROLE

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])


@router.post("/{task_id}/report", response_model=ReportReply)
def report(task_id: str, body: TaskReport, plane: Plane, who: CurrentPrincipal) -> ReportReply:
    if who.role != TASK_ROLE:
        raise PermissionDenied("only a task's own token (LLMOS_TASK_TOKEN) may report for it")
    if who.task_id != task_id:
        raise NotFound(f"no task {task_id!r} for this token")
    reply = apply_report(plane.store, task_id, body.model_dump(exclude_none=True, exclude_defaults=True))
    return ReportReply(stop=reply["stop"], stop_reason=reply["stop_reason"])
