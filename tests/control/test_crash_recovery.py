"""Must show: SIGKILL the control plane with jobs running and pending; after a restart
every job finishes exactly once (each job's side effect on disk is counted)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from llmos.client import Client
from llmos.control import launch as L
from llmos.control.launch import free_port
from llmos.control.plane import ControlPlane
from llmos.core.states import JobState
from llmos.settings import Settings
from llmos.store import jobs as repo


def _start_up(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LLMOS_HOME": str(home), "LLMOS_NODE_CPUS": "2", "LLMOS_LOOP_INTERVAL_S": "0.05"}
    env.pop("LLMOS_TOKEN", None)
    env.pop("LLMOS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "llmos.cli.app", "up", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, "llmos up exited"
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("llmos up did not come up")


def test_sigkill_control_plane_every_job_finishes_exactly_once(tmp_path: Path) -> None:
    home, effects = tmp_path / "home", tmp_path / "effects"
    effects.mkdir()
    port = free_port()
    proc = _start_up(home, port)
    try:
        cfg = yaml.safe_load((home / "config").read_text())
        c = Client(cfg["url"], cfg["token"])
        ids = []
        for i in range(5):
            cmd = ["sh", "-c", f"echo $LLMOS_TASK_ID >> {effects}/job{i}; sleep 1.5"]
            ids.append(c.submit({"kind": "command", "name": f"effect{i}", "command": cmd, "resources": {"cpus": 1}})["id"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [c.job(j)["state"] for j in ids]
            if states.count("RUNNING") == 2:
                break
            time.sleep(0.05)
        assert states.count("RUNNING") == 2 and states.count("PENDING") == 3, states
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        time.sleep(2.0)  # the running tasks finish while no control plane watches them
        proc = _start_up(home, port)
        final = [c.wait(j, timeout_s=60) for j in ids]
        assert [j["state"] for j in final] == ["SUCCEEDED"] * 5, [(j["state"], j["message"]) for j in final]
        for i, job in enumerate(final):
            lines = (effects / f"job{i}").read_text().split()
            assert lines == [f"{job['id']}.0.1"], f"job{i} ran {len(lines)} times: {lines}"
            assert job["attempt"] == 1 and job["failures"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_task_recorded_but_never_launched_is_requeued_not_failed(tmp_path: Path) -> None:
    """The controller died between committing a task row and launching it."""
    settings = Settings(home=tmp_path / "home", loop_interval_s=0.05)
    plane = ControlPlane(settings, url="http://127.0.0.1:9")
    marker = tmp_path / "ran"
    with plane.store.session() as s:
        job = repo.insert_job(s, tenant="default", num_tasks=1, spec={
            "kind": "command", "name": "x", "command": ["sh", "-c", f"echo $LLMOS_ATTEMPT >> {marker}"],
            "resources": {"devices": 0, "cpus": 1.0, "memory_gib": 0.5}, "max_retries": 0,
        })
        job.attempt = 1
        repo.set_job_state(s, job, JobState.RUNNING)
        repo.insert_task(s, job_id=job.id, index=0, attempt=1, node_id="n", device_ids=[], cpus=1,
                         memory_gib=0.5, log_path=str(L.log_path(settings.home, job.id, 0, 1)))
        job_id = job.id
    plane.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with plane.store.session() as s:
                row = repo.get_job(s, job_id)
                if row.state == "SUCCEEDED":
                    break
            time.sleep(0.05)
        with plane.store.session() as s:
            row = repo.get_job(s, job_id)
            states = [t.state for t in repo.tasks_of_job(s, job_id)]
        assert row.state == "SUCCEEDED" and row.failures == 0 and states == ["PREEMPTED", "SUCCEEDED"]
        assert marker.read_text().split() == ["2"]
    finally:
        plane.stop()
