"""The control plane's running tasks carry the device types their spec allows.

A whole-cluster planner (``srpt-plan``) ranks and moves a running job by every
type it may use; the simulator reports them, and so must the live snapshot.
"""

from __future__ import annotations

from llmos.control.snapshot import allowed_types, running_task
from llmos.store.tables import JobRow, TaskRow


def _rows(resources: dict[str, object]) -> tuple[TaskRow, JobRow]:
    spec = {"kind": "command", "name": "x", "command": ["true"], "resources": resources}
    job = JobRow(id="j1", tenant="t", name="x", kind="command", state="RUNNING", spec=spec, priority=0,
                 num_tasks=1, submitted_at=1.0, updated_at=1.0, attained_service_s=0.0, progress={},
                 checkpoint={})
    task = TaskRow(id="j1/0", job_id="j1", index=0, attempt=0, state="RUNNING", node_id="n1",
                   device_ids=["gpu0"], cpus=1.0, memory_gib=1.0, created_at=2.0, started_at=2.0)
    return task, job


def test_running_task_carries_the_spec_device_types() -> None:
    task, job = _rows({"devices": 1, "device_types": ["A100-80G", "V100"]})
    rt = running_task(task, job, now=10.0)
    assert rt.allowed_types == allowed_types(job.spec)
    assert set(rt.allowed_types) == {"A100-80G", "V100"}


def test_any_type_is_reported_as_empty() -> None:
    task, job = _rows({"devices": 1})
    assert running_task(task, job, now=10.0).allowed_types == ()
