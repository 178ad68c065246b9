"""Submit-time checks of model jobs: bad data fails before any device is held.

Called by the jobs API (``POST /v1/jobs``) right after the spec parses. For
``train``, ``finetune``, ``eval``, ``batch`` and ``serve`` it checks that the
models and adapters exist and fit each other, that datasets and batch inputs
parse and are not empty, and fills ``estimated_memory_gib`` from the memory
model (:mod:`llmos.core.memory`) so the scheduler's fit filter can use it.
Raises :class:`ValidationError` (HTTP 400) with a message naming the problem.
Reads user files fully; no torch import.
"""

from __future__ import annotations

import json
from pathlib import Path

from llmos.core import memory
from llmos.core.jobs import BatchSpec, EvalSpec, FinetuneSpec, JobSpecBase, ServeSpec, TrainSpec
from llmos.errors import NotFound, ValidationError
from llmos.models import datasets
from llmos.models.artifacts import ArtifactStore
from llmos.models.registry import ModelRegistry, ModelVersion, check_adapter_fits, read_architecture
from llmos.store import Store

UNKNOWN_MODEL = "unknown_model"
MODEL_KINDS = ("train", "finetune", "eval", "batch", "serve")
EVAL_TASK_NAMES = ("perplexity", "exact_match", "tasks", *datasets.TASKS)


def _resolve(registry: ModelRegistry, ref: str, what: str) -> ModelVersion:
    try:
        return registry.resolve(ref)
    except NotFound as e:
        raise ValidationError(f"unknown {what} {ref!r}: {e.message}", code=UNKNOWN_MODEL) from None


def _check_batch_input(path: str) -> None:
    p = Path(path)
    if not p.is_file():
        raise ValidationError(f"batch input not found: {p}")
    n = 0
    for n, rec in enumerate(datasets.iter_jsonl(p), start=1):
        msgs = rec.get("messages")
        has_user = isinstance(msgs, list) and any(
            isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str) for m in msgs
        )
        if not (isinstance(rec.get("prompt"), str) and rec["prompt"]) and not has_user:
            raise ValidationError(f"{p} record {n}: needs a non-empty 'prompt' string or user 'messages'")
    if n == 0:
        raise ValidationError(f"batch input {p} is empty")


def _check_serve(spec: ServeSpec, registry: ModelRegistry) -> ModelVersion | None:
    model_path = Path(spec.model)
    if model_path.is_absolute():
        if not model_path.is_dir():
            raise ValidationError(f"model directory not found: {model_path}")
        arch = read_architecture(model_path) if (model_path / "config.json").is_file() else {}
        for a in spec.adapters:
            if Path(a).is_absolute():
                if not (Path(a) / "adapter_model.safetensors").is_file():
                    raise ValidationError(f"adapter directory {a} has no adapter_model.safetensors")
                check_adapter_fits(Path(a), arch)
            else:
                check_adapter_fits(registry.path(_resolve(registry, a, "adapter")), arch)
        return None
    base = _resolve(registry, spec.model, "model")
    for a in spec.adapters:
        if Path(a).is_absolute():
            check_adapter_fits(Path(a), base.info.get("architecture", {}))
        else:
            _resolve(registry, a, "adapter")
            registry.check_adapter_for(a, base.ref)
    return base


def admit_in(spec: JobSpecBase, store: Store, home: str | Path) -> JobSpecBase:
    """:func:`admit` against the registry of a control plane (its store, ``home/artifacts``)."""
    if spec.kind not in MODEL_KINDS:  # type: ignore[attr-defined]
        return spec
    return admit(spec, ModelRegistry(store, ArtifactStore(Path(home) / "artifacts")))


def admit(spec: JobSpecBase, registry: ModelRegistry) -> JobSpecBase:
    """Validate a model job against the registry and data; returns it with the memory estimate.

    Other kinds pass through unchanged. Not idempotent only in that the
    registry may change between calls.
    """
    shape: memory.ModelShape | None = None
    if isinstance(spec, FinetuneSpec):
        base = _resolve(registry, spec.base_model, "base model")
        if base.is_adapter:
            raise ValidationError(f"base_model {base.ref} is an adapter; fine-tune its base {base.base} instead")
        datasets.validate_dataset(spec.dataset)
        shape = memory.shape_of(base.ref, base.info.get("architecture"))
    elif isinstance(spec, TrainSpec):
        if spec.model not in memory.FAMILY_SHAPES:
            raise ValidationError(
                f"unknown model config {spec.model!r} for train; known: {', '.join(memory.FAMILY_SHAPES)}",
                code=UNKNOWN_MODEL,
            )
        datasets.validate_dataset(spec.dataset)
        shape = memory.FAMILY_SHAPES[spec.model]
    elif isinstance(spec, EvalSpec):
        v = _resolve(registry, spec.model, "model")
        for t in spec.tasks:
            if t not in EVAL_TASK_NAMES:
                raise ValidationError(f"unknown eval task {t!r}; known: {', '.join(EVAL_TASK_NAMES)}")
        shape = memory.shape_of(v.ref, v.info.get("architecture"))
    elif isinstance(spec, BatchSpec):
        v = _resolve(registry, spec.model, "model")
        _check_batch_input(spec.input)
        shape = memory.shape_of(v.ref, v.info.get("architecture"))
    elif isinstance(spec, ServeSpec):
        served = _check_serve(spec, registry)
        if served is not None:
            shape = memory.shape_of(served.ref, served.info.get("architecture"))
    if shape is None or spec.estimated_memory_gib is not None:
        return spec
    data = json.loads(spec.model_dump_json())
    est = round(memory.estimate_job_bytes(data, shape) / memory.GIB, 3)
    try:
        memory.request_for_spec({**data, "estimated_memory_gib": est}, spec.resources.to_request())
    except ValueError as e:
        raise ValidationError(f"the memory model estimates {est:g} GiB per task: {e}") from None
    return spec.model_copy(update={"estimated_memory_gib": est})
