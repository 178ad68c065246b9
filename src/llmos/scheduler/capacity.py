"""Free capacity of the cluster while one plan is being built.

An index from (device type, number of free devices) to nodes makes a gang
placement cost O(distinct free counts) instead of O(nodes), which is what lets
one core place thousands of jobs per second on a 10,000-node cluster. Every
change is written to an undo log so a trial (may this job fit if these victims
were stopped?) can be rolled back without copying the index.

Not thread-safe; one ``Capacity`` belongs to one ``schedule`` call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from llmos.core.devices import Device, Node
from llmos.scheduler.plan import TaskPlacement

NO_DEVICE = ""  # the pseudo type of tasks that need no device (CPU and RAM only)


class NodeState:
    """Mutable free resources of one live node."""

    __slots__ = ("cpus", "free", "memory_gib", "node")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.cpus = node.cpus
        self.memory_gib = node.memory_gib
        # Free devices per type, in the node's own order (stable, deterministic ids).
        self.free: dict[str, list[Device]] = {}
        for d in node.devices:
            self.free.setdefault(d.type, []).append(d)

    def free_count(self, device_type: str) -> int:
        return len(self.free.get(device_type, ()))


@dataclass(frozen=True)
class GangRequest:
    """What one job needs: ``num_tasks`` × (``devices`` of one type, cpus, memory)."""

    num_tasks: int
    devices: int
    cpus: float
    memory_gib: float
    min_device_memory_gib: float = 0.0


NodeCheck = Callable[[NodeState], str | None]
"""Extra per-node filter: ``None`` if the node may host the job, else a reason."""

HeldResult = tuple[tuple[str, list[Device]], ...] | None
"""A node's free devices per type after a hold (see ``Capacity.held_result``)."""


