"""Sampling parameters end to end: seeds, top-k/top-p, stops, min_tokens, logprobs, echo scoring."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_helpers import PROMPTS
from transformers import AutoModelForCausalLM

from llmos.serving.engine import EngineConfig, LLMEngine, SamplingParams
from llmos.serving.engine.detokenizer import IncrementalDetokenizer


@pytest.fixture(scope="module")
def engine(gqa_dir: Path) -> LLMEngine:
    return LLMEngine(gqa_dir, EngineConfig(kv_cache_gib=0.02, device="cpu"))


@pytest.fixture(scope="module")
def hf(gqa_dir: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(gqa_dir, local_files_only=True).eval()


def test_seed_is_reproducible_whatever_the_batch(engine: LLMEngine) -> None:
    p = SamplingParams(max_tokens=16, temperature=1.0, seed=1234, ignore_eos=True)
    alone = engine.generate([PROMPTS[0]], p)[0].new_token_ids
    batched = engine.generate([PROMPTS[1], PROMPTS[0], PROMPTS[2]],
                              [SamplingParams(max_tokens=16, temperature=0.8, ignore_eos=True), p,
                               SamplingParams(max_tokens=5, temperature=0.0, ignore_eos=True)])
    assert batched[1].new_token_ids == alone
    other = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=16, temperature=1.0, seed=99, ignore_eos=True))
    assert other[0].new_token_ids != alone


def test_top_k_one_and_tiny_top_p_are_greedy(engine: LLMEngine) -> None:
    greedy = engine.generate(PROMPTS, SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True))
    topk = engine.generate(PROMPTS, SamplingParams(max_tokens=8, temperature=1.5, top_k=1, ignore_eos=True))
    topp = engine.generate(PROMPTS, SamplingParams(max_tokens=8, temperature=1.0, top_p=1e-6, ignore_eos=True))
    assert [o.new_token_ids for o in topk] == [o.new_token_ids for o in greedy]
    assert [o.new_token_ids for o in topp] == [o.new_token_ids for o in greedy]


def test_top_k_limits_choices(engine: LLMEngine, hf: torch.nn.Module) -> None:
    ids = engine.encode(PROMPTS[0])
    with torch.inference_mode():
        logits = hf(torch.tensor([ids])).logits[0, -1]
    allowed = set(logits.topk(3).indices.tolist())
    firsts = {engine.generate([ids], SamplingParams(max_tokens=1, temperature=5.0, top_k=3, seed=s))[0].new_token_ids[0]
              for s in range(30)}
    assert firsts <= allowed and len(firsts) > 1


def test_stop_string_is_cut_and_streamed_safely(engine: LLMEngine) -> None:
    full = engine.generate([PROMPTS[1]], SamplingParams(max_tokens=20, temperature=0.0, ignore_eos=True))[0]
    text = full.new_text
    stop = text[5:8]
    assert len(stop.strip()) > 0
    engine.add_request("s", PROMPTS[1], SamplingParams(max_tokens=20, temperature=0.0, ignore_eos=True, stop=(stop,)))
    streamed = ""
    last = None
    while engine.has_unfinished():
        for o in engine.step():
            streamed += o.new_text
            assert stop not in streamed
            last = o
    assert last is not None and last.finish_reason == "stop"
    assert streamed == text[: text.index(stop)]


def test_stop_token_ids_and_min_tokens(engine: LLMEngine) -> None:
    full = engine.generate([PROMPTS[2]], SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True))[0]
    tok = full.new_token_ids[3]
    first = full.new_token_ids.index(tok)
    out = engine.generate([PROMPTS[2]], SamplingParams(max_tokens=10, temperature=0.0, stop_token_ids=(tok,)))[0]
    assert out.finish_reason == "stop" and out.new_token_ids == full.new_token_ids[: first + 1]
    # min_tokens: the stop token is banned until 6 tokens exist, so the request runs past it.
    late = engine.generate([PROMPTS[2]], SamplingParams(max_tokens=10, temperature=0.0, min_tokens=6,
                                                        stop_token_ids=(tok,)))[0]
    assert len(late.new_token_ids) >= 6 and tok not in late.new_token_ids[:5]


def test_eos_stops_unless_ignored(gqa_dir: Path, engine: LLMEngine, tmp_path: Path) -> None:
    """Make the 4th greedy token the model's EOS (config.json eos_token_id) and watch each rule."""
    import json
    import shutil

    full = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True))[0]
    eos = full.new_token_ids[3]
    first = full.new_token_ids.index(eos)
    model_dir = tmp_path / "eos-model"
    shutil.copytree(gqa_dir, model_dir)
    raw = json.loads((model_dir / "config.json").read_text())
    raw["eos_token_id"] = eos
    (model_dir / "config.json").write_text(json.dumps(raw))
    eng = LLMEngine(model_dir, EngineConfig(kv_cache_gib=0.02, device="cpu"))
    assert eos in eng.eos_token_ids
    stopped = eng.generate([PROMPTS[0]], SamplingParams(max_tokens=10, temperature=0.0))[0]
    assert stopped.finish_reason == "stop" and stopped.new_token_ids == full.new_token_ids[: first + 1]
    hidden = eng.tokenizer.decode(full.new_token_ids[:first], skip_special_tokens=True)
    assert stopped.new_text == hidden  # the EOS token's own text is not returned
    ignored = eng.generate([PROMPTS[0]], SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True))[0]
    assert ignored.finish_reason == "length" and ignored.new_token_ids == full.new_token_ids
    late = eng.generate([PROMPTS[0]], SamplingParams(max_tokens=10, temperature=0.0, min_tokens=first + 2))[0]
    assert eos not in late.new_token_ids[: first + 1] and len(late.new_token_ids) >= first + 2


