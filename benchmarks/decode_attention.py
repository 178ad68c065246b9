"""Decode attention per layer: the native kernel vs the compiled and eager paths.

One query token for each of ``--seqs`` sequences over contexts of about N tokens
(N in ``--contexts``; ragged within one block), blocks scattered at random over a
``--blocks``-block cache of one layer (``--kv-heads`` x ``--head-dim``, float32,
head-major as the engine keeps it). Prints milliseconds per call (best of
``--repeats`` timings of ``--calls`` calls) for each path and checks that the
three agree. The eager path is the engine's own (``LlamaModel._attention``'s
gather + two matmuls); the compiled one is ``paged_decode_attention`` under
``torch.compile`` as the engine warms it up.

Run: ``OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/decode_attention.py``
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch


def eager(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, tables: torch.Tensor,
          ctx: torch.Tensor, scale: float) -> torch.Tensor:
    """The engine's eager path: gather whole blocks, mask the padding, two batched matmuls."""
    d, max_blocks = tables.shape
    nkv, _, bs, hd = k_cache.shape
    length = max_blocks * bs
    kd = k_cache.index_select(1, tables.view(-1)).view(nkv, d, length, hd)
    vd = v_cache.index_select(1, tables.view(-1)).view(nkv, d, length, hd)
    g = q.shape[1] // nkv
    qd = q.view(d, nkv, g, hd).permute(1, 0, 2, 3)
    mask = torch.zeros(d, length).masked_fill(torch.arange(length)[None, :] >= ctx[:, None], float("-inf"))
    scores = torch.matmul(qd, kd.transpose(-1, -2)).mul_(scale).add_(mask.view(1, d, 1, length))
    return torch.matmul(scores.softmax(-1), vd).permute(1, 0, 2, 3).reshape(d, q.shape[1], hd)


def timed(fn: object, args: tuple[object, ...], calls: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(*args)  # type: ignore[operator]
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seqs", type=int, default=64)
    ap.add_argument("--contexts", default="48,96,160", help="comma-separated context lengths (tokens)")
    ap.add_argument("--blocks", type=int, default=2048)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from llmos.serving.engine.kernels import load_native_kernels
    from llmos.serving.engine.llama import paged_decode_attention

    native = load_native_kernels()
    if isinstance(native, str):
        print(f"native kernel not available: {native}")
        return 1
    gen = torch.Generator().manual_seed(0)
    nkv, bs, hd = args.kv_heads, args.block_size, args.head_dim
    k_cache = torch.randn(nkv, args.blocks, bs, hd, generator=gen)
    v_cache = torch.randn(nkv, args.blocks, bs, hd, generator=gen)
    compiled = torch.compile(paged_decode_attention, dynamic=True)
    paths = {"native": native.paged_attention, "compiled": compiled, "eager": eager}
    print(f"{args.seqs} sequences, {args.heads} heads / {nkv} KV heads of {hd}, blocks of {bs} scattered over "
          f"{args.blocks}; torch threads {torch.get_num_threads()}; ms per call (best of {args.repeats} x "
          f"{args.calls})")
    print(f"{'context':>8} " + " ".join(f"{p:>9}" for p in paths) + "  compiled/native  eager/native")
    with torch.inference_mode(), torch.fx.experimental._config.patch(use_duck_shape=False):  # type: ignore[attr-defined]
        for n in (int(x) for x in args.contexts.split(",")):
            max_blocks = -(-n // bs)
            tables = torch.randperm(args.blocks, generator=gen)[: args.seqs * max_blocks].view(args.seqs, max_blocks)
            ctx = torch.randint(max(1, n - bs + 1), n + 1, (args.seqs,), generator=gen)
            q = torch.randn(args.seqs, args.heads, hd, generator=gen)
            call = (q, k_cache, v_cache, tables, ctx, hd**-0.5)
            ref = eager(*call)
            ms = {}
            for name, fn in paths.items():
                torch.testing.assert_close(fn(*call), ref, rtol=1e-4, atol=1e-4)  # also warms up / compiles
                ms[name] = timed(fn, call, args.calls, args.repeats)
            print(f"{n:>8} " + " ".join(f"{ms[p]:>9.2f}" for p in paths)
                  + f"  {ms['compiled'] / ms['native']:>15.2f}x {ms['eager'] / ms['native']:>12.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
