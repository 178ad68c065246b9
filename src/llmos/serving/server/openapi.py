"""Make an app's OpenAPI document say what the app really does, and 405s list every method.

FastAPI documents a 422 ``HTTPValidationError`` on every route, while llmos answers
validation failures with 400 and ``{"error": {...}}``, and it documents nothing of
the 401/403/404/409/429 a route can return. Clients that trust the document (API
fuzzers, generated SDKs) then see "undocumented" answers. :func:`install_openapi`
rewrites the generated document once (FastAPI caches it): the error body becomes
a named schema, every operation lists 400/404 and a ``default`` error response,
422 is gone, and callers can add request bodies or text responses for routes that
read their body or answer text by hand.

:func:`allowed_methods` fixes Starlette's 405, whose ``Allow`` header names only
the first route whose path matched, not every method the path supports.

Pure FastAPI/Starlette: shared by the replica server and the control-plane API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import Match
from starlette.types import Scope

ERROR_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "ErrorBody",
    "description": "Every failure: 4xx for bad input, 5xx for faults of the server",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": ["string", "null"]},
                "param": {"type": ["string", "null"]},
            },
        }
    },
}

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_DESCRIPTIONS = {
    "400": "Invalid request (bad JSON, a field out of range, an unsupported option)",
    "401": "Missing or invalid bearer token",
    "403": "The token's role may not do this",
    "404": "No such object",
    "409": "Conflicts with the object's state",
    "413": "Request body too large",
    "429": "A budget (memory, KV cache, quota) is exhausted",
    "default": "Any other error, same body",
}


def _error_response(code: str) -> dict[str, Any]:
    return {"description": _DESCRIPTIONS.get(code, "Error"), "content": {"application/json": {"schema": _ERROR_REF}}}


def _merge_defs(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Move pydantic's ``$defs`` into ``components.schemas`` (refs already point there)."""
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    return schema


def json_body_schema(model: Any, components: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of a pydantic model or ``TypeAdapter``, refs under ``components``."""
    template = "#/components/schemas/{model}"
    if hasattr(model, "model_json_schema"):
        return _merge_defs(model.model_json_schema(ref_template=template), components)
    return _merge_defs(model.json_schema(ref_template=template), components)


def install_openapi(
    app: FastAPI,
    *,
    error_codes: Iterable[str] = ("400", "404"),
    bearer_auth: bool = False,
    request_bodies: Mapping[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
    text_responses: Iterable[tuple[str, str]] = (),
) -> None:
    """Replace ``app.openapi`` with a generator that documents errors as they are.

    ``error_codes`` are listed on every operation besides ``default``.
    ``bearer_auth``: a header parameter named ``authorization`` becomes an HTTP
    bearer security requirement (and 401/403 are documented where it applies).
    ``request_bodies`` maps ``(path, method)`` to a function building the
    ``requestBody`` object from ``components.schemas`` (for routes that parse
    the raw body themselves). ``text_responses``: ``(path, method)`` whose 200 is
    ``text/plain``.
    """
    codes = tuple(error_codes)
    bodies = dict(request_bodies or {})
    texts = set(text_responses)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, openapi_version=app.openapi_version,
            description=app.description, routes=app.routes,
        )  # fmt: skip
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        components["ErrorBody"] = ERROR_BODY_SCHEMA
        if bearer_auth:
            doc["components"]["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an llmos API token"}
            }
        for path, ops in doc.get("paths", {}).items():
            for method, op in ops.items():
                responses = op.setdefault("responses", {})
                responses.pop("422", None)
                params = op.get("parameters", [])
                authed = any(p.get("in") == "header" and p.get("name", "").lower() == "authorization" for p in params)
                if bearer_auth and authed:
                    op["parameters"] = [
                        p for p in params if not (p.get("in") == "header" and p["name"].lower() == "authorization")
                    ]
                    if not op["parameters"]:
                        del op["parameters"]
                    op["security"] = [{"bearer": []}]
                    for c in ("401", "403"):
                        responses.setdefault(c, _error_response(c))
                for c in codes:
                    responses.setdefault(c, _error_response(c))
                responses.setdefault("default", _error_response("default"))
                if (path, method) in bodies:
                    op["requestBody"] = bodies[(path, method)](components)
                if (path, method) in texts:
                    ok = next((k for k in responses if k.startswith("2")), "200")
                    responses[ok] = {
                        "description": responses.get(ok, {}).get("description", "Text"),
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route of ``app`` accepts on the request's path (for ``Allow``).

    Probes each method through the routes' own ``matches`` (FastAPI wraps included
    routers in private route types, so their route lists are not walked here).
    """
    allowed = []
    for method in _METHODS:
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in app.routes):
            allowed.append(method)
    return allowed
