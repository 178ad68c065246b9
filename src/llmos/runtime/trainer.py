"""The training loop shared by ``train`` and ``finetune``.

AdamW, linear warmup then cosine decay (to 10% of ``lr``), gradient
accumulation, fp32 or bf16 autocast, data parallelism over
``torch.distributed`` (gloo on CPU, NCCL on CUDA), atomic checkpoints every
``checkpoint_every`` steps and exact resume from the latest one. A NaN or
infinite loss raises :class:`TrainingDiverged` naming the step.

Who calls: :mod:`llmos.runtime.train` (inside a worker), the quickstart,
benchmarks and tests (in-process, world size 1).
"""

from __future__ import annotations

import datetime
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from peft import LoraConfig, PeftModel, get_peft_model

from llmos.errors import LLMOSError, ValidationError
from llmos.runtime.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from llmos.runtime.data import SampleStream

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
LORA_TARGETS_ALL = (*LORA_TARGETS, "gate_proj", "up_proj", "down_proj")
MIN_LR_RATIO = 0.1


class TrainingDiverged(LLMOSError):
    """The loss became NaN or infinite."""

    code = "training_diverged"
    http_status = 422


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-3
    warmup_steps: int = 10
    weight_decay: float = 0.0
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint_every: int = 50
    seed: int = 0
    method: Literal["full", "lora"] = "full"
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: Literal["attention", "all"] = "attention"
    log_every: int = 1
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1 or self.checkpoint_every < 1:
            raise ValidationError("steps, batch_size, grad_accum and checkpoint_every must be >= 1")
        if not self.lr > 0:
            raise ValidationError("lr must be > 0")


@dataclass(frozen=True)
class StepReport:
    step: int
    total_steps: int
    loss: float
    lr: float
    tokens_per_s: float
    samples_seen: int


@dataclass(frozen=True)
class TrainResult:
    model: torch.nn.Module
    final_loss: float
    losses: dict[int, float]
    start_step: int
    steps_run: int
    tokens: int
    elapsed_s: float

    stopped_early: bool = False

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0


def pick_device() -> torch.device:
    """CUDA when present (the local rank's GPU), else CPU. Never hard-coded."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed() -> tuple[int, int]:
    """Join the gang from RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT; returns (rank, world)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        # A gang member that never shows up must fail the job, not hang it for gloo's 30-minute default.
        timeout = datetime.timedelta(seconds=float(os.environ.get("LLMOS_DIST_TIMEOUT_S", "300")))
        dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timeout)
    return rank, world


def lr_lambda(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def apply_lora(model: torch.nn.Module, cfg: TrainConfig) -> PeftModel:
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,  # type: ignore[arg-type]  # peft annotates int; floats are used as-is
        lora_dropout=cfg.lora_dropout,
        target_modules=list(LORA_TARGETS_ALL if cfg.lora_targets == "all" else LORA_TARGETS), task_type="CAUSAL_LM", bias="none",
    )
    return get_peft_model(model, lora)


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


