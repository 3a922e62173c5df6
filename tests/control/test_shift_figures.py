"""The shift benchmark's figures (fleet.control.shift_figures) on constructed rows: what counts
as a permission conflict, an exclusion entry (and what as a truck caught inside), a sampled
pair of trucks and its separation, and the tonnes dumped."""

from __future__ import annotations

import numpy as np
import pytest

from fleet.control import shift_figures as sf
from fleet.control.collision import Road

# --- permission conflicts ---------------------------------------------------------------------


def grant(truck: str, gate: int | None, start: float, end: float, zone: str = "A") -> sf.Grant:
    return sf.Grant(zone, truck, gate, start, end)


def test_trucks_taking_a_section_in_turn_do_not_conflict():
    grants = [grant("t1", 0, 0, 30), grant("t2", 1, 30, 60), grant("t3", 0, 61, 90)]
    assert sf.permission_conflicts(grants) == []


def test_a_facing_truck_granted_while_another_holds_the_section_conflicts():
    first, second = grant("t1", 0, 0, 30), grant("t2", 1, 20, 50)
    assert sf.permission_conflicts([second, first]) == [(first, second)]


def test_a_convoy_through_one_entrance_is_allowed_up_to_the_capacity():
    convoy = [grant("t1", 0, 0, 40), grant("t2", 0, 10, 50), grant("t3", 0, 20, 60)]
    assert sf.permission_conflicts(convoy, {"A": 3}) == []
    assert len(sf.permission_conflicts(convoy, {"A": 2})) == 2  # t3 joined two holders
    # One truck, or one direction: with the default capacity of 1 a convoy is a conflict.
    assert len(sf.permission_conflicts(convoy[:2])) == 1


def test_an_unknown_entrance_conflicts_with_any_holder_and_one_truck_never_with_itself():
    assert len(sf.permission_conflicts([grant("t1", 0, 0, 30), grant("t2", None, 5, 9)])) == 1
    assert sf.permission_conflicts([grant("t1", 0, 0, 30), grant("t1", 1, 10, 40)]) == []
    assert sf.permission_conflicts([grant("t1", 0, 0, 30), grant("t2", 1, 5, 9, "B")]) == []


def test_granted_intervals_come_from_the_permissions_status_trail():
    rows = [
        ("p1", "A", "t1", 0, 10.0, "pending"),
        ("p1", "A", "t1", 0, 12.0, "granted"),
        ("p1", "A", "t1", 0, 40.0, "released"),
        ("p2", "A", "t2", 1, 30.0, "granted"),  # still held at the end
        ("p3", "A", "t3", 1, 31.0, "pending"),
        ("p3", "A", "t3", 1, 90.0, "expired"),  # never granted
    ]
    assert sf.grant_intervals(rows, end=100.0) == [
        grant("t1", 0, 12.0, 40.0),
        grant("t2", 1, 30.0, 100.0),
    ]


# --- exclusion entries -----------------------------------------------------------------------

SQUARE = np.array([[0.0, 0.0], [20.0, 0.0], [20.0, 20.0], [0.0, 20.0], [0.0, 0.0]])


def track(xs: list[float], t0: float = 0.0, speed: float = 10.0) -> sf.Track:
    t = t0 + np.arange(len(xs), dtype=float)
    return sf.Track(t, np.asarray(xs, dtype=float), np.full(len(xs), 10.0), np.full(len(xs), speed))


def window(grace: dict, active_from: float = 5.0, until: float = 100.0) -> sf.ExclusionWindow:
    return sf.ExclusionWindow("Z", SQUARE, active_from, until, grace, active_from + 10.0)


def test_a_truck_that_drives_in_after_its_grace_is_an_entry():
    # Outside (x < 0) until t = 20, inside from t = 21; the zone acknowledged at t = 6.
    xs = [-50.0] * 21 + [5.0] * 5
    figures = sf.exclusion_entries(
        [window({"t1": 6.0 + sf.stop_allowance(10.0)})], {"t1": track(xs)}
    )
    assert figures.entries == [("Z", "t1", 21.0)]
    assert figures.caught == []


def test_a_truck_inside_at_activation_is_caught_not_an_entry_while_it_stays():
    xs = [5.0] * 30
    figures = sf.exclusion_entries([window({"t1": 8.0})], {"t1": track(xs)})
    assert figures.entries == [] and figures.caught == [("Z", "t1")]
    assert figures.positions_inside == 25  # t = 5..29 while active


def test_a_truck_that_could_not_stop_short_is_caught_and_one_that_leaves_and_returns_enters():
    # Enters at t = 9, within its grace (told at 6 at 10 m/s: 11 s to stand), leaves at 20 and
    # comes back at 30: the return is an entry.
    xs = [-20.0] * 9 + [5.0] * 11 + [-30.0] * 10 + [5.0] * 3
    figures = sf.exclusion_entries(
        [window({"t1": 6.0 + sf.stop_allowance(10.0)})], {"t1": track(xs)}
    )
    assert figures.caught == [("Z", "t1")]
    assert figures.entries == [("Z", "t1", 30.0)]


