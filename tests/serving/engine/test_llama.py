"""Must show 2: greedy output token-for-token identical to transformers' generate."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from engine_helpers import PROMPTS, hf_greedy
from transformers import AutoModelForCausalLM

from llmos.serving.engine import EngineConfig, LLMEngine, SamplingParams
from llmos.serving.engine import kernels as kernels_mod
from llmos.serving.engine.kernels import NativeKernels, load_native_kernels

GREEDY = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)


@pytest.mark.parametrize("path", ["native", "compiled", "eager"])
@pytest.mark.parametrize("which", ["mha_dir", "gqa_dir"])
def test_greedy_matches_transformers(which: str, path: str, request: pytest.FixtureRequest) -> None:
    model_dir: Path = request.getfixturevalue(which)
    if path != "eager" and not shutil.which("g++"):
        pytest.skip("needs a C++ compiler")
    engine = LLMEngine(model_dir, EngineConfig(kv_cache_gib=0.02, device="cpu", decode_attention=path))
    assert engine.attention_path == path and engine.attention_note is None
    assert (engine.model.decode_attention is None) == (path == "eager")
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


def _paged_case(heads: int, kv_heads: int) -> tuple[torch.Tensor, ...]:
    """Scattered blocks of ragged contexts, and plain attention over each context as the answer."""
    gen = torch.Generator().manual_seed(0)
    hd, bs, nb = 16, 4, 40
    k_cache, v_cache = (torch.randn(kv_heads, nb, bs, hd, generator=gen) for _ in range(2))
    ctx = torch.tensor([1, 4, 5, 13, 20])
    max_blocks = -(-int(ctx.max()) // bs)
    tables = torch.randperm(nb, generator=gen)[: len(ctx) * max_blocks].view(len(ctx), max_blocks)
    q = torch.randn(len(ctx), heads, hd, generator=gen)
    expected = []
    for i, n in enumerate(ctx.tolist()):  # plain attention over each sequence's own slots
        slots = [tables[i, p // bs] * bs + p % bs for p in range(n)]
        k = k_cache.reshape(kv_heads, -1, hd)[:, slots].repeat_interleave(heads // kv_heads, 0)
        v = v_cache.reshape(kv_heads, -1, hd)[:, slots].repeat_interleave(heads // kv_heads, 0)
        w = (q[i][:, None, :] @ k.transpose(1, 2) * hd**-0.5).softmax(-1)
        expected.append((w @ v)[:, 0])
    return q, k_cache, v_cache, tables, ctx, torch.stack(expected)


def _native() -> NativeKernels:
    kernels = load_native_kernels()
    if isinstance(kernels, str):
        pytest.skip(kernels)
    return kernels


@pytest.mark.parametrize("path", ["native", "compiled"])
@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (8, 2)])
def test_decode_attention_kernels_equal_plain_attention(heads: int, kv_heads: int, path: str) -> None:
    """Both fused kernels over scattered blocks of ragged contexts equal attention over each context."""
    from llmos.serving.engine.llama import paged_decode_attention

    q, k_cache, v_cache, tables, ctx, expected = _paged_case(heads, kv_heads)
    hd = q.shape[-1]
    fn = _native().paged_attention if path == "native" else torch.compile(paged_decode_attention, dynamic=True)
    with torch.inference_mode():
        got = fn(q, k_cache, v_cache, tables, ctx, hd**-0.5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_native_kernels_refuse_out_of_range_input_and_write_slots() -> None:
    kernels = _native()
    q, k_cache, v_cache, tables, ctx, _ = _paged_case(4, 2)
    nb, bs = k_cache.shape[1], k_cache.shape[2]
    bad = tables.clone()
    bad[0, 0] = nb  # one past the last block
    with pytest.raises(ValueError, match="out of range"):
        kernels.paged_attention(q, k_cache, v_cache, bad, ctx, 0.25)
    with pytest.raises(ValueError, match="out of range"):
        kernels.paged_attention(q, k_cache, v_cache, tables, ctx + tables.shape[1] * bs, 0.25)
    with pytest.raises(ValueError, match="float32"):
        kernels.paged_attention(q.double(), k_cache, v_cache, tables, ctx, 0.25)
    # write_kv puts each token's rows where index_copy_ on the slot view does, from a strided view.
    kv = torch.randn(3, 2 * 2 * 16)
    k, v = kv[:, :32].view(3, 2, 16), kv[:, 32:].view(3, 2, 16)
    slots = torch.tensor([0, 7, nb * bs - 1])
    want_k, want_v = k_cache.clone(), v_cache.clone()
    want_k.view(2, nb * bs, 16).index_copy_(1, slots, k.transpose(0, 1))
    want_v.view(2, nb * bs, 16).index_copy_(1, slots, v.transpose(0, 1))
    kernels.write_kv(k, v, k_cache, v_cache, slots)
    assert torch.equal(k_cache, want_k) and torch.equal(v_cache, want_v)
    with pytest.raises(ValueError, match="out of range"):
        kernels.write_kv(k, v, k_cache, v_cache, torch.tensor([0, 1, nb * bs]))
    assert torch.equal(k_cache, want_k)  # nothing written by the refused call


def test_native_kernels_build_once_per_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build lands in the cache directory and the next load reuses it (no rebuild)."""
    _native()  # skips without a compiler
    monkeypatch.setenv("LLMOS_KERNEL_CACHE", str(tmp_path))
    cxx = kernels_mod._compiler()
    assert cxx is not None
    first = kernels_mod._build(cxx)
    assert first.parent == tmp_path and first.is_file()
    mtime = first.stat().st_mtime_ns
    assert kernels_mod._build(cxx) == first and first.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary file left behind


