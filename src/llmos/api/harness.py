"""A real control plane on 127.0.0.1 for tests, demos and benchmarks.

    with run_control_plane(tmp_path) as cp:
        job = cp.client().submit({...})

Starts a :class:`ControlPlane` (SQLite under ``home`` unless ``database_url``
is given), the API on a free port, and creates an admin token for tenant
``default``. Everything is real: HTTP server, database, subprocesses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmos.api.app import create_app
from llmos.api.server import ApiServer
from llmos.client import Client
from llmos.control.plane import ControlPlane
from llmos.settings import Settings
from llmos.store import tokens as tokrepo


@dataclass
class RunningPlane:
    url: str
    admin_token: str
    plane: ControlPlane
    server: ApiServer

    def client(self, token: str | None = None) -> Client:
        return Client(self.url, token or self.admin_token)

    def token(self, tenant: str, role: str) -> str:
        """Create a token directly in the store (no HTTP round trip)."""
        with self.plane.store.session() as s:
            _, secret = tokrepo.create_token(s, tenant=tenant, role=role)
        return secret


@contextmanager
def run_control_plane(home: Path, **settings: Any) -> Iterator[RunningPlane]:
    cfg = Settings(home=home, **settings)
    plane = ControlPlane(cfg)
    server = ApiServer(create_app(plane), "127.0.0.1", 0)
    plane.set_url(server.url)
    with plane.store.session() as s:
        _, secret = tokrepo.create_token(s, tenant="default", role="admin", name="harness admin")
    server.start()
    try:
        yield RunningPlane(server.url, secret, plane, server)
    finally:
        _kill_leftovers(plane)
        server.stop()


def _kill_leftovers(plane: ControlPlane) -> None:
    """Tests must not leak processes: SIGKILL whatever is still running."""
    from llmos.control.controller import handle_of
    from llmos.store import jobs as repo

    with plane.store.session() as s:
        active = repo.active_tasks(s)
    for t in active:
        handle = handle_of(t)
        if handle is not None:
            plane.backend.stop(handle, 0.0)
