"""The memory model: bytes a model needs to serve, fully fine-tune, or LoRA-fine-tune.

Pure arithmetic over a :class:`ModelShape`; no torch. The scheduler's fit
filter sees its result through :func:`request_for_spec`, which raises a job's
per-device (or host) memory floor to the estimate.

Contracts (validated against measured peaks of ``llmos-tiny`` and
``llmos-small`` in ``tests/core/test_memory.py``, within 30%):

- serve: weights + KV cache (2 x layers x kv_heads x head_dim x batch x context
  x dtype bytes) + a forward pass's transient workspace.
- full fine-tune (AdamW): the peak is the larger of *backward* (weights +
  saved activations + gradients) and *optimizer step* (weights + gradients +
  two fp32 moments + the fused update's temporaries).
- LoRA: the same with gradients and moments only for the adapter parameters;
  activations are still saved, since the gradient flows through frozen layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from llmos.core.resources import ResourceRequest

GIB = 1024**3
FP32_BYTES = 4
DTYPE_BYTES: Mapping[str, int] = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2}
# Saved activations per token per layer, in units of hidden / intermediate
# elements (q, k, v, attention output, norms, residuals; gate, up, act, product).
ACT_HIDDEN_FACTOR = 10
ACT_INTERMEDIATE_FACTOR = 4
# Logits, their log-softmax and its gradient are alive together at the loss.
LOGIT_COPIES = 3
# AdamW's foreach update allocates temporaries of about this fraction of the trainable bytes.
OPTIMIZER_TEMP_FRACTION = 0.25
# Runtime overhead of a process (allocator slack, kernels' workspaces), per task.
RUNTIME_OVERHEAD_BYTES = 64 * 1024**2


@dataclass(frozen=True)
class ModelShape:
    """What the memory model needs to know about a decoder-only transformer."""

    num_params: int
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int

    def __post_init__(self) -> None:
        if min(self.num_params, self.num_layers, self.hidden_size, self.num_heads, self.num_kv_heads,
               self.intermediate_size, self.vocab_size) <= 0:
            raise ValueError("every ModelShape figure must be positive")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf_config(cls, cfg: Mapping[str, Any], num_params: int | None = None) -> ModelShape:
        """From a Hugging Face ``config.json`` mapping; parameters estimated if not given."""
        h, layers = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
        heads = int(cfg["num_attention_heads"])
        kv = int(cfg.get("num_key_value_heads") or heads)
        inter, vocab = int(cfg["intermediate_size"]), int(cfg["vocab_size"])
        if num_params is None:
            head_dim = h // heads
            per_layer = 2 * h * h + 2 * h * kv * head_dim + 3 * h * inter + 2 * h
            embeds = vocab * h * (1 if cfg.get("tie_word_embeddings") else 2)
            num_params = layers * per_layer + embeds + h
        return cls(num_params, layers, h, heads, kv, inter, vocab)


# The built-in family (mirrors llmos.models.family.FAMILY, which core may not import).
FAMILY_SHAPES: Mapping[str, ModelShape] = {
    "llmos-tiny": ModelShape(819_840, 2, 128, 4, 2, 256, 2048),
    "llmos-small": ModelShape(27_402_752, 8, 512, 8, 8, 1376, 2048),
}


def lora_params(shape: ModelShape, r: int, targets: Literal["attention", "all"] = "attention") -> int:
    """Parameters of rank-``r`` LoRA on q, k, v, o of every layer (``all``: the MLP's too)."""
    kv_out = shape.num_kv_heads * shape.head_dim
    per_layer = r * (shape.hidden_size + shape.hidden_size) * 2 + r * (shape.hidden_size + kv_out) * 2
    if targets == "all":
        per_layer += 3 * r * (shape.hidden_size + shape.intermediate_size)
    return shape.num_layers * per_layer


def weights_bytes(shape: ModelShape, dtype: str = "fp32") -> int:
    return shape.num_params * DTYPE_BYTES[dtype]


def kv_cache_bytes(shape: ModelShape, batch: int, context_len: int, dtype: str = "fp32") -> int:
    return 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * batch * context_len * DTYPE_BYTES[dtype]


def activation_bytes(shape: ModelShape, batch: int, seq_len: int, precision: str = "fp32") -> int:
    """Activations a training forward pass saves for backward, plus the loss's logits."""
    tokens = batch * seq_len
    per_layer = ACT_HIDDEN_FACTOR * shape.hidden_size + ACT_INTERMEDIATE_FACTOR * shape.intermediate_size
    saved = tokens * shape.num_layers * per_layer * DTYPE_BYTES[precision]
    logits = tokens * shape.vocab_size * FP32_BYTES * LOGIT_COPIES
    return saved + logits


def serve_bytes(shape: ModelShape, batch: int, context_len: int, dtype: str = "fp32") -> int:
    """Weights + KV cache for ``batch`` sequences of ``context_len`` + prefill workspace."""
    tokens = batch * context_len
    workspace = tokens * (
        shape.vocab_size * FP32_BYTES + (4 * shape.hidden_size + 2 * shape.intermediate_size) * DTYPE_BYTES[dtype]
    )
    return weights_bytes(shape, dtype) + kv_cache_bytes(shape, batch, context_len, dtype) + workspace


def train_bytes(
    shape: ModelShape,
    batch: int,
    seq_len: int,
    *,
    method: Literal["full", "lora"] = "full",
    precision: str = "fp32",
    lora_r: int = 8,
    lora_targets: Literal["attention", "all"] = "attention",
) -> int:
    """Peak bytes of one AdamW training step (weights kept in fp32; bf16 is autocast)."""
    weights = weights_bytes(shape, "fp32")
    trainable = (shape.num_params if method == "full" else lora_params(shape, lora_r, lora_targets)) * FP32_BYTES
    acts = activation_bytes(shape, batch, seq_len, precision)
    backward_peak = weights + acts + trainable
    step_peak = weights + trainable * 3 + int(trainable * OPTIMIZER_TEMP_FRACTION)
    return max(backward_peak, step_peak)


def shape_of(model_ref: str, architecture: Mapping[str, Any] | None = None) -> ModelShape | None:
    """The shape of a family name, or from a registered version's architecture record."""
    base = model_ref.split(":", 1)[0]
    if base in FAMILY_SHAPES and not architecture:
        return FAMILY_SHAPES[base]
    if architecture and architecture.get("hidden_size"):
        return ModelShape.from_hf_config(architecture)
    return None


def estimate_job_bytes(spec: Mapping[str, Any], shape: ModelShape) -> int:
    """Memory one task of the job ``spec`` (a spec dict) needs, overhead included."""
    kind = spec.get("kind")
    if kind in ("train", "finetune"):
        method: Literal["full", "lora"] = "full" if kind == "train" or spec.get("method") == "full" else "lora"
        need = train_bytes(
            shape, int(spec.get("batch_size", 8)), int(spec.get("seq_len", 128)),
            method=method, precision=str(spec.get("precision", "fp32")), lora_r=int(spec.get("lora_r", 8)),
            lora_targets="all" if spec.get("lora_targets") == "all" else "attention",
        )
    elif kind == "serve":
        kv = float(spec.get("kv_cache_gib", 0.5)) * GIB
        need = int(weights_bytes(shape) + kv)
    else:  # eval, batch: greedy generation over small batches
        need = serve_bytes(shape, 8, min(512, int(spec.get("max_tokens", 64)) + 256))
    return need + RUNTIME_OVERHEAD_BYTES


def request_for_spec(spec: Mapping[str, Any], base: ResourceRequest) -> ResourceRequest:
    """``base`` with its memory floor raised to the spec's ``estimated_memory_gib``.

    Device jobs get the floor per device (``min_device_memory_gib``); CPU-only
    jobs get it as host memory (``memory_gib``). The user's own figures win
    when larger. Raises ``ValueError`` when no allowed device type is big enough.
    """
    est = spec.get("estimated_memory_gib")
    if not est:
        return base
    est = float(est)
    if base.devices > 0:
        return ResourceRequest(
            devices=base.devices, device_types=base.device_types,
            min_device_memory_gib=max(base.min_device_memory_gib, est), cpus=base.cpus,
            memory_gib=base.memory_gib,
        )
    return ResourceRequest(
        devices=0, device_types=base.device_types, min_device_memory_gib=base.min_device_memory_gib,
        cpus=base.cpus, memory_gib=max(base.memory_gib, est),
    )
