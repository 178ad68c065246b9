"""Schema migrations: an ordered list of steps and a ``schema_version`` table.

:func:`migrate` runs at every :class:`~llmos.store.db.Store` open. It applies,
in order and each in its own transaction, every step whose version is above
the one recorded in ``schema_version``; a database newer than the code is
refused. Steps are never edited once released: change the schema by appending
a step (see the package docstring of :mod:`llmos.store` for a worked example).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Column, Connection, Engine, Float, Integer, MetaData, String, Table, inspect, select

from llmos.store.db import StoreError


@dataclass(frozen=True)
class Migration:
    """Step ``version`` (1, 2, 3, ...): ``apply(conn)`` runs inside one transaction."""

    version: int
    name: str
    apply: Callable[[Connection], None]


def create_tables(conn: Connection, *tables: Table) -> None:
    """Create ``tables`` if missing (a step may be re-run after a crash on SQLite DDL)."""
    for t in tables:
        t.create(conn, checkfirst=True)


def add_column_if_missing(conn: Connection, table: str, column_ddl: str) -> None:
    """``ALTER TABLE table ADD COLUMN column_ddl`` unless the column exists.

    ``column_ddl`` is portable SQL such as ``"note TEXT DEFAULT ''"``. Idempotent
    because fresh databases already get the column from the ORM class.
    """
    name = column_ddl.split()[0]
    existing = {c["name"] for c in inspect(conn).get_columns(table)}
    if name not in existing:
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column_ddl}")


def _v1_core(conn: Connection) -> None:
    from llmos.store.tables import CORE_TABLES

    create_tables(conn, *(t.__table__ for t in CORE_TABLES))  # type: ignore[arg-type]


def _v2_registry(conn: Connection) -> None:
    from llmos.store.registry import migrate_registry_v2

    migrate_registry_v2(conn)


def _v3_task_heartbeat_timeout(conn: Connection) -> None:
    add_column_if_missing(conn, "tasks", "heartbeat_timeout_s FLOAT")


# The one explicit, ordered list. Append new steps at the end with the next version.
MIGRATIONS: list[Migration] = [
    Migration(1, "core tables: tokens, jobs, tasks, events, job_metrics, nodes", _v1_core),
    Migration(2, "model registry: models, model_versions, model_tags", _v2_registry),
    Migration(3, "tasks.heartbeat_timeout_s: hung-task detection", _v3_task_heartbeat_timeout),
]

_meta = MetaData()
_version_table = Table(
    "schema_version",
    _meta,
    Column("version", Integer, primary_key=True),
    Column("name", String(256), nullable=False),
    Column("applied_at", Float, nullable=False),
)


def current_version(engine: Engine) -> int:
    with engine.connect() as conn:
        if not inspect(conn).has_table("schema_version"):
            return 0
        rows = conn.execute(select(_version_table.c.version)).scalars().all()
        return max(rows, default=0)


def migrate(engine: Engine, steps: list[Migration] | None = None) -> int:
    """Bring the schema up to date; returns the resulting version. Idempotent.

    Concurrent openers are safe: a step whose version row already exists
    (inserted by another process) is skipped.
    """
    steps = MIGRATIONS if steps is None else steps
    versions = [m.version for m in steps]
    if versions != sorted(versions) or len(set(versions)) != len(versions):
        raise StoreError(f"migration versions must be unique and increasing, got {versions}")
    with engine.begin() as conn:
        _version_table.create(conn, checkfirst=True)
    version = current_version(engine)
    latest = versions[-1] if versions else 0
    if version > latest:
        raise StoreError(
            f"database schema version {version} is newer than this llmos ({latest}); upgrade llmos"
        )
    for m in steps:
        if m.version <= version:
            continue
        with engine.begin() as conn:
            done = conn.execute(
                select(_version_table.c.version).where(_version_table.c.version == m.version)
            ).first()
            if done is not None:
                continue
            m.apply(conn)
            conn.execute(
                _version_table.insert().values(version=m.version, name=m.name, applied_at=time.time())
            )
        version = m.version
    return version
