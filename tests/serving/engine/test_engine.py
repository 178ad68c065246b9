"""Engine behaviour through its public interface: batching, preemption, prefix cache, errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from engine_helpers import PROMPTS

from llmos.errors import NotFound, ValidationError
from llmos.serving.engine import EngineConfig, LLMEngine, SamplingParams

GREEDY = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)


@pytest.fixture(scope="module")
def engine(gqa_dir: Path) -> LLMEngine:
    return LLMEngine(gqa_dir, EngineConfig(kv_cache_gib=0.02, device="cpu"))


def test_continuous_batching_streams_deltas(engine: LLMEngine) -> None:
    """Requests join a running batch; each step yields one token per decoding request."""
    engine.add_request("a", PROMPTS[0], GREEDY)
    first = engine.step()
    assert [o.request_id for o in first] == ["a"] and len(first[0].new_token_ids) == 1
    engine.add_request("b", PROMPTS[1], GREEDY)
    tokens: dict[str, list[int]] = {"a": list(first[0].new_token_ids), "b": []}
    text = {"a": first[0].new_text, "b": ""}
    seen_both = False
    while engine.has_unfinished():
        outs = engine.step()
        seen_both |= {o.request_id for o in outs} == {"a", "b"}
        for o in outs:
            assert len(o.new_token_ids) == 1
            tokens[o.request_id] += o.new_token_ids
            text[o.request_id] += o.new_text
            assert o.num_output_tokens == len(tokens[o.request_id])
    assert seen_both
    alone = engine.generate(PROMPTS[:2], GREEDY)
    assert [tokens["a"], tokens["b"]] == [o.new_token_ids for o in alone]
    assert text["b"] == alone[1].new_text
    assert engine.stats().num_running == 0 and engine.stats().kv_cache_usage == 0.0


def test_preemption_by_recompute_keeps_outputs(gqa_dir: Path) -> None:
    """16 blocks x 4 tokens cannot hold 4 sequences of ~40 tokens: preempt, recompute, same tokens."""
    from llmos.serving.engine.model_runner import kv_bytes_per_block

    params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
    ref = LLMEngine(gqa_dir, EngineConfig(kv_cache_gib=0.02, device="cpu")).generate(PROMPTS, params)
    probe = LLMEngine(gqa_dir, EngineConfig(kv_cache_gib=0.001, device="cpu"))
    per_block = kv_bytes_per_block(probe.model_config, 4, probe.dtype)
    tiny = LLMEngine(gqa_dir, EngineConfig(kv_cache_gib=16 * per_block / 2**30, device="cpu", block_size=4))
    assert tiny.num_blocks == 16
    scored = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True, prompt_logprobs=1)
    outs = tiny.generate(PROMPTS, [params, scored, params, params])
    assert tiny.stats().num_preemptions > 0
    assert [o.new_token_ids for o in outs] == [o.new_token_ids for o in ref]
    assert [o.new_text for o in outs] == [o.new_text for o in ref]
    plp = outs[1].prompt_logprobs
    assert plp is not None and [e.token_id if e else None for e in plp] == [None, *tiny.encode(PROMPTS[1])[1:]]


def test_prefix_cache_hit_lowers_prefill_work_and_ttft(gqa_dir: Path) -> None:
    """Must show 5: a second request sharing a 256-token prefix reuses its KV blocks."""
    engine = LLMEngine(gqa_dir, EngineConfig(kv_cache_gib=0.05, device="cpu"))
    prefix = engine.encode("The history of the llmos operating system begins " * 40)[:256]
    assert len(prefix) == 256
    params = SamplingParams(max_tokens=1, temperature=0.0)

    def ttft(rid: str, ids: list[int]) -> tuple[float, int]:
        before = engine.stats().num_prompt_tokens_computed
        engine.add_request(rid, ids, params)
        t0 = time.perf_counter()
        outs: list = []
        while not outs:
            outs = engine.step()
        dt = time.perf_counter() - t0
        while engine.has_unfinished():
            engine.step()
        assert outs[0].new_token_ids
        return dt, engine.stats().num_prompt_tokens_computed - before, outs[0].num_cached_tokens

    cold, cold_work, cold_cached = ttft("cold", [*prefix, 5, 6, 7])
    hits_before = engine.stats().prefix_cache_hits
    warm, warm_work, warm_cached = ttft("warm", [*prefix, 8, 9, 10, 11])
    assert cold_cached == 0 and warm_cached == 256
    assert engine.stats().prefix_cache_hits - hits_before == 256
    assert (cold_work, warm_work) == (259, 4)
    # Timings on a shared 2-core machine are noisy: compare the best of a few of each.
    colds, warms = [cold], [warm]
    for i in range(3):
        colds.append(ttft(f"c{i}", [100 + i, *prefix[1:], 5])[0])
        warms.append(ttft(f"w{i}", [*prefix, 20 + i, 7])[0])
    assert min(warms) < min(colds)


def test_abort_and_duplicates(engine: LLMEngine) -> None:
    engine.add_request("x", PROMPTS[0], GREEDY)
    with pytest.raises(ValidationError, match="already running"):
        engine.add_request("x", PROMPTS[0], GREEDY)
    engine.step()
    engine.abort("x")
    engine.abort("x")  # idempotent
    outs = engine.step()
    assert [(o.request_id, o.finished, o.finish_reason) for o in outs] == [("x", True, "abort")]
    assert not engine.has_unfinished() and engine.stats().kv_cache_usage == 0.0


@pytest.mark.parametrize(
    ("prompt", "params", "error", "match"),
    [
        ("", GREEDY, ValidationError, "empty"),
        ([1, 99999], GREEDY, ValidationError, "token ids"),
        ("hi", SamplingParams(max_tokens=600), ValidationError, "context length"),
    ],
)
def test_bad_requests(engine: LLMEngine, prompt: str | list[int], params: SamplingParams,
                      error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        engine.add_request("bad", prompt, params)
    assert not engine.has_unfinished()


def test_unknown_adapter_and_params() -> None:
    with pytest.raises(ValidationError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ValidationError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(ValidationError, match="min_tokens"):
        SamplingParams(max_tokens=2, min_tokens=3)
    with pytest.raises(ValidationError, match="logprobs"):
        SamplingParams(logprobs=21)
    assert SamplingParams(stop="\n\n").stop == ("\n\n",)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="stop"):
        SamplingParams(stop=("",))
    with pytest.raises(ValidationError, match="max_num_batched_tokens"):
        EngineConfig(max_num_seqs=8, max_num_batched_tokens=4)


def test_unknown_lora_is_not_found(engine: LLMEngine) -> None:
    with pytest.raises(NotFound):
        engine.add_request("l", "hi", GREEDY, lora_name="nope")


def test_kv_cache_too_small_for_request(gqa_dir: Path) -> None:
    from llmos.serving.engine.model_runner import kv_bytes_per_block

    eng = LLMEngine(gqa_dir, EngineConfig(kv_cache_gib=0.0001, device="cpu"))
    per_block = kv_bytes_per_block(eng.model_config, 16, eng.dtype)
    assert eng.num_blocks == int(0.0001 * 2**30) // per_block
    with pytest.raises(ValidationError, match="KV cache"):
        eng.add_request("big", [5] * 400, SamplingParams(max_tokens=100))


def test_mixed_workload_under_pressure_matches_isolated_runs(gqa_dir: Path) -> None:
    """Shared prefixes, chunked prefill, preemption and aborts together: every surviving request
    still gets exactly the tokens it gets alone, and the cache ends empty."""
    import random

    from llmos.serving.engine.model_runner import kv_bytes_per_block

    rng = random.Random(0)
    ref_engine = LLMEngine(gqa_dir, EngineConfig(kv_cache_gib=0.02, device="cpu"))
    shared = ref_engine.encode("A shared system prompt that many requests start with, " * 3)
    prompts = [[*shared, *(rng.randrange(3, 2000) for _ in range(rng.randrange(1, 30)))] if i % 2 else
               [rng.randrange(3, 2000) for _ in range(rng.randrange(1, 60))] for i in range(12)]
    params = [SamplingParams(max_tokens=rng.randrange(1, 20), temperature=0.0, ignore_eos=True) for _ in prompts]
    expected = [ref_engine.generate([p], sp)[0].new_token_ids for p, sp in zip(prompts, params, strict=True)]

    per_block = kv_bytes_per_block(ref_engine.model_config, 4, ref_engine.dtype)
    engine = LLMEngine(gqa_dir, EngineConfig(kv_cache_gib=40 * per_block / 2**30, device="cpu", block_size=4,
                                             max_num_batched_tokens=24, max_num_seqs=6))
    got: dict[str, list[int]] = {}
    reasons: dict[str, str | None] = {}
    pending = list(range(len(prompts)))
    steps = 0
    while pending or engine.has_unfinished():
        if pending and rng.random() < 0.5:
            i = pending.pop(0)
            engine.add_request(str(i), prompts[i], params[i])
            got[str(i)] = []
        if steps == 7:
            engine.abort("2")
        for out in engine.step():
            got[out.request_id] += out.new_token_ids
            if out.finished:
                reasons[out.request_id] = out.finish_reason
        steps += 1
    stats = engine.stats()
    assert stats.num_preemptions > 0 and stats.prefix_cache_hits > 0
    assert stats.kv_cache_usage == 0.0
    for i in range(len(prompts)):
        if reasons[str(i)] == "abort":
            assert got[str(i)] == expected[i][: len(got[str(i)])]
        else:
            assert got[str(i)] == expected[i], i
