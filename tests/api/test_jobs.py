"""Jobs end to end through the real API: lifecycle, logs, reports, retries, cancel, gangs, queueing."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import httpx

from llmos.api.harness import RunningPlane
from llmos.scheduler import ClusterSnapshot, Plan, Preemption

PY = sys.executable


def _py(code: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code)]


def test_lifecycle_list_filters_events_and_logs(cp: RunningPlane) -> None:
    c = cp.client()
    job = c.submit("kind: command\nname: hello\ncommand: [sh, -c, 'echo hello $LLMOS_JOB_ID; echo oops >&2']\n")
    assert job["state"] == "PENDING" and job["tenant"] == "default"
    done = c.wait(job["id"], timeout_s=30)
    assert done["state"] == "SUCCEEDED" and done["tasks"][0]["exit_code"] == 0
    log = c.logs_text(job["id"])
    assert f"hello {job['id']}" in log and "oops" in log
    kinds = [e["message"] for e in c.events(job["id"])]
    assert "PENDING -> RUNNING" in kinds and "RUNNING -> SUCCEEDED" in kinds
    for i in range(3):
        c.submit({"kind": "command", "name": f"n{i}", "command": ["true"]})
    page = c.jobs(limit=2)
    assert page["total"] == 4 and len(page["items"]) == 2
    assert [j["name"] for j in c.jobs(limit=2, offset=2)["items"]] == ["n0", "hello"]
    assert c.jobs("SUCCEEDED", name="hello")["total"] == 1
    assert c.jobs(["FAILED", "CANCELLED"])["total"] == 0


def test_reports_retry_from_checkpoint_and_error_reason(cp: RunningPlane, tmp_path: Path) -> None:
    c = cp.client()
    script = f"""
        import os, sys
        from llmos.client import TaskReporter
        rep = TaskReporter.from_env()
        attempt = int(os.environ["LLMOS_ATTEMPT"])
        if attempt == 1:
            rep.metrics(step=5, loss=1.5, tokens_per_s=100.0)
            path = os.path.join(os.environ["LLMOS_CHECKPOINT_DIR"], "step-5")
            open(path, "w").write("weights")
            rep.checkpoint(5, path)
            rep.fail("loss became NaN at step 37")
            sys.exit(1)
        assert os.environ["LLMOS_RESUME_STEP"] == "5", os.environ["LLMOS_RESUME_STEP"]
        assert open(os.environ["LLMOS_RESUME_CHECKPOINT"]).read() == "weights"
        rep.progress(10, 10)
        rep.metrics(loss=0.5)
        open({str(tmp_path / "ok")!r}, "w").write(os.environ["LLMOS_RESUME_CHECKPOINT"])
    """
    job = c.submit({"kind": "command", "name": "resume", "command": _py(script), "max_retries": 1,
                    "retry_backoff_s": 0.1})
    done = c.wait(job["id"], timeout_s=60)
    assert done["state"] == "SUCCEEDED", (done["message"], c.logs_text(job["id"], attempt=1))
    assert done["attempt"] == 2 and done["failures"] == 1
    assert done["metrics"]["loss"] == 0.5 and done["progress"]["step"] == 10
    assert done["checkpoint"]["step"] == 5 and (tmp_path / "ok").read_text().endswith("step-5")
    assert done["tasks"][0]["error_reason"] == "loss became NaN at step 37"
    assert [m["values"]["loss"] for m in c.job_metrics(job["id"])] == [1.5, 0.5]
    assert any("loss became NaN" in e["message"] for e in c.events(job["id"]))

    script_fail = """
        import sys
        from llmos.client import TaskReporter
        TaskReporter.from_env().fail("loss became NaN at step 37")
        sys.exit(3)
    """
    bad = c.wait(c.submit({"kind": "command", "name": "nan", "command": _py(script_fail)})["id"], timeout_s=60)
    assert bad["state"] == "FAILED" and "loss became NaN at step 37" in bad["message"]


def test_follow_logs_streams_until_the_end(cp: RunningPlane) -> None:
    c = cp.client()
    job = c.submit({"kind": "command", "name": "slow", "command": ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.3; done"]})
    text = "".join(c.logs(job["id"], follow=True))
    assert text.split() == ["line1", "line2", "line3"]
    assert c.job(job["id"])["state"] == "SUCCEEDED"


def test_cancel_sends_sigterm_then_job_cancelled(cp: RunningPlane, tmp_path: Path) -> None:
    c = cp.client()
    marker = tmp_path / "got-term"
    cmd = ["sh", "-c", f"trap 'echo term > {marker}; exit 0' TERM; echo started; while true; do sleep 0.1; done"]
    job = c.submit({"kind": "command", "name": "trap", "command": cmd})
    c.wait(job["id"], states=("RUNNING",), timeout_s=30)
    deadline = time.monotonic() + 10
    while "started" not in c.logs_text(job["id"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    out = c.cancel(job["id"])
    done = c.wait(out["id"], timeout_s=30)
    assert done["state"] == "CANCELLED" and done["tasks"][0]["state"] == "CANCELLED"
    assert marker.read_text().strip() == "term"


def test_gang_gets_ranks_and_one_master(cp: RunningPlane, tmp_path: Path) -> None:
    c = cp.client()
    cmd = ["sh", "-c", f"echo $RANK $WORLD_SIZE $MASTER_ADDR:$MASTER_PORT $LLMOS_TASK_ID > {tmp_path}/rank-$RANK"]
    job = c.wait(c.submit({"kind": "command", "name": "gang", "command": cmd, "tasks": 2})["id"], timeout_s=30)
    assert job["state"] == "SUCCEEDED" and len(job["tasks"]) == 2
    r0 = (tmp_path / "rank-0").read_text().split()
    r1 = (tmp_path / "rank-1").read_text().split()
    assert r0[:2] == ["0", "2"] and r1[:2] == ["1", "2"] and r0[2] == r1[2]
    assert r0[3] == f"{job['id']}.0.1" and r1[3] == f"{job['id']}.1.1"


def test_pending_reason_priority_and_metrics(cp: RunningPlane) -> None:
    c = cp.client()
    # Not preemptible: the higher-priority job must wait instead of evicting it.
    big = c.submit({"kind": "command", "name": "big", "command": ["sleep", "30"], "resources": {"cpus": 3},
                    "preemptible": False})
    c.wait(big["id"], states=("RUNNING",), timeout_s=30)
    low = c.submit({"kind": "command", "name": "low", "command": ["true"], "resources": {"cpus": 3}})
    high = c.submit({"kind": "command", "name": "high", "command": ["true"], "resources": {"cpus": 3},
                     "priority": 5})
    deadline = time.monotonic() + 10
    while not c.job(low["id"])["pending_reason"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "CPU" in c.job(low["id"])["pending_reason"]
    text = c.metrics_text()
    assert 'llmos_jobs{state="RUNNING"} 1.0' in text and "llmos_queue_length 2.0" in text
    assert 'llmos_devices{status="free",type="cpu"}' in text and "llmos_scheduling_latency_seconds_count" in text
    c.cancel(big["id"])
    h = c.wait(high["id"], timeout_s=30)
    lo = c.wait(low["id"], timeout_s=30)
    assert h["state"] == lo["state"] == "SUCCEEDED"
    assert h["started_at"] <= lo["started_at"]  # priority first


class _PreemptOnce:
    """A scheduler plug-in that preempts a running task once, then places like the default."""

    name = "preempt-once"

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.done = False

    def schedule(self, snapshot: ClusterSnapshot, now: float) -> Plan:
        if not self.done and snapshot.running:
            self.done = True
            t = snapshot.running[0]
            return Plan(preemptions=(Preemption(t.task_id, t.job_id, "make room (test)", grace_s=5.0),))
        return self.inner.schedule(snapshot, now)  # type: ignore[attr-defined,no-any-return]


def test_preemption_requeues_without_counting_a_failure(cp: RunningPlane, tmp_path: Path) -> None:
    c = cp.client()
    cmd = ["sh", "-c", f"echo $LLMOS_ATTEMPT >> {tmp_path}/attempts; trap 'exit 143' TERM; "
                       "if [ $LLMOS_ATTEMPT = 1 ]; then while true; do sleep 0.1; done; fi"]
    job = c.submit({"kind": "command", "name": "victim", "command": cmd})
    c.wait(job["id"], states=("RUNNING",), timeout_s=30)
    deadline = time.monotonic() + 10
    while not (tmp_path / "attempts").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    cp.plane.controller.scheduler = _PreemptOnce(cp.plane.controller.scheduler)  # type: ignore[assignment]
    c.submit({"kind": "command", "name": "newcomer", "command": ["true"]})  # the scheduler runs for pending work
    done = c.wait(job["id"], timeout_s=30)
    assert done["state"] == "SUCCEEDED", done["message"]
    assert done["preemptions"] == 1 and done["failures"] == 0 and done["attempt"] == 2
    assert [t["state"] for t in done["tasks"]] == ["PREEMPTED", "SUCCEEDED"]
    assert (tmp_path / "attempts").read_text().split() == ["1", "2"]


def test_serve_task_reports_its_endpoint(cp: RunningPlane) -> None:
    c = cp.client()
    script = """
        import time
        from llmos.client import TaskReporter
        rep = TaskReporter.from_env()
        rep.endpoint("127.0.0.1:45678")
        while not rep.stop_requested:
            time.sleep(0.1)
            rep.heartbeat()
    """
    job = c.submit({"kind": "command", "name": "replica", "command": _py(script)})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tasks = c.job(job["id"])["tasks"]
        if tasks and tasks[0]["endpoint"]:
            break
        time.sleep(0.1)
    assert c.job(job["id"])["tasks"][0]["endpoint"] == "127.0.0.1:45678"
    # The heartbeat reply tells the task it is being stopped; it leaves cleanly.
    assert c.cancel(job["id"])
    done = c.wait(job["id"], timeout_s=30)
    assert done["state"] == "CANCELLED" and done["tasks"][0]["heartbeat_at"]
    r = httpx.post(f"{cp.url}/v1/tasks/{done['tasks'][0]['id']}/report", json={"heartbeat": True},
                   headers={"Authorization": f"Bearer {cp.admin_token}"})
    assert r.status_code == 403


def test_launch_failure_fails_the_job_with_the_reason(cp: RunningPlane) -> None:
    c = cp.client()
    job = c.submit({"kind": "command", "name": "nowhere", "command": ["true"], "workdir": "/no/such/dir"})
    done = c.wait(job["id"], timeout_s=30)
    assert done["state"] == "FAILED" and "launch failed" in done["message"] and "/no/such/dir" in done["message"]
