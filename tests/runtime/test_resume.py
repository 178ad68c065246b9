"""Must show 2: SIGKILL a finetune task mid-run; the retry resumes from its checkpoint and ends
at the uninterrupted run's loss, redoing at most one checkpoint interval of steps."""

from __future__ import annotations

import signal
import time

import psutil

from llmos.api.harness import RunningPlane
from llmos.core.jobs import parse_job_spec
from llmos.models.registry import ModelRegistry
from llmos.runtime.data import SampleStream
from llmos.runtime.jobs import prepare_training
from llmos.runtime.trainer import Trainer
from llmos.store import jobs as repo

STEPS, EVERY = 16, 4
# Same data, same order, same RNG: only float summation order (thread counts) may differ.
LOSS_TOLERANCE = 1e-3

SPEC = {
    "kind": "finetune", "name": "adder-resume", "base_model": "tiny:1", "dataset": "builtin:addition",
    "method": "lora", "steps": STEPS, "checkpoint_every": EVERY, "batch_size": 4, "seq_len": 48,
    "lr": 3e-3, "warmup_steps": 2, "max_retries": 1, "retry_backoff_s": 0, "output_model": "adder-resume",
}


def _runtime_pid(supervisor_pid: int) -> int:
    kids = psutil.Process(supervisor_pid).children()
    assert kids, "the supervised runtime process is not running"
    return kids[0].pid


def test_sigkill_mid_finetune_resumes_from_checkpoint(cp: RunningPlane, cp_registry: ModelRegistry) -> None:
    c = cp.client()
    job = c.submit(SPEC)
    deadline = time.monotonic() + 120
    while True:  # wait until a checkpoint exists and training has moved past it
        j = c.job(job["id"])
        ckpt_step = (j.get("checkpoint") or {}).get("step") or 0
        step = (j.get("progress") or {}).get("step") or 0
        if ckpt_step >= EVERY and step > ckpt_step and step < STEPS - 2:
            break
        assert j["state"] in ("PENDING", "RUNNING") and time.monotonic() < deadline, j
        time.sleep(0.05)
    with cp.plane.store.session() as s:
        supervisor = int(repo.tasks_of_job(s, job["id"])[-1].handle["ref"]["pid"])
    psutil.Process(_runtime_pid(supervisor)).send_signal(signal.SIGKILL)
    killed_after = (c.job(job["id"]).get("progress") or {}).get("step")

    done = c.wait(job["id"], timeout_s=180)
    assert done["state"] == "SUCCEEDED", done
    assert done["attempt"] == 2 and done["failures"] == 1
    rows = c.job_metrics(job["id"])
    first = {r["step"]: r["values"]["loss"] for r in rows if r["task_id"].endswith(".1") and "loss" in r["values"]}
    second = {r["step"]: r["values"]["loss"] for r in rows if r["task_id"].endswith(".2") and "loss" in r["values"]}
    resumed_at = min(second) - 1
    assert resumed_at % EVERY == 0 and resumed_at >= EVERY
    # At most one checkpoint interval of work was redone.
    assert max(first) - resumed_at <= EVERY and killed_after - resumed_at <= EVERY
    assert max(second) == STEPS
    log = c.logs_text(job["id"])
    assert "resuming from" in log and f"step-{resumed_at:08d}" in log

    # The uninterrupted run, in process: same spec, same data, no kill.
    setup = prepare_training(parse_job_spec(SPEC), cp_registry)
    ref = Trainer(setup.model, SampleStream(setup.samples, seed=0), setup.config,
                  pad_id=setup.tokenizer.pad_token_id).run()
    assert abs(second[STEPS] - ref.losses[STEPS]) <= LOSS_TOLERANCE * abs(ref.losses[STEPS])
    for s in range(resumed_at + 1, STEPS + 1):  # the redone and the new steps match step by step
        assert abs(second[s] - ref.losses[s]) <= LOSS_TOLERANCE * abs(ref.losses[s]), s
    print(f"killed after step {killed_after}, resumed from step {resumed_at}; final loss resumed "
          f"{second[STEPS]:.6f} vs uninterrupted {ref.losses[STEPS]:.6f}")
    v = cp_registry.resolve("adder-resume")
    assert v.kind == "adapter" and v.base == "tiny:1" and v.job_id == job["id"]
    assert len(cp_registry.versions("adder-resume")) == 1
