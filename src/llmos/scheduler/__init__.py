"""The cluster scheduler: pure functions from a snapshot to a plan.

Imports only :mod:`llmos.core`, the standard library and NumPy, so the live
control plane and the simulator make the very same call::

    plan = scheduler.schedule(snapshot, now)
"""

from llmos.scheduler.plan import Placement, Plan, Preemption, TaskPlacement
from llmos.scheduler.scheduler import Scheduler, make_scheduler
from llmos.scheduler.snapshot import ClusterSnapshot, PendingJob, RunningTask, TenantPolicy

__all__ = [
    "ClusterSnapshot",
    "PendingJob",
    "Placement",
    "Plan",
    "Preemption",
    "RunningTask",
    "Scheduler",
    "TaskPlacement",
    "TenantPolicy",
    "make_scheduler",
]
