"""Fixtures for backend tests: a real two-node Ray cluster and a backend per name.

``ray_cluster`` starts ONE cluster per test session (``ray start --head`` plus
``ray start --address ...`` with ``{"V100": 1}``, both on 127.0.0.1 with their
own temp dirs) and kills only its own processes at the end.

Other test directories get the same cluster and the same parametrisation by
copying the two fixtures below (``ray_cluster``, ``backend_name``) and calling
:func:`make_backend` — see the Ray backend section of the README.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmos.backends.base import ExecutionBackend
from llmos.client import Client
from llmos.control.plane import ControlPlane

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed (pip install 'llmos[ray]')")
RAY_MARKS = [pytest.mark.ray, pytest.mark.slow, needs_ray]
BACKENDS = ["local", pytest.param("ray", marks=RAY_MARKS)]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[object]:
    if not HAS_RAY:
        pytest.skip("Ray is not installed (pip install 'llmos[ray]')")
    import ray

    from llmos.backends.ray_cluster import shared_test_cluster, stop_shared_test_cluster

    cluster = shared_test_cluster()
    if not ray.is_initialized():
        # Connected once for the session: backends then share this driver instead of
        # each paying for ray.init() and shutting it down on close().
        ray.init(address=cluster.address, namespace="llmos", log_to_driver=False, logging_level="WARNING")
    yield cluster
    stop_shared_test_cluster()


def make_backend(name: str, home: Path, request: pytest.FixtureRequest) -> ExecutionBackend:
    """A backend of ``name`` for tests, its artifacts under ``home``."""
    if name == "local":
        from llmos.backends.local import LocalBackend

        return LocalBackend(home)
    cluster = request.getfixturevalue("ray_cluster")
    from llmos.backends.ray import RayBackend

    return RayBackend(home, address=cluster.address, placement_timeout_s=60)


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    """Parametrises a test over both backends; the ray case is marked ``ray`` and ``slow``."""
    return str(request.param)


@pytest.fixture
def backend(backend_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ExecutionBackend]:
    b = make_backend(backend_name, tmp_path / "home", request)
    yield b
    b.close()


@pytest.fixture
def ray_backend(ray_cluster: object, tmp_path: Path) -> Iterator[object]:
    from llmos.backends.ray import RayBackend

    b = RayBackend(tmp_path / "home", address=ray_cluster.address, placement_timeout_s=60)  # type: ignore[attr-defined]
    yield b
    b.close()


@dataclass
class LlmosSystem:
    """A real control plane (store, loop, backend) behind a real HTTP API on 127.0.0.1."""

    client: Client
    plane: ControlPlane
    home: Path
    backend_name: str


@pytest.fixture
def llmos_system(backend: ExecutionBackend, backend_name: str, tmp_path: Path) -> Iterator[LlmosSystem]:
    from llmos.api.app import create_app
    from llmos.api.server import ApiServer
    from llmos.settings import Settings
    from llmos.store import tokens as tokrepo

    home = tmp_path / "home"
    # A short inventory refresh: a node that died is seen by the scheduler within a second.
    settings = Settings(home=home, port=0, loop_interval_s=0.1, inventory_refresh_s=1.0, stop_grace_s=3.0)
    plane = ControlPlane(settings, backend=backend)
    server = ApiServer(create_app(plane), "127.0.0.1", 0)
    plane.set_url(server.url)
    with plane.store.session() as s:
        _, secret = tokrepo.create_token(s, tenant="default", role="admin", name="test admin")
    server.start()
    client = Client(server.url, secret)
    try:
        yield LlmosSystem(client, plane, home, backend_name)
    finally:
        # Cancel what is left and wait for it: a Ray task outlives its control plane
        # (detached actor) and would hold the shared cluster's resources.
        with contextlib.suppress(Exception):
            left = client.jobs(["PENDING", "RUNNING"])["items"]
            for job in left:
                client.cancel(job["id"])
            for job in left:
                client.wait(job["id"], timeout_s=30)
        client.close()
        server.stop()  # the app's lifespan stops the plane's loop
