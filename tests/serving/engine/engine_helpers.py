"""Helpers shared by the engine tests (imported by name; tests/ is not a package)."""

from __future__ import annotations

from pathlib import Path

import torch

PROMPTS = [
    "Hello there, how are you today?",
    "The quick brown fox jumps over the lazy dog and then",
    "1 + 2 =",
    "a",
]


def make_lora(base_dir: Path, out_dir: Path, seed: int, r: int = 4,
              targets: tuple[str, ...] = ("q_proj", "v_proj"), alpha: int = 8) -> Path:
    """Save a PEFT LoRA adapter for ``base_dir`` with random (non-zero) A and B."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0)
    model = get_peft_model(base, cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    model.save_pretrained(str(out_dir))
    return out_dir


def hf_greedy(model_dir: Path, prompt_ids: list[int], max_new_tokens: int,
              model: torch.nn.Module | None = None) -> list[int]:
    """Reference: transformers' own greedy ``generate`` (EOS ignored, fixed length)."""
    from transformers import AutoModelForCausalLM

    if model is None:
        model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
    ids = torch.tensor([prompt_ids])
    with torch.inference_mode():
        out = model.generate(  # type: ignore[operator]
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
            do_sample=False, pad_token_id=0,
        )
    return list(out[0, len(prompt_ids):].tolist())


def make_loras(base_dir: Path, root: Path, count: int, r: int = 4,
               targets: tuple[str, ...] = ("q_proj", "v_proj"), use_rslora: bool = False) -> list[Path]:
    """``count`` PEFT adapters for ``base_dir`` sharing one config, each with its own random A and B."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), lora_dropout=0.0, use_rslora=use_rslora)
    model = get_peft_model(base, cfg)
    paths = []
    for i in range(count):
        gen = torch.Generator().manual_seed(1000 + i)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        out = root / f"adapter-{i}"
        model.save_pretrained(str(out))
        paths.append(out)
    return paths


def peft_merged_greedy(base_dir: Path, adapter_dir: Path, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """Reference: peft's merged model (W + s * B @ A folded into the base) under transformers' greedy."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload().eval()
    return hf_greedy(base_dir, prompt_ids, max_new_tokens, merged)
