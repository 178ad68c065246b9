"""End to end: ``llmos deploy`` -> scheduled serve task -> replica subprocess -> gateway -> openai client.

The control plane runs for real (SQLite store, local backend launching
``python -m llmos.runtime`` subprocesses); the replica reports its endpoint;
killing the replica's process makes the job controller bring it back.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.slow


def _wait(pred: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def test_deploy_serve_route_and_restart(tmp_path: Path, gw_tiny_dir: Path, gw_lora_dir: Path) -> None:
    from llmos.api.app import create_app
    from llmos.cli.app import app as cli_app
    from llmos.control.plane import ControlPlane
    from llmos.serving.server.runner import ServerThread, free_port
    from llmos.settings import Settings
    from llmos.store import jobs as repo
    from llmos.store import tokens as tokrepo

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(home=tmp_path / "home", cpu_devices=2, loop_interval_s=0.1)
    plane = ControlPlane(settings, url=url)
    with plane.store.session() as s:
        _, token = tokrepo.create_token(s, tenant="default", role="user", name="e2e")
    server = ServerThread(create_app(plane), port=port).start()
    try:
        res = CliRunner().invoke(
            cli_app,
            ["deploy", str(gw_tiny_dir), "--name", "tiny", "--replicas", "1", "--adapters", str(gw_lora_dir),
             "--kv-cache-gib", "0.03", "--max-num-seqs", "8", "--memory-gib", "1", "--url", url, "--token", token],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert "deployment tiny" in res.output
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=60)

        def ready() -> set[str]:
            return {m.id for m in client.models.list().data}

        assert _wait(ready, 120, "the replica to report its endpoint") == {"tiny", "tiny-lora"}
        r = client.completions.create(model="tiny", prompt="Hello", max_tokens=4, temperature=0,
                                      extra_body={"ignore_eos": True})  # fmt: skip
        assert r.usage is not None and r.usage.completion_tokens == 4
        lora = client.chat.completions.create(model="tiny-lora", messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=3, temperature=0)  # fmt: skip
        assert lora.model == "tiny-lora"

        # Kill the replica's worker process (under the backend's supervisor): the
        # controller counts a failure and relaunches the deployment.
        import psutil

        with plane.store.session() as s:
            task = next(t for t in repo.active_tasks(s) if t.endpoint)
            supervisor = int((task.handle or {}).get("ref", {}).get("pid", 0))
            old_endpoint = task.endpoint
        assert supervisor > 0
        workers = psutil.Process(supervisor).children(recursive=True)
        assert workers, "the supervisor has no worker process"
        for w in workers:
            os.kill(w.pid, signal.SIGKILL)

        def back() -> bool:
            with plane.store.session() as s:
                live = [t for t in repo.active_tasks(s) if t.endpoint and t.state == "RUNNING"]
                return any(t.endpoint != old_endpoint for t in live)

        _wait(back, 120, "the replica to be restarted")
        r = client.completions.create(model="tiny", prompt="Again", max_tokens=2, temperature=0)
        assert r.choices[0].finish_reason in ("length", "stop")
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    finally:
        # Cancel the deployment and wait for its replicas to stop: the plane leaves
        # running tasks running on shutdown, and nothing may outlive the test.
        with plane.store.session() as s:
            job_ids = {t.job_id for t in repo.active_tasks(s)}
        for job_id in job_ids:
            httpx.post(f"{url}/v1/jobs/{job_id}/cancel", headers={"Authorization": f"Bearer {token}"}, timeout=30)

        def stopped() -> bool:
            with plane.store.session() as s:
                return not repo.active_tasks(s)

        try:
            _wait(stopped, 60, "the replicas to stop")
        finally:
            server.stop()
