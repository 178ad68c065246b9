"""The design brief's placement objective, as written and corrected.

The brief asks to maximise

    J_stated(C) = Σᵢ Eᵢ / (Cᵢ·Pᵢ)  −  λ·Σᵢ Cᵢ

with Eᵢ the compute of task i (PFLOP), Cᵢ the resource units given to it and
Pᵢ the capability of one unit (PFLOPS). Eᵢ/(Cᵢ·Pᵢ) is task i's *run time*
(PFLOP ÷ PFLOPS = s): maximising it rewards giving a task *fewer* units, and
the penalty term pushes the same way, so the stated optimum is always the
smallest allocation allowed (one unit per task), the slowest possible plan.

The corrected form minimises run time plus the resource penalty — the
utilisation trade-off the brief describes in words:

    J_corrected(C) = −Σᵢ Eᵢ / (Cᵢ·Pᵢ)  −  λ·Σᵢ Cᵢ

whose unconstrained optimum is Cᵢ = √(Eᵢ / (λ·Pᵢ)): more units for bigger
tasks, with diminishing returns priced by λ.

On the brief's worked case (4 nodes × 8 units × 1 PFLOPS, T1 = 10 PFLOP,
T2 = 20 PFLOP, λ = 1) the stated form picks 1 unit each (J = 28), the
corrected form picks 3 and 4 units (J ≈ −15.33), and the brief's own answer
(8 units each, 4 on each of two nodes) scores −12.25 stated and −19.75
corrected: optimal under neither. See ``docs/scheduler.md``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Objective = Callable[[Sequence[int], Sequence[float], Sequence[float], float], float]


def stated_objective(units: Sequence[int], work: Sequence[float], capability: Sequence[float], lam: float) -> float:
    """Σ Eᵢ/(Cᵢ·Pᵢ) − λ·Σ Cᵢ, exactly as the brief writes it."""
    _check(units, work, capability)
    return sum(e / (c * p) for c, e, p in zip(units, work, capability, strict=True)) - lam * sum(units)


def corrected_objective(units: Sequence[int], work: Sequence[float], capability: Sequence[float], lam: float) -> float:
    """−Σ Eᵢ/(Cᵢ·Pᵢ) − λ·Σ Cᵢ: short run times, few units."""
    _check(units, work, capability)
    return -sum(e / (c * p) for c, e, p in zip(units, work, capability, strict=True)) - lam * sum(units)


def _check(units: Sequence[int], work: Sequence[float], capability: Sequence[float]) -> None:
    if not len(units) == len(work) == len(capability):
        raise ValueError("units, work and capability must have one entry per task")
    if any(c < 1 for c in units):
        raise ValueError("every task needs at least one resource unit")
    if any(p <= 0 for p in capability):
        raise ValueError("capability must be > 0")


@dataclass(frozen=True)
class Allocation:
    """Units per task and where they sit: ``nodes[i]`` is ((node index, units), ...)."""

    units: tuple[int, ...]
    nodes: tuple[tuple[tuple[int, int], ...], ...]
    value: float


def best_allocation(work: Sequence[float], node_units: Sequence[int], unit_capability: float,
                    lam: float, objective: Objective) -> Allocation:
    """Exhaustively find the units per task maximising ``objective``.

    Ties go to the plan using fewer units. Units are then placed on nodes
    packing each task onto as few nodes as possible (fewer cross-node links),
    largest task first. Exhaustive search: meant for worked examples and
    tests (a handful of tasks), not for the live scheduler.
    """
    if not work:
        raise ValueError("no tasks")
    total = sum(node_units)
    cap = [unit_capability] * len(work)
    best: tuple[float, int, tuple[int, ...]] | None = None
    for units in itertools.product(range(1, total + 1), repeat=len(work)):
        if sum(units) > total:
            continue
        v = objective(units, work, cap, lam)
        cand = (v, -sum(units), units)
        if best is None or cand[:2] > best[:2]:
            best = cand
    assert best is not None
    units = best[2]
    return Allocation(units, _pack(units, node_units), best[0])


def _pack(units: Sequence[int], node_units: Sequence[int]) -> tuple[tuple[tuple[int, int], ...], ...]:
    free = list(node_units)
    out: list[tuple[tuple[int, int], ...]] = [() for _ in units]
    for i in sorted(range(len(units)), key=lambda k: -units[k]):
        need = units[i]
        spots: list[tuple[int, int]] = []
        # A node that holds the whole task, fullest first; else the roomiest nodes.
        fits = [n for n in range(len(free)) if free[n] >= need]
        if fits:
            n = min(fits, key=lambda k: (free[k], k))
            spots.append((n, need))
            free[n] -= need
        else:
            for n in sorted(range(len(free)), key=lambda k: (-free[k], k)):
                if need == 0:
                    break
                take = min(free[n], need)
                if take:
                    spots.append((n, take))
                    free[n] -= take
                    need -= take
            if need:
                raise ValueError("allocation does not fit on the nodes")
        out[i] = tuple(sorted(spots))
    return tuple(out)
