"""What a task asks for: devices, CPUs and memory."""

from __future__ import annotations

from dataclasses import dataclass

from llmos.core.devices import DEVICE_CATALOG, canonical_device_type


@dataclass(frozen=True)
class ResourceRequest:
    """Resources for *one* task of a job.

    ``devices`` devices of any type in ``device_types`` (empty: any type in the
    catalog, ``cpu`` included), each with at least
    ``min_device_memory_gib``; ``cpus`` cores and ``memory_gib`` of RAM.
    """

    devices: int = 0
    device_types: tuple[str, ...] = ()
    min_device_memory_gib: float = 0.0
    cpus: float = 1.0
    memory_gib: float = 1.0

    def __post_init__(self) -> None:
        if self.devices < 0:
            raise ValueError("devices must be >= 0")
        if self.cpus < 0:
            raise ValueError("cpus must be >= 0")
        if self.memory_gib < 0:
            raise ValueError("memory_gib must be >= 0")
        if self.min_device_memory_gib < 0:
            raise ValueError("min_device_memory_gib must be >= 0")
        canon = tuple(canonical_device_type(t) for t in self.device_types)
        object.__setattr__(self, "device_types", canon)
        if self.min_device_memory_gib and canon:
            biggest = max(DEVICE_CATALOG[t].memory_gib for t in canon)
            if self.min_device_memory_gib > biggest:
                raise ValueError(
                    f"min_device_memory_gib={self.min_device_memory_gib} exceeds every allowed "
                    f"device type (largest {biggest} GiB)"
                )

    def allows(self, type_name: str) -> bool:
        """Whether a device of ``type_name`` may serve this request."""
        return not self.device_types or type_name in self.device_types
