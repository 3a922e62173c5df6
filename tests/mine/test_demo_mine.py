"""The demo mine, Cerro Rojo: built through the map importer, realistic, and idempotent."""

from __future__ import annotations

import io
import json
import uuid
from collections import defaultdict, deque
from collections.abc import Iterator

import pytest
from django.contrib.gis.geos import Point
from django.core.management import call_command
from django.db import transaction

from fleet.mine import demo as demo_module
from fleet.mine.demo import (
    CENTRE_LAT,
    CENTRE_LON,
    DemoMineSummary,
    build_demo_map,
    create_demo_mine,
)
from fleet.mine.models import LoadingUnit, PolicyZone, RoadNetwork, Site
from fleet.vehicles.models import Credential, Equipment

RAMP_WORDS = ("ramp", "switchback")


@pytest.fixture(scope="class")
def built(django_db_setup, django_db_blocker) -> Iterator[DemoMineSummary]:
    """One build shared by the tests that only read it (a build takes about a second), rolled
    back after them."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield create_demo_mine(trucks=5)
        transaction.set_rollback(True)


@pytest.fixture
def demo(built, db) -> Site:
    return Site.objects.get(slug=built.slug)


@pytest.fixture
def own_demo(db) -> Site:
    """A build of the test's own, for tests that change it or build it again."""
    return Site.objects.get(slug=create_demo_mine(trucks=5).slug)


def _ways(site: Site) -> list:
    return list(site.active_network.ways.select_related("start_node", "end_node"))


def _active_zones(site: Site, policy: str) -> list[PolicyZone]:
    return [z for z in site.zones.filter(status=PolicyZone.Status.ACTIVE) if policy in z.policies]


class TestTheBuiltMine:
    def test_it_is_cerro_rojo_in_utm_zone_19_south_with_its_first_road_revision(self, built, demo):
        assert (demo.name, demo.utm_srid, demo.default_speed_kmh) == ("Cerro Rojo", 32719, 40.0)
        assert built.revision == 1 and built.new_revision
        assert built.ways == demo.active_network.ways.count() >= 15
        assert built.zones == built.zones_created == demo.zones.count()
        assert built.trucks_active == 5

    def test_it_has_at_least_three_shovels_on_different_levels(self, demo):
        units = list(demo.loading_units.select_related("equipment"))
        assert len(units) >= 3
        assert len({u.elevation_m for u in units}) >= 3
        assert {u.material for u in units} == {"ore", "waste"}
        for unit in units:
            assert unit.equipment.kind == Equipment.Kind.LOADING_UNIT
            assert unit.equipment.site == demo
            assert 3000 <= unit.loading_rate_tph <= 5000

    def test_it_has_a_crusher_a_waste_dump_a_park_and_a_workshop(self, demo):
        assert {"crusher", "waste_dump"} <= set(demo.dump_points.values_list("kind", flat=True))
        areas = {a.kind: a for a in demo.areas.all()}
        assert {"park", "workshop"} <= set(areas)
        # Room for 100 trucks of about 10 m x 7 m, with the space between and around them.
        assert demo.to_metric(areas["park"].geometry).area >= 100 * 10 * 7 * 2

    def test_every_road_node_is_reachable_from_the_park(self, demo):
        ways = _ways(demo)
        neighbours: dict[int, set[int]] = defaultdict(set)
        for way in ways:  # trucks may drive a way either way
            neighbours[way.start_node.node_id].add(way.end_node.node_id)
            neighbours[way.end_node.node_id].add(way.start_node.node_id)
        park = demo.areas.get(kind="park").geometry
        nodes = list(demo.active_network.nodes.all())
        start = min(nodes, key=lambda n: n.location.distance(park)).node_id
        seen, queue = {start}, deque([start])
        while queue:
            for nxt in neighbours[queue.popleft()] - seen:
                seen.add(nxt)
                queue.append(nxt)
        assert seen == {n.node_id for n in nodes}
        intersections = [n for n, linked in neighbours.items() if len(linked) >= 3]
        assert len(intersections) >= 3

    def test_each_one_lane_way_is_under_a_traffic_permission_zone(self, demo):
        """Covered where it is one lane: not where it leaves a two-lane road or ends in a
        loading area, so trucks driving past never need a permission."""
        ways = _ways(demo)
        one_lane = [w for w in ways if w.one_lane]
        assert len(one_lane) >= 2
        zones = _active_zones(demo, "trafficPermission")
        for way in one_lane:
            middle = [way.geometry.interpolate_normalized(f / 20) for f in range(5, 16)]
            assert any(all(z.geometry.covers(p) for p in middle) for z in zones), way.name
        for way in ways:
            if not way.one_lane:
                assert not any(z.geometry.intersects(way.geometry) for z in zones), way.name

    def test_each_shovel_has_a_controlled_access_zone_that_it_owns(self, demo):
        zones = _active_zones(demo, "controlledAccess")
        for unit in LoadingUnit.objects.filter(site=demo):
            owned = [
                z
                for z in zones
                if z.policies["controlledAccess"]["ownerId"] == str(unit.equipment_id)
            ]
            assert len(owned) == 1, unit.name
            assert owned[0].geometry.contains(unit.location)

    def test_ramps_climb_at_a_haul_ramp_grade_and_carry_a_speed_limit(self, demo):
        ramps = [w for w in _ways(demo) if any(word in w.name.lower() for word in RAMP_WORDS)]
        assert len(ramps) >= 6
        for way in ramps:
            assert 6 <= abs(way.grade_pct) <= 12, (way.name, way.grade_pct)
            assert way.max_grade_pct <= 12
        main = [w for w in ramps if w.name.startswith("Main ramp")]
        # Five to six benches of 15 m from the rim at ~3,900 m down to the floor.
        assert sum(w.length_m * w.grade_pct / 100 for w in main) == pytest.approx(-90, abs=0.5)
        assert max(w.start_node.elevation_m for w in main) == pytest.approx(3900)
        limits = _active_zones(demo, "speedLimit")
        for way in main:
            assert any(z.geometry.covers(way.geometry) for z in limits), way.name

    def test_every_zone_is_a_valid_active_polygon(self, demo):
        for zone in demo.zones.all():
            assert zone.status == PolicyZone.Status.ACTIVE
            assert zone.geometry.valid and zone.area_m2 > 50

    def test_everything_lies_within_5_km_of_the_pit_centre(self, demo):
        centre = demo.to_metric(Point(CENTRE_LON, CENTRE_LAT, srid=4326))
        geometries = [
            *(n.location for n in demo.active_network.nodes.all()),
            *(w.geometry for w in demo.active_network.ways.all()),
            *(u.location for u in demo.loading_units.all()),
            *(d.location for d in demo.dump_points.all()),
            *(a.geometry for a in demo.areas.all()),
            *(z.geometry for z in demo.zones.all()),
        ]
        for geometry in geometries:
            xmin, ymin, xmax, ymax = demo.to_metric(geometry).extent
            corners = [Point(x, y) for x in (xmin, xmax) for y in (ymin, ymax)]
            assert max(c.distance(centre) for c in corners) < 5000


