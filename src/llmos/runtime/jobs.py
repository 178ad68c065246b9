"""The model job runtimes: ``train``, ``finetune``, ``eval`` and ``batch``.

Each ``run_*`` takes a :class:`WorkerContext` and returns the process exit
code. Progress, loss, tokens/s and learning rate stream through the task
reporter (and are printed, so ``llmos logs`` shows them); results are
registered in the model registry with lineage. Registration is idempotent per
job: a retried task that finds its job's version already registered skips it.
"""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmos.core.jobs import BatchSpec, EvalSpec, FinetuneSpec, TrainSpec
from llmos.errors import ValidationError
from llmos.models.registry import ModelRegistry
from llmos.runtime.context import WorkerContext

EXIT_OK = 0
EXIT_STOPPED = 143  # like SIGTERM: the task checkpointed and stopped when asked


def _log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class StopFlag:
    """Set by SIGTERM or by the control plane's ``stop`` reply; polled between steps."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.event = threading.Event()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.event.set())

    def __call__(self) -> bool:
        return self.event.is_set() or self.ctx.reporter.stop_requested


def _samples_needed(spec: TrainSpec, world: int) -> int:
    return spec.steps * spec.batch_size * spec.grad_accum * world


@dataclass
class TrainingSetup:
    """Everything a ``train`` / ``finetune`` run needs, built from its spec (no I/O to the control plane)."""

    model: Any
    tokenizer: Any
    samples: list[Any]
    config: Any
    method: str
    base_ref: str | None
    base_dir: Path | None


def prepare_training(spec: TrainSpec, registry: ModelRegistry, world_size: int = 1) -> TrainingSetup:
    """Load the base (or build the config), the data and the training config of ``spec``.

    Deterministic: the same spec gives the same model, samples and order, which
    is what makes a resumed run match an uninterrupted one.
    """
    from llmos.models.family import create_model
    from llmos.models.loading import load_hf_dir, load_tokenizer_dir
    from llmos.models.tokenizer import load_tokenizer
    from llmos.runtime.data import load_samples
    from llmos.runtime.trainer import TrainConfig

    base_ref: str | None = None
    base_dir: Path | None = None
    if isinstance(spec, FinetuneSpec):
        base = registry.resolve(spec.base_model)
        if base.is_adapter:
            raise ValidationError(f"base_model {base.ref} is an adapter; fine-tune its base {base.base} instead")
        base_ref, base_dir = base.ref, registry.path(base)
        model = load_hf_dir(base_dir)
        tok = load_tokenizer_dir(base_dir)
        method = spec.method
    else:
        model = create_model(spec.model, seed=spec.seed)
        tok = load_tokenizer()
        method = "full"
    need = _samples_needed(spec, world_size)
    samples = load_samples(
        spec.dataset, spec.seq_len, n_examples=min(5000, max(500, need)),
        n_docs=min(20000, max(200, need * spec.seq_len // 40)), seed=spec.seed,
    )
    cfg = TrainConfig(
        steps=spec.steps, batch_size=spec.batch_size, grad_accum=spec.grad_accum, lr=spec.lr,
        warmup_steps=spec.warmup_steps, precision=spec.precision, checkpoint_every=spec.checkpoint_every,
        seed=spec.seed, method="lora" if method == "lora" else "full",
        lora_r=getattr(spec, "lora_r", 8), lora_alpha=getattr(spec, "lora_alpha", 16.0),
        lora_dropout=getattr(spec, "lora_dropout", 0.0), lora_targets=getattr(spec, "lora_targets", "attention"),
    )
    return TrainingSetup(model, tok, samples, cfg, method, base_ref, base_dir)


def run_train(ctx: WorkerContext) -> int:
    """``train`` (from a family config) and ``finetune`` (full or LoRA on a registered base)."""
    from llmos.runtime.data import SampleStream
    from llmos.runtime.trainer import StepReport, Trainer, save_trained

    spec = ctx.spec
    assert isinstance(spec, TrainSpec)
    registry = ctx.registry()
    setup = prepare_training(spec, registry, ctx.world_size)
    base_ref, base_dir, method, cfg, tok = setup.base_ref, setup.base_dir, setup.method, setup.config, setup.tokenizer
    _log(f"{spec.kind} {spec.name}: {len(setup.samples)} samples from {spec.dataset}, method={method}, "
         f"rank {ctx.rank}/{ctx.world_size}")

    def on_step(r: StepReport) -> None:
        _log(f"step {r.step}/{r.total_steps} loss {r.loss:.4f} lr {r.lr:.2e} tokens/s {r.tokens_per_s:.0f}")
        ctx.reporter.report(
            metrics={"loss": r.loss, "lr": r.lr, "tokens_per_s": r.tokens_per_s, "step": r.step},
            progress={"step": r.step, "total_steps": r.total_steps},
        )

    def on_checkpoint(step: int, path: Path) -> None:
        _log(f"checkpoint at step {step}: {path}")
        ctx.reporter.checkpoint(step, str(path))

    ckpt_dir = ctx.gang_checkpoint_dir()
    if ckpt_dir is not None and (ckpt_dir / "LATEST").exists():
        _log(f"resuming from {ckpt_dir / (ckpt_dir / 'LATEST').read_text().strip()}")
    trainer = Trainer(
        setup.model, SampleStream(setup.samples, seed=spec.seed), cfg, pad_id=int(tok.pad_token_id or 0),
        checkpoint_dir=ckpt_dir, on_step=on_step, on_checkpoint=on_checkpoint, should_stop=StopFlag(ctx),
    )
    result = trainer.run()
    if result.stopped_early:
        _log(f"stopped at step {result.start_step + result.steps_run} after checkpointing")
        return EXIT_STOPPED
    _log(f"done: {result.steps_run} steps from step {result.start_step}, final loss {result.final_loss:.4f}, "
         f"{result.tokens_per_s:.0f} tokens/s")
    if ctx.rank != 0:
        return EXIT_OK
    name = spec.output_model or spec.name
    existing = registry.find_by_job(name, ctx.job_id) if ctx.job_id != "local" else None
    if existing is not None:
        _log(f"output already registered as {existing.ref}")
        return EXIT_OK
    with tempfile.TemporaryDirectory(dir=ctx.home) as tmp:
        out = save_trained(result.model, Path(tmp) / "out", base_ref=base_ref, base_dir=base_dir)
        v = registry.register(
            out, name, base=base_ref if method == "lora" else None, parent=base_ref, job_id=ctx.job_id,
            dataset=spec.dataset,
            metrics={"final_loss": result.final_loss},
            info={"method": method, "steps": spec.steps, "config": spec.model if spec.kind == "train" else None,
                  "precision": spec.precision, "workers": ctx.world_size},
        )
    _log(f"registered {v.ref} ({v.kind}, {v.size_bytes} bytes)")
    ctx.reporter.report(message=f"registered {v.ref}", metrics={"final_loss": result.final_loss})
    return EXIT_OK


def run_eval(ctx: WorkerContext) -> int:
    from llmos.models.loading import load_version
    from llmos.runtime.evaluation import evaluate
    from llmos.runtime.trainer import pick_device

    spec = ctx.spec
    assert isinstance(spec, EvalSpec)
    registry = ctx.registry()
    loaded = load_version(registry, spec.model, pick_device())
    _log(f"evaluating {loaded.version.ref if loaded.version else spec.model} on {', '.join(spec.tasks)}")
    metrics = evaluate(loaded.model, loaded.tokenizer, spec.tasks, spec.max_examples)
    for k, val in metrics.items():
        _log(f"{k} = {val:.4f}")
    if loaded.version is not None:
        registry.record_metrics(loaded.version.ref, metrics)
    ctx.reporter.report(metrics=dict(metrics), message=f"eval of {spec.model}: {metrics}")
    return EXIT_OK


def run_batch(ctx: WorkerContext) -> int:
    from llmos.models.loading import load_version
    from llmos.runtime.batch import run_shard
    from llmos.runtime.trainer import pick_device

    spec = ctx.spec
    assert isinstance(spec, BatchSpec)
    loaded = load_version(ctx.registry(), spec.model, pick_device())

    def progress(done: int, total: int) -> None:
        ctx.reporter.report(progress={"step": done, "total_steps": total})

    res = run_shard(
        loaded.model, loaded.tokenizer, spec.input, spec.output, index=ctx.task_index, shards=spec.shards,
        max_tokens=spec.max_tokens, temperature=spec.temperature, on_progress=progress,
    )
    _log(f"shard {res.index}/{spec.shards}: {res.done_before} already done, {res.generated} generated; "
         f"{'merged into ' + spec.output if res.merged else 'waiting for other shards to merge'}")
    ctx.reporter.report(message=f"shard {res.index} done", metrics={"generated": float(res.generated)})
    return EXIT_OK


RUNNERS: dict[str, Any] = {"train": run_train, "finetune": run_train, "eval": run_eval, "batch": run_batch}
