"""Policy zones reach the trucks: activation and deletion through the outbox to every connected
machine, their answers recorded, deletion completed when all answered or at the deadline (naming
who did not), and a machine whose zones differ re-synchronised — through the real broker with
simulated trucks, and as services on the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.gis.geos import Polygon
from django.utils import timezone

from fleet.control import zones
from fleet.control.models import Command, TruckState
from fleet.mine import services as mine
from fleet.mine.models import PolicyZone, ZoneResponse
from fleet.telemetry.intake import Inbound
from fleet.telemetry.services import EquipmentDirectory, ingest_batch
from tests.conftest import wait_until
from tests.control.conftest import autonomous_trucks
from tests.factories import LAT0, LON0, square, truck_message


def new_zone(site, name="Blast area", policies=None) -> PolicyZone:
    return mine.create_zone(
        site=site,
        name=name,
        geometry=Polygon(square(LON0, LAT0, 0.0004), srid=4326),
        policies=policies or {"exclusion": {}},
    )


def online(*trucks) -> None:
    for truck in trucks:
        TruckState.objects.update_or_create(equipment=truck, defaults={"connection": "Online"})


def answer(site, truck, name: str, body) -> None:
    payload = truck_message(truck.id, name, body)
    topic = f"iso23725/v1/{site.slug}/{truck.id}/up/{name}"
    result = ingest_batch(
        [Inbound("mqtt", payload, datetime.now(UTC), topic=topic)], EquipmentDirectory()
    )
    assert not result.refused, result.refused


# --- end to end ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_activated_zone_reaches_every_connected_truck_and_their_answers_are_recorded(
    live_mine, site
):
    zone = mine.activate_zone(new_zone(site))

    def answered() -> int:
        return ZoneResponse.objects.filter(
            zone=zone, request=ZoneResponse.Request.ACTIVATE, accepted=True
        ).count()

    wait_until(lambda: answered() == 3, 30, "three activation answers")
    sent = Command.objects.filter(
        message_name="ActivateZoneRequestV1", answer_key=f"zone:{zone.id}"
    )
    assert sorted(sent.values_list("status", flat=True)) == ["acknowledged"] * 3
    assert "activated" in sent.first().reason
    wait_until(
        lambda: all(
            zone.id in state.reported_zone_ids
            for state in TruckState.objects.filter(equipment__in=live_mine.trucks)
        ),
        10,
        "the zone in every truck's reported set",
    )

    mine.request_zone_deletion(zone)
    wait_until(
        lambda: (
            ZoneResponse.objects.filter(zone=zone, request=ZoneResponse.Request.DEACTIVATE).count()
            == 3
        ),
        30,
        "three deactivation answers",
    )
    (done,) = zones.complete_zone_deletions(timeout=timedelta(minutes=5))
    assert done.status == PolicyZone.Status.DELETED and done.unanswered == []


# --- on the database ----------------------------------------------------------------------------


def test_only_connected_trucks_are_sent_an_activation(site):
    here, _offline = autonomous_trucks(site, 2)
    online(here)
    zone = mine.activate_zone(new_zone(site))
    # on_commit does not run inside the test's transaction: call what the signal calls.
    (command,) = zones.send_zone_activation(zone.id)
    assert command.equipment == here
    assert command.body["Zone"]["id"] == str(zone.id)


def test_a_deletion_waits_for_every_truck_asked_then_completes(site):
    first, second = autonomous_trucks(site, 2)
    online(first, second)
    zone = mine.activate_zone(new_zone(site))
    mine.request_zone_deletion(zone)
    assert len(zones.send_zone_deactivation(zone.id)) == 2

    answer(site, first, "DeactivateZoneResponseV1", {"ZoneId": str(zone.id), "Status": "Accepted"})
    assert zones.complete_zone_deletions(timeout=timedelta(minutes=5)) == []

    answer(site, second, "DeactivateZoneResponseV1", {"ZoneId": str(zone.id), "Status": "Accepted"})
    (done,) = zones.complete_zone_deletions(timeout=timedelta(minutes=5))
    assert done.status == PolicyZone.Status.DELETED


def test_a_deletion_past_its_deadline_names_the_trucks_that_did_not_answer(site):
    first, second = autonomous_trucks(site, 2)
    online(first, second)
    zone = mine.activate_zone(new_zone(site))
    mine.request_zone_deletion(zone)
    zones.send_zone_deactivation(zone.id)
    answer(site, first, "DeactivateZoneResponseV1", {"ZoneId": str(zone.id), "Status": "Accepted"})
    PolicyZone.objects.filter(pk=zone.pk).update(
        delete_requested_at=timezone.now() - timedelta(hours=1)
    )

    (done,) = zones.complete_zone_deletions(timeout=timedelta(minutes=5))
    assert done.status == PolicyZone.Status.DELETED
    assert done.unanswered == [second.name]


def test_a_rejected_activation_is_recorded_with_the_trucks_reason(site):
    (truck,) = autonomous_trucks(site, 1)
    online(truck)
    zone = mine.activate_zone(new_zone(site))
    (command,) = zones.send_zone_activation(zone.id)
    answer(
        site,
        truck,
        "ActivateZoneResponseV1",
        {"ZoneId": str(zone.id), "Status": "Rejected", "Reason": "polygon self-intersects"},
    )
    response = ZoneResponse.objects.get(zone=zone, equipment=truck)
    command.refresh_from_db()
    assert not response.accepted and response.reason == "polygon self-intersects"
    assert command.status == Command.Status.REJECTED


def test_a_truck_whose_reported_zones_differ_is_resynchronised(site):
    (truck,) = autonomous_trucks(site, 1)
    online(truck)
    zone = mine.activate_zone(new_zone(site))
    TruckState.objects.filter(equipment=truck).update(
        reported_zone_ids=[], reported_at=timezone.now()
    )

    (resynced,) = zones.reconcile_zone_sets(settle=timedelta(seconds=30))
    sync = Command.objects.get(equipment=truck, message_name="SyncActiveZonesRequestV1")
    active = PolicyZone.objects.filter(site=site, status=PolicyZone.Status.ACTIVE)
    assert resynced == truck
    assert str(zone.id) in {feature["id"] for feature in sync.body["Zones"]}
    assert len(sync.body["Zones"]) == active.count()
    assert f"{active.count()} missing" in sync.reason
    # Nothing more while the re-sync is unanswered, nor within the settle time.
    assert zones.reconcile_zone_sets(settle=timedelta(seconds=30)) == []


def test_a_truck_whose_zones_match_is_left_alone(site):
    (truck,) = autonomous_trucks(site, 1)
    online(truck)
    zone = mine.activate_zone(new_zone(site))
    active = PolicyZone.objects.filter(site=site, status=PolicyZone.Status.ACTIVE)
    assert zone in active
    TruckState.objects.filter(equipment=truck).update(
        reported_zone_ids=list(active.values_list("id", flat=True)), reported_at=timezone.now()
    )
    assert zones.reconcile_zone_sets(settle=timedelta(seconds=30)) == []