def test_running_it_again_changes_nothing(own_demo):
    zone_ids = set(PolicyZone.objects.values_list("id", flat=True))
    equipment = set(Equipment.objects.values_list("id", "status"))
    summary = create_demo_mine(trucks=5)
    assert not summary.new_revision and summary.revision == 1
    assert summary.zones_created == 0 and summary.trucks_added == summary.trucks_retired == 0
    assert RoadNetwork.objects.filter(site=own_demo).count() == 1
    assert set(PolicyZone.objects.values_list("id", flat=True)) == zone_ids
    assert set(Equipment.objects.values_list("id", "status")) == equipment
    assert LoadingUnit.objects.filter(site=own_demo).count() == summary.loading_units


def test_a_zone_whose_design_changed_replaces_the_old_one(own_demo, monkeypatch):
    document = build_demo_map()
    zone = next(
        f
        for f in document["features"]
        if f.get("featureType") == "policyZone" and f["properties"]["name"].startswith("Crusher")
    )
    old_id, zone["id"] = zone["id"], str(uuid.uuid4())  # a new design: same name, new id
    zone["properties"]["policies"]["speedLimit"]["value"] = 4.2
    monkeypatch.setattr(demo_module, "build_demo_map", lambda: document)
    create_demo_mine(trucks=5)
    assert PolicyZone.objects.get(pk=old_id).status == PolicyZone.Status.PENDING_DELETE
    assert PolicyZone.objects.get(pk=zone["id"]).status == PolicyZone.Status.ACTIVE


def test_the_document_is_deterministic():
    assert json.dumps(build_demo_map()) == json.dumps(build_demo_map())


def test_fewer_trucks_retire_the_surplus_and_more_bring_them_back(own_demo):
    trucks = Equipment.objects.filter(site=own_demo, kind=Equipment.Kind.HAUL_TRUCK)
    ids = dict(trucks.values_list("name", "id"))
    assert sorted(ids) == ["HT-001", "HT-002", "HT-003", "HT-004", "HT-005"]
    assert all(t.autonomous and t.payload_capacity_t == 90 for t in trucks)

    summary = create_demo_mine(trucks=3)
    assert (summary.trucks_active, summary.trucks_retired) == (3, 2)
    status = dict(trucks.values_list("name", "status"))
    assert status["HT-004"] == status["HT-005"] == Equipment.Status.RETIRED
    assert trucks.count() == 5  # retired, not deleted

    summary = create_demo_mine(trucks=6)
    assert (summary.trucks_active, summary.trucks_added) == (6, 3)
    assert set(trucks.values_list("status", flat=True)) == {Equipment.Status.ACTIVE}
    assert dict(trucks.values_list("name", "id")).items() >= ids.items()  # same EquipmentIds


def test_the_command_prints_one_summary_line_and_can_draw_the_map(db, tmp_path):
    out = io.StringIO()
    png = tmp_path / "demo.png"
    call_command("create_demo_mine", "--trucks", "2", "--plot", str(png), stdout=out)
    first, *rest = out.getvalue().splitlines()
    assert first.startswith("Cerro Rojo (cerro-rojo): roads r1 (new)")
    assert "4 loading units" in first and "2 trucks active" in first
    assert rest == [f"map drawn to {png}"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_credentials_are_only_issued_when_asked(db, tmp_path):
    call_command("create_demo_mine", "--trucks", "2", stdout=io.StringIO())
    assert not Credential.objects.exists()
    secrets = tmp_path / "credentials.json"
    call_command(
        "create_demo_mine", "--trucks", "2", "--credentials", str(secrets), stdout=io.StringIO()
    )
    issued = json.loads(secrets.read_text())
    trucks = Equipment.objects.filter(kind=Equipment.Kind.HAUL_TRUCK)
    assert set(issued) == {str(t.id) for t in trucks}
    assert Credential.objects.filter(revoked_at__isnull=True).count() == 2 * trucks.count()
