"""Admission: refuse a job no known node could ever hold, instead of queueing it forever."""

from __future__ import annotations

from collections.abc import Sequence

from llmos.core.devices import Node
from llmos.core.resources import ResourceRequest


def unplaceable_reason(nodes: Sequence[Node], req: ResourceRequest, num_tasks: int) -> str | None:
    """Why ``num_tasks`` tasks of ``req`` can never fit on ``nodes`` (even empty), or None.

    With no known nodes nothing is decided (the inventory may still be coming).
    """
    live = [n for n in nodes if n.alive]
    if not live:
        return None
    fits_per_node = []
    why = ""
    for n in live:
        usable = [d for d in n.devices if req.allows(d.type) and d.memory_gib >= req.min_device_memory_gib]
        if n.cpus < req.cpus:
            why = f"needs {req.cpus:g} CPUs per task; the largest node has {max(x.cpus for x in live):g}"
            continue
        if n.memory_gib < req.memory_gib:
            why = f"needs {req.memory_gib:g} GiB RAM per task; the largest node has {max(x.memory_gib for x in live):g}"
            continue
        if len(usable) < req.devices:
            kinds = ", ".join(req.device_types) or "any type"
            why = f"needs {req.devices} devices ({kinds}) per task; no node has that many"
            continue
        per = int(min(n.cpus // req.cpus if req.cpus else num_tasks,
                      n.memory_gib // req.memory_gib if req.memory_gib else num_tasks,
                      len(usable) // req.devices if req.devices else num_tasks))
        fits_per_node.append(per)
    if not fits_per_node:
        return why or "no node can hold one task"
    if sum(fits_per_node) < num_tasks:
        return f"needs {num_tasks} tasks at once; the whole cluster holds at most {sum(fits_per_node)}"
    return None
