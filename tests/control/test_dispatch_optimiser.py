"""The dispatch optimiser on its own (fleet.control.dispatch): the flow plan against optima
worked out by hand, and the assignment rule."""

from __future__ import annotations

import numpy as np
import pytest

from fleet.control.dispatch import (
    Dispatcher,
    Dump,
    Problem,
    RoadGraph,
    Unit,
    fixed_allocation,
    solve_flows,
)


def two_shovels(trucks: int, *, a_available: bool = True) -> Problem:
    """Two ore shovels of 3,000 t/h, a crusher of 4,000 t/h, 100 t loads. A is 600 s from the
    crusher, B 1,200 s (both ways); loading takes 120 s, no positioning or tipping time. A
    round trip is 1,320 s from A, 2,520 s from B."""
    return Problem(
        units=[Unit("A", "A", "ore", 3000, a_available), Unit("B", "B", "ore", 3000)],
        dumps=[Dump("C", "Crusher", "ore", 4000)],
        haul_s=np.array([[600.0], [1200.0]]),
        return_s=np.array([[600.0, 1200.0]]),
        trucks=trucks,
        payload_t=100.0,
        spot_s=0.0,
        dump_s=0.0,
        truck_efficiency=1.0,
    )


def test_with_few_trucks_the_plan_puts_them_all_on_the_shorter_route():
    # 10 truck-hours per hour / (1,320 s per trip) = 27.27 trips/h from A, under its 30.
    plan = solve_flows(two_shovels(10))
    assert plan.status == "optimal"
    assert plan.loaded[:, 0] == pytest.approx([10 / (1320 / 3600), 0.0])
    assert plan.tph == pytest.approx(2727.27, abs=0.01)
    assert plan.binding == ("the fleet's truck-hours",)
    assert plan.empty[0] == pytest.approx(plan.loaded[:, 0])  # every truck goes back


def test_with_enough_trucks_the_crusher_binds_and_the_fewest_trucks_are_used():
    # A digs its 30 loads/h (11 truck-hours); the crusher takes 10 more from B (7 truck-hours).
    plan = solve_flows(two_shovels(20))
    assert plan.loaded[:, 0] == pytest.approx([30.0, 10.0])
    assert plan.tph == pytest.approx(4000.0)
    assert plan.truck_hours == pytest.approx(18.0)
    assert set(plan.binding) == {"A's dig rate", "Crusher's capacity"}


def test_a_shovel_down_gets_no_flow_and_the_other_takes_what_the_fleet_allows():
    plan = solve_flows(two_shovels(20, a_available=False))
    assert plan.loaded[0, 0] == 0.0
    assert plan.loaded[1, 0] == pytest.approx(20 / (2520 / 3600))  # 28.57: the fleet binds
    assert plan.unit_rate[0] == 0.0


def test_material_only_goes_where_it_is_accepted():
    problem = Problem(
        units=[Unit("W", "W", "waste", 5000), Unit("O", "O", "ore", 5000)],
        dumps=[Dump("C", "Crusher", "ore", 3000), Dump("D", "Dump", "waste", 9000)],
        haul_s=np.array([[300.0, 900.0], [300.0, 900.0]]),
        return_s=np.array([[300.0, 300.0], [900.0, 900.0]]),
        trucks=100,
        payload_t=100.0,
    )
    plan = solve_flows(problem)
    assert plan.loaded[0, 0] == 0.0 and plan.loaded[1, 1] == 0.0
    assert plan.unit_tph == pytest.approx([5000.0, 3000.0], rel=1e-6)


def test_the_fixed_allocation_splits_the_fleet_by_the_truck_hours_each_flow_needs():
    problem = two_shovels(20)
    counts = fixed_allocation(solve_flows(problem), problem, 20)
    assert counts.tolist() == [12, 8]  # 11 : 7 truck-hours of 20 trucks, largest remainders


def test_the_road_graph_finds_the_fastest_way_both_directions():
    graph = RoadGraph([1, 2, 3], [1, 2, 1], [2, 3, 3], [10.0, 10.0, 50.0])
    assert graph.times([1, 3], [3, 1]).tolist() == [[20.0, 0.0], [0.0, 20.0]]


# --- the lower stage ---------------------------------------------------------------------------


def equal_shovels() -> tuple[Problem, Dispatcher]:
    problem = Problem(
        units=[Unit("A", "A", "ore", 3600), Unit("B", "B", "ore", 3600)],
        dumps=[Dump("C", "Crusher", "ore", 10_000)],
        haul_s=np.array([[600.0], [600.0]]),
        return_s=np.array([[600.0, 600.0]]),
        trucks=40,
        payload_t=100.0,
        spot_s=0.0,
    )
    return problem, Dispatcher(solve_flows(problem), problem, now=0.0)


def test_a_free_truck_goes_to_the_unit_with_no_trucks_coming():
    _, dispatcher = equal_shovels()
    dispatcher.commit_arrivals([(0, 60.0), (0, 120.0)])  # two trucks on their way to A
    choice = dispatcher.choose(np.array([300.0, 300.0]))
    assert choice is not None and choice.unit == 1
    assert choice.behind_s > 0  # B waits for it


def test_between_two_idle_units_the_nearer_one_wins():
    _, dispatcher = equal_shovels()
    choice = dispatcher.choose(np.array([500.0, 200.0]))
    assert choice is not None and choice.unit == 1 and choice.travel_s == 200.0


def test_each_choice_counts_for_the_next_truck():
    _, dispatcher = equal_shovels()
    first = dispatcher.choose(np.array([200.0, 200.0]))
    second = dispatcher.choose(np.array([200.0, 200.0]))
    assert {first.unit, second.unit} == {0, 1}


def test_a_unit_going_down_moves_the_trucks_to_the_one_still_digging():
    problem = two_shovels(20)
    before = Dispatcher(solve_flows(problem), problem, now=0.0)
    assert before.choose(np.array([100.0, 900.0])).unit == 0  # A: near and in the plan
    down = two_shovels(20, a_available=False)
    after = Dispatcher(solve_flows(down), down, now=0.0)
    choices = [after.choose(np.array([100.0, 900.0])) for _ in range(5)]
    assert {c.unit for c in choices} == {1}


def test_no_open_unit_means_no_choice():
    problem = Problem(
        units=[Unit("A", "A", "ore", 3000, available=False)],
        dumps=[Dump("C", "Crusher", "ore", 4000)],
        haul_s=np.array([[600.0]]),
        return_s=np.array([[600.0]]),
        trucks=5,
        payload_t=100.0,
    )
    plan = solve_flows(problem)
    assert plan.status == "infeasible" and plan.tph == 0.0
    assert Dispatcher(plan, problem, now=0.0).choose(np.array([60.0])) is None