def test_positions_before_activation_or_after_deletion_are_not_entries():
    xs = [5.0] * 5 + [-30.0] * 50 + [5.0] * 10  # inside before 5, back inside from 55
    figures = sf.exclusion_entries([window({}, until=50.0)], {"t1": track(xs)})
    assert figures.entries == []
    # Inside at activation (its last position before), the default grace for a silent truck.
    assert figures.caught == [("Z", "t1")]


def test_the_polygon_test_agrees_with_a_known_concave_shape():
    ell = np.array([[0, 0], [10, 0], [10, 4], [4, 4], [4, 10], [0, 10], [0, 0]], dtype=float)
    inside = sf.inside_polygon(ell, np.array([2.0, 8.0, 8.0, 2.0]), np.array([2.0, 2.0, 8.0, 8.0]))
    assert inside.tolist() == [True, True, False, True]


# --- separation -----------------------------------------------------------------------------


def samples(rows: list[tuple]) -> sf.Samples:
    """rows: (instant, truck, x, y, way, direction, s, one_lane, nodes[, next way])."""
    a = list(zip(*[(*r, -1) if len(r) == 9 else r for r in rows], strict=True))
    return sf.Samples(
        instant=np.asarray(a[0]),
        truck=np.asarray(a[1]),
        xy=np.c_[a[2], a[3]].astype(float),
        speed=np.full(len(rows), 8.0),
        way=np.asarray(a[4]),
        direction=np.asarray(a[5]),
        one_lane=np.asarray(a[7], dtype=bool),
        s=np.asarray(a[6], dtype=float),
        nodes=np.asarray(a[8]),
        next_way=np.asarray(a[9]),
        length=np.full(len(rows), 300.0),
    )


def test_separation_is_the_closest_pair_at_one_instant_among_those_the_road_does_not_part():
    figures = sf.separation(
        samples(
            [
                # instant 0: a follower 70 m behind on way 1, and an oncoming truck 10 m away
                # on the same two-lane way (its own lane: not counted)
                (0, 0, 0.0, 0.0, 1, 1, 100.0, False, (1, 2)),
                (0, 1, 70.0, 0.0, 1, 1, 170.0, False, (1, 2)),
                (0, 2, 10.0, 0.0, 1, -1, 110.0, False, (1, 2)),
                # instant 1: two trucks 30 m apart on ways meeting at node 2, the first
                # heading there to take way 5 behind the second (following through a junction)
                (1, 0, 0.0, 0.0, 1, 1, 290.0, False, (1, 2), 5),
                (1, 3, 30.0, 0.0, 5, 1, 20.0, False, (2, 9)),
                # and two far apart at the same instant: beyond the radius, not sampled
                (1, 4, 900.0, 0.0, 7, 1, 20.0, False, (7, 8)),
            ]
        ),
        safety_m=50.0,
        radius_m=150.0,
    )
    assert figures.pairs_sampled == 2  # the follower at instant 0, the junction at instant 1
    assert figures.min_separation_m == pytest.approx(30.0)
    assert figures.below_safety == 1
    assert figures.pairs_road_apart == 2  # truck 2 oncoming to both others
    assert figures.closest[0]["trucks"] == [0, 3] and figures.closest[0]["instant"] == 1


def test_on_one_way_the_distance_along_it_counts_and_ways_sharing_no_node_never_meet():
    figures = sf.separation(
        samples(
            [
                # switchback legs: 20 m apart in the plane, 180 m along the way
                (0, 0, 0.0, 0.0, 1, 1, 100.0, False, (1, 2)),
                (0, 1, 20.0, 0.0, 1, 1, 280.0, False, (1, 2)),
                # a bench road above: 25 m away in the plane, no node in common
                (0, 2, 0.0, 25.0, 4, 1, 50.0, False, (5, 6)),
            ]
        ),
        safety_m=50.0,
        radius_m=150.0,
    )
    assert figures.pairs_sampled == 1 and figures.min_separation_m == pytest.approx(180.0)
    assert figures.pairs_road_apart == 2


