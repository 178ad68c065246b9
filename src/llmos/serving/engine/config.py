"""Engine configuration, per-request sampling parameters and the model's shape.

All three are frozen dataclasses checked in ``__post_init__``: a bad value raises
:class:`llmos.errors.ValidationError` at construction, so nothing downstream has to
re-check them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmos.errors import ValidationError

_DTYPES = ("auto", "float32", "bfloat16", "float16")
DECODE_ATTENTION = ("auto", "native", "compiled", "eager")


@dataclass(frozen=True)
class EngineConfig:
    """How one engine instance sizes its batch, KV cache and adapter cache.

    ``max_num_batched_tokens`` caps the tokens computed in one step (prefill chunks
    plus decodes); ``kv_cache_gib`` is the size of the preallocated paged KV cache;
    ``max_loras`` is how many LoRA adapters stay resident before the least recently
    used one is evicted. ``device`` None picks CUDA when available, else CPU.
    ``decode_attention`` picks the decode-attention path: ``native`` (a C++ kernel built
    once per machine, float32 on CPU), ``compiled`` (``torch.compile``; seconds at load,
    once per process), ``eager``, or ``auto`` (the fastest that runs here, as measured:
    native, then compiled, then eager; eager on CUDA until measured there).
    ``enforce_eager`` (as in vLLM) is ``decode_attention="eager"``.
    """

    max_num_seqs: int = 64
    max_num_batched_tokens: int = 2048
    block_size: int = 16
    kv_cache_gib: float = 0.5
    enable_prefix_caching: bool = True
    max_loras: int = 8
    max_lora_rank: int = 64
    device: str | None = None
    dtype: str = "auto"
    enforce_eager: bool = False
    decode_attention: str = "auto"

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1:
            raise ValidationError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.block_size < 1:
            raise ValidationError(f"block_size must be >= 1, got {self.block_size}")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValidationError(
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= "
                f"max_num_seqs ({self.max_num_seqs}) so every running sequence can decode"
            )
        if not (self.kv_cache_gib > 0 and math.isfinite(self.kv_cache_gib)):
            raise ValidationError(f"kv_cache_gib must be > 0, got {self.kv_cache_gib}")
        if self.max_loras < 1:
            raise ValidationError(f"max_loras must be >= 1, got {self.max_loras}")
        if self.decode_attention not in DECODE_ATTENTION:
            raise ValidationError(
                f"decode_attention must be one of {', '.join(DECODE_ATTENTION)}, got {self.decode_attention!r}")
        if self.max_lora_rank < 1:
            raise ValidationError(f"max_lora_rank must be >= 1, got {self.max_lora_rank}")
        if self.dtype not in _DTYPES:
            raise ValidationError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}")


@dataclass(frozen=True)
class SamplingParams:
    """What one request asks of the sampler; mirrors vLLM's SamplingParams subset.

    ``temperature`` 0 means greedy. ``top_k`` 0 or -1 is off. ``stop`` strings are cut
    from the returned text. ``min_tokens`` suppresses EOS and ``stop_token_ids`` until
    that many tokens were generated. ``logprobs`` N returns the chosen token's logprob
    plus the top N; ``prompt_logprobs`` N does the same for every prompt token after
    the first (what lm-evaluation-harness needs to score with ``echo``).
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    min_tokens: int = 0
    ignore_eos: bool = False
    logprobs: int | None = None
    prompt_logprobs: int | None = None

    def __post_init__(self) -> None:
        # Lists are accepted for convenience (JSON bodies) but stored as tuples so the
        # object stays hashable and immutable.
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)  # one string, not its characters
        object.__setattr__(self, "stop", stop)
        object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))
        if self.max_tokens < 1:
            raise ValidationError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ValidationError(f"temperature must be >= 0, got {self.temperature}")
        if not (0 < self.top_p <= 1):
            raise ValidationError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < -1:
            raise ValidationError(f"top_k must be -1, 0 (off) or > 0, got {self.top_k}")
        if self.min_tokens < 0:
            raise ValidationError(f"min_tokens must be >= 0, got {self.min_tokens}")
        if self.min_tokens > self.max_tokens:
            raise ValidationError(
                f"min_tokens ({self.min_tokens}) must be <= max_tokens ({self.max_tokens})"
            )
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValidationError("stop strings must be non-empty strings")
        if any(t < 0 for t in self.stop_token_ids):
            raise ValidationError("stop_token_ids must be non-negative")
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is not None and not (0 <= value <= 20):
                raise ValidationError(f"{name} must be between 0 and 20, got {value}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


_ROPE_TYPES = ("default", "linear", "llama3")


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a Llama-family model, read from a Hugging Face ``config.json``."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool = False
    mlp_bias: bool = False
    torch_dtype: str = "float32"
    rope_scaling: dict[str, Any] = field(default_factory=dict)
    eos_token_ids: tuple[int, ...] = ()
    model_type: str = "llama"

    @classmethod
    def from_dir(cls, model_dir: Path) -> ModelConfig:
        """Parse ``model_dir/config.json`` (transformers 4.x or 5.x layout)."""
        path = model_dir / "config.json"
        if not path.is_file():
            raise ValidationError(f"{model_dir} has no config.json; expected a Hugging Face model directory")
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{path} is not valid JSON: {exc}") from exc
        model_type = str(raw.get("model_type", ""))
        if model_type not in ("llama", "mistral", "qwen2"):
            raise ValidationError(
                f"unsupported model_type {model_type!r}; the engine serves Llama-family models"
            )
        window = raw.get("sliding_window")
        uses_window = raw.get("use_sliding_window", model_type == "mistral")
        if uses_window and window is not None and int(window) < int(raw.get("max_position_embeddings", 0)):
            raise ValidationError("sliding-window attention is not supported by the engine")
        if raw.get("hidden_act", "silu") != "silu":
            raise ValidationError(f"unsupported hidden_act {raw.get('hidden_act')!r}")
        try:
            heads = int(raw["num_attention_heads"])
            hidden = int(raw["hidden_size"])
            # transformers 5 moved rope_theta/rope_scaling into ``rope_parameters``.
            rope_params = raw.get("rope_parameters") or {}
            rope_scaling = raw.get("rope_scaling") or dict(rope_params)
            rope_theta = float(raw.get("rope_theta") or rope_params.get("rope_theta") or 10000.0)
            rope_type = rope_scaling.get("rope_type", rope_scaling.get("type", "default")) or "default"
            if rope_type not in _ROPE_TYPES:
                raise ValidationError(f"unsupported rope scaling type {rope_type!r}; supported: {_ROPE_TYPES}")
            rope_scaling = {**rope_scaling, "rope_type": rope_type}
            eos = raw.get("eos_token_id")
            eos_ids = tuple(int(e) for e in eos) if isinstance(eos, list) else (() if eos is None else (int(eos),))
            cfg = cls(
                vocab_size=int(raw["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(raw["intermediate_size"]),
                num_hidden_layers=int(raw["num_hidden_layers"]),
                num_attention_heads=heads,
                num_key_value_heads=int(raw.get("num_key_value_heads") or heads),
                head_dim=int(raw.get("head_dim") or hidden // heads),
                rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
                rope_theta=rope_theta,
                max_position_embeddings=int(raw.get("max_position_embeddings", 2048)),
                tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
                attention_bias=bool(raw.get("attention_bias", model_type == "qwen2")),
                mlp_bias=bool(raw.get("mlp_bias", False)),
                torch_dtype=str(raw.get("torch_dtype") or raw.get("dtype") or "float32"),
                rope_scaling=rope_scaling,
                eos_token_ids=eos_ids,
                model_type=model_type,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"{path} is missing or has a bad field: {exc}") from exc
        if cfg.num_attention_heads % cfg.num_key_value_heads:
            raise ValidationError("num_attention_heads must be a multiple of num_key_value_heads")
        return cfg
