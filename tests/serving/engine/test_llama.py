"""Must show 2: greedy output token-for-token identical to transformers' generate."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import PROMPTS, hf_greedy
from transformers import AutoModelForCausalLM

from llmos.serving.engine import EngineConfig, LLMEngine, SamplingParams

GREEDY = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)


@pytest.mark.parametrize("which", ["mha_dir", "gqa_dir"])
def test_greedy_matches_transformers(which: str, request: pytest.FixtureRequest) -> None:
    model_dir: Path = request.getfixturevalue(which)
    engine = LLMEngine(model_dir, EngineConfig(kv_cache_gib=0.02, device="cpu"))
    outs = engine.generate(PROMPTS, GREEDY)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
    for prompt, out in zip(PROMPTS, outs, strict=True):
        ids = engine.encode(prompt)
        assert out.new_token_ids == hf_greedy(model_dir, ids, GREEDY.max_tokens, hf), prompt
        assert out.finish_reason == "length"
        assert out.new_text == engine.tokenizer.decode(out.new_token_ids, skip_special_tokens=True)


def test_chunked_prefill_and_small_blocks_match(gqa_dir: Path) -> None:
    """Prompts cut into 5-token chunks over 4-token blocks give the same tokens."""
    cfg = EngineConfig(kv_cache_gib=0.02, block_size=4, max_num_batched_tokens=5, max_num_seqs=4, device="cpu")
    engine = LLMEngine(gqa_dir, cfg)
    small = engine.generate(PROMPTS, SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True))
    ref = LLMEngine(gqa_dir, EngineConfig(kv_cache_gib=0.02, device="cpu")).generate(
        PROMPTS, SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True))
    assert [o.new_token_ids for o in small] == [o.new_token_ids for o in ref]


def test_model_config_errors(tmp_path: Path) -> None:
    from llmos.errors import ValidationError

    with pytest.raises(ValidationError, match="does not exist"):
        LLMEngine(tmp_path / "nope")
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ValidationError, match="model_type"):
        LLMEngine(tmp_path)
