"""The llmos model family: Llama-architecture models built from a named config.

Quick use (other packages' tests included)::

    from llmos.models.family import create_model_dir
    path = create_model_dir("llmos-tiny", tmp_path / "tiny", seed=0)
    # path holds config.json, generation_config.json, model.safetensors,
    # tokenizer.json, tokenizer_config.json (+ chat template): a plain
    # Hugging Face directory that AutoModelForCausalLM / AutoTokenizer load.

Sizes: ``llmos-tiny`` ~0.8M parameters (seconds to create, for tests),
``llmos-small`` ~27M (hidden 512, 8 layers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as hf_logging

from llmos.errors import ValidationError
from llmos.models.tokenizer import VOCAB_SIZE, load_tokenizer, save_tokenizer


@dataclass(frozen=True)
class FamilyConfig:
    """Architecture of one family member (all Llama: RMSNorm, RoPE, SwiGLU, GQA)."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    max_position_embeddings: int
    vocab_size: int = VOCAB_SIZE
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"{self.name}: hidden_size must be divisible by num_heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"{self.name}: num_heads must be divisible by num_kv_heads")

    def to_hf(self) -> LlamaConfig:
        tok = load_tokenizer()
        return LlamaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            max_position_embeddings=self.max_position_embeddings,
            rms_norm_eps=1e-5,
            tie_word_embeddings=self.tie_word_embeddings,
            bos_token_id=None,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )


# Progress bars from save/load would flood task logs.
hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

FAMILY: dict[str, FamilyConfig] = {
    c.name: c
    for c in (
        FamilyConfig("llmos-tiny", 128, 2, 4, 2, 256, 512),
        FamilyConfig("llmos-small", 512, 8, 8, 8, 1376, 1024),
    )
}


def family_config(name: str) -> FamilyConfig:
    """The named config; raises :class:`ValidationError` for an unknown name."""
    try:
        return FAMILY[name]
    except KeyError:
        raise ValidationError(f"unknown model config {name!r}; known: {', '.join(FAMILY)}") from None


def create_model(name: str, seed: int = 0) -> LlamaForCausalLM:
    """A randomly initialised model of the named config (fp32, on CPU)."""
    cfg = family_config(name).to_hf()
    # Seeding the global generator is the only way HF init is made reproducible.
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.train(False)
    return model


def save_model_dir(model: LlamaForCausalLM, out_dir: Path) -> Path:
    """Write ``model`` + the llmos tokenizer as a Hugging Face directory (safetensors)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    _add_legacy_rope_theta(out_dir / "config.json")
    tok = load_tokenizer()
    GenerationConfig(  # type: ignore[no-untyped-call]
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, do_sample=False
    ).save_pretrained(str(out_dir))
    save_tokenizer(out_dir)
    return out_dir


def _add_legacy_rope_theta(config_path: Path) -> None:
    # transformers 5 nests rope_theta under rope_parameters; transformers 4.x and
    # vLLM read the top-level key, so write both for portability.
    cfg = json.loads(config_path.read_text())
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta")
    if theta is not None and "rope_theta" not in cfg:
        cfg["rope_theta"] = theta
        config_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def create_model_dir(name: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Create a random-init ``name`` model directory at ``out_dir``; deterministic in ``seed``.

    Returns ``out_dir``. Takes well under a second for ``llmos-tiny``.
    """
    return save_model_dir(create_model(name, seed), Path(out_dir))


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
