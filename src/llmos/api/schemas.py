"""Wire schemas of the REST API (separate create / public shapes)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmos.store.tables import EventRow, JobRow, NodeRow, TaskRow, TokenRow


class TaskPublic(BaseModel):
    id: str
    index: int
    attempt: int
    state: str
    node_id: str
    device_ids: list[str]
    exit_code: int | None
    message: str
    error_reason: str
    endpoint: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    log_path: str

    @classmethod
    def of(cls, t: TaskRow) -> TaskPublic:
        return cls(
            id=t.id, index=t.index, attempt=t.attempt, state=t.state, node_id=t.node_id,
            device_ids=list(t.device_ids or []), exit_code=t.exit_code, message=t.message or "",
            error_reason=t.error_reason or "", endpoint=t.endpoint, created_at=t.created_at,
            started_at=t.started_at, finished_at=t.finished_at, heartbeat_at=t.heartbeat_at,
            log_path=t.log_path,
        )


class JobPublic(BaseModel):
    id: str
    tenant: str
    name: str
    kind: str
    state: str
    priority: int
    num_tasks: int
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    attempt: int
    failures: int
    preemptions: int
    pending_reason: str = Field(description="why the job is PENDING (scheduler's reason), else empty")
    message: str = Field(description="last state message; the failure reason for FAILED jobs")
    cancel_requested: bool
    progress: dict[str, Any]
    metrics: dict[str, Any]
    checkpoint: dict[str, Any]
    spec: dict[str, Any]
    tasks: list[TaskPublic] = []

    @classmethod
    def of(cls, j: JobRow, tasks: list[TaskRow] | None = None) -> JobPublic:
        return cls(
            id=j.id, tenant=j.tenant, name=j.name, kind=j.kind, state=j.state, priority=j.priority,
            num_tasks=j.num_tasks, submitted_at=j.submitted_at, started_at=j.started_at,
            finished_at=j.finished_at, attempt=j.attempt, failures=j.failures, preemptions=j.preemptions,
            pending_reason=j.pending_reason if j.state == "PENDING" else "",
            message=j.message or "", cancel_requested=j.cancel_requested, progress=j.progress or {},
            metrics=j.metrics or {}, checkpoint=j.checkpoint or {}, spec=j.spec,
            tasks=[TaskPublic.of(t) for t in (tasks or [])],
        )


class JobList(BaseModel):
    items: list[JobPublic]
    total: int
    limit: int
    offset: int


class EventPublic(BaseModel):
    id: int
    at: float
    kind: str
    message: str
    task_id: str | None

    @classmethod
    def of(cls, e: EventRow) -> EventPublic:
        return cls(id=e.id, at=e.at, kind=e.kind, message=e.message, task_id=e.task_id)


class MetricPublic(BaseModel):
    at: float
    step: int | None
    task_id: str
    values: dict[str, Any]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    role: str = Field(pattern=r"^(admin|user|viewer)$")
    name: str = Field("", max_length=128)


class TokenPublic(BaseModel):
    id: str
    tenant: str
    role: str
    name: str
    created_at: float
    revoked: bool

    @classmethod
    def of(cls, t: TokenRow) -> TokenPublic:
        return cls(id=t.id, tenant=t.tenant, role=t.role, name=t.name, created_at=t.created_at, revoked=t.revoked)


class TokenCreated(TokenPublic):
    token: str = Field(description="the secret; shown only once")


class DevicePublic(BaseModel):
    id: str
    type: str
    index: int
    memory_gib: float
    allocated_to: str | None = None


class NodePublic(BaseModel):
    id: str
    backend: str
    alive: bool
    cpus: float
    memory_gib: float
    cpus_allocated: float
    memory_gib_allocated: float
    devices: list[DevicePublic]
    labels: dict[str, str]
    updated_at: float

    @classmethod
    def of(cls, n: NodeRow, active: list[TaskRow]) -> NodePublic:
        mine = [t for t in active if t.node_id == n.id]
        owner = {d: t.id for t in mine for d in (t.device_ids or [])}
        devices = [
            DevicePublic(id=d["id"], type=d["type"], index=int(d.get("index", 0)),
                         memory_gib=float(d.get("memory_gib", 0.0)), allocated_to=owner.get(d["id"]))
            for d in n.devices
        ]
        return cls(
            id=n.id, backend=n.backend, alive=n.alive, cpus=n.cpus, memory_gib=n.memory_gib,
            cpus_allocated=sum(t.cpus for t in mine), memory_gib_allocated=sum(t.memory_gib for t in mine),
            devices=devices, labels=dict(n.labels or {}), updated_at=n.updated_at,
        )


class Progress(BaseModel):
    model_config = ConfigDict(extra="allow")
    step: int = Field(ge=0)
    total_steps: int | None = Field(None, ge=0)


class Checkpoint(BaseModel):
    model_config = ConfigDict(extra="allow")
    step: int = Field(ge=0)
    path: str = Field(min_length=1)


class TaskReport(BaseModel):
    """What a worker sends to ``POST /v1/tasks/{task_id}/report``; every part optional."""

    model_config = ConfigDict(extra="forbid")
    heartbeat: bool = False
    progress: Progress | None = None
    metrics: dict[str, float | int | str | None] | None = None
    checkpoint: Checkpoint | None = None
    message: str | None = Field(None, max_length=4000)
    error: str | None = Field(None, max_length=2000)
    endpoint: str | None = Field(None, pattern=r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


class ReportReply(BaseModel):
    ok: bool = True
    stop: bool
    stop_reason: str | None
