"""Load registered models (and adapters over their base) into torch, offline.

Who calls: runtimes (finetune, eval, batch) inside workers, tests, the
quickstart. Loading never touches the network (``local_files_only``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from llmos.models.registry import ModelRegistry, ModelVersion


@dataclass(frozen=True)
class LoadedModel:
    version: ModelVersion | None
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    base_dir: Path


def load_hf_dir(path: Path, device: torch.device | None = None) -> PreTrainedModel:
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    if device is not None:
        model = model.to(device)  # type: ignore[arg-type]
    model.train(False)
    return model


def load_tokenizer_dir(path: Path) -> PreTrainedTokenizerBase:
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_version(
    registry: ModelRegistry, ref: str, device: torch.device | None = None, *, merge_adapter: bool = True
) -> LoadedModel:
    """The model ``ref`` names; an adapter comes applied to its base (merged by default)."""
    v = registry.resolve(ref)
    if v.is_adapter:
        assert v.base is not None
        base_dir = registry.path(v.base)
        base = load_hf_dir(base_dir, device)
        peft_model = PeftModel.from_pretrained(base, str(registry.path(v)), is_trainable=False)
        model: torch.nn.Module = peft_model.merge_and_unload() if merge_adapter else peft_model
    else:
        base_dir = registry.path(v)
        model = load_hf_dir(base_dir, device)
    model.train(False)
    return LoadedModel(v, model, load_tokenizer_dir(base_dir), base_dir)
