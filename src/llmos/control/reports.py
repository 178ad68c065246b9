"""Apply a worker's report (heartbeat, progress, metrics, checkpoint, error, endpoint).

Called by the API with a task-scoped token already checked. Reports only touch
report columns (never states), so they never race with the control loop's
state changes. The reply tells the worker whether it is being stopped, so a
well-behaved runtime can checkpoint before SIGKILL arrives.
"""

from __future__ import annotations

import math
import time
from typing import Any

from llmos.core.states import TaskState
from llmos.errors import Conflict
from llmos.store import Store
from llmos.store import jobs as repo
from llmos.store.tables import JobRow


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN/inf: keep them visible as strings rather than failing the report."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = str(v)
        else:
            out[k] = v
    return out


def apply_report(store: Store, task_id: str, report: dict[str, Any], *, now: float | None = None) -> dict[str, Any]:
    """Record ``report`` for ``task_id``; returns ``{"stop": bool, "stop_reason": str|None}``.

    Raises :class:`Conflict` when the task has already ended.
    """
    now = time.time() if now is None else now
    with store.session() as s:
        task = repo.get_task(s, task_id)
        if TaskState(task.state).terminal:
            raise Conflict(f"task {task_id} already ended ({task.state})")
        job = s.get(JobRow, task.job_id)
        assert job is not None
        task.heartbeat_at = now
        progress = report.get("progress")
        if progress:
            job.progress = {**progress, "task_index": task.index, "at": now}
        metrics = report.get("metrics")
        if metrics:
            clean = _finite(metrics)
            step = progress.get("step") if progress else clean.get("step")
            job.metrics = {**(job.metrics or {}), **clean, "at": now}
            repo.add_metrics(s, job_id=job.id, task_id=task.id, values=clean,
                             step=int(step) if isinstance(step, int | float) else None, now=now)
        ckpt = report.get("checkpoint")
        if ckpt:
            job.checkpoint = {**ckpt, "task_index": task.index, "attempt": task.attempt, "at": now}
            repo.add_event(s, job.id, "checkpoint", f"checkpoint at step {ckpt.get('step')}: {ckpt.get('path')}",
                           task_id=task.id, now=now)
        if report.get("message"):
            repo.add_event(s, job.id, "message", str(report["message"])[:4000], task_id=task.id, now=now)
        if report.get("error"):
            task.error_reason = str(report["error"])[:2000]
            repo.add_event(s, job.id, "error", task.error_reason, task_id=task.id, now=now)
        if report.get("endpoint"):
            task.endpoint = str(report["endpoint"])
            repo.add_event(s, job.id, "endpoint", f"task {task.index} serves at {task.endpoint}",
                           task_id=task.id, now=now)
        return {"stop": task.stop_reason is not None, "stop_reason": task.stop_reason}
