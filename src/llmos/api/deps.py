"""Dependencies shared by every router: the control plane and the caller's identity.

For feature routers (registry, OpenAI gateway, ...)::

    from llmos.api.deps import Plane, Reader, Writer, Admin, require_role

    @router.get("/v1/things")
    def list_things(plane: Plane, who: Reader) -> ...:   # any of admin/user/viewer
        with plane.store.session() as s: ...             # filter by who.tenant!

``Reader`` = admin|user|viewer, ``Writer`` = admin|user, ``Admin`` = admin.
``require_role("admin", "user")`` builds a custom one. Task-scoped tokens (role
``task``) pass none of these; they are accepted only by the task report route.
Every dependency raises :class:`~llmos.errors.AuthenticationError` (401) or
:class:`~llmos.errors.PermissionDenied` (403), rendered as JSON errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from llmos.control.plane import ControlPlane
from llmos.errors import AuthenticationError, PermissionDenied
from llmos.store import tokens as tokrepo


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, tenant and role (and task, for task tokens)."""

    token_id: str
    tenant: str
    role: str
    task_id: str | None = None


def get_plane(request: Request) -> ControlPlane:
    plane: ControlPlane = request.app.state.plane
    return plane


Plane = Annotated[ControlPlane, Depends(get_plane)]


def get_principal(plane: Plane, authorization: Annotated[str | None, Header()] = None) -> Principal:
    if not authorization:
        raise AuthenticationError("missing bearer token: send 'Authorization: Bearer <token>'")
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationError("malformed Authorization header: expected 'Bearer <token>'")
    with plane.store.session() as s:
        row = tokrepo.resolve_token(s, secret.strip())
        if row is None:
            raise AuthenticationError("invalid or revoked token")
        return Principal(token_id=row.id, tenant=row.tenant, role=row.role, task_id=row.task_id)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_role(*roles: str) -> Callable[[Principal], Principal]:
    """A dependency admitting only callers whose role is in ``roles``."""
    allowed = frozenset(roles)

    def check(who: CurrentPrincipal) -> Principal:
        if who.role not in allowed:
            raise PermissionDenied(f"role {who.role!r} may not do this; needs one of: {', '.join(sorted(allowed))}")
        return who

    return check


Reader = Annotated[Principal, Depends(require_role("admin", "user", "viewer"))]
Writer = Annotated[Principal, Depends(require_role("admin", "user"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]
