"""The ``llmos`` CLI as a user runs it (subprocesses against a real control plane)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from llmos.api.harness import RunningPlane
from llmos.client.config import write_config

Run = Callable[..., subprocess.CompletedProcess[str]]


def _no_traceback(out: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout, out.stderr


def test_submit_wait_jobs_job_logs(llmos: Run) -> None:
    out = llmos("submit", "examples/hello.yaml", "--wait")
    assert out.returncode == 0, out.stderr
    job_id = re.search(r"submitted (job-[0-9a-f]+)", out.stdout).group(1)  # type: ignore[union-attr]
    assert "RUNNING" in out.stdout and "SUCCEEDED" in out.stdout
    listing = llmos("jobs", "--state", "SUCCEEDED")
    assert listing.returncode == 0 and job_id in listing.stdout and "hello" in listing.stdout
    detail = llmos("job", job_id)
    assert detail.returncode == 0 and "SUCCEEDED" in detail.stdout and "RUNNING -> SUCCEEDED" in detail.stdout
    logs = llmos("logs", job_id)
    assert logs.returncode == 0 and f"hello from llmos job {job_id}" in logs.stdout
    follow = llmos("logs", "-f", job_id)
    assert follow.returncode == 0 and "done" in follow.stdout


def test_failed_wait_exits_nonzero_and_cancel(llmos: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: command\nname: bad\ncommand: [sh, -c, 'exit 2']\n")
    out = llmos("submit", str(bad), "--wait")
    assert out.returncode == 1 and "FAILED" in out.stdout and "exited with code 2" in out.stdout
    sleepy = tmp_path / "sleepy.yaml"
    sleepy.write_text("kind: command\nname: sleepy\ncommand: [sleep, '60']\n")
    out = llmos("submit", str(sleepy))
    job_id = re.search(r"(job-[0-9a-f]+)", out.stdout).group(1)  # type: ignore[union-attr]
    out = llmos("cancel", job_id)
    assert out.returncode == 0 and "CANCELLED" in out.stdout


def test_nodes_and_tokens_and_tenants(llmos: Run, cp: RunningPlane) -> None:
    out = llmos("nodes")
    assert out.returncode == 0 and "cpu" in out.stdout and "0/4" in out.stdout
    out = llmos("token", "create", "--tenant", "acme", "--role", "viewer")
    assert out.returncode == 0, out.stderr
    secret = out.stdout.strip().splitlines()[-1]
    assert secret.startswith("llmos_")
    viewer = llmos("jobs", env={"LLMOS_TOKEN": secret})
    assert viewer.returncode == 0 and "0 of 0" in viewer.stdout
    denied = llmos("submit", "examples/hello.yaml", env={"LLMOS_TOKEN": secret})
    assert denied.returncode == 1 and "error:" in denied.stderr and "viewer" in denied.stderr
    _no_traceback(denied)
    assert "acme" in llmos("token", "list").stdout


def test_errors_are_one_line_and_exit_1(llmos: Run, tmp_path: Path) -> None:
    for args in (["job", "job-nope"], ["submit", str(tmp_path / "missing.yaml")], ["logs", "job-nope"],
                 ["token", "create", "--tenant", "x", "--role", "root"]):
        out = llmos(*args)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert out.stderr.startswith("error:"), out.stderr
        _no_traceback(out)
    malformed = tmp_path / "m.yaml"
    malformed.write_text("kind: command\nname: [oops\n")
    out = llmos("submit", str(malformed))
    assert out.returncode == 1 and "malformed YAML" in out.stderr
    out = llmos("jobs", env={"LLMOS_TOKEN": "llmos_wrong"})
    assert out.returncode == 1 and "invalid or revoked token" in out.stderr
    out = llmos("jobs", env={"LLMOS_URL": "http://127.0.0.1:9"})
    assert out.returncode == 1 and "cannot reach llmos" in out.stderr
    _no_traceback(out)


def test_address_and_token_from_config_file(llmos: Run, cp: RunningPlane, tmp_path: Path) -> None:
    home = tmp_path / "cfg-home"
    write_config(home, url=cp.url, token=cp.admin_token)
    out = llmos("nodes", env={"LLMOS_HOME": str(home)}, use_env=False)
    assert out.returncode == 0, out.stderr
    assert (home / "config").stat().st_mode & 0o077 == 0  # secret file is private
    # Flags win over env and config.
    out = llmos("nodes", "--token", "llmos_wrong")
    assert out.returncode == 1


def test_cli_starts_fast_without_heavy_imports() -> None:
    code = ("import sys, time; t = time.perf_counter(); import llmos.cli.app; "
            "heavy = [m for m in ('torch', 'transformers', 'sqlalchemy', 'fastapi', 'uvicorn') if m in sys.modules]; "
            "print(heavy, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    heavy, _seconds = out.stdout.rsplit("]", 1)
    assert heavy + "]" == "[]", out.stdout
