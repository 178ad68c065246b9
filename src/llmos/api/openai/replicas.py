"""Where the gateway finds replicas: running ``serve`` tasks that reported an endpoint.

A replica is a RUNNING task of the current attempt of a RUNNING ``serve`` job
of the caller's tenant, with an ``endpoint`` (``host:port``) reported by the
worker after its model loaded. It serves the deployment under the job's name
and each of the job's adapters under the adapter's name (see
:func:`llmos.runtime.serve.adapter_name`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from llmos.core.states import JobState, TaskState
from llmos.store import Store
from llmos.store.tables import JobRow, TaskRow


def adapter_name(ref: str) -> str:
    """Mirror of the worker's naming: a directory's name, else the reference as written."""
    p = Path(ref).expanduser()
    return p.name if p.is_dir() else ref


@dataclass(frozen=True)
class Replica:
    """One replica the gateway may route to."""

    task_id: str
    job_id: str
    deployment: str
    url: str  # http://host:port
    adapters: tuple[str, ...] = ()
    created: int = 0
    model_ref: str = ""

    def serves(self, model: str) -> bool:
        return model == self.deployment or model in self.adapters


def replicas_from_store(store: Store, tenant: str) -> list[Replica]:
    """Every routable replica of ``tenant``'s deployments, as of now."""
    out: list[Replica] = []
    with store.session() as s:
        jobs = s.execute(
            select(JobRow).where(
                JobRow.kind == "serve", JobRow.state == JobState.RUNNING.value, JobRow.tenant == tenant
            )
        ).scalars()
        by_id = {j.id: j for j in jobs}
        if not by_id:
            return out
        tasks = s.execute(
            select(TaskRow).where(
                TaskRow.job_id.in_(list(by_id)),
                TaskRow.state == TaskState.RUNNING.value,
                TaskRow.endpoint.is_not(None),
            )
        ).scalars()
        for t in tasks:
            job = by_id[t.job_id]
            if t.attempt != job.attempt or not t.endpoint:
                continue
            out.append(
                Replica(
                    task_id=t.id, job_id=job.id, deployment=job.name, url=f"http://{t.endpoint}",
                    adapters=tuple(adapter_name(a) for a in job.spec.get("adapters", [])),
                    created=int(job.submitted_at), model_ref=str(job.spec.get("model", "")),
                )
            )  # fmt: skip
    return sorted(out, key=lambda r: r.task_id)