def test_decode_attention_setting_is_checked(mha_dir: Path) -> None:
    from llmos.errors import ValidationError

    with pytest.raises(ValidationError, match="decode_attention must be one of"):
        EngineConfig(decode_attention="fast")
    with pytest.raises(ValidationError, match="native decode attention is not available: needs float32"):
        LLMEngine(mha_dir, EngineConfig(kv_cache_gib=0.02, device="cpu", dtype="bfloat16", decode_attention="native"))
    # auto takes the fastest path that runs here; enforce_eager overrides it.
    auto = LLMEngine(mha_dir, EngineConfig(kv_cache_gib=0.02, device="cpu"))
    assert auto.attention_path == ("native" if shutil.which("g++") else "eager")
    assert LLMEngine(mha_dir, EngineConfig(kv_cache_gib=0.02, device="cpu", enforce_eager=True)).attention_path == "eager"


def test_model_config_errors(tmp_path: Path) -> None:
    from llmos.errors import ValidationError

    with pytest.raises(ValidationError, match="does not exist"):
        LLMEngine(tmp_path / "nope")
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ValidationError, match="model_type"):
        LLMEngine(tmp_path)


def _variant(kind: str, root: Path) -> Path:
    """A random-init tiny model of another Llama-family flavour, saved with transformers."""
    import torch
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    from llmos.models.family import save_model_dir
    from llmos.models.tokenizer import VOCAB_SIZE, load_tokenizer

    tok = load_tokenizer()
    common = dict(vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    torch.manual_seed(5)
    model: torch.nn.Module
    if kind == "llama3-rope":
        rope = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
        model = LlamaForCausalLM(LlamaConfig(**common, rope_parameters=rope))
    elif kind == "linear-rope":
        model = LlamaForCausalLM(LlamaConfig(**common, rope_parameters={"rope_type": "linear", "rope_theta": 10000.0,
                                                                        "factor": 2.0}))
    elif kind == "mistral":
        model = MistralForCausalLM(MistralConfig(**common, sliding_window=None))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    return save_model_dir(model.eval(), root / kind)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["llama3-rope", "linear-rope", "mistral", "qwen2"])
def test_family_variants_match_transformers(kind: str, tmp_path: Path) -> None:
    model_dir = _variant(kind, tmp_path)
    engine = LLMEngine(model_dir, EngineConfig(kv_cache_gib=0.01, device="cpu"))
    ids = engine.encode(PROMPTS[1] * 3)
    out = engine.generate([ids], SamplingParams(max_tokens=16, temperature=0.0, ignore_eos=True))[0]
    assert out.new_token_ids == hf_greedy(model_dir, ids, 16)
