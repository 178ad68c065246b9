"""Training throughput of llmos-small: full vs LoRA fine-tuning, with 1 and 2 data-parallel workers.

    python benchmarks/training.py                 # defaults below; ~3-5 minutes on 2 busy cores
    python benchmarks/training.py --steps 4 --rounds 1 --batch-size 4   # quick look

Every configuration runs the real training loop (:class:`llmos.runtime.trainer.Trainer`:
AdamW, warmup+cosine, grad clipping) on ``builtin:corpus`` blocks of ``--seq-len``
tokens, one torch thread per worker. Data parallelism is torch.distributed
(gloo on CPU, NCCL on CUDA) over ``--workers`` processes, exactly as a gang of
``workers: 2`` runs under the control plane. The figure is global tokens/s
(all workers) per optimizer step, the median over steps after ``--skip``
warm-up steps, and the median over ``--rounds`` interleaved rounds, so the
four configurations see the same machine noise. Ratios printed on the right
are relative to full fine-tuning with 1 worker in the same run.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, args: dict[str, Any], method: str, out: Any) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(args["threads"])
    from llmos.models.family import create_model
    from llmos.runtime.data import SampleStream, load_samples
    from llmos.runtime.trainer import StepReport, TrainConfig, Trainer

    samples = load_samples("builtin:corpus", args["seq_len"], n_docs=2000)
    cfg = TrainConfig(steps=args["steps"], batch_size=args["batch_size"], lr=1e-4, warmup_steps=1, method=method,  # type: ignore[arg-type]
                      lora_r=16, checkpoint_every=10**9)
    rates: list[float] = []

    def on_step(r: StepReport) -> None:
        if r.step > args["skip"]:
            rates.append(r.tokens_per_s)

    trainer = Trainer(create_model(args["model"]), SampleStream(samples), cfg, pad_id=0, on_step=on_step)
    trainer.run()
    if rank == 0:
        out.put((statistics.median(rates), trainer.device.type, sum(p.numel() for p in trainer.trainable.values())))
    if world > 1:
        torch.distributed.destroy_process_group()


def run_config(args: dict[str, Any], method: str, world: int) -> tuple[float, str, int]:
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    mp.start_processes(_worker, args=(world, _free_port(), args, method, q), nprocs=world, join=True,
                       start_method="spawn")
    return q.get()  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="llmos-small")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--skip", type=int, default=2, help="warm-up steps excluded from the figure")
    ap.add_argument("--batch-size", type=int, default=8, help="per worker")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    a = ap.parse_args()
    args = vars(a)
    configs = [("full", 1), ("lora", 1), ("full", 2), ("lora", 2)]
    results: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    meta: dict[tuple[str, int], tuple[str, int]] = {}
    t0 = time.perf_counter()
    for r in range(a.rounds):
        for method, world in configs:
            tps, device, trainable = run_config(args, method, world)
            results[(method, world)].append(tps)
            meta[(method, world)] = (device, trainable)
            print(f"  round {r + 1}: {method:4s} x{world} worker(s): {tps:8.0f} tokens/s", file=sys.stderr, flush=True)
    base = statistics.median(results[("full", 1)])
    print(f"\n{a.model}: fine-tuning throughput (global tokens/s, median of {a.rounds} round(s) x "
          f"{a.steps - a.skip} steps; batch {a.batch_size}/worker x seq {a.seq_len}; {a.threads} thread(s)/worker; "
          f"{os.cpu_count()} CPUs visible)")
    print(f"{'method':8s}{'workers':>8s}{'device':>8s}{'trainable params':>18s}{'tokens/s':>10s}{'vs full x1':>12s}")
    for method, world in configs:
        tps = statistics.median(results[(method, world)])
        device, trainable = meta[(method, world)]
        print(f"{method:8s}{world:>8d}{device:>8s}{trainable:>18,d}{tps:>10.0f}{tps / base:>11.2f}x")
    print(f"(total {time.perf_counter() - t0:.0f} s; command: python benchmarks/training.py "
          + " ".join(sys.argv[1:]) + ")")


if __name__ == "__main__":
    main()
