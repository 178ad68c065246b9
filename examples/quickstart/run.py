"""Quickstart, in one process: pretrain llmos-small on the built-in corpus, LoRA-fine-tune it on
addition, and measure held-out exact-match accuracy before and after.

    python examples/quickstart/run.py                      # ~10 CPU minutes on 2 cores
    python examples/quickstart/run.py --pretrain-steps 20 --finetune-steps 40   # a smoke run

Everything is real and lands in the registry of ``--home`` (default
``/tmp/llmos-quickstart``): ``small-pre:N`` (the pretrained model, lineage:
builtin:corpus) and ``adder:N`` (a PEFT LoRA adapter whose base is
``small-pre:N``), each with its eval metrics recorded. The same steps as
control-plane jobs are in this directory's ``*.yaml`` (see README.md).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from llmos.core.jobs import parse_job_spec
from llmos.models.loading import load_version
from llmos.models.registry import ModelRegistry
from llmos.runtime.data import SampleStream
from llmos.runtime.evaluation import exact_match, perplexity
from llmos.runtime.jobs import prepare_training
from llmos.runtime.trainer import StepReport, Trainer, save_trained


def train(registry: ModelRegistry, spec_dict: dict, out_name: str, home: Path) -> tuple[str, float, float]:
    spec = parse_job_spec(spec_dict)
    setup = prepare_training(spec, registry)  # type: ignore[arg-type]
    every = max(1, spec.steps // 10)  # type: ignore[attr-defined]

    def log(r: StepReport) -> None:
        if r.step % every == 0 or r.step == r.total_steps:
            print(f"  step {r.step}/{r.total_steps} loss {r.loss:.3f} lr {r.lr:.1e} tokens/s {r.tokens_per_s:.0f}",
                  flush=True)

    t0 = time.perf_counter()
    result = Trainer(setup.model, SampleStream(setup.samples, seed=0), setup.config,
                     pad_id=int(setup.tokenizer.pad_token_id or 0), checkpoint_dir=home / "checkpoints" / f"{out_name}-{time.time_ns()}",
                     on_step=log).run()
    elapsed = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        out = save_trained(result.model, Path(tmp) / "out", base_ref=setup.base_ref, base_dir=setup.base_dir)
        v = registry.register(out, out_name, base=setup.base_ref if setup.method == "lora" else None,
                              parent=setup.base_ref, dataset=spec_dict["dataset"],
                              metrics={"final_loss": result.final_loss},
                              info={"method": setup.method, "steps": spec_dict["steps"]})
    return v.ref, elapsed, result.tokens_per_s


def evaluate(registry: ModelRegistry, ref: str, n: int) -> dict[str, float]:
    loaded = load_version(registry, ref)
    em = exact_match(loaded.model, loaded.tokenizer, "addition", n=n)
    metrics = {"exact_match/addition": em.accuracy, "perplexity": perplexity(loaded.model, loaded.tokenizer, 100)}
    registry.record_metrics(ref, metrics)
    print(f"  {ref}: held-out addition exact match {em.correct}/{em.total} = {em.accuracy:.1%}, "
          f"perplexity {metrics['perplexity']:.2f}", flush=True)
    return metrics


def pretrain(registry: ModelRegistry, args: argparse.Namespace) -> tuple[str, float, float]:
    return train(registry, {
        "kind": "train", "name": "small-pre", "model": "llmos-small", "dataset": "builtin:corpus",
        "steps": args.pretrain_steps, "batch_size": 8, "seq_len": 64, "lr": 2e-3, "warmup_steps": 10,
        "checkpoint_every": 50,
    }, "small-pre", args.home)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path("/tmp/llmos-quickstart"))
    ap.add_argument("--pretrain-steps", type=int, default=200)
    ap.add_argument("--finetune-steps", type=int, default=200)
    ap.add_argument("--eval-examples", type=int, default=100)
    ap.add_argument("--reuse-pretrained", action="store_true", help="skip step 1 if small-pre is registered")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is fastest on a shared machine (busy cores make OpenMP spin)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    registry = ModelRegistry.open(args.home)
    t_all = time.perf_counter()

    existing = [v for v in registry.versions() if v.name == "small-pre"] if args.reuse_pretrained else []
    if existing:
        pre = existing[-1].ref
        print(f"1/4 reuse the pretrained {pre}", flush=True)
    else:
        print(f"1/4 pretrain llmos-small on builtin:corpus ({args.pretrain_steps} steps)", flush=True)
        pre, t_pre, tps_pre = pretrain(registry, args)
        print(f"  registered {pre} in {t_pre:.0f} s ({tps_pre:.0f} tokens/s)", flush=True)


    print("2/4 evaluate before fine-tuning", flush=True)
    before = evaluate(registry, pre, args.eval_examples)

    print(f"3/4 LoRA-fine-tune {pre} on builtin:addition ({args.finetune_steps} steps)", flush=True)
    adapter, t_ft, tps_ft = train(registry, {
        "kind": "finetune", "name": "adder", "base_model": pre, "dataset": "builtin:addition", "method": "lora",
        "lora_r": 16, "lora_alpha": 32, "lora_targets": "all", "steps": args.finetune_steps, "batch_size": 16,
        "seq_len": 48, "lr": 1e-3, "warmup_steps": 10, "checkpoint_every": 100,
    }, "adder", args.home)
    print(f"  registered {adapter} (adapter of {pre}) in {t_ft:.0f} s ({tps_ft:.0f} tokens/s)", flush=True)

    print("4/4 evaluate after fine-tuning", flush=True)
    after = evaluate(registry, adapter, args.eval_examples)
    print(f"\nheld-out addition exact match: before {before['exact_match/addition']:.1%} -> "
          f"after {after['exact_match/addition']:.1%}  (total {time.perf_counter() - t_all:.0f} s)")


if __name__ == "__main__":
    main()
