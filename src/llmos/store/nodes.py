"""The node inventory as last reported by the execution backend."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmos.core.devices import Device, Node
from llmos.store.tables import NodeRow


def upsert_nodes(s: Session, nodes: Sequence[Node], *, backend: str, now: float | None = None) -> None:
    """Record ``nodes`` as alive; nodes of ``backend`` not in the list are marked dead."""
    now = time.time() if now is None else now
    seen = set()
    for n in nodes:
        seen.add(n.id)
        row = s.get(NodeRow, n.id)
        if row is None:
            row = NodeRow(id=n.id, backend=backend)
            s.add(row)
        row.backend = backend
        row.cpus = n.cpus
        row.memory_gib = n.memory_gib
        row.devices = [{"id": d.id, "type": d.type, "index": d.index, "memory_gib": d.memory_gib} for d in n.devices]
        row.labels = dict(n.labels)
        row.alive = n.alive
        row.updated_at = now
    for row in s.execute(select(NodeRow).where(NodeRow.backend == backend)).scalars():
        if row.id not in seen and row.alive:
            row.alive = False
            row.updated_at = now


def list_nodes(s: Session) -> list[NodeRow]:
    return list(s.execute(select(NodeRow).order_by(NodeRow.id)).scalars())


def row_to_node(row: NodeRow) -> Node:
    devices = tuple(
        Device(id=d["id"], type=d["type"], index=int(d.get("index", 0)), memory_gib=float(d.get("memory_gib", 0)))
        for d in row.devices
    )
    return Node(
        id=row.id,
        cpus=row.cpus,
        memory_gib=row.memory_gib,
        devices=devices,
        labels=dict(row.labels or {}),
        alive=row.alive,
    )
