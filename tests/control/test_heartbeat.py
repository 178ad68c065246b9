"""Hung-task detection: a task that heartbeats and then goes silent is stopped and retried.

Real control plane, real subprocesses: the hung worker ignores SIGTERM, so only the
SIGKILL that follows ``stop_grace_s`` ends it.
"""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

from llmos.api.harness import run_control_plane
from llmos.store import Store
from llmos.store import jobs as repo
from llmos.store.migrations import MIGRATIONS, current_version

HUNG_WORKER = """
    import os, signal, sys, time
    from llmos.client import TaskReporter
    rep = TaskReporter.from_env()
    attempt = int(os.environ["LLMOS_ATTEMPT"])
    if attempt == 1:
        path = os.path.join(os.environ["LLMOS_CHECKPOINT_DIR"], "step-3")
        open(path, "w").write("weights")
        rep.checkpoint(3, path)
        rep.heartbeat()
        open(sys.argv[1], "w").write(str(os.getpid()))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a wedged worker: only SIGKILL ends it
        time.sleep(600)
    assert os.environ["LLMOS_RESUME_STEP"] == "3", os.environ.get("LLMOS_RESUME_STEP")
    rep.heartbeat()
    rep.progress(5, 5)
"""


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_silent_task_is_killed_failed_and_retried_from_checkpoint(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with run_control_plane(tmp_path / "home", loop_interval_s=0.05, node_cpus=4,
                           heartbeat_timeout_s=1.0, stop_grace_s=0.5) as cp:
        c = cp.client()
        hung = c.submit({
            "kind": "command", "name": "hangs",
            "command": [sys.executable, "-c", textwrap.dedent(HUNG_WORKER), str(pid_file)],
            "max_retries": 1, "retry_backoff_s": 0.1,
        })
        # Never reports: sleeps past the timeout and must still succeed.
        quiet = c.submit({"kind": "command", "name": "quiet", "command": ["sleep", "2.5"]})
        t0 = time.monotonic()
        done = c.wait(hung["id"], timeout_s=60)
        took = time.monotonic() - t0
        assert done["state"] == "SUCCEEDED", done
        assert done["attempt"] == 2 and done["failures"] == 1
        assert took < 30
        events = c.events(hung["id"])
        hung_events = [e["message"] for e in events if e["kind"] == "hung"]
        assert hung_events == ["task 0: no heartbeat for 1 s"]
        assert any("retry 1 of 1" in e["message"] and "no heartbeat for 1 s" in e["message"] for e in events)
        with cp.plane.store.session() as s:
            first = next(t for t in repo.tasks_of_job(s, hung["id"]) if t.attempt == 1)
            assert (first.state, first.message, first.stop_reason) == ("FAILED", "no heartbeat for 1 s", "hung")
            assert first.heartbeat_timeout_s == 1.0
        # The SIGTERM-ignoring process was SIGKILLed, not left behind.
        assert not _pid_alive(int(pid_file.read_text()))
        q = c.wait(quiet["id"], timeout_s=30)
        assert q["state"] == "SUCCEEDED" and q["failures"] == 0
        assert not [e for e in c.events(quiet["id"]) if e["kind"] == "hung"]


def test_migration_adds_the_timeout_column_to_old_databases(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, inspect

    from llmos.store.migrations import migrate

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    assert migrate(engine, [m for m in MIGRATIONS if m.version <= 2]) == 2
    # Step 1 builds tables from today's ORM classes: drop the column to get a pre-step-3 database.
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE tasks DROP COLUMN heartbeat_timeout_s")
    assert "heartbeat_timeout_s" not in {c["name"] for c in inspect(engine).get_columns("tasks")}
    engine.dispose()
    store = Store(url)  # migrates on open
    assert current_version(store.engine) == MIGRATIONS[-1].version
    assert "heartbeat_timeout_s" in {c["name"] for c in inspect(store.engine).get_columns("tasks")}
