"""``/healthz``: the only route without a token."""

from __future__ import annotations

from fastapi import APIRouter

from llmos import __version__
from llmos.api.deps import Plane

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(plane: Plane) -> dict[str, object]:
    return {"status": "ok", "version": __version__, "loop_running": plane.running, "backend": plane.backend.name}
