"""The model registry over HTTP: ``/v1/registry/...`` (``/v1/models`` is the OpenAI list).

Models are shared by every tenant of the control plane (like a shared file
system); reading needs any role, importing / tagging a writer, deleting and
garbage collection an admin. Imports read a directory on the control plane's
machine (one-machine setups and shared file systems).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from llmos.api.deps import Admin, Plane, Reader, Writer
from llmos.control.plane import ControlPlane
from llmos.errors import NotFound

router = APIRouter(prefix="/v1/registry", tags=["registry"])

# The registry's own rules (llmos.models.registry), stated in the schema so clients see them.
NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$"
SELECTOR_PATTERN = r"^[a-zA-Z0-9._-]{1,63}$"
TAG_PATTERN = r"^[a-zA-Z][a-zA-Z0-9._-]{0,62}$"
NEW_TAG_PATTERN = r"^(?!latest$)[a-zA-Z][a-zA-Z0-9._-]{0,62}$"  # 'latest' is implicit, never set
Name = Annotated[str, PathParam(pattern=NAME_PATTERN, description="model name")]


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, description="a Hugging Face (safetensors) or PEFT adapter directory")
    name: str = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)
    base: str | None = Field(None, description="for an adapter: the base model version it applies to")
    description: str = ""


class TagRequest(BaseModel):
    # Python's re: the tag pattern needs a lookahead (a tag may not be 'latest').
    model_config = ConfigDict(extra="forbid", regex_engine="python-re")

    tag: str = Field(min_length=1, max_length=63, pattern=NEW_TAG_PATTERN)
    version: str = Field("latest", description="a version number, tag or 'latest'", pattern=SELECTOR_PATTERN)


def _registry(plane: ControlPlane) -> Any:
    # Imported here: the registry pulls in safetensors, and the API should start light.
    from llmos.models.artifacts import ArtifactStore
    from llmos.models.registry import ModelRegistry

    return ModelRegistry(plane.store, ArtifactStore(Path(plane.settings.home) / "artifacts"))


@router.get("/models")
def list_models(plane: Plane, who: Reader) -> list[dict[str, Any]]:
    """Every model with its version count, latest version and tags."""
    out: dict[str, dict[str, Any]] = {}
    for v in _registry(plane).versions():
        m = out.setdefault(v.name, {"name": v.name, "versions": 0, "tags": {}})
        m["versions"] += 1
        m["latest"] = v.to_dict()
        for t in v.tags:
            m["tags"][t] = v.version
    return list(out.values())


@router.get("/models/{name}")
def model_versions(name: Name, plane: Plane, who: Reader) -> list[dict[str, Any]]:
    return [v.to_dict() for v in _registry(plane).versions(name)]


@router.get("/models/{name}/versions/{version}")
def get_version(
    name: Name,
    version: Annotated[str, PathParam(pattern=SELECTOR_PATTERN, description="a number, a tag or 'latest'")],
    plane: Plane,
    who: Reader,
) -> dict[str, Any]:
    """One version (by number, tag or ``latest``) with its lineage (parents, newest first)."""
    reg = _registry(plane)
    chain = reg.lineage(f"{name}:{version}")
    return {**chain[0].to_dict(), "lineage": [v.ref for v in chain[1:]]}


@router.post("/models", status_code=201)
def import_model(body: ImportRequest, plane: Plane, who: Writer) -> dict[str, Any]:
    """Register a local directory as the next version of ``name``."""
    if not Path(body.path).is_dir():
        raise NotFound(f"no directory {body.path!r} on the control plane's machine")
    v = _registry(plane).register(Path(body.path), body.name, base=body.base, description=body.description)
    return dict(v.to_dict())


@router.post("/models/{name}/tags")
def tag_version(name: Name, body: TagRequest, plane: Plane, who: Writer) -> dict[str, Any]:
    return dict(_registry(plane).tag(f"{name}:{body.version}", body.tag).to_dict())


@router.delete("/models/{name}/tags/{tag}")
def untag(name: Name, tag: Annotated[str, PathParam(pattern=TAG_PATTERN)], plane: Plane, who: Writer) -> dict[str, Any]:
    _registry(plane).untag(name, tag)
    return {"name": name, "tag": tag, "removed": True}


@router.delete("/models/{name}/versions/{version}")
def delete_version(name: Name, version: Annotated[int, PathParam(ge=1, le=2**31 - 1)], plane: Plane, who: Admin) -> dict[str, Any]:
    _registry(plane).delete(f"{name}:{version}")
    return {"ref": f"{name}:{version}", "deleted": True}


@router.post("/gc")
def gc(
    plane: Plane, who: Admin, grace_s: Annotated[float, Query(ge=0, le=1e9, allow_inf_nan=False)] = 3600.0
) -> dict[str, Any]:
    """Delete artifact blobs no version references (older than ``grace_s``)."""
    r = _registry(plane).gc(grace_s=grace_s)
    return {"removed_blobs": r.removed_blobs, "freed_bytes": r.freed_bytes, "kept_blobs": r.kept_blobs}
