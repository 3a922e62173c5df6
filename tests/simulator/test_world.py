"""The world: the map document as a road graph in local metres."""

from __future__ import annotations

import numpy as np
import pytest

from fleet.learning.features import LocalFrame
from fleet.simulator.world import World, world_for_site
from tests.simulator.maps import RAMP_WAY, pit_map


@pytest.fixture(scope="module")
def pit() -> World:
    return World.from_map(pit_map())


def test_the_local_frame_round_trips_and_measures_metres():
    frame = LocalFrame(-68.9, -22.3)
    x, y = frame.to_local([-68.9, -68.89], [-22.3, -22.29])
    assert x[0] == y[0] == 0.0
    # 0.01 deg at 22.3 S: 1,030.44 m of longitude and 1,107.35 m of latitude (the WGS84
    # series 111,412.84 cos(lat) - 93.5 cos(3 lat) and 111,132.95 - 559.82 cos(2 lat) m/deg)
    assert x[1] == pytest.approx(1030.44, abs=0.05) and y[1] == pytest.approx(1107.35, abs=0.05)
    lon, lat = frame.to_lonlat(x, y)
    assert np.allclose(lon, [-68.9, -68.89], atol=1e-12) and np.allclose(
        lat, [-22.3, -22.29], atol=1e-12
    )


def test_ways_keep_their_length_grade_and_speed(pit):
    ramp = int(np.flatnonzero(pit.way_ids == RAMP_WAY)[0])
    # Lengths are horizontal, as in fleet.mine.geometry (the test map's own degree conversion
    # is a rounder approximation, hence 0.2 %).
    assert pit.way_length_m[ramp] == pytest.approx(1000.0, rel=0.002)  # 1 km run, 100 m drop
    assert pit.way_grade_pct[ramp] == pytest.approx(-10.0, abs=0.05)  # drawn downhill
    assert pit.way_speed_mps[ramp] == pytest.approx(40 / 3.6)
    half = pit.way_length_m[ramp] / 2  # the same point from either end
    xyz, grade, heading = pit.locate(np.array([2 * ramp, 2 * ramp + 1]), np.array([half, half]))
    assert np.allclose(xyz[0], xyz[1]) and grade[0] == pytest.approx(-grade[1])
    assert heading[0] == pytest.approx(180.0, abs=0.5) and heading[1] == pytest.approx(0.0, abs=0.5)


def test_destinations_snap_to_road_nodes_and_paths_join_them(pit):
    assert [d.name for d in pit.loading_units] == ["SH-ORE", "SH-WASTE"]
    assert [(d.kind, d.material, d.slots) for d in pit.dumps] == [
        ("crusher", "ore", 1),
        ("waste_dump", "waste", 2),
    ]
    assert pit.node_ids[pit.park.node] == 1
    path = pit.paths[(pit.loading_units[0].node, pit.dumps[0].node)]
    ways = [int(pit.way_ids[e // 2]) for e in path]
    assert ways == [105, RAMP_WAY, 102]  # up from the ore shovel to the crusher
    assert pit.edge_to[path[-1]] == pit.dumps[0].node


def test_a_map_without_destinations_is_refused():
    doc = pit_map()
    doc["features"] = [
        f for f in doc["features"] if f["properties"].get("featureType") != "dumpPoint"
    ]
    with pytest.raises(ValueError, match="at least one loading unit and one dump"):
        World.from_map(doc)


def test_the_world_of_a_site_comes_from_its_exported_map(site):
    world = world_for_site(site)
    assert world.slug == "testpit" and sorted(world.way_ids.tolist()) == [10, 11]
    assert world.way_one_lane.tolist() == [False, True]
    assert [z.policies for z in world.zones] == [{"speedLimit": {"type": "absolute", "value": 8.3}}]
    assert world.way_grade_pct[1] > 0 and world.park.node != world.loading_units[0].node
