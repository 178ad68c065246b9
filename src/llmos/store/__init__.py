"""The store: SQLAlchemy 2 tables and repository functions.

SQLite under ``$LLMOS_HOME/llmos.db`` (WAL mode) by default; PostgreSQL when
``LLMOS_DATABASE_URL`` is set (``postgresql://user:pw@host/db``). The same code
runs on both. Open it with::

    from llmos.store import Store
    store = Store(settings.effective_database_url)   # migrates on open
    with store.session() as s:                        # commits on success
        job = jobs.get_job(s, job_id)

Modules: :mod:`~llmos.store.db` (engine, ``Base``, ``Store``),
:mod:`~llmos.store.tables` (core tables), :mod:`~llmos.store.migrations`
(ordered steps), :mod:`~llmos.store.jobs`, :mod:`~llmos.store.tokens`,
:mod:`~llmos.store.nodes` (repository functions taking a ``Session``; they
never commit).

How to add a table and its migration (e.g. the model registry)
----------------------------------------------------------------
1. Write ``src/llmos/store/registry.py`` with ORM classes deriving from
   ``llmos.store.db.Base`` (times as ``Float`` epoch seconds, JSON in ``JSON``
   columns, string ids) and a step function::

       from sqlalchemy import Connection
       from llmos.store.db import Base
       from llmos.store.migrations import create_tables

       class ModelRow(Base):
           __tablename__ = "models"
           ...

       def migrate_registry_v2(conn: Connection) -> None:
           create_tables(conn, ModelRow.__table__, ModelVersionRow.__table__, ...)

2. Append ONE line to ``MIGRATIONS`` in ``llmos/store/migrations.py`` with the
   next free version, importing the function lazily inside a small wrapper
   (or at module top if no import cycle arises)::

       Migration(2, "model registry: models, versions, tags, lineage", _v2_registry),

3. Never edit a released step. To add a column later, add it to the ORM class
   *and* append a step calling
   ``add_column_if_missing(conn, "models", "note TEXT DEFAULT ''")`` (fresh
   databases already have it from step 1/2's ``create``, old ones get it by
   ``ALTER TABLE``).

4. Add repository functions taking a ``Session`` in the same module, and
   tests under ``tests/store/`` using the ``store`` fixture of
   ``tests/store/conftest.py`` (parametrised over SQLite and PostgreSQL).
"""

from llmos.store.db import Base, Store, StoreError

__all__ = ["Base", "Store", "StoreError"]
