"""The explicit plug-in registry and the named profiles.

No import-time discovery: every plug-in is listed here by name. A profile
picks one queue order, filters, scores with weights and preemption plug-ins;
``llmos.scheduler.make_scheduler(name)`` builds a scheduler from it. To add a
policy: write the plug-in, add it to the right table, name it in a profile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llmos.errors import ValidationError
from llmos.scheduler.filters import NodeHealth, TenantQuota, TypeAvailable
from llmos.scheduler.framework import Filter, Migration, NodeFilter, Preemption, QueueOrder, Score
from llmos.scheduler.ordering import (
    DominantResourceOrder,
    FifoOrder,
    GittinsOrder,
    LeastAttainedOrder,
    PriorityOrder,
    ShortestEstimateOrder,
    ShortestRemainingOrder,
    TiresiasOrder,
)
from llmos.scheduler.planner import PlannedTypes
from llmos.scheduler.preemption import (
    FasterTypeMigration,
    PriorityPreemption,
    QueueOrderPreemption,
    QuotaReclaim,
)
from llmos.scheduler.scores import MaxThroughputScore, ObjectiveScore, RandomTypeScore, ThroughputScore

QUEUE_ORDERS: dict[str, Callable[..., QueueOrder]] = {
    "fifo": FifoOrder,
    "priority": PriorityOrder,
    "las": LeastAttainedOrder,
    "tiresias": TiresiasOrder,
    "gittins": GittinsOrder,
    "drf": DominantResourceOrder,
    "sjf-estimate": ShortestEstimateOrder,
    "srpt": ShortestRemainingOrder,
}
FILTERS: dict[str, Callable[..., Filter]] = {
    "type-available": TypeAvailable,
    "quota": TenantQuota,
    "max-throughput": MaxThroughputScore,
    "srpt-plan": PlannedTypes,  # built with the profile's queue order
}
NODE_FILTERS: dict[str, Callable[..., NodeFilter]] = {"node-health": NodeHealth}
SCORES: dict[str, Callable[..., Score]] = {
    "throughput": ThroughputScore,
    "max-throughput": MaxThroughputScore,
    "random-type": RandomTypeScore,
    "objective": ObjectiveScore,
    "srpt-plan": PlannedTypes,
}
PREEMPTIONS: dict[str, Callable[..., Preemption]] = {
    "priority": PriorityPreemption,
    "quota-reclaim": QuotaReclaim,
    "queue-order": QueueOrderPreemption,  # built with the profile's queue order
    "srpt-plan": PlannedTypes,
}
MIGRATIONS: dict[str, Callable[..., Migration]] = {"faster-type": FasterTypeMigration, "srpt-plan": PlannedTypes}
# Plug-ins whose factory takes the profile's queue order as ``order``. A plug-in named in
# several tables with the same factory (``srpt-plan``: filter, score, preemption and
# migration) is one object, so its per-cycle plan is shared by all its roles.
NEEDS_ORDER = frozenset({"queue-order", "srpt-plan"})


@dataclass(frozen=True)
class Profile:
    """A named combination of plug-ins and weights.

    ``plugin_args[name]`` are keyword arguments for that plug-in's factory
    (for every plug-in of that name: the ``priority`` queue order and the
    ``priority`` preemption plug-in would both receive them).
    ``backfill=False`` is strict order: the first job that cannot start
    blocks every job behind it. ``grace_s`` is what victims get to checkpoint.
    """

    name: str
    description: str
    queue_order: str = "priority"
    filters: tuple[str, ...] = ("type-available", "quota")
    node_filters: tuple[str, ...] = ("node-health",)
    scores: Mapping[str, float] = field(default_factory=lambda: {"throughput": 1.0})
    preemption: tuple[str, ...] = ("priority", "quota-reclaim")
    migration: tuple[str, ...] = ()
    plugin_args: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    backfill: bool = True
    grace_s: float = 30.0
    max_preemptions_per_cycle: int = 64

    def __post_init__(self) -> None:
        _known(self.queue_order, QUEUE_ORDERS, "queue order")
        for f in self.filters:
            _known(f, FILTERS, "filter")
        for f in self.node_filters:
            _known(f, NODE_FILTERS, "node filter")
        for s, w in self.scores.items():
            _known(s, SCORES, "score")
            if w < 0:
                raise ValueError(f"profile {self.name}: score weight of {s} must be >= 0")
        for p in self.preemption:
            _known(p, PREEMPTIONS, "preemption")
        for m in self.migration:
            _known(m, MIGRATIONS, "migration")
        if self.grace_s < 0 or self.max_preemptions_per_cycle < 0:
            raise ValueError(f"profile {self.name}: grace_s and max_preemptions_per_cycle must be >= 0")


def _known(name: str, table: Mapping[str, object], kind: str) -> None:
    if name not in table:
        raise ValueError(f"unknown {kind} plug-in {name!r}; known: {', '.join(sorted(table))}")


@dataclass
class Plugins:
    """The plug-in instances one scheduler uses (one instance per name)."""

    order: QueueOrder
    filters: list[Filter]
    node_filters: list[NodeFilter]
    scores: list[tuple[Score, float]]
    preemption: list[Preemption]
    migration: list[Migration]


def build_plugins(profile: Profile) -> Plugins:
    # One instance per (factory, name): a plug-in listed as both filter and score
    # (max-throughput) is the same object, but a queue order and a preemption
    # plug-in that share a name ("priority") are not.
    made: dict[tuple[object, str], object] = {}

    def make(name: str, factory: Callable[..., object], order: QueueOrder | None = None) -> Any:
        key = (factory, name)
        if key not in made:
            extra = {"order": order} if order is not None and name in NEEDS_ORDER else {}
            made[key] = factory(**extra, **dict(profile.plugin_args.get(name, {})))
        return made[key]

    order: QueueOrder = make(profile.queue_order, QUEUE_ORDERS[profile.queue_order])
    return Plugins(
        order=order,
        filters=[make(f, FILTERS[f], order) for f in profile.filters],
        node_filters=[make(f, NODE_FILTERS[f]) for f in profile.node_filters],
        scores=[(make(s, SCORES[s], order), w) for s, w in profile.scores.items()],
        preemption=[make(p, PREEMPTIONS[p], order) for p in profile.preemption],
        migration=[make(m, MIGRATIONS[m], order) for m in profile.migration],
    )


_GAVEL_FIFO_FILTERS = ("type-available",)

PROFILES: dict[str, Profile] = {}


def register_profile(profile: Profile) -> None:
    """Add or replace a named profile (for operators' own combinations)."""
    PROFILES[profile.name] = profile


for _p in (
    Profile("fifo", "Arrival order, strict (no backfill), a uniformly random device type per job, "
            "never preempts: Gavel's FIFO baseline.",
            queue_order="fifo", filters=_GAVEL_FIFO_FILTERS, scores={"random-type": 1.0},
            preemption=(), backfill=False),
    Profile("fifo-backfill", "Arrival order; later jobs start when the head does not fit; fastest type.",
            queue_order="fifo", preemption=()),
    Profile("priority", "Priority classes, arrival order within a class; higher classes preempt "
            "lower preemptible ones (least work lost first); quotas with borrowing and reclaim."),
    Profile("drf", "Weighted dominant-resource fair share across tenants; quotas; priority preemption.",
            queue_order="drf"),
    Profile("las", "Least attained service (continuous), preempting a quantum apart; heterogeneity-agnostic.",
            queue_order="las", scores={}, preemption=("priority", "quota-reclaim", "queue-order")),
    Profile("tiresias", "Tiresias discretised 2D-LAS (queues at 0.5/2/8/32 device-hours); heterogeneity-agnostic.",
            queue_order="tiresias", scores={}, preemption=("priority", "quota-reclaim", "queue-order")),
    Profile("gittins", "Gittins index over a log-uniform prior (1 min .. 1 week); heterogeneity-agnostic.",
            queue_order="gittins", scores={}, preemption=("priority", "quota-reclaim", "queue-order")),
    Profile("gavel", "Gavel-style: least attained service for fairness, types assigned to maximise "
            "total normalised throughput (max-min fairness, heterogeneity-aware).",
            filters=("type-available", "quota", "max-throughput"), queue_order="las", scores={"max-throughput": 1.0},
            preemption=("priority", "quota-reclaim", "queue-order"), migration=("faster-type",)),
    Profile("max-throughput", "Gavel's max-sum-throughput: the jobs that gain most from the free types "
            "start first (fairness off).",
            queue_order="fifo", filters=("type-available", "quota", "max-throughput"),
            scores={"max-throughput": 1.0}, preemption=("priority", "quota-reclaim"),
            plugin_args={"max-throughput": {"fairness": False}}),
    Profile("objective", "Priority order; device type chosen by the brief's objective in its corrected form.",
            scores={"objective": 1.0}),
    Profile("objective-stated", "The brief's objective exactly as written (prefers the slowest type: "
            "a demonstration, not for use).",
            scores={"objective": 1.0}, plugin_args={"objective": {"form": "stated"}}),
    Profile("sjf-estimate", "Shortest estimated remaining time first from users' estimates, "
            "heterogeneity-aware; for traces that carry estimates.",
            filters=("type-available", "quota", "max-throughput"), queue_order="sjf-estimate",
            scores={"max-throughput": 1.0}, preemption=("priority", "quota-reclaim", "queue-order"),
            migration=("faster-type",)),
    Profile("tiresias-hetero", "Tiresias 2D-LAS order with Gavel-style type allocation.",
            filters=("type-available", "quota", "max-throughput"), queue_order="tiresias", scores={"max-throughput": 1.0},
            preemption=("priority", "quota-reclaim", "queue-order"), migration=("faster-type",)),
    Profile("srpt-hetero", "Shortest remaining time first from the spec's steps minus the steps done "
            "(least attained service when the spec names no work), Gavel-style type allocation, migration "
            "to faster free types.",
            filters=("type-available", "quota", "max-throughput"), queue_order="srpt", scores={"max-throughput": 1.0},
            preemption=("priority", "quota-reclaim", "queue-order"), migration=("faster-type",),
            # Measured on dev-a.trace (docs/scheduler.md): remaining device-seconds beat remaining
            # seconds (0.86x vs 0.95x Gavel's best), and letting twice the free devices' worth of the
            # queue compete for types beat once (0.81x vs 0.86x). A lease of one round (360 s,
            # Gavel's round and the simulator's tick) before queue order may preempt a job
            # bounds restart churn: preemptions 11,747 -> 4,703, worst rho 4.49 -> 2.73.
            plugin_args={"srpt": {"by": "device"}, "max-throughput": {"lookahead": 2.0},
                         "queue-order": {"min_run_s": 360.0}}),
    Profile("srpt-plan", "One plan per cycle for running and pending jobs together: SRPT order on remaining "
            "device-seconds, each job on the device type where it finishes earliest given the jobs ahead "
            "of it (list scheduling), a running job moves only when that saves clearly more than a "
            "restart; preemptions and placements both follow from the plan.",
            filters=("type-available", "quota", "srpt-plan"), queue_order="srpt", scores={"srpt-plan": 1.0},
            preemption=("srpt-plan", "quota-reclaim"), migration=("srpt-plan",),
            plugin_args={"srpt": {"by": "device"}}),
    Profile("gittins-hetero", "Gittins-index order with Gavel-style type allocation.",
            filters=("type-available", "quota", "max-throughput"), queue_order="gittins", scores={"max-throughput": 1.0},
            preemption=("priority", "quota-reclaim", "queue-order"), migration=("faster-type",)),
):
    register_profile(_p)


def get_profile(name: str) -> Profile:
    """The named profile; ``default`` is an alias picked by measurement (see README)."""
    if name == "default":
        name = DEFAULT_PROFILE
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(["default", *sorted(PROFILES)])
        raise ValidationError(f"unknown scheduler profile {name!r}; known: {known}",
                              code="unknown_profile") from None


# Chosen by benchmarks/scheduler_quality.py on dev-a.trace (see docs/scheduler.md).
DEFAULT_PROFILE = "srpt-plan"
