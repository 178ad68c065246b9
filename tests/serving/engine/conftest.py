"""Fixtures for the engine tests: real random-init Llama directories and PEFT adapters.

Models are tiny (≤ 1M parameters) so a forward pass costs milliseconds on 2 cores.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from engine_helpers import make_lora

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

@pytest.fixture(scope="session")
def gqa_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``llmos-tiny``: 4 query heads over 2 KV heads (grouped-query attention), untied head."""
    from llmos.models.family import create_model_dir

    return create_model_dir("llmos-tiny", tmp_path_factory.mktemp("gqa") / "llmos-tiny", seed=0)


@pytest.fixture(scope="session")
def mha_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with as many KV heads as query heads, tied embeddings, rope_theta 500000,
    saved in the transformers-4 layout (top-level rope_theta, ``rope_scaling: null``)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmos.models.family import save_model_dir
    from llmos.models.tokenizer import VOCAB_SIZE, load_tokenizer

    tok = load_tokenizer()
    cfg = LlamaConfig(
        vocab_size=VOCAB_SIZE, hidden_size=96, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
        tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        bos_token_id=None, rope_theta=500000.0,
    )
    torch.manual_seed(3)
    model = LlamaForCausalLM(cfg).eval()
    out = save_model_dir(model, tmp_path_factory.mktemp("mha") / "tiny-mha")
    raw = json.loads((out / "config.json").read_text())
    raw.pop("rope_parameters", None)
    raw["rope_theta"] = 500000.0
    raw["rope_scaling"] = None
    (out / "config.json").write_text(json.dumps(raw))
    return out


@pytest.fixture(scope="session")
def lora_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    root = tmp_path_factory.mktemp("loras")

    def factory(base_dir: Path, name: str, seed: int, **kw: object) -> Path:
        out = root / name
        if not (out / "adapter_model.safetensors").exists():
            make_lora(base_dir, out, seed, **kw)  # type: ignore[arg-type]
        return out

    return factory


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a 2-core machine shared with
    other test runs OpenMP spin-waiting makes 2 threads 10x slower; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
