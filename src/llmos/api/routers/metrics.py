"""``/metrics`` in the Prometheus text format (needs a token like every route but /healthz)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from llmos.api.deps import Plane, Reader
from llmos.control.metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(plane: Plane, who: Reader) -> Response:
    return Response(content=plane.metrics.render(), media_type=CONTENT_TYPE)
