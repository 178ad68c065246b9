"""Must show 3: many LoRA adapters over one base, batched together, equal to peft's merged model."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import PROMPTS, hf_greedy, make_loras, peft_merged_greedy

from llmos.errors import NotFound, ValidationError
from llmos.serving.engine import EngineConfig, LLMEngine, SamplingParams

GREEDY = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)


@pytest.fixture(scope="module")
def sixteen(gqa_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_loras(gqa_dir, tmp_path_factory.mktemp("sixteen"), 16)


def test_sixteen_adapters_in_one_batch_equal_peft_merged_and_fit_memory(gqa_dir: Path, sixteen: list[Path]) -> None:
    engine = LLMEngine(gqa_dir, EngineConfig(kv_cache_gib=0.02, device="cpu", max_loras=16))
    base_bytes = engine.model.num_parameter_bytes()
    for i, path in enumerate(sixteen):
        engine.add_lora(f"a{i}", path)
    assert sorted(engine.list_loras()) == sorted(f"a{i}" for i in range(16))
    resident = base_bytes + engine.lora_manager.resident_bytes
    print(f"base {base_bytes} B, base + 16 adapters {resident} B = {resident / base_bytes:.3f}x")
    assert resident <= 1.3 * base_bytes

    prompt_ids = engine.encode(PROMPTS[0])
    # One generate call: 16 adapter rows plus a base-model row share every step.
    outs = engine.generate([prompt_ids] * 17, GREEDY, lora_name=[*(f"a{i}" for i in range(16)), None])
    assert engine.stats().num_loras_resident == 16
    assert outs[16].new_token_ids == hf_greedy(gqa_dir, prompt_ids, GREEDY.max_tokens)
    distinct = {tuple(o.new_token_ids) for o in outs}
    assert len(distinct) > 8  # adapters really change the output
    for i, path in enumerate(sixteen):
        assert outs[i].new_token_ids == peft_merged_greedy(gqa_dir, path, prompt_ids, GREEDY.max_tokens), i


def test_all_projections_rslora_and_lru_eviction(gqa_dir: Path, tmp_path: Path) -> None:
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    paths = make_loras(gqa_dir, tmp_path, 3, r=8, targets=targets, use_rslora=True)
    engine = LLMEngine(gqa_dir, EngineConfig(kv_cache_gib=0.02, device="cpu", max_loras=2))
    for i, p in enumerate(paths):
        engine.add_lora(f"x{i}", p)
    assert len(engine.lora_manager.resident()) == 2 and engine.lora_manager.num_evictions == 1
    prompt_ids = engine.encode(PROMPTS[1])
    expected = [peft_merged_greedy(gqa_dir, p, prompt_ids, GREEDY.max_tokens) for p in paths]
    # Three adapters, budget two: the scheduler never mixes more than two, evicted ones reload.
    outs = engine.generate([prompt_ids] * 3, GREEDY, lora_name=["x0", "x1", "x2"])
    assert [o.new_token_ids for o in outs] == expected
    assert engine.lora_manager.num_evictions >= 2
    engine.remove_lora("x1")
    assert engine.list_loras() == ["x0", "x2"]
    with pytest.raises(NotFound):
        engine.remove_lora("x1")


def test_adapter_for_another_base_is_rejected(gqa_dir: Path, mha_dir: Path, tmp_path: Path) -> None:
    foreign = make_loras(mha_dir, tmp_path, 1)[0]
    engine = LLMEngine(gqa_dir, EngineConfig(kv_cache_gib=0.01, device="cpu"))
    with pytest.raises(ValidationError, match="does not match the base"):
        engine.add_lora("foreign", foreign)
    with pytest.raises(ValidationError, match="not a PEFT adapter"):
        engine.add_lora("empty", tmp_path)
    with pytest.raises(ValidationError, match="does not exist"):
        engine.add_lora("missing", tmp_path / "nope")
    assert engine.list_loras() == []


def test_prefix_cache_is_per_adapter_and_per_load(gqa_dir: Path, sixteen: list[Path]) -> None:
    """KV computed under one adapter is never reused for another, nor after a reload under the same name."""
    engine = LLMEngine(gqa_dir, EngineConfig(kv_cache_gib=0.02, device="cpu", block_size=4))
    engine.add_lora("p", sixteen[0])
    prompt = engine.encode(PROMPTS[1])
    first = engine.generate([prompt], GREEDY, lora_name="p")[0]
    again = engine.generate([prompt], GREEDY, lora_name="p")[0]
    assert again.num_cached_tokens > 0 and again.new_token_ids == first.new_token_ids
    assert engine.generate([prompt], GREEDY)[0].num_cached_tokens == 0  # base model: other KV
    engine.add_lora("p", sixteen[1])  # same name, other weights
    replaced = engine.generate([prompt], GREEDY, lora_name="p")[0]
    assert replaced.num_cached_tokens == 0
    assert replaced.new_token_ids == peft_merged_greedy(gqa_dir, sixteen[1], prompt, GREEDY.max_tokens)


def test_vanished_adapter_fails_its_requests_only(gqa_dir: Path, tmp_path: Path) -> None:
    import shutil

    paths = make_loras(gqa_dir, tmp_path, 2)
    engine = LLMEngine(gqa_dir, EngineConfig(kv_cache_gib=0.02, device="cpu", max_loras=1))
    engine.add_lora("gone", paths[0])
    engine.add_lora("kept", paths[1])  # evicts "gone" from memory (budget 1)
    shutil.rmtree(paths[0])
    outs = engine.generate([PROMPTS[0], PROMPTS[0]], GREEDY, lora_name=["gone", None])
    assert outs[0].finish_reason == "abort"
    assert outs[1].finish_reason == "length" and len(outs[1].new_token_ids) == GREEDY.max_tokens
