"""Ray node descriptions -> llmos :class:`~llmos.core.devices.Node` values.

Pure functions over the dictionaries ``ray.nodes()`` returns, so they are
tested without a cluster. How Ray resources become llmos devices:

* ``GPU: n`` -> ``n`` devices ``gpu0..``, typed by the node's
  ``accelerator_type:X`` marker (``canonical_device_type(X)``); each is held
  through Ray's ``GPU`` resource.
* a custom resource naming a catalog accelerator, ``{"V100": 2}``, or an
  ``accelerator_type:V100`` marker on a node without ``GPU`` -> that many
  devices of that type (``v100-0``, ...), each held through one unit of that
  resource. This is how a node advertises a device type to the scheduler
  without a physical GPU (tests) or with a GPU Ray cannot detect.
* ``cpu`` devices exactly as the local backend advertises them: one per core
  (``CPU`` resource) unless ``cpu_devices`` overrides, each with the catalog's
  cpu memory capped by the node's RAM. Ray does not pin cores, so holding a
  ``cpu`` device maps to no Ray resource (the task's ``cpus`` do).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmos.core.devices import CPU, DEVICE_CATALOG, Device, Node, canonical_device_type

ACCELERATOR_PREFIX = "accelerator_type:"
NODE_ID_LABEL = "ray_node_id"
# Enough of Ray's 56-hex-digit NodeID to be unique in any real cluster, short enough to read.
SHORT_ID_HEX = 12


@dataclass(frozen=True)
class DeviceBinding:
    """How holding one llmos device translates into a Ray resource request."""

    resource: str | None  # None: nothing to reserve in Ray (cpu devices)
    amount: float = 1.0


@dataclass(frozen=True)
class RayNodeView:
    """One Ray node as llmos sees it: the Node plus how to reserve each device."""

    node: Node
    ray_node_id: str
    bindings: Mapping[str, DeviceBinding]


def llmos_node_id(ray_node_id: str) -> str:
    return f"ray-{ray_node_id[:SHORT_ID_HEX]}"


def _accelerator(name: str) -> str | None:
    """The catalog accelerator ``name`` stands for, or None (cpu is not an accelerator here)."""
    try:
        canon = canonical_device_type(name)
    except KeyError:
        return None
    return canon if DEVICE_CATALOG[canon].accelerator else None


def node_view(info: Mapping[str, Any], cpu_devices: int | None = None) -> RayNodeView:
    """Translate one entry of ``ray.nodes()``."""
    ray_id = str(info["NodeID"])
    res: Mapping[str, float] = info.get("Resources") or {}
    cpus = float(res.get("CPU", 0.0))
    memory_gib = float(res.get("memory", 0.0)) / 2**30
    devices: list[Device] = []
    bindings: dict[str, DeviceBinding] = {}

    markers = [k[len(ACCELERATOR_PREFIX) :] for k in res if k.startswith(ACCELERATOR_PREFIX)]
    gpus = int(res.get("GPU", 0))
    if gpus:
        typ = next((t for t in map(_accelerator, markers) if t), None) or (markers[0] if markers else "gpu")
        mem = DEVICE_CATALOG[typ].memory_gib if typ in DEVICE_CATALOG else 0.0
        for i in range(gpus):
            devices.append(Device(id=f"gpu{i}", type=typ, index=i, memory_gib=mem))
            bindings[f"gpu{i}"] = DeviceBinding("GPU")
    for key, value in sorted(res.items()):
        marker = key.startswith(ACCELERATOR_PREFIX)
        if marker and gpus:
            continue  # a marker describing the GPUs above, not more devices
        acc = _accelerator(key[len(ACCELERATOR_PREFIX) :] if marker else key)
        if acc is None:
            continue
        count = max(1, int(value)) if marker else int(value)
        for i in range(count):
            dev_id = f"{acc.lower()}-{i}"
            if dev_id in bindings:
                continue  # both "V100" and "accelerator_type:V100": count them once
            devices.append(Device(id=dev_id, type=acc, index=i, memory_gib=DEVICE_CATALOG[acc].memory_gib))
            bindings[dev_id] = DeviceBinding(key)

    n_cpu = int(cpus) if cpu_devices is None else max(0, cpu_devices)
    cpu_mem = min(memory_gib, DEVICE_CATALOG[CPU].memory_gib) if memory_gib > 0 else DEVICE_CATALOG[CPU].memory_gib
    for i in range(n_cpu):
        devices.append(Device(id=f"cpu{i}", type=CPU, index=i, memory_gib=round(cpu_mem, 2)))
        bindings[f"cpu{i}"] = DeviceBinding(None)

    labels = {
        "backend": "ray",
        NODE_ID_LABEL: ray_id,
        "address": str(info.get("NodeManagerAddress", "")),
        "hostname": str(info.get("NodeManagerHostname", "")),
    }
    node = Node(
        id=llmos_node_id(ray_id),
        cpus=cpus,
        memory_gib=round(memory_gib, 2),
        devices=tuple(devices),
        labels=labels,
        alive=bool(info.get("Alive", info.get("alive", False))),
    )
    return RayNodeView(node, ray_id, bindings)


def ray_resources(view: RayNodeView, device_ids: tuple[str, ...]) -> dict[str, float]:
    """The Ray resources (``GPU``, custom) that hold exactly ``device_ids`` on ``view``.

    Raises ``KeyError`` naming a device the node does not have.
    """
    out: dict[str, float] = {}
    for dev in device_ids:
        if dev not in view.bindings:
            raise KeyError(f"node {view.node.id} has no device {dev!r}")
        b = view.bindings[dev]
        if b.resource is not None:
            out[b.resource] = out.get(b.resource, 0.0) + b.amount
    return out
