"""OpenAI-shaped error responses for the replica server and the gateway.

Every failure leaves as ``{"error": {"message", "type", "code", "param"}}`` with
a 4xx/5xx status: :class:`llmos.errors.LLMOSError` subclasses map to their own
``http_status``; request validation failures are 400; anything unexpected is a
500 whose body names the exception type but never carries a traceback.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmos.errors import LLMOSError
from llmos.serving.server.openapi import allowed_methods

log = logging.getLogger(__name__)


def error_payload(message: str, type_: str, code: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code, "param": param}}


def error_response(
    status: int, message: str, type_: str, code: str, param: str | None = None
) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_payload(message, type_, code, param))


def llmos_error_response(err: LLMOSError) -> JSONResponse:
    return error_response(err.http_status, err.message, err.type, err.code)


def sse_error_event(err: BaseException) -> str:
    """An SSE ``data:`` line carrying an error, for failures after a stream began."""
    if isinstance(err, LLMOSError):
        body = error_payload(err.message, err.type, err.code)
    else:
        body = error_payload(f"internal error: {type(err).__name__}", "InternalError", "internal_error")
    return f"data: {json.dumps(body)}\n\n"


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    parts = []
    param = None
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        if param is None and loc:
            param = loc[0]
        where = ".".join(loc) or "body"
        msg = str(e.get("msg", "invalid"))
        # pydantic prefixes messages of model validators with "Value error, ".
        msg = msg.removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "invalid request", param


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``; call once from the app factory."""

    @app.exception_handler(LLMOSError)
    async def _llmos(_: Request, exc: LLMOSError) -> JSONResponse:
        return llmos_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        msg, param = _validation_message(exc)
        return error_response(400, msg, "ValidationError", "invalid_request", param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else "http_error"
        resp = error_response(exc.status_code, str(exc.detail), "HTTPError", code)
        if exc.status_code == 405:
            # RFC 9110: a 405 lists the methods the path supports (Starlette names one route's).
            resp.headers["Allow"] = ", ".join(allowed_methods(req.app, req.scope))
        return resp

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(
            500, f"internal error: {type(exc).__name__}: {exc}", "InternalError", "internal_error"
        )
