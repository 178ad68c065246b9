"""Jobs end to end on both backends: control plane + HTTP API + real tasks.

The ``llmos_system`` fixture (tests/backends/conftest.py) runs the real control
plane over the backend named by ``backend_name`` (``local`` and ``ray``, the
latter a two-node Ray cluster: a CPU-only head and a worker advertising a V100).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from llmos.errors import ValidationError

# A `command` job that checkpoints to LLMOS_CHECKPOINT_DIR, reports through the
# worker contract, resumes from its own checkpoint, and records every start and
# step (pid, time) so the test can prove no two attempts ever overlapped.
CKPT_SCRIPT = r"""
import json, os, sys, time
from llmos.client import TaskReporter
record, total, step_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ck = os.path.join(os.environ["LLMOS_CHECKPOINT_DIR"], "state.json")
start = json.load(open(ck))["step"] if os.path.exists(ck) else 0
rep = TaskReporter.from_env()
def note(**kw):
    with open(record, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "t": time.time(), **kw}) + "\n")
note(event="start", attempt=int(os.environ["LLMOS_ATTEMPT"]), from_step=start,
     resume_step=os.environ.get("LLMOS_RESUME_STEP", ""))
rep.heartbeat()
for step in range(start + 1, total + 1):
    time.sleep(step_s)
    # The step's work (its record) comes before its checkpoint: a kill in between
    # redoes the step; the other order would lose its record while resuming after it.
    note(event="step", step=step)
    with open(ck + ".tmp", "w") as f:
        json.dump({"step": step}, f)
    os.replace(ck + ".tmp", ck)
    rep.checkpoint(step, ck)
    rep.progress(step, total)
    rep.metrics(step, loss=1.0 / step)
print(f"done at step {total} from step {start}", flush=True)
"""


def ckpt_job(tmp_path: Path, name: str, total: int, step_s: float, **spec: Any) -> tuple[dict[str, Any], Path]:
    script = tmp_path / "ckpt.py"
    script.write_text(CKPT_SCRIPT)
    record = tmp_path / f"{name}.jsonl"
    job = {
        "kind": "command",
        "name": name,
        "command": [sys.executable, str(script), str(record), str(total), str(step_s)],
        "resources": {"cpus": 1, "memory_gib": 0.5},
        **spec,
    }
    return job, record


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_until(pred: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def node_with(sys_: Any, device_type: str) -> dict[str, Any]:
    return next(n for n in sys_.client.nodes() if any(d["type"] == device_type for d in n["devices"]))


@pytest.mark.timeout(120)
def test_command_job_logs_heartbeats_metrics_checkpoints(llmos_system: Any, tmp_path: Path) -> None:
    """The worker contract works the same on both backends."""
    c = llmos_system.client
    spec, record = ckpt_job(tmp_path, "contract", total=3, step_s=0.05)
    job = c.submit(spec)
    done = c.wait(job["id"], timeout_s=90)
    assert done["state"] == "SUCCEEDED", done
    assert "done at step 3 from step 0" in c.logs_text(job["id"])
    assert done["checkpoint"]["step"] == 3 and done["progress"]["step"] == 3
    assert [m for m in c.job_metrics(job["id"]) if "loss" in json.dumps(m)]
    task = done["tasks"][0]
    assert task["heartbeat_at"] is not None and task["exit_code"] == 0
    assert [r["event"] for r in read_records(record)] == ["start", "step", "step", "step"]


@pytest.mark.parametrize("backend_name", [pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])])
@pytest.mark.timeout(120)
def test_placement_follows_the_device_type(llmos_system: Any) -> None:
    c = llmos_system.client
    v100_node = node_with(llmos_system, "V100")
    job = c.submit({"kind": "command", "name": "needs-v100", "command": ["true"],
                    "resources": {"devices": 1, "device_types": ["T4", "V100"], "cpus": 0.5}})
    done = c.wait(job["id"], timeout_s=60)
    assert done["state"] == "SUCCEEDED", done
    assert done["tasks"][0]["node_id"] == v100_node["id"]
    assert done["tasks"][0]["device_ids"] == ["v100-0"]
    # No node of the cluster has an A100: refused up front, not queued forever.
    with pytest.raises(ValidationError):
        c.submit({"kind": "command", "name": "needs-a100", "command": ["true"],
                  "resources": {"devices": 1, "device_types": ["A100-80G"]}})


@pytest.mark.parametrize("backend_name", [pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])])
@pytest.mark.timeout(120)
def test_gang_spans_both_nodes_when_neither_holds_it(llmos_system: Any, tmp_path: Path) -> None:
    c = llmos_system.client
    spec, _ = ckpt_job(tmp_path, "gang", total=2, step_s=0.05)
    spec.update(tasks=2, resources={"cpus": 2, "memory_gib": 0.5})  # each node has 2 CPUs
    job = c.submit(spec)
    done = c.wait(job["id"], timeout_s=90)
    assert done["state"] == "SUCCEEDED", done
    nodes = {t["node_id"] for t in done["tasks"]}
    assert len(nodes) == 2 and nodes == {n["id"] for n in c.nodes() if n.get("alive", True)}


def _running_on(c: Any, job_id: str) -> str | None:
    job = c.job(job_id)
    running = [t for t in job["tasks"] if t["state"] == "RUNNING" and t["attempt"] == job["attempt"]]
    return running[0]["node_id"] if running else None


@pytest.mark.parametrize("backend_name", [pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])])
@pytest.mark.timeout(240)
def test_node_death_resumes_the_job_on_the_survivor(llmos_system: Any, ray_cluster: Any, tmp_path: Path) -> None:
    """Kill the worker node's raylet mid-job: LOST, rescheduled on the head, resumed, never twice at once."""
    from llmos.backends.ray_cluster import restore_test_worker

    c = llmos_system.client
    worker_id = node_with(llmos_system, "V100")["id"]
    hold = {"kind": "command", "command": [sys.executable, "-c", "import time; time.sleep(600)"],
            "resources": {"cpus": 2, "memory_gib": 0.5}}
    try:
        # Fill both nodes, then free the worker: the job can then only start there,
        # whatever the scheduler's tie-breaking.
        holders = [c.submit({**hold, "name": f"hold-{i}"})["id"] for i in range(2)]
        where = {h: wait_until(lambda h=h: _running_on(c, h), 60, f"{h} running") for h in holders}
        on_worker = next(h for h in holders if where[h] == worker_id)
        on_head = next(h for h in holders if h != on_worker)
        c.cancel(on_worker)
        c.wait(on_worker, timeout_s=30)

        spec, record = ckpt_job(tmp_path, "survivor", total=12, step_s=0.4, max_retries=3, retry_backoff_s=0)
        job_id = c.submit(spec)["id"]
        assert wait_until(lambda: _running_on(c, job_id), 60, "job running") == worker_id
        wait_until(lambda: record.exists() and any(r.get("step", 0) >= 3 for r in read_records(record)),
                   60, "three checkpointed steps")
        c.cancel(on_head)  # room on the survivor for the rescheduled attempt
        c.wait(on_head, timeout_s=30)

        ray_cluster.kill_raylet(1)
        killed_at = time.time()
        done = c.wait(job_id, timeout_s=120)
        wait_until(lambda: not any(n["alive"] for n in c.nodes() if n["id"] == worker_id), 30,
                   "the dead node shown not alive")
    finally:
        restore_test_worker()
    # A node that joins is noticed too (the restored worker: a new Ray node id, same V100).
    fresh = [n for n in llmos_system.plane.backend.inventory() if n.alive and n.devices_of_type("V100")]
    assert fresh and fresh[0].id != worker_id

    assert done["state"] == "SUCCEEDED", json.dumps(
        {"job": done, "events": c.events(done["id"])}, indent=1, default=str
    )
    first, second = sorted(done["tasks"], key=lambda t: t["attempt"])[:2]
    assert first["state"] == "LOST" and first["node_id"] == worker_id, first
    assert second["node_id"] != worker_id and second["state"] == "SUCCEEDED"

    recs = read_records(record)
    starts = [r for r in recs if r["event"] == "start"]
    assert len(starts) == 2, starts
    old_pid, new_pid = starts[0]["pid"], starts[1]["pid"]
    # Resumed from the checkpoint, not from scratch, and told so by the control plane.
    assert starts[1]["from_step"] >= 3 and starts[1]["resume_step"] == str(starts[1]["from_step"])
    steps = [r["step"] for r in recs if r["event"] == "step"]
    assert steps[-1] == 12 and sorted(set(steps)) == list(range(1, 13))
    # Never twice at once: the old attempt's last sign of life precedes the new start,
    # and the old process wrote nothing after its node was killed.
    last_old = max(r["t"] for r in recs if r["pid"] == old_pid)
    assert last_old < starts[1]["t"]
    print(f"old attempt's last step {last_old - killed_at:+.2f}s after the kill; "
          f"new attempt started {starts[1]['t'] - killed_at:.2f}s after it")
    assert all(r["pid"] == new_pid for r in recs if r["t"] > starts[1]["t"])
    assert "from step" in c.logs_text(job_id)


