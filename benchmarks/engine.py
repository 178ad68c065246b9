"""Offline throughput of the llmos serving engine vs transformers one request at a time.

Both run in this one process on the same random-init ``llmos-small`` weights (~27M
parameters: hidden 512, 8 layers) with greedy decoding and EOS ignored, so every
request produces exactly ``--max-tokens`` tokens:

- llmos: ``LLMEngine.generate`` over ``--num-prompts`` prompts at once (continuous batching);
- transformers: ``model.generate`` on each prompt in turn (batch size 1, its KV cache),
  timed on ``--hf-requests`` of the prompts; one-at-a-time throughput does not depend on
  how many requests wait, so that sample gives its tokens/s.

Run: ``.venv/bin/python benchmarks/engine.py`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Must be set before torch loads OpenMP: on a small machine shared with other processes,
# spinning OpenMP workers slow both contenders down several-fold. Applies to both sides.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch


def prompts(n: int) -> list[str]:
    topics = ["the weather", "a small robot", "prime numbers", "the ocean", "a busy market", "old trains",
              "mountain rivers", "a chess game"]
    return [f"Write a short story number {i} about {topics[i % len(topics)]} and what happened next:"
            for i in range(n)]


def make_adapters(engine: object, model_dir: Path, root: Path, count: int) -> list[str]:
    """``count`` random PEFT LoRA adapters (non-zero B) registered on ``engine``."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    names = []
    for i in range(count):
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.normal_(0, 0.02)
        model.save_pretrained(str(root / f"lora-{i}"))
        engine.add_lora(f"lora-{i}", root / f"lora-{i}")  # type: ignore[attr-defined]
        names.append(f"lora-{i}")
    return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="llmos-small", help="llmos family config to create (random init)")
    ap.add_argument("--model-dir", type=Path, help="use this HF directory instead of creating one")
    ap.add_argument("--num-prompts", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--hf-requests", type=int, default=4, help="requests timed for the one-at-a-time baseline")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--decode-attention", default="auto", choices=["auto", "native", "compiled", "eager"],
                    help="decode-attention path of the llmos engine (EngineConfig.decode_attention)")
    ap.add_argument("--loras", type=int, default=0,
                    help="also time the same workload spread round-robin over N random PEFT adapters (r=8, q/v)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM

    from llmos.models.family import create_model_dir
    from llmos.serving.engine import EngineConfig, LLMEngine, SamplingParams

    tmp = tempfile.TemporaryDirectory()
    model_dir = args.model_dir or create_model_dir(args.model, Path(tmp.name) / args.model, seed=0)
    texts = prompts(args.num_prompts)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0, ignore_eos=True)

    engine = LLMEngine(model_dir, EngineConfig(max_num_seqs=args.num_prompts, kv_cache_gib=0.5, device=args.device,
                                               max_loras=max(8, args.loras), decode_attention=args.decode_attention))
    n_params = sum(t.numel() for t in [engine.model.embed, engine.model.norm]) + sum(
        t.numel() for layer in engine.model.layers for t in layer.values() if t is not None)
    if engine.model.lm_head is not engine.model.embed:
        n_params += engine.model.lm_head.numel()
    engine.generate(texts[:2], SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))  # warm-up
    t0 = time.perf_counter()
    outs = engine.generate(texts, params)
    llmos_s = time.perf_counter() - t0
    llmos_tokens = sum(len(o.new_token_ids) for o in outs)

    lora_line = ""
    if args.loras:
        names = make_adapters(engine, model_dir, Path(tmp.name), args.loras)
        t0 = time.perf_counter()
        louts = engine.generate(texts, params, lora_name=[names[i % len(names)] for i in range(len(texts))])
        lora_s = time.perf_counter() - t0
        lora_tokens = sum(len(o.new_token_ids) for o in louts)
        lora_line = (f"llmos engine, prompts spread over {args.loras} LoRA adapters in the same batches: "
                     f"{lora_tokens} tokens in {lora_s:.2f} s = {lora_tokens / lora_s:.1f} tok/s")

    hf = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval().to(engine.device)
    hf_tokens = 0
    hf_s = 0.0
    same = 0
    with torch.inference_mode():
        for i, text in enumerate(texts[: args.hf_requests]):
            ids = torch.tensor([engine.encode(text)], device=engine.device)
            t0 = time.perf_counter()
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_tokens,
                              min_new_tokens=args.max_tokens, do_sample=False, pad_token_id=0)
            hf_s += time.perf_counter() - t0
            new = out[0, ids.shape[1]:].tolist()
            hf_tokens += len(new)
            same += new == outs[i].new_token_ids

    llmos_tps = llmos_tokens / llmos_s
    hf_tps = hf_tokens / hf_s
    print(f"model: {args.model_dir or args.model} ({n_params / 1e6:.1f}M params), device {engine.device}, "
          f"torch threads {torch.get_num_threads()}, dtype {engine.dtype}, decode attention {engine.attention_path}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load average {os.getloadavg()[0]:.1f}")
    print(f"workload: {args.num_prompts} prompts x {args.max_tokens} output tokens, greedy, EOS ignored")
    print(f"llmos engine (continuous batching): {llmos_tokens} tokens in {llmos_s:.2f} s = {llmos_tps:.1f} tok/s")
    if lora_line:
        print(lora_line)
    print(f"transformers generate, one at a time: {hf_tokens} tokens in {hf_s:.2f} s = {hf_tps:.1f} tok/s "
          f"({args.hf_requests} requests timed)")
    print(f"speed-up: {llmos_tps / hf_tps:.1f}x; greedy outputs identical on {same}/{args.hf_requests} timed requests")
    print(f"command: {' '.join([sys.executable.split('/')[-1], *sys.argv])}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
