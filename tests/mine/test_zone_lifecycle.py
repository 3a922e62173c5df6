import pytest
from django.contrib.gis.geos import Polygon
from django.core.exceptions import ValidationError

from fleet.mine import services
from fleet.mine.models import PolicyZone
from tests.factories import LAT0, LON0, square


def a_polygon(half: float = 0.0004) -> Polygon:
    return Polygon(square(LON0, LAT0, half), srid=4326)


def test_a_new_zone_is_pending_and_knows_its_area(site, operator):
    zone = services.create_zone(
        site=site,
        name="Closed",
        geometry=a_polygon(),
        policies={"exclusion": {}},
        created_by=operator,
    )
    assert zone.status == PolicyZone.Status.PENDING
    assert 6000 < zone.area_m2 < 8000  # 0.0008 deg square at 22.3 S: ~82 m x ~89 m


def test_it_refuses_a_self_intersecting_polygon(site):
    bow_tie = Polygon(
        [
            (LON0, LAT0),
            (LON0 + 0.001, LAT0 + 0.001),
            (LON0 + 0.001, LAT0),
            (LON0, LAT0 + 0.001),
            (LON0, LAT0),
        ],
        srid=4326,
    )
    with pytest.raises(ValidationError, match="Self-intersection"):
        services.create_zone(
            site=site, name="Bow tie", geometry=bow_tie, policies={"exclusion": {}}
        )
    assert not PolicyZone.objects.filter(name="Bow tie").exists()


def test_it_refuses_a_zone_outside_the_site(site):
    far = Polygon(square(LON0 + 1, LAT0, 0.0004), srid=4326)
    with pytest.raises(ValidationError, match="outside the site"):
        services.create_zone(site=site, name="Elsewhere", geometry=far, policies={"roughRoad": {}})


def test_a_zone_goes_through_its_lifecycle(site):
    zone = services.create_zone(
        site=site, name="Wet", geometry=a_polygon(), policies={"lowTraction": {}}
    )
    zone = services.activate_zone(zone)
    assert zone.status == "active" and zone.activated_at
    zone = services.request_zone_deletion(zone)
    assert zone.status == "pending_delete"
    zone = services.confirm_zone_deleted(zone)
    assert zone.status == "deleted" and zone.deleted_at


def test_a_deleted_zone_cannot_come_back(site):
    zone = services.request_zone_deletion(
        services.create_zone(
            site=site, name="Gone", geometry=a_polygon(), policies={"roughRoad": {}}
        )
    )
    assert zone.status == "deleted"  # never seen by a truck: deleted at once
    with pytest.raises(ValidationError, match="cannot activate zone 'Gone': it is Deleted"):
        services.activate_zone(zone)


def test_a_replacement_retires_the_zone_it_replaces_when_activated(site):
    old = services.activate_zone(
        services.create_zone(
            site=site,
            name="Limit 30",
            geometry=a_polygon(),
            policies={"speedLimit": {"type": "absolute", "value": 8.3}},
        )
    )
    new = services.create_zone(
        site=site,
        name="Limit 20",
        geometry=a_polygon(),
        policies={"speedLimit": {"type": "absolute", "value": 5.5}},
        replaces=old,
    )
    old.refresh_from_db()
    assert old.status == "active"  # until the replacement is live, the old limit holds
    services.activate_zone(new)
    old.refresh_from_db()
    assert old.status == "pending_delete"
