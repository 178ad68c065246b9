"""Device discovery for the local node: psutil for CPU/RAM, nvidia-smi (or torch.cuda) for GPUs.

torch is imported only when ``nvidia-smi`` is missing but an NVIDIA driver is
present, so a CPU-only control plane starts without paying for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil

from llmos.core.devices import CPU, DEVICE_CATALOG, Device


def gpu_type_from_name(name: str, memory_gib: float) -> str:
    """Map a vendor name (``NVIDIA A100-SXM4-40GB``) to a catalog type, else the raw name."""
    up = name.upper()
    for key, canon in (("H100", "H100-80G"), ("L40S", "L40S"), ("L4", "L4"), ("T4", "T4"),
                       ("V100", "V100"), ("P100", "P100"), ("K80", "K80")):
        if key in up.replace(" ", "").replace("-", "") or key in up:
            if key == "L4" and "L40" in up:
                continue
            return canon
    if "A100" in up:
        return "A100-80G" if memory_gib > 45 else "A100-40G"
    return name.strip() or "gpu"


def _nvidia_smi() -> list[tuple[int, str, float]] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            gpus.append((int(parts[0]), parts[1], float(parts[2]) / 1024.0))
    return gpus


def _torch_cuda() -> list[tuple[int, str, float]]:
    if not (Path("/proc/driver/nvidia").exists() or "torch" in sys.modules):
        return []
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [
        (i, torch.cuda.get_device_name(i), torch.cuda.get_device_properties(i).total_memory / 2**30)
        for i in range(torch.cuda.device_count())
    ]


def discover_gpus() -> list[Device]:
    found = _nvidia_smi()
    if found is None:
        found = _torch_cuda()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() != "":
        allowed = {int(x) for x in visible.split(",") if x.strip().isdigit()}
        found = [g for g in found if g[0] in allowed]
    return [
        Device(id=f"gpu{idx}", type=gpu_type_from_name(name, mem), index=idx, memory_gib=round(mem, 2))
        for idx, name, mem in found
    ]


def discover_cpu_devices(count: int | None, memory_gib: float) -> list[Device]:
    """``count`` schedulable ``cpu`` devices (default: one per core), each core index its ``index``."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    n = len(cores) if count is None else max(0, count)
    cpu_mem = min(memory_gib, DEVICE_CATALOG[CPU].memory_gib) if memory_gib > 0 else DEVICE_CATALOG[CPU].memory_gib
    return [Device(id=f"cpu{i}", type=CPU, index=cores[i % len(cores)], memory_gib=round(cpu_mem, 2)) for i in range(n)]


def host_cpus_and_memory() -> tuple[float, float]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (psutil.cpu_count() or 1)
    return float(cores), psutil.virtual_memory().total / 2**30
