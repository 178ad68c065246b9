from __future__ import annotations

import pytest
from sqlalchemy import Connection, text

from llmos.core.states import JobState, TaskState
from llmos.errors import IllegalTransition, NotFound, ValidationError
from llmos.store import Store, StoreError
from llmos.store import jobs as jobrepo
from llmos.store import tokens as tokrepo
from llmos.store.migrations import MIGRATIONS, Migration, add_column_if_missing, current_version, migrate

SPEC = {"kind": "command", "name": "hello", "command": ["true"], "priority": 3}


def test_sqlite_uses_wal(tmp_path) -> None:
    st = Store(f"sqlite:///{tmp_path / 'x.db'}")
    with st.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    st.close()


def test_job_lifecycle_and_events(store: Store) -> None:
    with store.session() as s:
        job = jobrepo.insert_job(s, tenant="t1", spec=SPEC, num_tasks=1)
        job_id = job.id
    with store.session() as s:
        job = jobrepo.get_job(s, job_id, tenant="t1")
        assert job.state == "PENDING" and job.priority == 3 and job.spec["command"] == ["true"]
        with pytest.raises(NotFound):
            jobrepo.get_job(s, job_id, tenant="other")
        with pytest.raises(IllegalTransition):
            jobrepo.set_job_state(s, job, JobState.SUCCEEDED)
        jobrepo.set_job_state(s, job, JobState.RUNNING)
        task = jobrepo.insert_task(
            s, job_id=job_id, index=0, attempt=1, node_id="n", device_ids=["cpu0"], cpus=1, memory_gib=1,
            log_path="/tmp/x.log",
        )
        jobrepo.set_task_state(s, task, TaskState.RUNNING)
        assert [t.id for t in jobrepo.active_tasks(s)] == [f"{job_id}.0.1"]
        jobrepo.set_task_state(s, task, TaskState.SUCCEEDED, exit_code=0)
        jobrepo.set_job_state(s, job, JobState.SUCCEEDED)
    with store.session() as s:
        job = jobrepo.get_job(s, job_id)
        assert job.state == "SUCCEEDED" and job.finished_at is not None
        assert jobrepo.active_tasks(s) == []
        kinds = [e.kind for e in jobrepo.list_events(s, job_id)]
        assert kinds == ["submitted", "state", "task", "task", "state"]


def test_rollback_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError), store.session() as s:
        jobrepo.insert_job(s, tenant="t1", spec=SPEC, num_tasks=1)
        raise RuntimeError("boom")
    with store.session() as s:
        assert jobrepo.list_jobs(s, tenant=None)[1] == 0


def test_list_filters_and_pagination(store: Store) -> None:
    with store.session() as s:
        for i in range(5):
            jobrepo.insert_job(s, tenant="a" if i % 2 else "b", spec={**SPEC, "name": f"j{i}"}, num_tasks=1,
                               now=1000.0 + i)
    with store.session() as s:
        rows, total = jobrepo.list_jobs(s, tenant="b", limit=2)
        assert total == 3 and [r.name for r in rows] == ["j4", "j2"]
        rows, _ = jobrepo.list_jobs(s, tenant="b", limit=2, offset=2)
        assert [r.name for r in rows] == ["j0"]
        assert jobrepo.list_jobs(s, tenant=None, states=["RUNNING"])[1] == 0
        assert jobrepo.count_jobs_by_state(s) == {"PENDING": 5}


def test_tokens_hashed_and_revocable(store: Store) -> None:
    with store.session() as s:
        row, secret = tokrepo.create_token(s, tenant="t1", role="user", name="ci")
        token_id = row.id
        assert secret not in row.secret_hash and row.secret_hash == tokrepo.hash_secret(secret)
        with pytest.raises(ValidationError):
            tokrepo.create_token(s, tenant="t1", role="root")
    with store.session() as s:
        found = tokrepo.resolve_token(s, secret)
        assert found is not None and found.tenant == "t1"
        assert tokrepo.resolve_token(s, secret + "x") is None
        tokrepo.revoke_token(s, token_id)
    with store.session() as s:
        assert tokrepo.resolve_token(s, secret) is None


def test_migrations_extend_in_order(store_url: str) -> None:
    st = Store(store_url)
    assert current_version(st.engine) == MIGRATIONS[-1].version

    def v_next(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE extra_things (id INTEGER PRIMARY KEY, label TEXT)")
        add_column_if_missing(conn, "extra_things", "note TEXT DEFAULT ''")
        add_column_if_missing(conn, "extra_things", "note TEXT DEFAULT ''")  # idempotent

    nxt = MIGRATIONS[-1].version + 1
    steps = [*MIGRATIONS, Migration(nxt, "extra", v_next)]
    assert migrate(st.engine, steps) == nxt
    assert migrate(st.engine, steps) == nxt  # idempotent
    with st.engine.begin() as c:
        c.execute(text("INSERT INTO extra_things (id, label, note) VALUES (1, 'a', 'b')"))
    # Code older than the database refuses to run on it.
    with pytest.raises(StoreError):
        migrate(st.engine, MIGRATIONS)
    with st.engine.begin() as c:
        c.exec_driver_sql("DROP TABLE extra_things")
        c.exec_driver_sql(f"DELETE FROM schema_version WHERE version = {nxt}")
    st.close()
