"""Model registry tables and repository functions (migration step 2).

A *model* is a name; a *model version* is ``name:N`` (N = 1, 2, ...) pointing
at a manifest in the artifact store. Adapter versions (LoRA) reference their
base version. Tags (``production``, ``staging``, anything) point a label at one
version per model. Functions take a Session and never commit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from llmos.errors import Conflict, NotFound
from llmos.store.db import Base
from llmos.store.migrations import create_tables


class ModelRow(Base):
    __tablename__ = "models"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), default="default", index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)


class ModelVersionRow(Base):
    """One immutable version. ``kind`` is ``model`` (full weights) or ``adapter`` (LoRA)."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_name", "version", name="uq_model_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128), ForeignKey("models.name"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), default="model")
    manifest_digest: Mapped[str] = mapped_column(String(64), index=True)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    # For adapters: the full-model version they apply to ("name:N").
    base: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Lineage: the version this one was derived from, the job and dataset that made it.
    parent: Mapped[str | None] = mapped_column(String(200), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    dataset: Mapped[str | None] = mapped_column(String(512), nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[float] = mapped_column(Float)


class ModelTagRow(Base):
    __tablename__ = "model_tags"

    model_name: Mapped[str] = mapped_column(String(128), ForeignKey("models.name"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[float] = mapped_column(Float)


REGISTRY_TABLES = (ModelRow, ModelVersionRow, ModelTagRow)


def migrate_registry_v2(conn: Connection) -> None:
    create_tables(conn, *(t.__table__ for t in REGISTRY_TABLES))  # type: ignore[arg-type]


# ---------------------------------------------------------------- repository

def get_model(s: Session, name: str) -> ModelRow | None:
    return s.get(ModelRow, name)


def ensure_model(s: Session, name: str, *, tenant: str = "default", now: float | None = None) -> ModelRow:
    row = s.get(ModelRow, name)
    if row is None:
        row = ModelRow(name=name, tenant=tenant, created_at=time.time() if now is None else now)
        s.add(row)
        s.flush()
    return row


def list_models(s: Session) -> Sequence[ModelRow]:
    return s.scalars(select(ModelRow).order_by(ModelRow.name)).all()


def next_version(s: Session, name: str) -> int:
    latest = s.scalar(select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_name == name))
    return (latest or 0) + 1


def insert_version(s: Session, **fields: Any) -> ModelVersionRow:
    """Insert a version row; ``version`` is allocated here (max + 1)."""
    name = fields["model_name"]
    ensure_model(s, name)
    row = ModelVersionRow(version=next_version(s, name), created_at=time.time(), **fields)
    s.add(row)
    s.flush()
    return row


def get_version(s: Session, name: str, version: int) -> ModelVersionRow:
    row = s.scalar(
        select(ModelVersionRow).where(ModelVersionRow.model_name == name, ModelVersionRow.version == version)
    )
    if row is None:
        raise NotFound(f"model version {name}:{version} not found")
    return row


def latest_version(s: Session, name: str) -> ModelVersionRow:
    row = s.scalar(
        select(ModelVersionRow)
        .where(ModelVersionRow.model_name == name)
        .order_by(ModelVersionRow.version.desc())
        .limit(1)
    )
    if row is None:
        raise NotFound(f"model {name!r} not found in the registry")
    return row


def list_versions(s: Session, name: str | None = None) -> Sequence[ModelVersionRow]:
    q = select(ModelVersionRow).order_by(ModelVersionRow.model_name, ModelVersionRow.version)
    if name is not None:
        q = q.where(ModelVersionRow.model_name == name)
    return s.scalars(q).all()


def versions_referencing(s: Session, ref: str) -> Sequence[ModelVersionRow]:
    """Adapters whose base is ``ref`` (``name:N``)."""
    return s.scalars(select(ModelVersionRow).where(ModelVersionRow.base == ref)).all()


def set_tag(s: Session, name: str, tag: str, version: int) -> None:
    get_version(s, name, version)
    row = s.get(ModelTagRow, (name, tag))
    if row is None:
        s.add(ModelTagRow(model_name=name, tag=tag, version=version, updated_at=time.time()))
    else:
        row.version = version
        row.updated_at = time.time()
    s.flush()


def remove_tag(s: Session, name: str, tag: str) -> None:
    row = s.get(ModelTagRow, (name, tag))
    if row is None:
        raise NotFound(f"model {name!r} has no tag {tag!r}")
    s.delete(row)
    s.flush()


def get_tag(s: Session, name: str, tag: str) -> int | None:
    row = s.get(ModelTagRow, (name, tag))
    return None if row is None else row.version


def tags_of(s: Session, name: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for row in s.scalars(select(ModelTagRow).where(ModelTagRow.model_name == name)).all():
        out.setdefault(row.version, []).append(row.tag)
    return out


def delete_version(s: Session, name: str, version: int) -> None:
    row = get_version(s, name, version)
    users = versions_referencing(s, f"{name}:{version}")
    if users:
        raise Conflict(
            f"{name}:{version} is the base of {', '.join(f'{u.model_name}:{u.version}' for u in users)}"
        )
    for t in s.scalars(
        select(ModelTagRow).where(ModelTagRow.model_name == name, ModelTagRow.version == version)
    ).all():
        s.delete(t)
    s.delete(row)
    s.flush()