class Capacity:
    """Free devices, CPUs and memory per node, indexed by device type."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes: dict[str, NodeState] = {}
        self.total_by_type: dict[str, int] = {}
        self.free_by_type: dict[str, int] = {}
        # buckets[type][k]: node ids (an insertion-ordered set) with exactly k free devices of type
        self._buckets: dict[str, list[dict[str, None]]] = {}
        self._undo: list[tuple[str, str, list[Device], float, float]] | None = None
        for n in nodes:
            if not n.alive:
                continue
            st = NodeState(n)
            self.nodes[n.id] = st
            for t, devs in st.free.items():
                self.total_by_type[t] = self.total_by_type.get(t, 0) + len(devs)
                self.free_by_type[t] = self.free_by_type.get(t, 0) + len(devs)
                self._bucket_add(t, len(devs), n.id)

    def copy(self) -> Capacity:
        """An independent copy (the undo log is not copied): cheaper than rebuilding from nodes."""
        c = Capacity.__new__(Capacity)
        nodes: dict[str, NodeState] = {}
        new = NodeState.__new__
        for nid, st in self.nodes.items():
            s2 = new(NodeState)
            s2.node = st.node
            s2.cpus = st.cpus
            s2.memory_gib = st.memory_gib
            s2.free = {t: devs[:] for t, devs in st.free.items()}
            nodes[nid] = s2
        c.nodes = nodes
        c.total_by_type = dict(self.total_by_type)
        c.free_by_type = dict(self.free_by_type)
        c._buckets = {t: [dict(k) for k in b] for t, b in self._buckets.items()}
        c._undo = None
        return c

    # -- index maintenance -------------------------------------------------
    def _bucket_add(self, t: str, k: int, node_id: str) -> None:
        if k <= 0:
            return
        b = self._buckets.setdefault(t, [])
        while len(b) <= k:
            b.append({})
        b[k][node_id] = None

    def _bucket_move(self, t: str, old: int, new: int, node_id: str) -> None:
        if old > 0:
            self._buckets[t][old].pop(node_id, None)
        self._bucket_add(t, new, node_id)

    def nodes_with_free(self, device_type: str, at_least: int, largest_first: bool = False) -> Iterator[NodeState]:
        """Nodes with at least ``at_least`` free devices of a type; best fit first by default."""
        b = self._buckets.get(device_type, [])
        ks = range(len(b) - 1, at_least - 1, -1) if largest_first else range(max(at_least, 1), len(b))
        for k in ks:
            # list(): the caller may take devices (moving nodes between buckets) while iterating.
            for nid in list(b[k]):
                yield self.nodes[nid]

    # -- mutation with undo --------------------------------------------------
    def take(self, node_id: str, device_type: str, count: int, cpus: float, memory_gib: float,
             min_device_memory_gib: float = 0.0) -> tuple[str, ...]:
        """Take ``count`` devices (meeting the memory floor) plus CPUs and RAM; returns device ids."""
        st = self.nodes[node_id]
        taken: list[Device] = []
        if count:
            devs = st.free.get(device_type, [])
            keep: list[Device] = []
            for d in devs:
                if len(taken) < count and d.memory_gib >= min_device_memory_gib:
                    taken.append(d)
                else:
                    keep.append(d)
            if len(taken) < count:
                raise ValueError(f"node {node_id}: not enough free {device_type} devices")
            old = len(devs)
            st.free[device_type] = keep
            self._bucket_move(device_type, old, len(keep), node_id)
            self.free_by_type[device_type] -= count
        st.cpus -= cpus
        st.memory_gib -= memory_gib
        if self._undo is not None:
            self._undo.append(("take", node_id, taken, cpus, memory_gib))
        return tuple(d.id for d in taken)

    def release(self, node_id: str, device_ids: Sequence[str], cpus: float, memory_gib: float) -> None:
        """Give resources back (a victim's, during a preemption trial)."""
        st = self.nodes.get(node_id)
        if st is None:
            return
        wanted = set(device_ids)
        back = [d for d in st.node.devices if d.id in wanted]
        self._give(st, back, cpus, memory_gib)
        if self._undo is not None:
            self._undo.append(("release", node_id, back, cpus, memory_gib))

    def _give(self, st: NodeState, devs: list[Device], cpus: float, memory_gib: float) -> None:
        by_type: dict[str, list[Device]] = {}
        for d in devs:
            by_type.setdefault(d.type, []).append(d)
        for t, ds in by_type.items():
            cur = st.free.setdefault(t, [])
            old = len(cur)
            have = {d.id for d in cur}
            cur.extend(d for d in ds if d.id not in have)
            # Keep the node's own device order so ids handed out stay predictable.
            order = {d.id: i for i, d in enumerate(st.node.devices)}
            cur.sort(key=lambda d: order[d.id])
            self._bucket_move(t, old, len(cur), st.node.id)
            self.free_by_type[t] = self.free_by_type.get(t, 0) + len(cur) - old
        st.cpus += cpus
        st.memory_gib += memory_gib

    def begin(self) -> None:
        """Start recording changes so :meth:`rollback` can undo them."""
        self._undo = []

    def commit(self) -> None:
        self._undo = None

    def rollback(self) -> None:
        log, self._undo = self._undo or [], None
        for op, node_id, devs, cpus, mem in reversed(log):
            st = self.nodes[node_id]
            if op == "take":
                self._give(st, devs, cpus, mem)
            else:
                self._remove(st, {d.id for d in devs}, cpus, mem)

    def hold(self, node_id: str, device_ids: Sequence[str], cpus: float, memory_gib: float) -> None:
        """Mark specific devices (a running task's) as used; not logged."""
        st = self.nodes.get(node_id)
        if st is not None:
            self._remove(st, set(device_ids), cpus, memory_gib)

    def held_result(self, node_id: str, device_ids: Sequence[str]) -> HeldResult:
        """What ``hold`` of these devices would leave of the node's free devices, per type touched
        (in the node's type order), computed on this capacity without changing it; ``None`` for a
        node that is not live. Meant for an untouched template whose copies get ``hold_result``."""
        st = self.nodes.get(node_id)
        if st is None:
            return None
        ids = set(device_ids)
        return tuple((t, [d for d in cur if d.id not in ids]) for t, cur in st.free.items()
                     if any(d.id in ids for d in cur))

    def hold_result(self, node_id: str, after: HeldResult, cpus: float, memory_gib: float) -> None:
        """``hold`` on a node still as it was in the capacity ``after`` came from (see
        ``held_result``): the same state, index order included, without recomputing it."""
        if after is None:
            return
        st = self.nodes[node_id]
        for t, rest in after:
            old = len(st.free[t])
            st.free[t] = rest[:]
            self._bucket_move(t, old, len(rest), node_id)
            self.free_by_type[t] -= old - len(rest)
        st.cpus -= cpus
        st.memory_gib -= memory_gib

    def _remove(self, st: NodeState, ids: set[str], cpus: float, memory_gib: float) -> None:
        for t, cur in list(st.free.items()):
            if not any(d.id in ids for d in cur):
                continue
            old = len(cur)
            st.free[t] = [d for d in cur if d.id not in ids]
            self._bucket_move(t, old, len(st.free[t]), st.node.id)
            self.free_by_type[t] -= old - len(st.free[t])
        st.cpus -= cpus
        st.memory_gib -= memory_gib

    # -- gang placement ------------------------------------------------------
    def tasks_fit(self, st: NodeState, device_type: str, req: GangRequest) -> int:
        """How many tasks of ``req`` this node can host right now."""
        n = req.num_tasks
        if req.cpus > 0:
            n = min(n, int(st.cpus / req.cpus + 1e-9))
        if req.memory_gib > 0:
            n = min(n, int(st.memory_gib / req.memory_gib + 1e-9))
        if req.devices > 0:
            devs = st.free.get(device_type, ())
            ok = len(devs) if req.min_device_memory_gib <= 0 else sum(
                1 for d in devs if d.memory_gib >= req.min_device_memory_gib
            )
            n = min(n, ok // req.devices)
        return max(n, 0)

    def place_gang(self, device_type: str, req: GangRequest, check: NodeCheck | None = None,
                   ) -> tuple[list[TaskPlacement] | None, list[str]]:
        """Place every task on ``device_type`` or none (all-or-nothing).

        Prefers one node holding the whole gang (best fit: the fullest node that
        still fits); otherwise spreads over the fewest nodes, largest free first.
        Returns ``(tasks, [])`` on success (capacity already taken) or
        ``(None, reasons)``; on failure capacity is unchanged.
        """
        reasons: list[str] = []
        if req.devices == 0:
            return self._place_cpu_only(req, check, reasons)
        need = req.num_tasks * req.devices
        if self.free_by_type.get(device_type, 0) < need:
            have = self.free_by_type.get(device_type, 0)
            total = self.total_by_type.get(device_type, 0)
            if total < need:
                reasons.append(f"the cluster has only {total} {device_type} devices in all, the job needs {need}")
            elif have == 0:
                reasons.append(f"all {total} {device_type} devices are in use (the job needs {need})")
            else:
                reasons.append(f"only {have} of {total} {device_type} devices are free (the job needs {need})")
            return None, reasons
        for st in self.nodes_with_free(device_type, need):
            why = check(st) if check else None
            if why is not None:
                _note(reasons, why)
                continue
            if self.tasks_fit(st, device_type, req) >= req.num_tasks:
                return self._take_tasks_many(st, device_type, req, 0, req.num_tasks), []
            _note(reasons, _short_reason(st, device_type, req))
        if req.num_tasks == 1:
            if not reasons:
                reasons.append(f"no node has {req.devices} free {device_type} devices together")
            return None, reasons
        # Spread the gang: take the roomiest nodes first so it spans as few as possible.
        prev = self._undo
        own_log = prev is None
        if own_log:
            self.begin()
        placed: list[TaskPlacement] = []
        for st in self.nodes_with_free(device_type, req.devices, largest_first=True):
            if len(placed) == req.num_tasks:
                break
            if check is not None and (why := check(st)) is not None:
                _note(reasons, why)
                continue
            k = min(self.tasks_fit(st, device_type, req), req.num_tasks - len(placed))
            if k <= 0:
                _note(reasons, _short_reason(st, device_type, req))
                continue
            placed.extend(self._take_tasks_many(st, device_type, req, len(placed), k))
        if len(placed) == req.num_tasks:
            if own_log:
                self.commit()
            return placed, []
        if own_log:
            self.rollback()
        else:
            self._undo_tail(prev, len(placed))
        reasons.append(
            f"only {len(placed)} of the gang's {req.num_tasks} tasks fit on free {device_type} devices"
        )
        return None, reasons

    def _undo_tail(self, log: list[tuple[str, str, list[Device], float, float]] | None, n: int) -> None:
        """Undo the last ``n`` takes of an outer transaction's log."""
        if log is None or n == 0:
            return
        tail = log[-n:]
        del log[-n:]
        saved, self._undo = self._undo, tail
        self.rollback()
        self._undo = saved

    def _take_tasks_many(self, st: NodeState, t: str, req: GangRequest, first: int, k: int) -> list[TaskPlacement]:
        out = []
        for i in range(k):
            ids = self.take(st.node.id, t, req.devices, req.cpus, req.memory_gib, req.min_device_memory_gib)
            out.append(TaskPlacement(first + i, st.node.id, ids, req.cpus, req.memory_gib))
        return out

    def _place_cpu_only(self, req: GangRequest, check: NodeCheck | None, reasons: list[str],
                        ) -> tuple[list[TaskPlacement] | None, list[str]]:
        placed: list[TaskPlacement] = []
        own_log = self._undo is None
        if own_log:
            self.begin()
        # Pack: the node with the least free CPU that still fits goes first.
        for st in sorted(self.nodes.values(), key=lambda s: (s.cpus, s.node.id)):
            if len(placed) == req.num_tasks:
                break
            if check is not None and (why := check(st)) is not None:
                _note(reasons, why)
                continue
            k = min(self.tasks_fit(st, NO_DEVICE, req), req.num_tasks - len(placed))
            if k <= 0:
                _note(reasons, _short_reason(st, NO_DEVICE, req))
                continue
            placed.extend(self._take_tasks_many(st, NO_DEVICE, req, len(placed), k))
        if len(placed) == req.num_tasks:
            if own_log:
                self.commit()
            return placed, []
        if own_log:
            self.rollback()
        else:
            self._undo_tail(self._undo, len(placed))
        if not self.nodes:
            reasons.append("no live nodes")
        elif len(placed) or not reasons:
            reasons.append(
                f"only {len(placed)} of the job's {req.num_tasks} tasks fit in the free CPUs and RAM "
                f"({req.cpus:g} CPUs, {req.memory_gib:g} GiB each)"
            )
        return None, reasons


def _note(reasons: list[str], why: str) -> None:
    # Keep the sentence short: a few distinct examples are enough to explain a wait.
    if len(reasons) < 3 and why not in reasons:
        reasons.append(why)


def _short_reason(st: NodeState, t: str, req: GangRequest) -> str:
    nid = st.node.id
    if req.cpus > 0 and st.cpus < req.cpus:
        return f"node {nid} has {st.cpus:g} free CPUs, a task needs {req.cpus:g}"
    if req.memory_gib > 0 and st.memory_gib < req.memory_gib:
        return f"node {nid} has {st.memory_gib:g} GiB free RAM, a task needs {req.memory_gib:g}"
    if req.devices and req.min_device_memory_gib > 0:
        return f"node {nid} has no free {t} device with {req.min_device_memory_gib:g} GiB"
    return f"node {nid} cannot hold the whole gang"
