"""The collision-risk geometry (fleet.control.collision): closest approach of two machines in
the textbook cases, the grid's candidate search against a brute force over every pair, and
which intervention each machine of a risky pair gets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fleet.control import collision
from fleet.control.collision import Intervention, Lanes, Road, Thresholds

DT = 0.25
GRID = collision.time_grid(12.0, DT)
LIMITS = Thresholds()


def moving(x: float, y: float, heading: float, speed: float) -> np.ndarray:
    return collision.straight(np.array([x, y]), heading, speed, GRID)


def approach(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    return collision.closest_approach(a, b, DT)


def test_head_on_meet_in_the_middle():
    t, d = approach(moving(0, 0, 90, 10), moving(200, 0, 270, 10))
    assert t == pytest.approx(10.0) and d == pytest.approx(0.0, abs=1e-9)


def test_crossing_paths_miss_by_the_exact_distance():
    # A(t) = (-100 + 10t, 0), B(t) = (0, -120 + 10t): nearest at t = 11, 10 m apart each way.
    t, d = approach(moving(-100, 0, 90, 10), moving(0, -120, 0, 10))
    assert t == pytest.approx(11.0) and d == pytest.approx(math.hypot(10, 10))


def test_following_at_the_same_speed_keeps_its_gap_and_a_faster_follower_closes():
    t, d = approach(moving(0, 0, 90, 10), moving(30, 0, 90, 10))
    assert d == pytest.approx(30.0)
    t, d = approach(moving(0, 0, 90, 12), moving(80, 0, 90, 8))
    assert t == pytest.approx(12.0) and d == pytest.approx(80 - 4 * 12)  # still closing at the end


def test_parallel_opposite_lanes_pass_at_their_offset():
    t, d = approach(moving(0, 0, 90, 10), moving(200, 60, 270, 10))
    assert t == pytest.approx(10.0) and d == pytest.approx(60.0)


def test_a_standing_machine_is_approached_at_the_movers_arrival():
    t, d = approach(moving(0, 0, 0, 0), moving(100, 0, 270, 10))
    assert t == pytest.approx(10.0) and d == pytest.approx(0.0, abs=1e-9)
    t, d = approach(moving(0, 0, 0, 0), moving(5, 5, 0, 0))
    assert t == 0.0 and d == pytest.approx(math.hypot(5, 5))


def scene(paths: list[np.ndarray]) -> np.ndarray:
    return np.stack(paths)


def test_interventions_by_class():
    # Head-on, closing fast and soon: both stop.
    paths = scene([moving(0, 0, 90, 15), moving(100, 0, 270, 15)])
    (risk,) = collision.assess(paths, DT, LIMITS).encounters
    assert risk.t_ca_s == pytest.approx(100 / 30)
    assert collision.interventions(paths, risk, DT, LIMITS) == {
        0: Intervention.STOP,
        1: Intervention.STOP,
    }
    # A follower closing slowly on a leader, far off: only the follower slows down.
    paths = scene([moving(80, 0, 90, 8), moving(0, 0, 90, 12)])
    (risk,) = collision.assess(paths, DT, LIMITS).encounters
    assert collision.interventions(paths, risk, DT, LIMITS) == {1: Intervention.SLOW_DOWN}
    # A follower 15 m behind (critical): it stops; the leader pulling away drives on.
    paths = scene([moving(15, 0, 90, 10), moving(0, 0, 90, 10)])
    (risk,) = collision.assess(paths, DT, LIMITS).encounters
    assert collision.interventions(paths, risk, DT, LIMITS) == {1: Intervention.STOP}
    # A machine standing now but about to start (its path moves) with a mover heading for it:
    # it may not move; the mover stops.
    paths = scene([moving(0, 0, 90, 3), moving(100, 0, 270, 10)])
    (risk,) = collision.assess(paths, DT, LIMITS).encounters
    standing = np.array([True, False])
    assert collision.interventions(paths, risk, DT, LIMITS, standing) == {
        0: Intervention.PREVENT_MOTION,
        1: Intervention.STOP,
    }


def test_what_is_not_a_risk():
    far = scene([moving(0, 0, 90, 10), moving(200, 60, 270, 10)])  # passes 60 m off
    parked = scene([moving(0, 0, 0, 0), moving(10, 0, 0, 0)])  # neither moves
    apart = scene([moving(0, 0, 90, 10), moving(-10, 0, 270, 10)])  # just passed, opening
    # Pairs of moving machines only: one standing for good is the other's own perception's.
    standing = scene([moving(0, 0, 0, 0), moving(100, 0, 270, 10)])
    for paths in (far, parked, apart, standing):
        assert collision.assess(paths, DT, LIMITS).encounters == []


def test_oncoming_traffic_on_a_two_lane_road_passes_in_its_lanes_but_not_on_one_lane():
    paths = scene([moving(0, 0, 90, 10), moving(200, 0, 270, 10)])
    two_lane = Lanes(np.array([7, 7]), np.array([1, -1]), np.array([False, False]))
    one_lane = Lanes(np.array([7, 7]), np.array([1, -1]), np.array([True, True]))
    assert collision.assess(paths, DT, LIMITS, lanes=two_lane).encounters == []
    assert len(collision.assess(paths, DT, LIMITS, lanes=one_lane).encounters) == 1


def test_extrapolation_follows_the_road_round_a_bend():
    road = Road.of(5, np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 100.0]]))
    path, direction = collision.along_road(road, np.array([50.0, 2.0]), 85, 10.0, GRID)
    assert direction == 1
    assert path[0] == pytest.approx([50.0, 0.0])
    assert path[round(10 / DT)] == pytest.approx([100.0, 50.0])  # 100 m on: round the corner
    back, direction = collision.along_road(road, np.array([100.0, 50.0]), 180, 10.0, GRID)
    assert direction == -1 and back[round(10 / DT)] == pytest.approx([50.0, 0.0])
    # Past the end it goes on straight.
    assert road.at(np.array([250.0]))[0] == pytest.approx([100.0, 150.0])


def test_resampling_a_predicted_path_extrapolates_its_last_segment():
    out = collision.resample([-1.0, 1.0, 3.0], np.array([[0, 0], [20, 0], [40, 0]]), GRID)
    assert out[0] == pytest.approx([10.0, 0.0])
    assert out[-1] == pytest.approx([130.0, 0.0])  # 10 m/s on past t = 3


# --- the candidate search against a brute force ---------------------------------------------------


def random_scene(n: int, seed: int) -> np.ndarray:
    """``n`` machines over a 3 km square, a quarter standing, the others on curving paths."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, 3000, (n, 2))
    speed = np.where(rng.random(n) < 0.25, 0.0, rng.uniform(2, 15, n))
    heading = rng.uniform(0, 2 * np.pi, n)
    turn = rng.normal(0, 0.1, n)  # rad/s
    angle = heading[:, None] + turn[:, None] * GRID[None, :]
    step = speed[:, None, None] * DT * np.stack([np.sin(angle), np.cos(angle)], axis=-1)
    path = np.concatenate([np.zeros((n, 1, 2)), np.cumsum(step[:, :-1], axis=1)], axis=1)
    return start[:, None, :] + path


