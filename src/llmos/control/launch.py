"""What a task is launched with: its command, files and environment.

This module is the code side of ``docs/worker-contract.md``; keep them in step.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
from pathlib import Path
from typing import Any

RUNTIME_MODULE = "llmos.runtime"


def task_command(spec: dict[str, Any]) -> list[str]:
    """``command`` jobs run their own argv; every other kind runs ``python -m llmos.runtime``."""
    if spec["kind"] == "command":
        return [str(a) for a in spec["command"]]
    return [sys.executable, "-m", RUNTIME_MODULE]


def job_dir(home: Path, job_id: str) -> Path:
    return home / "jobs" / job_id


def spec_path(home: Path, job_id: str) -> Path:
    return job_dir(home, job_id) / "spec.json"


def checkpoint_dir(home: Path, job_id: str, index: int) -> Path:
    """Stable across attempts of the same task, so a retry resumes from it."""
    return home / "checkpoints" / job_id / f"task-{index}"


def log_path(home: Path, job_id: str, index: int, attempt: int) -> Path:
    return home / "logs" / job_id / f"task-{index}.attempt-{attempt}.log"


def error_file(home: Path, task_id: str) -> Path:
    """Where :class:`llmos.client.TaskReporter` also writes a declared error reason."""
    return home / "runs" / task_id / "error.txt"


def write_spec(home: Path, job_id: str, spec: dict[str, Any]) -> Path:
    path = spec_path(home, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(spec, indent=2))
    os.replace(tmp, path)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def task_env(
    *,
    home: Path,
    url: str,
    token: str,
    job_id: str,
    task_id: str,
    index: int,
    num_tasks: int,
    attempt: int,
    spec: dict[str, Any],
    cpus: float,
    master_addr: str,
    master_port: int,
    checkpoint: dict[str, Any],
) -> dict[str, str]:
    """The environment of one task attempt (see docs/worker-contract.md)."""
    ckpt = checkpoint_dir(home, job_id, index)
    ckpt.mkdir(parents=True, exist_ok=True)
    threads = str(max(1, math.ceil(cpus)))
    env = {
        "LLMOS_URL": url,
        "LLMOS_TASK_TOKEN": token,
        "LLMOS_JOB_ID": job_id,
        "LLMOS_JOB_KIND": str(spec["kind"]),
        "LLMOS_JOB_NAME": str(spec["name"]),
        "LLMOS_TASK_ID": task_id,
        "LLMOS_TASK_INDEX": str(index),
        "LLMOS_NUM_TASKS": str(num_tasks),
        "LLMOS_ATTEMPT": str(attempt),
        "LLMOS_SPEC_PATH": str(spec_path(home, job_id)),
        "LLMOS_HOME": str(home),
        "LLMOS_CHECKPOINT_DIR": str(ckpt),
        "LLMOS_RESUME_CHECKPOINT": str(checkpoint.get("path") or ""),
        "LLMOS_RESUME_STEP": str(checkpoint.get("step") if checkpoint.get("step") is not None else ""),
        "LLMOS_ERROR_FILE": str(error_file(home, task_id)),
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
        "RANK": str(index),
        "LOCAL_RANK": str(index),
        "WORLD_SIZE": str(num_tasks),
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        # Nothing a task runs may reach for the network to fetch models.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    user_env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
    return {**user_env, **env}
