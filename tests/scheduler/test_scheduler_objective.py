"""The brief's worked case: 4 nodes x 8 units x 1 PFLOPS, T1 = 10 PFLOP, T2 = 20 PFLOP, lambda = 1."""

from __future__ import annotations

import pytest

from llmos.scheduler.objective import best_allocation, corrected_objective, stated_objective

WORK = [10.0, 20.0]
NODES = [8, 8, 8, 8]
BRIEF_UNITS = [8, 8]  # the brief's answer: 4 units on each node, T1 on nodes 1 and 3, T2 on nodes 2 and 4


def test_stated_objective_rewards_starving_tasks() -> None:
    best = best_allocation(WORK, NODES, 1.0, 1.0, stated_objective)
    assert best.units == (1, 1)  # the smallest allocation: the longest run times
    assert best.value == pytest.approx(10 + 20 - 2)
    # The brief's own answer scores far lower under its own formula.
    assert stated_objective(BRIEF_UNITS, WORK, [1.0, 1.0], 1.0) == pytest.approx(10 / 8 + 20 / 8 - 16)
    # More units never help under the stated form.
    assert stated_objective([2, 2], WORK, [1, 1], 1.0) < stated_objective([1, 1], WORK, [1, 1], 1.0)


def test_corrected_objective_trades_run_time_against_units() -> None:
    best = best_allocation(WORK, NODES, 1.0, 1.0, corrected_objective)
    # Optimum C_i ~ sqrt(E_i / (lambda P)): sqrt(10) = 3.16 -> 3, sqrt(20) = 4.47 -> 4 (ties to fewer units).
    assert best.units == (3, 4)
    assert best.value == pytest.approx(-(10 / 3 + 20 / 4) - 7)
    # Each task packed on one node (no cross-node traffic).
    assert all(len(spots) == 1 for spots in best.nodes)
    brief = corrected_objective(BRIEF_UNITS, WORK, [1.0, 1.0], 1.0)
    assert brief == pytest.approx(-(10 / 8 + 20 / 8) - 16)
    assert best.value > brief  # the brief's answer is not optimal under the corrected form either


def test_bigger_tasks_get_more_units_when_resources_are_cheap() -> None:
    best = best_allocation(WORK, NODES, 1.0, 0.1, corrected_objective)
    assert best.units[1] > best.units[0] >= 8
    assert sum(best.units) <= sum(NODES)


def test_objective_input_errors() -> None:
    with pytest.raises(ValueError, match="at least one resource unit"):
        stated_objective([0, 1], WORK, [1, 1], 1.0)
    with pytest.raises(ValueError, match="one entry per task"):
        corrected_objective([1], WORK, [1, 1], 1.0)
