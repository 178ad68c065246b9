"""``Client`` error mapping and ``TaskReporter`` resilience against a real control plane."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmos.api.harness import RunningPlane, run_control_plane
from llmos.client import Client, ConnectionFailed, TaskReporter
from llmos.control.launch import free_port
from llmos.errors import AuthenticationError, Conflict, NotFound, ValidationError
from llmos.store import tokens as tokrepo


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlane]:
    with run_control_plane(tmp_path_factory.mktemp("home"), loop_interval_s=0.05) as running:
        yield running


def test_client_maps_errors_to_llmos_errors(cp: RunningPlane) -> None:
    c = cp.client()
    with pytest.raises(NotFound, match="job-nope"):
        c.job("job-nope")
    with pytest.raises(ValidationError, match="unknown kind"):
        c.submit({"kind": "nope", "name": "x"})
    with pytest.raises(AuthenticationError):
        Client(cp.url, "llmos_bad").jobs()
    with pytest.raises(ConnectionFailed, match="cannot reach"):
        Client(f"http://127.0.0.1:{free_port()}", "x").health()
    job = c.wait(c.submit({"kind": "command", "name": "t", "command": ["true"]})["id"], timeout_s=30)
    with pytest.raises(Conflict, match="already SUCCEEDED"):
        c.cancel(job["id"])


def test_reporter_outside_llmos_is_a_noop() -> None:
    rep = TaskReporter.from_env({})
    assert not rep.enabled
    assert rep.report(heartbeat=True) is False
    rep.metrics(step=1, loss=float("nan"))
    rep.close()


def test_reporter_survives_an_unreachable_control_plane(cp: RunningPlane, tmp_path: Path) -> None:
    c = cp.client()
    job = c.submit({"kind": "command", "name": "sleeper", "command": ["sleep", "30"]})
    c.wait(job["id"], states=("RUNNING",), timeout_s=30)
    task_id = c.job(job["id"])["tasks"][0]["id"]
    with cp.plane.store.session() as s:
        _, secret = tokrepo.create_token(s, tenant="default", role=tokrepo.TASK_ROLE, task_id=task_id)
    err_file = tmp_path / "error.txt"
    rep = TaskReporter(f"http://127.0.0.1:{free_port()}", secret, task_id, error_file=str(err_file), timeout_s=0.5)
    t0 = time.monotonic()
    rep.checkpoint(7, "/ckpt/step-7")  # lost to the network, kept for the next report
    rep.fail("disk full at step 8")
    assert time.monotonic() - t0 < 5 and err_file.read_text() == "disk full at step 8"
    rep.url = cp.url  # the control plane is back
    assert rep.heartbeat() is None and rep.report(metrics={"loss": float("inf")})
    j = c.job(job["id"])
    assert j["checkpoint"]["step"] == 7 and j["checkpoint"]["path"] == "/ckpt/step-7"
    assert j["tasks"][0]["error_reason"] == "disk full at step 8" and j["metrics"]["loss"] == "inf"
    c.cancel(job["id"])
    assert rep.report(heartbeat=True) is False  # task ended: rejected, no exception
    rep.close()
