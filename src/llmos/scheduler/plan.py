"""What the scheduler decides: placements, preemptions and why jobs wait."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TaskPlacement:
    task_index: int
    node_id: str
    device_ids: tuple[str, ...]
    cpus: float
    memory_gib: float


@dataclass(frozen=True)
class Placement:
    """All tasks of one job, placed together (gang: all or nothing)."""

    job_id: str
    tasks: tuple[TaskPlacement, ...]


@dataclass(frozen=True)
class Preemption:
    """Stop ``task_id`` (giving it ``grace_s`` to checkpoint) to make room."""

    task_id: str
    job_id: str
    reason: str
    grace_s: float = 30.0


@dataclass(frozen=True)
class Plan:
    placements: tuple[Placement, ...] = ()
    preemptions: tuple[Preemption, ...] = ()
    pending_reasons: Mapping[str, str] = field(default_factory=dict)
