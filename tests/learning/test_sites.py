"""The four simulated sites: real, different open pits whose trucks run full haul cycles."""

from __future__ import annotations

import numpy as np
import pytest

from fleet.learning.pipeline.sites import ALL_SITES, SITES, check_site, site_map, site_world
from fleet.simulator.world import World


@pytest.mark.parametrize("key", ALL_SITES)
def test_every_site_is_a_connected_road_graph_with_shovels_and_dumps(key):
    world = World.from_map(site_map(key))  # raises if a key point is unreachable
    assert len(world.loading_units) >= 3 and len(world.dumps) >= 2
    for src in world.key_nodes:
        for dst in world.key_nodes:
            assert world.paths[(src, dst)] is not None


def test_the_sites_differ_in_slug_ramp_grade_and_depth():
    slugs = {site_map(k)["haulmind"]["site"]["slug"] for k in ALL_SITES}
    assert len(slugs) == len(ALL_SITES)
    grades = {k: round(float(np.abs(site_world(k).way_grade_pct).max()), 1) for k in SITES}
    assert all(8.0 <= g <= 10.0 for g in grades.values()), grades
    assert len({grades[k] for k in "BCD"}) == 3
    depth = {k: np.ptp(site_world(k).node_xyz[:, 2]) for k in ALL_SITES}
    assert len({round(d) for d in depth.values()}) == len(ALL_SITES)


def test_the_documents_are_deterministic():
    assert site_map("B") == site_map("B")
    first = site_map("C")
    first["features"].clear()  # a caller's copy is its own
    assert site_map("C")["features"]


def test_an_unknown_site_is_refused():
    with pytest.raises(ValueError, match="unknown site"):
        site_map("F")


def test_trucks_complete_haul_cycles_on_every_site(small_data):
    for key in SITES:
        cycles = small_data.runs[key].cycles
        assert (cycles >= 1).all(), (key, cycles.tolist())


def test_a_short_check_of_the_held_out_site_runs_cycles():
    check = check_site("D", trucks=3, seconds=1800.0)
    assert check.loading_units == 3 and check.dumps == 3
    assert all(c >= 1 for c in check.cycles_per_truck)


def test_the_sealed_test_site_runs_cycles():
    # E is read by the test-site evaluation alone, but its road graph must work like any other.
    check = check_site("E", trucks=6, seconds=3600.0)
    assert check.loading_units == 3 and check.dumps == 3
    assert all(c >= 1 for c in check.cycles_per_truck), check.cycles_per_truck
