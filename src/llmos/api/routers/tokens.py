"""API tokens (admin only): create for any tenant and role, list, revoke."""

from __future__ import annotations

from fastapi import APIRouter

from llmos.api.deps import Admin, Plane
from llmos.api.schemas import TokenCreate, TokenCreated, TokenPublic
from llmos.store import tokens as tokrepo

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


@router.post("", status_code=201, response_model=TokenCreated)
def create_token(body: TokenCreate, plane: Plane, who: Admin) -> TokenCreated:
    with plane.store.session() as s:
        row, secret = tokrepo.create_token(s, tenant=body.tenant, role=body.role, name=body.name)
        return TokenCreated(**TokenPublic.of(row).model_dump(), token=secret)


@router.get("", response_model=list[TokenPublic])
def list_tokens(plane: Plane, who: Admin) -> list[TokenPublic]:
    with plane.store.session() as s:
        return [TokenPublic.of(t) for t in tokrepo.list_tokens(s)]


@router.delete("/{token_id}", response_model=TokenPublic)
def revoke_token(token_id: str, plane: Plane, who: Admin) -> TokenPublic:
    with plane.store.session() as s:
        return TokenPublic.of(tokrepo.revoke_token(s, token_id))