class Trainer:
    """One training run. Not thread-safe; one per process (rank)."""

    def __init__(
        self,
        model: torch.nn.Module,
        stream: SampleStream,
        cfg: TrainConfig,
        *,
        pad_id: int,
        checkpoint_dir: Path | None = None,
        on_step: Callable[[StepReport], None] | None = None,
        on_checkpoint: Callable[[int, Path], None] | None = None,
        stop_after_steps: int | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.cfg = cfg
        self.stream = stream
        self.pad_id = pad_id
        self.checkpoint_dir = checkpoint_dir
        self.on_step = on_step
        self.on_checkpoint = on_checkpoint
        self.stop_after_steps = stop_after_steps
        self.should_stop = should_stop
        self.stopped_early = False
        self.rank, self.world = init_distributed()
        self.device = pick_device()
        torch.manual_seed(cfg.seed)
        if cfg.method == "lora":
            model = apply_lora(model, cfg)
        self.model = model.to(self.device)
        self.model.train()
        self.trainable = _trainable(self.model)
        self.optimizer = torch.optim.AdamW(
            list(self.trainable.values()), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(cfg.warmup_steps, cfg.steps)
        )
        self.ddp: torch.nn.Module = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )

    def _autocast(self) -> Any:
        if self.cfg.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return torch.autocast(device_type=self.device.type, enabled=False)

    def _resume(self) -> tuple[int, int]:
        ckpt = latest_checkpoint(self.checkpoint_dir)
        if ckpt is None:
            return 0, 0
        load_checkpoint(ckpt, trainable=self.trainable, optimizer=self.optimizer, scheduler=self.scheduler)
        return ckpt.step, ckpt.samples_seen

    def _checkpoint(self, step: int, samples_seen: int) -> None:
        if self.checkpoint_dir is None:
            return
        if self.rank == 0:
            path = save_checkpoint(
                self.checkpoint_dir, step=step, samples_seen=samples_seen, trainable=self.trainable,
                optimizer=self.optimizer, scheduler=self.scheduler,
                meta={"method": self.cfg.method, "world_size": self.world},
            )
            if self.on_checkpoint is not None:
                self.on_checkpoint(step, path)
        if self.world > 1:
            dist.barrier()

    def run(self) -> TrainResult:
        """Train to ``cfg.steps`` (resuming if a checkpoint exists). Raises :class:`TrainingDiverged`."""
        cfg = self.cfg
        start_step, samples_seen = self._resume()
        losses: dict[int, float] = {}
        tokens_total = 0
        t_start = time.perf_counter()
        step = start_step
        loss_value = float("nan")
        global_batch = cfg.batch_size * self.world
        while step < cfg.steps:
            if self.stop_after_steps is not None and step - start_step >= self.stop_after_steps:
                break
            t0 = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)
            step_loss = torch.zeros((), device=self.device)
            step_tokens = 0
            for micro in range(cfg.grad_accum):
                start = samples_seen + micro * global_batch + self.rank * cfg.batch_size
                batch = {k: v.to(self.device) for k, v in self.stream.batch(start, cfg.batch_size, self.pad_id).items()}
                step_tokens += int(batch["attention_mask"].sum())
                with self._autocast():
                    out = self.ddp(**batch)
                loss = out.loss.float() / cfg.grad_accum
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"loss became {loss.item()} at step {step + 1}")
                loss.backward()
                step_loss += loss.detach()
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(list(self.trainable.values()), cfg.max_grad_norm)
            lr = float(self.scheduler.get_last_lr()[0])
            self.optimizer.step()
            self.scheduler.step()
            samples_seen += global_batch * cfg.grad_accum
            step += 1
            stopping = self.should_stop is not None and self.should_stop()
            if self.world > 1:
                # One collective carries loss, tokens and the stop vote, so every rank stops together.
                stats = torch.tensor([float(step_loss), float(step_tokens), float(stopping)], device=self.device)
                dist.all_reduce(stats)
                loss_value, step_tokens = stats[0].item() / self.world, int(stats[1].item())
                stopping = stats[2].item() > 0
            else:
                loss_value = float(step_loss)
            if not math.isfinite(loss_value):
                raise TrainingDiverged(f"loss became {loss_value} at step {step}")
            losses[step] = loss_value
            tokens_total += step_tokens
            dt = time.perf_counter() - t0
            if self.on_step is not None and self.rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps):
                self.on_step(StepReport(step, cfg.steps, loss_value, lr, step_tokens / dt if dt else 0.0, samples_seen))
            if step % cfg.checkpoint_every == 0 or step == cfg.steps or stopping:
                self._checkpoint(step, samples_seen)
            if stopping and step < cfg.steps:
                # Asked to stop (preemption, SIGTERM): the checkpoint above makes it lossless.
                self.stopped_early = True
                break
        self.model.eval()
        return TrainResult(
            self.model, loss_value, losses, start_step, step - start_step, tokens_total,
            time.perf_counter() - t_start, self.stopped_early,
        )


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "generation_config.json")


def save_trained(
    model: torch.nn.Module, out_dir: Path, *, base_ref: str | None = None, base_dir: Path | None = None
) -> Path:
    """Write the result: a PEFT adapter directory for LoRA, a full HF directory otherwise.

    A full model keeps the tokenizer of ``base_dir`` when given (imported
    models bring their own), else gets the llmos tokenizer.
    """
    from llmos.models.family import save_model_dir

    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(model, PeftModel):
        if base_ref is not None:
            model.peft_config["default"].base_model_name_or_path = base_ref
        model.save_pretrained(str(out_dir), safe_serialization=True)
        return out_dir
    if base_dir is None:
        return save_model_dir(model, out_dir)  # type: ignore[arg-type]
    model.save_pretrained(str(out_dir), safe_serialization=True)  # type: ignore[operator]
    for name in TOKENIZER_FILES:
        if (base_dir / name).is_file():
            (out_dir / name).write_bytes((base_dir / name).read_bytes())
    return out_dir
