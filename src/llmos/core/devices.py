"""The device catalog, devices and nodes.

The catalog lists the accelerator types llmos knows, with the figures the
throughput and memory models need. Figures are vendor peak numbers (dense bf16,
or fp16 where the part has no bf16) and are only used relative to each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeviceType:
    """One kind of device.

    ``bf16_tflops`` is dense peak throughput; ``mem_bandwidth_gbs`` is memory
    bandwidth in GB/s. For ``cpu`` the figures describe one core-socket's worth
    of throughput and are deliberately small.
    """

    name: str
    memory_gib: float
    bf16_tflops: float
    mem_bandwidth_gbs: float
    accelerator: bool = True

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("device type needs a name")
        if self.memory_gib <= 0 or self.bf16_tflops <= 0 or self.mem_bandwidth_gbs <= 0:
            raise ValueError(f"device type {self.name}: figures must be positive")


CPU = "cpu"

_CATALOG: tuple[DeviceType, ...] = (
    DeviceType("H100-80G", 80.0, 989.0, 3350.0),
    DeviceType("A100-80G", 80.0, 312.0, 2039.0),
    DeviceType("A100-40G", 40.0, 312.0, 1555.0),
    DeviceType("L40S", 48.0, 362.0, 864.0),
    DeviceType("L4", 24.0, 121.0, 300.0),
    DeviceType("T4", 16.0, 65.0, 320.0),
    DeviceType("V100", 16.0, 125.0, 900.0),
    DeviceType("P100", 16.0, 18.7, 732.0),
    DeviceType("K80", 12.0, 8.7, 240.0),
    DeviceType(CPU, 16.0, 1.0, 50.0, accelerator=False),
)

DEVICE_CATALOG: Mapping[str, DeviceType] = {d.name: d for d in _CATALOG}

# Spellings users and other systems (nvidia-smi, Ray accelerator_type, Gavel traces) use.
_ALIASES: Mapping[str, str] = {
    "h100": "H100-80G",
    "h100-80gb": "H100-80G",
    "a100": "A100-80G",
    "a100-80gb": "A100-80G",
    "a100-40gb": "A100-40G",
    "l40s": "L40S",
    "l4": "L4",
    "t4": "T4",
    "v100": "V100",
    "p100": "P100",
    "k80": "K80",
    "cpu": CPU,
}


def canonical_device_type(name: str) -> str:
    """Return the catalog name for ``name`` (case-insensitive, common aliases).

    Raises ``KeyError`` with the list of known types when the name is unknown.
    """
    if name in DEVICE_CATALOG:
        return name
    low = name.strip().lower()
    for known in DEVICE_CATALOG:
        if known.lower() == low:
            return known
    if low in _ALIASES:
        return _ALIASES[low]
    raise KeyError(f"unknown device type {name!r}; known: {', '.join(DEVICE_CATALOG)}")


def device_type(name: str) -> DeviceType:
    """Look a device type up by any accepted spelling."""
    return DEVICE_CATALOG[canonical_device_type(name)]


@dataclass(frozen=True)
class Device:
    """One schedulable device on a node.

    ``id`` is unique within its node (``"gpu0"``, ``"cpu"``); ``index`` is what
    the backend hands the task (``CUDA_VISIBLE_DEVICES``).
    """

    id: str
    type: str
    index: int = 0
    memory_gib: float = 0.0

    def __post_init__(self) -> None:
        if self.memory_gib < 0:
            raise ValueError("device memory must be >= 0")


@dataclass(frozen=True)
class Node:
    """A machine that runs tasks: CPU cores, RAM and accelerators."""

    id: str
    cpus: float
    memory_gib: float
    devices: tuple[Device, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    alive: bool = True

    def __post_init__(self) -> None:
        if self.cpus < 0 or self.memory_gib < 0:
            raise ValueError(f"node {self.id}: cpus and memory must be >= 0")
        ids = [d.id for d in self.devices]
        if len(set(ids)) != len(ids):
            raise ValueError(f"node {self.id}: duplicate device ids")

    def devices_of_type(self, type_name: str) -> tuple[Device, ...]:
        return tuple(d for d in self.devices if d.type == type_name)
