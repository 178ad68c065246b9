"""Store fixtures: every store test runs on SQLite and, when reachable, PostgreSQL.

PostgreSQL runs when ``LLMOS_TEST_POSTGRES_URL`` names a server (``.ci/run``
starts a throwaway one); each test gets its own fresh schema-less database
state by dropping all tables first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData

from llmos.store import Store

PG_URL = os.environ.get("LLMOS_TEST_POSTGRES_URL", "")


def _wipe(url: str) -> None:
    from llmos.store.db import make_engine

    engine = make_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    meta.drop_all(engine)
    engine.dispose()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'llmos.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL not available: set LLMOS_TEST_POSTGRES_URL (.ci/run starts one)")
    try:
        _wipe(PG_URL)
    except Exception as e:  # server went away, bad URL
        pytest.skip(f"PostgreSQL at LLMOS_TEST_POSTGRES_URL unreachable: {e}")
    yield PG_URL
    _wipe(PG_URL)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    st = Store(store_url)
    yield st
    st.close()
