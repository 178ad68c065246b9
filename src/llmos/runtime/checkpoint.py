"""Atomic training checkpoints: weights, optimizer, scheduler, RNG states, data position.

Layout under the job's checkpoint directory (``LLMOS_CHECKPOINT_DIR``, stable
across retries of the job)::

    step-00000050/   trainable.safetensors  optimizer.pt  state.pt  meta.json
    LATEST           "step-00000050"

A checkpoint is written into a temporary directory, fsynced and renamed; then
``LATEST`` is replaced atomically. A SIGKILL at any instant therefore leaves
either the previous checkpoint or the new one as ``LATEST``, never a partial
one. Older checkpoints beyond ``keep`` are removed after the switch.
Only rank 0 writes; every rank reads.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from llmos.errors import IntegrityError

LATEST = "LATEST"


@dataclass(frozen=True)
class Checkpoint:
    step: int
    samples_seen: int
    path: Path
    meta: dict[str, Any]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    ckpt_dir: Path,
    *,
    step: int,
    samples_seen: int,
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    meta: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically and point ``LATEST`` at it. Returns its path."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    tmp = ckpt_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    save_file({k: v.detach().contiguous().cpu() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save({"scheduler": scheduler.state_dict(), "rng": rng_state()}, tmp / "state.pt")
    (tmp / "meta.json").write_text(json.dumps({**meta, "step": step, "samples_seen": samples_seen}))
    for f in tmp.iterdir():
        with f.open("rb") as fh:
            os.fsync(fh.fileno())
    final = ckpt_dir / name
    if final.exists():  # a retry re-reached a step it had already saved
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest_tmp = ckpt_dir / f".{LATEST}.{uuid.uuid4().hex[:8]}"
    latest_tmp.write_text(name)
    os.replace(latest_tmp, ckpt_dir / LATEST)
    _fsync_dir(ckpt_dir)
    olds = sorted(p for p in ckpt_dir.glob("step-*") if p.name != name)
    for p in olds[: max(0, len(olds) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    for p in ckpt_dir.glob(".tmp-*"):  # leftovers of a run killed mid-write
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(ckpt_dir: Path | None) -> Checkpoint | None:
    """The checkpoint ``LATEST`` names, or None when there is none yet."""
    if ckpt_dir is None or not (ckpt_dir / LATEST).is_file():
        return None
    path = ckpt_dir / (ckpt_dir / LATEST).read_text().strip()
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise IntegrityError(f"checkpoint {path} is unreadable: {e}") from None
    return Checkpoint(int(meta["step"]), int(meta["samples_seen"]), path, meta)


def load_checkpoint(
    ckpt: Checkpoint,
    *,
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    """Restore weights (in place), optimizer, scheduler and RNG states from ``ckpt``."""
    weights = load_file(str(ckpt.path / "trainable.safetensors"))
    missing = set(trainable) - set(weights)
    if missing:
        raise IntegrityError(f"checkpoint {ckpt.path} lacks {len(missing)} tensors, e.g. {sorted(missing)[0]}")
    with torch.no_grad():
        for k, p in trainable.items():
            p.copy_(weights[k].to(p.device, p.dtype))
    optimizer.load_state_dict(torch.load(ckpt.path / "optimizer.pt", weights_only=False))
    state = torch.load(ckpt.path / "state.pt", weights_only=False)
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
