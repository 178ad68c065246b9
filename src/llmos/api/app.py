"""The FastAPI application of the control plane.

Registration convention (for every engineer adding an API feature)
------------------------------------------------------------------
* A feature module exposes ``router: fastapi.APIRouter`` (with its own
  ``prefix`` and ``tags``), e.g. ``llmos/api/routers/registry.py`` or the
  package ``llmos/api/openai/__init__.py``.
* It is registered by adding ONE line, its module path, to
  :data:`FEATURE_ROUTERS` below. There is no discovery and no import-time
  magic: the list is the whole API.
* Routes take the control plane and the caller through the dependencies of
  :mod:`llmos.api.deps` (``Plane``, ``Reader``, ``Writer``, ``Admin``,
  ``require_role``) and filter everything by ``who.tenant``.
* Raise :class:`llmos.errors.LLMOSError` subclasses for faults; they become
  ``{"error": {"message", "type", "code"}}`` with the error's HTTP status.
  Routes under ``/v1/chat``, ``/v1/completions``... may install their own
  handlers for OpenAI-shaped errors on their router.
* Keep module import light: import torch / transformers inside functions, so
  ``llmos up`` and the CLI start fast.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from llmos import __version__
from llmos.api.errors import install_error_handlers
from llmos.api.openapi import install_control_plane_openapi
from llmos.control.plane import ControlPlane
from llmos.settings import Settings

# The one explicit list of routers. Add your module here (one line).
FEATURE_ROUTERS: tuple[str, ...] = (
    "llmos.api.routers.health",
    "llmos.api.routers.jobs",
    "llmos.api.routers.nodes",
    "llmos.api.routers.tokens",
    "llmos.api.routers.tasks",
    "llmos.api.routers.metrics",
    "llmos.api.routers.registry",
    "llmos.api.openai",
)


def create_app(plane: ControlPlane | None = None, settings: Settings | None = None, *, manage: bool = True) -> FastAPI:
    """Build the app around ``plane`` (built from ``settings`` when absent).

    With ``manage=True`` the app starts the plane's loop on startup and stops
    it on shutdown; with ``manage=False`` the caller owns the plane's lifetime.
    """
    plane = plane or ControlPlane(settings or Settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage:
            plane.start()
        try:
            yield
        finally:
            if manage:
                plane.stop()

    app = FastAPI(title="llmos", version=__version__, lifespan=lifespan)
    app.state.plane = plane
    install_error_handlers(app)
    for module in FEATURE_ROUTERS:
        router = importlib.import_module(module).router
        assert isinstance(router, APIRouter), f"{module}.router must be an APIRouter"
        app.include_router(router)
    install_control_plane_openapi(app)
    return app
