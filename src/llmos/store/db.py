"""Engine, sessions and the declarative ``Base`` every table derives from.

SQLite (the embedded default) runs in WAL mode with a busy timeout so the
control plane's loop thread and the API's request threads can share one file;
PostgreSQL needs nothing special. The code above this module is identical for
both.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from llmos.errors import LLMOSError

SQLITE_BUSY_TIMEOUT_MS = 30_000


class Base(DeclarativeBase):
    """Declarative base of every llmos table (core, registry, ...)."""


class StoreError(LLMOSError):
    """The database cannot be opened or migrated."""

    code = "store_error"
    http_status = 500


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers proceed while the loop thread writes; NORMAL sync is
    # durable across process crashes (only an OS crash can lose the last txn).
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

    For SQLite the parent directory is created and WAL mode switched on.
    """
    if url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship in the dev extra; psycopg2 may be absent.
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=8,
            max_overflow=16,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=16)
    except Exception as e:  # bad URL, missing driver
        raise StoreError(f"cannot open database {url!r}: {e}") from e


class Store:
    """An engine plus a session factory. Thread-safe; one per process.

    Use :meth:`session` for a unit of work: it commits when the block exits
    normally and rolls back on any exception.
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._lock = threading.Lock()
        if migrate:
            from llmos.store.migrations import migrate as run_migrations

            try:
                run_migrations(self.engine)
            except LLMOSError:
                raise
            except Exception as e:
                raise StoreError(f"cannot open or migrate database at {url!r}: {e}") from e

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        s = self._sessions()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def close(self) -> None:
        self.engine.dispose()
