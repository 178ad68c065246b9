"""API tokens: creation, lookup by secret, revocation.

Secrets are 256-bit random strings shown once; only their SHA-256 is stored.
A plain (unsalted) hash is enough because the secrets are high-entropy: there
is no dictionary to attack, and lookup by hash stays a single indexed query.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from llmos.errors import NotFound, ValidationError
from llmos.store.tables import TokenRow

ROLES: tuple[str, ...] = ("admin", "user", "viewer")
TASK_ROLE = "task"  # a worker's token: may only report for its own task
TOKEN_PREFIX = "llmos_"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(
    s: Session,
    *,
    tenant: str,
    role: str,
    name: str = "",
    task_id: str | None = None,
    now: float | None = None,
) -> tuple[TokenRow, str]:
    """Create a token; returns the row and the secret (the only time it is known)."""
    if role not in ROLES and not (role == TASK_ROLE and task_id):
        raise ValidationError(f"unknown role {role!r}; expected one of: {', '.join(ROLES)}")
    if not tenant or len(tenant) > 64 or not tenant.replace("-", "").replace("_", "").isalnum():
        raise ValidationError("tenant must be 1-64 letters, digits, '-' or '_'")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = TokenRow(
        id="tok-" + uuid.uuid4().hex[:12],
        name=name,
        tenant=tenant,
        role=role,
        secret_hash=hash_secret(secret),
        created_at=time.time() if now is None else now,
        revoked=False,
        task_id=task_id,
    )
    s.add(row)
    s.flush()
    return row, secret


def resolve_token(s: Session, secret: str) -> TokenRow | None:
    """The live token whose secret is ``secret``, or None."""
    row = s.execute(select(TokenRow).where(TokenRow.secret_hash == hash_secret(secret))).scalar_one_or_none()
    if row is None or row.revoked:
        return None
    return row


def list_tokens(s: Session, tenant: str | None = None) -> list[TokenRow]:
    q = select(TokenRow).where(TokenRow.task_id.is_(None)).order_by(TokenRow.created_at)
    if tenant is not None:
        q = q.where(TokenRow.tenant == tenant)
    return list(s.execute(q).scalars())


def revoke_token(s: Session, token_id: str) -> TokenRow:
    row = s.get(TokenRow, token_id)
    if row is None:
        raise NotFound(f"no token {token_id!r}")
    row.revoked = True
    return row


def revoke_task_tokens(s: Session, task_id: str) -> None:
    """A finished task's token stops working."""
    for row in s.execute(select(TokenRow).where(TokenRow.task_id == task_id)).scalars():
        row.revoked = True


def count_admin_tokens(s: Session) -> int:
    q = select(func.count()).select_from(TokenRow).where(TokenRow.role == "admin", TokenRow.revoked.is_(False))
    return int(s.execute(q).scalar_one())