def brute_force(paths: np.ndarray, limits: Thresholds) -> set[tuple[int, int]]:
    """Every pair's closest approach, filtered by the same rules as collision.assess."""
    i, j = np.triu_indices(len(paths), k=1)
    t, d = collision.closest_approaches(paths, i, j, DT)
    speed = np.hypot(*(paths[:, 1] - paths[:, 0]).T) / DT
    moves = speed > limits.moving_mps
    rate = (
        np.hypot(*(paths[i, 1] - paths[j, 1]).T) - np.hypot(*(paths[i, 0] - paths[j, 0]).T)
    ) / DT
    risky = (
        (d < limits.safety_distance_m)
        & (moves[i] & moves[j])
        & ~((t <= 1e-9) & (rate > limits.opening_mps))
    )
    return set(zip(i[risky].tolist(), j[risky].tolist(), strict=True))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_grid_finds_exactly_the_pairs_a_brute_force_finds_on_300_trucks(seed):
    paths = random_scene(300, seed)
    expected = brute_force(paths, LIMITS)
    assessment = collision.assess(paths, DT, LIMITS)
    found = {(e.first, e.second) for e in assessment.encounters}
    assert found == expected
    assert len(expected) >= 5  # the scene is dense enough to have risks
    all_pairs = 300 * 299 // 2
    assert assessment.candidates < all_pairs / 50, assessment.candidates
    # Every pair closer than the reach at any time is a candidate, standing ones included.
    i, j = collision.candidate_pairs(paths, LIMITS.safety_distance_m)
    pairs = set(zip(i.tolist(), j.tolist(), strict=True))
    ai, aj = np.triu_indices(300, k=1)
    _, d = collision.closest_approaches(paths, ai, aj, DT)
    close = set(zip(ai[d < 50].tolist(), aj[d < 50].tolist(), strict=True))
    assert close <= pairs


def test_candidate_search_scales_with_machines_not_pairs():
    paths = random_scene(1000, 4) * np.sqrt(1000 / 300)  # the same density on a larger pit
    assessment = collision.assess(paths, DT, LIMITS)
    assert assessment.candidates < 1000 * 999 // 2 / 100


def test_the_road_keeps_apart_switchback_legs_and_unconnected_ways():
    # Two trucks 30 m apart in the plane, one above the other on two legs of a switchback.
    paths = scene([moving(0, 0, 90, 10), moving(0, 30, 90, 10)])
    assert len(collision.assess(paths, DT, LIMITS).encounters) == 1  # the plane alone: a risk
    one_way = Lanes(
        np.array([7, 7]),
        np.array([1, 1]),
        np.array([False, False]),
        s=np.array([100.0, 400.0]),  # 300 m apart along the ramp, same speed
        speed=np.array([10.0, 10.0]),
        nodes=np.array([[1, 2], [1, 2]]),
    )
    assert collision.assess(paths, DT, LIMITS, lanes=one_way).encounters == []
    # Close along the way as well: a risk.
    near = Lanes(
        one_way.way,
        one_way.direction,
        one_way.one_lane,
        np.array([100.0, 130.0]),
        one_way.speed,
        one_way.nodes,
    )
    assert len(collision.assess(paths, DT, LIMITS, lanes=near).encounters) == 1
    # Two ways sharing no node (benches above each other): apart; sharing one: the plane decides.
    apart = Lanes(
        np.array([7, 8]),
        np.array([1, 1]),
        np.array([False, False]),
        np.array([0.0, 0.0]),
        one_way.speed,
        np.array([[1, 2], [3, 4]]),
    )
    assert collision.assess(paths, DT, LIMITS, lanes=apart).encounters == []
    joined = Lanes(
        apart.way, apart.direction, apart.one_lane, apart.s, apart.speed, np.array([[1, 2], [2, 4]])
    )
    assert len(collision.assess(paths, DT, LIMITS, lanes=joined).encounters) == 1
