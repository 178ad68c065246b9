"""The whole control plane on PostgreSQL (runs when LLMOS_TEST_POSTGRES_URL is set, e.g. by .ci/run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import MetaData

from llmos.api.harness import run_control_plane
from llmos.store.db import make_engine

PG_URL = os.environ.get("LLMOS_TEST_POSTGRES_URL", "")


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="PostgreSQL not available: set LLMOS_TEST_POSTGRES_URL (.ci/run starts one)")
def test_jobs_run_with_a_postgres_store(tmp_path: Path) -> None:
    engine = make_engine(PG_URL)
    meta = MetaData()
    meta.reflect(engine)
    meta.drop_all(engine)
    engine.dispose()
    with run_control_plane(tmp_path / "home", database_url=PG_URL, loop_interval_s=0.05) as cp:
        assert cp.plane.store.dialect == "postgresql"
        c = cp.client()
        ok = c.submit({"kind": "command", "name": "pg", "command": ["sh", "-c", "echo on-postgres"]})
        bad = c.submit({"kind": "command", "name": "pg-bad", "command": ["sh", "-c", "exit 5"], "max_retries": 1,
                        "retry_backoff_s": 0.05})
        assert c.wait(ok["id"], timeout_s=30)["state"] == "SUCCEEDED"
        assert "on-postgres" in c.logs_text(ok["id"])
        failed = c.wait(bad["id"], timeout_s=30)
        assert failed["state"] == "FAILED" and failed["failures"] == 2
        assert c.jobs("SUCCEEDED")["total"] == 1
