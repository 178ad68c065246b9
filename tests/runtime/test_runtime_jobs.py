"""train / finetune / eval / batch end to end through the control plane, in parallel:
real subprocesses, real models, metrics streamed, outputs registered with lineage."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from llmos.api.harness import RunningPlane
from llmos.models.registry import ModelRegistry

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


@pytest.fixture(scope="module")
def nan_base(cp_registry: ModelRegistry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real model directory whose weights hold NaN (a corrupted upstream checkpoint)."""
    src = cp_registry.path("tiny:1")
    out = tmp_path_factory.mktemp("nan") / "m"
    out.mkdir()
    for f in src.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(src / "model.safetensors"))
    weights["model.norm.weight"][:] = float("nan")
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return cp_registry.register(out, "tiny-nan").ref


def _wait_all(c, ids: list[str], timeout_s: float = 240) -> dict[str, dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = {i: c.job(i) for i in ids}
        if all(j["state"] in TERMINAL for j in jobs.values()) or time.monotonic() > deadline:
            return jobs
        time.sleep(0.2)


def test_train_eval_batch_dp_and_nan_jobs(cp: RunningPlane, cp_registry: ModelRegistry, nan_base: str,
                                          tmp_path: Path) -> None:
    c = cp.client()
    inp = tmp_path / "in.jsonl"
    prompts = [f"What is {i} + {i}?" for i in range(5)]
    inp.write_text("".join(json.dumps({"id": f"r{i}", "prompt": p}) + "\n" for i, p in enumerate(prompts))
                   + json.dumps({"messages": [{"role": "user", "content": "Reverse the word: abc"}]}) + "\n")
    out = tmp_path / "out.jsonl"
    small = {"batch_size": 2, "seq_len": 32, "checkpoint_every": 2, "warmup_steps": 1}
    jobs = {
        "train": c.submit({"kind": "train", "name": "pre", "model": "llmos-tiny", "steps": 3, **small})["id"],
        "dp": c.submit({"kind": "train", "name": "pre-dp", "model": "llmos-tiny", "steps": 2, "workers": 2,
                        **small})["id"],
        "eval": c.submit({"kind": "eval", "name": "ev", "model": "tiny:1", "tasks": ["perplexity", "addition"],
                          "max_examples": 4})["id"],
        "batch": c.submit({"kind": "batch", "name": "gen", "model": "tiny:1", "input": str(inp),
                           "output": str(out), "shards": 2, "max_tokens": 4})["id"],
        "nan": c.submit({"kind": "finetune", "name": "ft-nan", "base_model": nan_base, "steps": 3,
                         "dataset": "builtin:addition", **small})["id"],
    }
    done = _wait_all(c, list(jobs.values()))
    states = {k: done[v]["state"] for k, v in jobs.items()}
    assert states == {"train": "SUCCEEDED", "dp": "SUCCEEDED", "eval": "SUCCEEDED", "batch": "SUCCEEDED",
                      "nan": "FAILED"}, {k: (done[v]["state"], done[v]["message"]) for k, v in jobs.items()}

    # train: loss, lr and tokens/s streamed per step; output registered with lineage.
    rows = [r for r in c.job_metrics(jobs["train"]) if "loss" in r["values"]]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["values"]["tokens_per_s"] > 0 and r["values"]["lr"] > 0 for r in rows)
    pre = cp_registry.resolve("pre")
    assert (pre.kind, pre.job_id, pre.dataset, pre.info["config"]) == ("model", jobs["train"], "builtin:corpus",
                                                                         "llmos-tiny")
    assert "loss" in c.logs_text(jobs["train"])

    # data-parallel gang of 2: one registered output, trained with 2 workers.
    dp = cp_registry.resolve("pre-dp")
    assert dp.info["workers"] == 2 and len(cp_registry.versions("pre-dp")) == 1

    # eval: metrics recorded on the model version.
    m = cp_registry.resolve("tiny:1").metrics
    assert m["perplexity"] > 1 and 0 <= m["exact_match/addition"] <= 1

    # batch: two shards merged in input order.
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["index"] for x in lines] == list(range(6))
    assert [x.get("id") for x in lines[:5]] == [f"r{i}" for i in range(5)]
    assert lines[5]["prompt"] == "Reverse the word: abc" and all(isinstance(x["completion"], str) for x in lines)

    # NaN loss fails the job with that reason.
    assert "loss became nan" in done[jobs["nan"]]["message"].lower()