def test_at_a_junction_converging_trucks_count_and_trucks_parting_do_not():
    rows = [
        # both heading for node 2 on two ways: merging or crossing there
        (0, 0, 0.0, 0.0, 1, 1, 280.0, False, (1, 2), 7),
        (0, 1, 0.0, 30.0, 5, -1, 25.0, False, (2, 9), 8),
        # truck 2 heading for node 2 to take way 7; truck 3 leaving node 2 by way 8: they part
        (1, 2, 0.0, 0.0, 1, 1, 280.0, False, (1, 2), 7),
        (1, 3, 0.0, 30.0, 8, 1, 25.0, False, (2, 4), 9),
        # two trucks both leaving node 2 by different ways
        (2, 4, 0.0, 0.0, 7, 1, 20.0, False, (2, 6), 3),
        (2, 5, 0.0, 25.0, 8, 1, 20.0, False, (2, 4), 9),
    ]
    figures = sf.separation(samples(rows), safety_m=50.0, radius_m=150.0)
    assert figures.pairs_sampled == 1 and figures.closest[0]["instant"] == 0
    assert figures.pairs_road_apart == 2


def test_oncoming_trucks_on_a_one_lane_way_are_counted():
    figures = sf.separation(
        samples(
            [
                (0, 0, 0.0, 0.0, 1, 1, 100.0, True, (1, 2)),
                (0, 1, 40.0, 0.0, 1, -1, 140.0, True, (1, 2)),
            ]
        ),
        safety_m=50.0,
        radius_m=150.0,
    )
    assert figures.pairs_sampled == 1 and figures.min_separation_m == pytest.approx(40.0)


def test_projection_on_a_road_and_resampling_between_fixes():
    road = Road.of(1, np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 100.0]]))
    s, unit, off = sf.project_on_road(road, np.array([[50.0, 3.0], [104.0, 50.0]]))
    assert s == pytest.approx([50.0, 150.0]) and off == pytest.approx([3.0, 4.0])
    assert unit.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    t = np.array([0.0, 0.5, 1.0, 5.0, 5.5])
    got = sf.resample(t, t * 10, np.array([0.25, 3.0, 5.25, 9.0]), max_gap_s=2.0)
    assert got[0] == pytest.approx(2.5) and np.isnan(got[1:]).tolist() == [True, False, True]


# --- production -------------------------------------------------------------------------------


def test_tonnes_dumped_are_the_payloads_reported_before_each_dump_in_the_window():
    state = "HaulTruckProductionStateV2"
    rows = [
        ("t1", 1.0, "HaulTruckPayloadV1", {"PayloadWeight": 91}),
        ("t1", 2.0, state, {"ProductionState": "Hauling"}),
        ("t1", 10.0, state, {"ProductionState": "Dumping"}),  # in the window
        ("t1", 11.0, "HaulTruckPayloadV1", {"PayloadWeight": 0}),
        ("t1", 12.0, state, {"ProductionState": "Dumping"}),  # the same dump, reported again
        ("t2", 3.0, "HaulTruckPayloadV1", {"PayloadWeight": 88}),
        ("t2", 4.0, state, {"ProductionState": "Dumping"}),  # before the window
        ("t3", 5.0, "HaulTruckPayloadV1", {"PayloadWeight": 89}),
        ("t3", 60.0, state, {"ProductionState": "Dumping"}),  # after it
    ]
    assert sf.tonnes_dumped(rows, start=5.0, end=50.0) == (91.0, 1)
    assert sf.per_hour(91.0, 1800.0) == pytest.approx(182.0)


def test_a_truck_following_another_through_a_bend_is_as_far_as_the_road_between_them():
    # Way 1 ends at node 2 (300 m long), way 5 leaves it at a sharp angle: the follower is 30 m
    # short of the node, the leader 30 m past it; 20 m apart in the plane, 60 m along the road.
    rows = [
        (0, 0, 0.0, 0.0, 1, 1, 270.0, False, (1, 2), 5),
        (0, 1, 20.0, 0.0, 5, 1, 30.0, False, (2, 9), 8),
    ]
    figures = sf.separation(samples(rows), safety_m=50.0, radius_m=150.0)
    assert figures.min_separation_m == pytest.approx(60.0) and figures.below_safety == 0


def test_the_next_way_is_the_next_different_one_reported():
    t = np.array([0.0, 5.0, 6.0, 10.0])
    ways = [1, 1, 4, 7]
    got = sf.next_values(t, ways, np.array([-1.0, 2.0, 5.5, 8.0, 12.0]))
    assert got.tolist() == [1, 4, 4, 7, -1]


def test_a_truck_standing_at_the_edge_does_not_enter_by_the_noise_of_its_fixes():
    # Caught at the edge (x = 0.5 m inside), its fixes scattered 1 m either side for a minute.
    xs = [-20.0, -10.0] + [0.5, -0.5] * 30
    figures = sf.exclusion_entries([window({"t1": 8.0})], {"t1": track(xs, speed=0.0)}, noise_m=3.0)
    assert figures.entries == [] and figures.caught == [("Z", "t1")]
    # Without the allowance every scattered fix back inside would read as an entry.
    assert len(sf.exclusion_entries([window({"t1": 8.0})], {"t1": track(xs)}).entries) > 10
