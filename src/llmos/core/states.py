"""Job and task state machines: the only legal transitions.

States are ``str`` enums because they are stored and sent over the wire.
"""

from __future__ import annotations

from enum import StrEnum

from llmos.errors import IllegalTransition


class JobState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in _JOB_TERMINAL


class TaskState(StrEnum):
    """One attempt of one task.

    ``LOST`` means the node or the control plane lost track of the process;
    ``PREEMPTED`` means the scheduler stopped it to make room. Both send the
    job back to ``PENDING``; neither counts against ``max_retries`` for LOST
    caused by preemption.
    """

    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    PREEMPTED = "PREEMPTED"
    LOST = "LOST"

    @property
    def terminal(self) -> bool:
        return self not in (TaskState.STARTING, TaskState.RUNNING)


_JOB_TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})

JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    # RUNNING -> PENDING: preempted, or a task failed and the job will retry.
    JobState.RUNNING: frozenset(
        {JobState.PENDING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}

TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.STARTING: frozenset(
        {
            TaskState.RUNNING,
            TaskState.SUCCEEDED,
            TaskState.FAILED,
            TaskState.CANCELLED,
            TaskState.PREEMPTED,
            TaskState.LOST,
        }
    ),
    TaskState.RUNNING: frozenset(
        {
            TaskState.SUCCEEDED,
            TaskState.FAILED,
            TaskState.CANCELLED,
            TaskState.PREEMPTED,
            TaskState.LOST,
        }
    ),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.FAILED: frozenset(),
    TaskState.CANCELLED: frozenset(),
    TaskState.PREEMPTED: frozenset(),
    TaskState.LOST: frozenset(),
}


def check_job_transition(old: JobState, new: JobState) -> None:
    """Raise :class:`IllegalTransition` unless ``old -> new`` is allowed."""
    if new not in JOB_TRANSITIONS[old]:
        raise IllegalTransition(f"job cannot go from {old.value} to {new.value}")


def check_task_transition(old: TaskState, new: TaskState) -> None:
    """Raise :class:`IllegalTransition` unless ``old -> new`` is allowed."""
    if new not in TASK_TRANSITIONS[old]:
        raise IllegalTransition(f"task cannot go from {old.value} to {new.value}")
