"""Nodes and their devices, with what is allocated to which task."""

from __future__ import annotations

from fastapi import APIRouter

from llmos.api.deps import Plane, Reader
from llmos.api.schemas import NodePublic
from llmos.store import jobs as repo
from llmos.store.nodes import list_nodes

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])


@router.get("", response_model=list[NodePublic])
def nodes(plane: Plane, who: Reader) -> list[NodePublic]:
    with plane.store.session() as s:
        active = repo.active_tasks(s)
        return [NodePublic.of(n, active) for n in list_nodes(s)]
