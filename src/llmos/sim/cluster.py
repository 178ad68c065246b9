"""Simulated clusters from a short spec such as ``v100=12,p100=12,k80=12``."""

from __future__ import annotations

from llmos.core.devices import DEVICE_CATALOG, Device, Node, canonical_device_type
from llmos.errors import ValidationError


def parse_cluster_spec(spec: str) -> dict[str, int]:
    """``"v100=12,k80=4"`` → {"V100": 12, "K80": 4} (canonical type names)."""
    out: dict[str, int] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, count = part.partition("=")
        if not sep:
            raise ValidationError(f"cluster spec {spec!r}: expected TYPE=COUNT, got {part!r}")
        try:
            t = canonical_device_type(name)
        except KeyError as e:
            raise ValidationError(f"cluster spec {spec!r}: {e.args[0]}") from None
        try:
            n = int(count)
        except ValueError:
            raise ValidationError(f"cluster spec {spec!r}: count {count!r} is not an integer") from None
        if n < 0:
            raise ValidationError(f"cluster spec {spec!r}: count must be >= 0")
        out[t] = out.get(t, 0) + n
    if not out or sum(out.values()) == 0:
        raise ValidationError(f"cluster spec {spec!r}: no devices")
    return out


def build_cluster(counts: dict[str, int], devices_per_node: int = 1, cpus_per_device: float = 8.0,
                  memory_gib_per_device: float = 64.0) -> tuple[Node, ...]:
    """Nodes of one type each, ``devices_per_node`` devices per node (the last may hold fewer).

    Gavel's reference runs use one GPU per server, the default here.
    """
    if devices_per_node < 1:
        raise ValidationError("devices_per_node must be >= 1")
    nodes: list[Node] = []
    for t, n in counts.items():
        mem = DEVICE_CATALOG[t].memory_gib
        left, k = n, 0
        while left > 0:
            here = min(devices_per_node, left)
            devs = tuple(Device(f"gpu{i}", t, i, mem) for i in range(here))
            nodes.append(Node(f"{t.lower()}-{k}", cpus_per_device * here, memory_gib_per_device * here, devs))
            left -= here
            k += 1
    return tuple(nodes)
