"""The only place faults become HTTP responses: ``{"error": {"message", "type", "code"}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmos.core.states import JobState
from llmos.errors import AuthenticationError, LLMOSError
from llmos.serving.server.openapi import allowed_methods

log = logging.getLogger("llmos.api")

_HTTP_CODES = {
    400: ("BadRequest", "invalid_request"),
    401: ("AuthenticationError", "unauthenticated"),
    403: ("PermissionDenied", "permission_denied"),
    404: ("NotFound", "not_found"),
    405: ("MethodNotAllowed", "method_not_allowed"),
    409: ("Conflict", "conflict"),
    413: ("PayloadTooLarge", "payload_too_large"),
    415: ("UnsupportedMediaType", "unsupported_media_type"),
    422: ("ValidationError", "invalid_request"),
}


def error_response(status: int, message: str, type_: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": type_, "code": code}},
        headers=headers,
    )


def _llmos_error(_req: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LLMOSError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthenticationError) else None
    return error_response(exc.http_status, exc.message, exc.type, exc.code, headers)


def _validation_error(_req: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "request"
        if e.get("type") == "string_pattern_mismatch" and loc.startswith("query.state"):
            # The pattern spells out every state twice; say it the way a person would.
            parts.append(f"{loc}: unknown state {e.get('input')!r}; expected one of: {', '.join(JobState.__members__)}"
                         " (comma-separated)")
            continue
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    return error_response(400, "invalid request: " + "; ".join(parts), "ValidationError", "invalid_request")


def _http_error(req: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    type_, code = _HTTP_CODES.get(exc.status_code, ("HTTPError", f"http_{exc.status_code}"))
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the first route whose path matched; list every method of the path.
        headers["Allow"] = ", ".join(allowed_methods(req.app, req.scope))
    return error_response(exc.status_code, detail, type_, code, headers or None)


def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, f"internal error: {exc.__class__.__name__}", "InternalError", "internal_error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LLMOSError, _llmos_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
