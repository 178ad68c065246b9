"""The cluster scheduler: pure functions from a snapshot to a plan.

Imports only :mod:`llmos.core`, :mod:`llmos.errors`, the standard library and
NumPy, so the live control plane and the simulator make the very same call::

    plan = make_scheduler("default").schedule(snapshot, now)

See ``README.md`` in this package for the framework, the policies and the
papers they follow.
"""

from llmos.scheduler.framework import Code, CycleContext, JobView, Status
from llmos.scheduler.plan import Placement, Plan, Preemption, TaskPlacement
from llmos.scheduler.registry import DEFAULT_PROFILE, PROFILES, Profile, get_profile, register_profile
from llmos.scheduler.scheduler import Scheduler, make_scheduler
from llmos.scheduler.snapshot import ClusterSnapshot, PendingJob, RunningTask, TenantPolicy
from llmos.scheduler.throughput import ThroughputModel

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "ClusterSnapshot",
    "Code",
    "CycleContext",
    "JobView",
    "PendingJob",
    "Placement",
    "Plan",
    "Preemption",
    "Profile",
    "RunningTask",
    "Scheduler",
    "Status",
    "TaskPlacement",
    "TenantPolicy",
    "ThroughputModel",
    "get_profile",
    "make_scheduler",
    "register_profile",
]