def test_logprobs_match_transformers(engine: LLMEngine, hf: torch.nn.Module) -> None:
    ids = engine.encode(PROMPTS[0])
    out = engine.generate([ids], SamplingParams(max_tokens=3, temperature=0.0, logprobs=5, ignore_eos=True))[0]
    assert out.logprobs is not None and len(out.logprobs) == 3
    seq = ids + out.new_token_ids
    with torch.inference_mode():
        ref = torch.log_softmax(hf(torch.tensor([seq])).logits[0].float(), dim=-1)
    for i, lp in enumerate(out.logprobs):
        row = ref[len(ids) - 1 + i]
        assert lp.token_id == out.new_token_ids[i]
        assert lp.logprob == pytest.approx(row[lp.token_id].item(), abs=1e-4)
        assert len(lp.top) == 5 and max(lp.top.values()) == pytest.approx(row.max().item(), abs=1e-4)


def test_prompt_logprobs_for_echo_scoring(gqa_dir: Path, hf: torch.nn.Module) -> None:
    """lm-eval loglikelihood: logprob of every prompt token given its prefix, even across chunks."""
    engine = LLMEngine(gqa_dir, EngineConfig(kv_cache_gib=0.02, device="cpu", max_num_batched_tokens=7,
                                             max_num_seqs=4, block_size=4))
    ids = engine.encode(PROMPTS[1])
    engine.generate([ids], SamplingParams(max_tokens=1, temperature=0.0))  # warm the prefix cache
    out = engine.generate([ids], SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=2))[0]
    assert out.num_cached_tokens == 0  # scoring needs every position, so the cache is bypassed
    plp = out.prompt_logprobs
    assert plp is not None and len(plp) == len(ids) and plp[0] is None
    with torch.inference_mode():
        ref = torch.log_softmax(hf(torch.tensor([ids])).logits[0].float(), dim=-1)
    for i in range(1, len(ids)):
        entry = plp[i]
        assert entry is not None and entry.token_id == ids[i]
        assert entry.logprob == pytest.approx(ref[i - 1, ids[i]].item(), abs=1e-4)
        assert len(entry.top) == 2


def test_incremental_detokenizer_matches_full_decode(engine: LLMEngine) -> None:
    tok = engine.tokenizer
    text = "Grüße, 世界! naïve café — done."
    ids = tok.encode(text, add_special_tokens=False)
    det = IncrementalDetokenizer(tok, [], ())
    for t in ids:
        det.append(t)
    det.flush()
    assert det.text == tok.decode(ids, skip_special_tokens=True)
