"""Traffic permissions end to end: simulated trucks on a one-lane ramp ask the FMS through the
real broker, the FMS answers through the outbox, the trucks acknowledge, drive through and
release; two trucks facing each other at the two ends of the ramp both get through, one after
the other."""

from __future__ import annotations

import pytest

from fleet.control import services
from fleet.control.models import Command, TrafficPermission
from fleet.mine.mapfile import import_site_map
from fleet.telemetry import latest
from tests.conftest import wait_until
from tests.control.conftest import LiveMine, autonomous_trucks
from tests.factories import LAT0, LON0, D, small_site_map, zone_feature

UPDATE = "TrafficPermissionUpdateV1"


@pytest.fixture
def ramp_site(transactional_db):
    # The middle of the one-lane ramp (way 11) between the crusher's road and the shovel.
    zone = zone_feature(
        "Ramp, one lane", {"trafficPermission": {}}, cx=LON0 + D / 4, cy=LAT0 + D / 4
    )
    return import_site_map(small_site_map(slug="liveramp", zones=[zone])).site


def production_state(truck) -> str | None:
    state = latest.read_latest([truck.id])[str(truck.id)]
    return (state.get("HaulTruckProductionStateV2") or {}).get("ProductionState")


def permissions(truck, **filters):
    return TrafficPermission.objects.filter(equipment=truck, **filters).order_by("requested_at")


@pytest.mark.django_db(transaction=True)
def test_two_trucks_facing_each_other_on_a_one_lane_ramp_both_get_through(
    mqtt_broker, ramp_site, tmp_path
):
    down, up = autonomous_trucks(ramp_site, 2)  # HT-001 leaves the park first
    mine = LiveMine(mqtt_broker, ramp_site, [down, up], tmp_path / "credentials.json", speedup=8)
    mine.start()
    try:
        # HT-002 waits at the park while HT-001 goes up the ramp empty, loads and comes back.
        services.stop_truck(up, reason="test: wait at the park")
        wait_until(
            lambda: permissions(down, status="released", loaded=False).exists(),
            90,
            "HT-001 through the ramp going up (asked, granted, acknowledged, released)",
        )
        wait_until(
            lambda: permissions(down, status="granted", loaded=True).exists(),
            120,
            "HT-001 loaded, granted the ramp going down",
        )
        # It stops on its way down; HT-002 sets off up the ramp and meets it at the other end.
        services.stop_truck(down, reason="test: hold the ramp")
        services.resume_truck(up, reason="test: go")
        wait_until(
            lambda: permissions(up, status="pending").exists(), 90, "HT-002 waiting at the foot"
        )
        waiting = permissions(up, status="pending").get()
        assert not waiting.loaded and "occupied by HT-001" in waiting.reason
        # Standing at the foot, it reports itself Queued (the collision rules leave it be).
        wait_until(lambda: production_state(up) == "Queued", 30, "HT-002 reporting Queued")
        services.resume_truck(down, reason="test: go")
        wait_until(
            lambda: permissions(up, status="released").exists(),
            120,
            "HT-002 granted once HT-001 came out, and through",
        )
        wait_until(
            lambda: all(
                p.acknowledged_event_id == p.event_id for p in TrafficPermission.objects.all()
            ),
            30,
            "every update acknowledged, the last (Released) included",
        )
    finally:
        mine.stop()
    going_down = permissions(down, loaded=True).first()
    going_up = permissions(up).first()
    assert going_up.pk == waiting.pk
    # One after the other: HT-002's grant came after HT-001 released the ramp.
    released = going_down.events.get(status="released").at
    assert going_up.events.get(status="granted").at >= released
    for permission in (*permissions(down), going_up):
        trail = [e.status for e in permission.events.order_by("at", "id")]
        assert trail in (["pending", "granted", "released"], ["pending", "released"]), trail
        # Each answer went out through the outbox and the truck acknowledged it.
        assert permission.acknowledged_event_id == permission.event_id
    grants = Command.objects.filter(message_name=UPDATE, body__Status="Granted")
    assert grants.count() >= 3
    assert set(grants.values_list("status", flat=True)) == {"acknowledged"}
    pending = Command.objects.filter(equipment=up, message_name=UPDATE, body__Status="Pending")
    assert pending.exists()  # it asked again every 30 s (simulated) while it waited
    assert set(pending.values_list("status", flat=True)) <= {"acknowledged", "superseded"}