@pytest.mark.timeout(240)
def test_train_job_kind_runs_on_both_backends(llmos_system: Any) -> None:
    """A real model job (python -m llmos.runtime, tiny model) runs the same way on either backend."""
    c = llmos_system.client
    job = c.submit({"kind": "train", "name": "tiny-train", "model": "llmos-tiny", "steps": 3, "batch_size": 2,
                    "seq_len": 32, "checkpoint_every": 2, "warmup_steps": 1,
                    "resources": {"cpus": 1, "memory_gib": 1}})
    done = c.wait(job["id"], timeout_s=200)
    assert done["state"] == "SUCCEEDED", json.dumps({"job": done, "log": c.logs_text(job["id"])[-3000:]})
    assert done["progress"].get("step") == 3
    assert done["checkpoint"].get("step") in (2, 3)


@pytest.mark.parametrize("name", ["local", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])])
@pytest.mark.timeout(120)
def test_the_shared_harness_runs_on_both_backends(name: str, tmp_path: Path, request: Any) -> None:
    """What other test directories use: run_control_plane(home, **backend_settings(name))."""
    from llmos.api.harness import run_control_plane
    from llmos.backends.ray_cluster import backend_settings

    if name == "ray":
        request.getfixturevalue("ray_cluster")
    with run_control_plane(tmp_path / "home", loop_interval_s=0.1, **backend_settings(name)) as cp:
        assert cp.plane.backend.name == name
        c = cp.client()
        job = c.submit({"kind": "command", "name": "hello", "command": ["sh", "-c", "echo hi from $LLMOS_TASK_ID"],
                        "resources": {"cpus": 0.5, "memory_gib": 0.5}})
        done = c.wait(job["id"], timeout_s=60)
        assert done["state"] == "SUCCEEDED", done
        assert "hi from" in c.logs_text(job["id"])
