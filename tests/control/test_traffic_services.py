"""Traffic permissions on the database: requests arriving through ingest are answered through
the outbox (Pending, Granted, Rejected, later Revoked or Released), acknowledgements and releases
are recorded, the sweep expires unused grants, every change is audited, and supervisors decide by
hand over REST."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from fleet.audit import AuditError
from fleet.control import tasks, traffic_services
from fleet.control.models import Command, TrafficPermission, TrafficPermissionEvent
from fleet.mine.mapfile import import_site_map
from fleet.mine.models import PolicyZone
from fleet.telemetry.intake import Inbound
from fleet.telemetry.services import EquipmentDirectory, ingest_batch
from tests.factories import (
    LAT0,
    LON0,
    D,
    haul_truck,
    position_body,
    small_site_map,
    truck_message,
    zone_feature,
)

UPDATE = "TrafficPermissionUpdateV1"
ZONE_ID = "5b0f6a1e-0000-4000-8000-00000000a001"


@pytest.fixture
def one_lane_site(db):
    zone = zone_feature(
        "Ramp, one lane",
        {"trafficPermission": {}},
        cx=LON0 + D / 4,
        cy=LAT0 + D / 4,
        zone_id=ZONE_ID,
    )
    return import_site_map(small_site_map(slug="onelane", zones=[zone])).site


@pytest.fixture
def convoy_site(db):
    """The ramp's section admitting two trucks at once, in one direction."""
    zone = zone_feature(
        "Ramp, convoys",
        {"trafficPermission": {"capacity": 2}},
        cx=LON0 + D / 4,
        cy=LAT0 + D / 4,
        zone_id=ZONE_ID,
    )
    return import_site_map(small_site_map(slug="convoy", zones=[zone])).site


# Just outside the section, at its lower and its upper end along the ramp.
LOWER_END = {"lon": LON0 + D / 4 - 0.0007, "lat": LAT0 + D / 4 - 0.0007}
UPPER_END = {"lon": LON0 + D / 4 + 0.0007, "lat": LAT0 + D / 4 + 0.0007}


def at_point(site, truck, where: dict) -> None:
    send(site, truck, "MachinePositionV1", position_body(lon=where["lon"], lat=where["lat"]))


@pytest.fixture
def zone(one_lane_site) -> PolicyZone:
    return PolicyZone.objects.get(pk=ZONE_ID)


def send(site, truck, name: str, body: dict, at: datetime | None = None) -> None:
    payload = truck_message(truck.id, name, body, at=at)
    topic = f"iso23725/v1/{site.slug}/{truck.id}/up/{name}"
    result = ingest_batch(
        [Inbound("mqtt", payload, datetime.now(UTC), topic=topic)], EquipmentDirectory()
    )
    assert not result.refused, result.refused


def ask(site, truck, way: int | None = 10, zone_id: str = ZONE_ID) -> None:
    send(site, truck, "TrafficPermissionRequestV1", {"ZoneId": zone_id, "WayId": way})


def release(site, truck, zone_id: str = ZONE_ID) -> None:
    send(site, truck, "TrafficPermissionReleasedV1", {"ZoneId": zone_id})


def updates(truck) -> list[tuple[str, str]]:
    """The TrafficPermissionUpdateV1 statuses sent to ``truck``, oldest first, with reasons."""
    return [
        (c.body["Status"], c.body.get("Reason", ""))
        for c in Command.objects.filter(equipment=truck, message_name=UPDATE).order_by("serial")
    ]


def permission_of(truck) -> TrafficPermission:
    return TrafficPermission.objects.filter(equipment=truck).latest("requested_at")


def trail(permission) -> list[tuple[str, str]]:
    return [(e.status, e.actor) for e in permission.events.order_by("at", "id")]


@pytest.mark.django_db
def test_a_request_is_granted_acknowledged_and_released_all_through_the_outbox(one_lane_site, zone):
    truck = haul_truck(one_lane_site, "HT-001")
    ask(one_lane_site, truck)
    permission = permission_of(truck)
    assert permission.status == TrafficPermission.Status.GRANTED
    assert permission.decided_by == "rule:fifo"
    command = Command.objects.get(equipment=truck, message_name=UPDATE)
    assert command.body["Status"] == "Granted" and command.body["ZoneId"] == ZONE_ID
    assert command.body["EventId"] == str(permission.event_id)
    # The truck acknowledges the update: the command closes, the permission records it.
    send(
        one_lane_site,
        truck,
        "TrafficPermissionAcknowledgementV1",
        {"EventId": command.body["EventId"]},
    )
    command.refresh_from_db()
    permission.refresh_from_db()
    assert command.status == Command.Status.ACKNOWLEDGED
    assert permission.acknowledged_event_id == permission.event_id
    assert permission.acknowledged_at is not None
    release(one_lane_site, truck)
    permission.refresh_from_db()
    assert permission.status == TrafficPermission.Status.RELEASED
    assert [s for s, _ in updates(truck)] == ["Granted", "Released"]
    assert trail(permission) == [
        ("pending", "truck"),
        ("granted", "rule:fifo"),
        ("released", "truck"),
    ]


@pytest.mark.django_db
def test_two_trucks_facing_each_other_get_the_section_one_after_the_other(one_lane_site, zone):
    up, down = haul_truck(one_lane_site, "HT-001"), haul_truck(one_lane_site, "HT-002")
    ask(one_lane_site, up, way=10)  # from the rim road's end
    ask(one_lane_site, down, way=None)  # from the other end
    assert permission_of(up).status == "granted"
    waiting = permission_of(down)
    assert waiting.status == "pending" and "occupied by HT-001" in waiting.reason
    assert updates(down) == [("Pending", waiting.reason)]
    # Asking again while it waits is answered again (the pending update is replaced).
    ask(one_lane_site, down, way=None)
    assert [s for s, _ in updates(down)] == ["Pending", "Pending"]
    assert Command.objects.filter(equipment=down, status=Command.Status.SUPERSEDED).count() == 1
    release(one_lane_site, up)
    assert permission_of(down).status == "granted"
    assert [s for s, _ in updates(down)][-1] == "Granted"


@pytest.mark.django_db
def test_several_trucks_share_a_section_only_in_one_direction(convoy_site):
    """The same WayId at both ends (the zone lies inside its way): the direction is the
    entrance nearest the truck when it asks."""
    first, behind, facing = (haul_truck(convoy_site, f"HT-00{i}") for i in (1, 2, 3))
    at_point(convoy_site, first, LOWER_END)
    at_point(convoy_site, facing, UPPER_END)
    at_point(convoy_site, behind, LOWER_END)
    ask(convoy_site, first, way=11)
    ask(convoy_site, facing, way=11)
    ask(convoy_site, behind, way=11)
    assert permission_of(first).gate != permission_of(facing).gate
    assert permission_of(first).gate == permission_of(behind).gate
    assert permission_of(first).status == "granted"
    assert permission_of(behind).status == "granted"  # a convoy, behind the first
    waiting = permission_of(facing)
    assert waiting.status == "pending" and "other direction" in waiting.reason
    release(convoy_site, first)
    assert permission_of(facing).status == "pending"
    release(convoy_site, behind)
    assert permission_of(facing).status == "granted"


@pytest.mark.django_db
def test_a_truck_whose_direction_is_not_known_goes_alone(convoy_site):
    first, unknown = haul_truck(convoy_site, "HT-001"), haul_truck(convoy_site, "HT-002")
    at_point(convoy_site, first, LOWER_END)
    ask(convoy_site, first, way=11)
    ask(convoy_site, unknown, way=11)  # no position: which end is not known
    assert permission_of(unknown).gate is None
    assert permission_of(unknown).status == "pending"


@pytest.mark.django_db
def test_a_waiting_truck_and_the_holder_are_kept_apart_by_rule(one_lane_site, zone):
    holder, waiter, elsewhere = (haul_truck(one_lane_site, f"HT-00{i}") for i in (1, 2, 3))
    ask(one_lane_site, holder)
    ask(one_lane_site, waiter, way=None)
    assert traffic_services.yielding_pairs(one_lane_site) == {frozenset((holder.id, waiter.id))}
    release(one_lane_site, holder)  # the waiter is granted: nobody waits any more
    assert traffic_services.yielding_pairs(one_lane_site) == set()
    assert elsewhere.id not in {
        t for pair in traffic_services.yielding_pairs(one_lane_site) for t in pair
    }


@pytest.mark.django_db
def test_at_the_same_point_the_loaded_truck_goes_first(one_lane_site, zone):
    holder, empty, loaded = (haul_truck(one_lane_site, f"HT-00{i}") for i in (1, 2, 3))
    ask(one_lane_site, holder)
    ask(one_lane_site, empty)
    send(one_lane_site, loaded, "HaulTruckPayloadV1", {"PayloadWeight": 88})
    ask(one_lane_site, loaded)
    assert permission_of(loaded).loaded and not permission_of(empty).loaded
    release(one_lane_site, holder)
    assert permission_of(loaded).status == "granted"
    assert permission_of(loaded).decided_by == "rule:loaded-first"
    assert permission_of(empty).status == "pending"


@pytest.mark.django_db
def test_an_unused_grant_expires_revoked_and_the_next_truck_gets_the_section(one_lane_site, zone):
    idle, next_ = haul_truck(one_lane_site, "HT-001"), haul_truck(one_lane_site, "HT-002")
    ask(one_lane_site, idle)
    ask(one_lane_site, next_)
    later = timezone.now() + timedelta(seconds=61)
    # The waiting truck keeps asking (a request not renewed would be dropped).
    TrafficPermission.objects.filter(equipment=next_).update(last_asked_at=later)
    traffic_services.arbitrate(one_lane_site, now=later)
    expired = permission_of(idle)
    assert expired.status == "expired" and "not used within 60 s" in expired.reason
    assert [s for s, _ in updates(idle)] == ["Granted", "Revoked"]
    assert permission_of(next_).status == "granted"


@pytest.mark.django_db
def test_a_grant_in_use_does_not_expire(one_lane_site, zone):
    truck = haul_truck(one_lane_site, "HT-001")
    ask(one_lane_site, truck, way=None)  # asked from inside: in use at once
    traffic_services.arbitrate(one_lane_site, now=timezone.now() + timedelta(seconds=600))
    assert permission_of(truck).status == "granted"


@pytest.mark.django_db
def test_a_zone_that_is_no_one_lane_section_is_refused(one_lane_site, zone):
    truck = haul_truck(one_lane_site, "HT-001")
    other = PolicyZone.objects.exclude(pk=ZONE_ID).first()
    assert other is None or "trafficPermission" not in other.policies
    ask(one_lane_site, truck, zone_id=str(uuid.uuid4()))
    assert [s for s, _ in updates(truck)] == ["Rejected"]
    assert not TrafficPermission.objects.filter(equipment=truck).exists()


@pytest.mark.django_db
def test_the_sweep_task_decides_every_site_with_open_permissions(one_lane_site, zone):
    a, b = haul_truck(one_lane_site, "HT-001"), haul_truck(one_lane_site, "HT-002")
    ask(one_lane_site, a)
    ask(one_lane_site, b)
    # A's grant is taken back by hand behind the arbiter's back: the sweep gives B the section.
    TrafficPermission.objects.filter(equipment=a).update(status="released")
    assert tasks.sweep_traffic() == 1
    assert permission_of(b).status == "granted"


@pytest.mark.django_db
def test_the_trail_is_append_only(one_lane_site, zone):
    truck = haul_truck(one_lane_site, "HT-001")
    ask(one_lane_site, truck)
    event = TrafficPermissionEvent.objects.first()
    with pytest.raises(AuditError):
        event.delete()
    with pytest.raises(AuditError):
        TrafficPermissionEvent.objects.update(reason="edited")


# --- REST -----------------------------------------------------------------------------------------


def url(permission=None, action: str = "") -> str:
    if permission is None:
        return "/api/v1/traffic-permissions/"
    return f"/api/v1/traffic-permissions/{permission.pk}/{action}/"


@pytest.mark.django_db
def test_viewers_list_permissions_with_their_trail(api_client, viewer, one_lane_site, zone):
    truck = haul_truck(one_lane_site, "HT-001")
    ask(one_lane_site, truck)
    api_client.force_authenticate(viewer)
    answer = api_client.get(url(), {"open": "true", "site": str(one_lane_site.pk)})
    assert answer.status_code == 200, answer.content
    (row,) = answer.json()
    assert row["truck"] == "HT-001" and row["status"] == "granted"
    assert [e["status"] for e in row["events"]] == ["pending", "granted"]
    assert api_client.get(url(), {"status": "nonsense"}).status_code == 400
    assert "limit" in api_client.get(url(), {"limit": 0}).json()


@pytest.mark.django_db
def test_only_supervisors_decide_by_hand(api_client, viewer, operator, one_lane_site, zone):
    truck = haul_truck(one_lane_site, "HT-001")
    ask(one_lane_site, truck)
    permission = permission_of(truck)
    for user in (viewer, operator):
        api_client.force_authenticate(user)
        answer = api_client.post(url(permission, "revoke"), {"reason": "x"}, format="json")
        assert answer.status_code == 403
    api_client.force_authenticate(None)
    assert api_client.post(url(permission, "revoke"), {"reason": "x"}).status_code in (401, 403)


@pytest.mark.django_db
def test_a_supervisor_revokes_and_grants_with_a_reason(api_client, supervisor, one_lane_site, zone):
    first, second = haul_truck(one_lane_site, "HT-001"), haul_truck(one_lane_site, "HT-002")
    ask(one_lane_site, first)
    ask(one_lane_site, second)
    api_client.force_authenticate(supervisor)
    waiting = permission_of(second)
    # No reason: 400 naming the field.
    answer = api_client.post(url(waiting, "grant"), {}, format="json")
    assert answer.status_code == 400 and "reason" in answer.json()
    # Granting beside the grant in force would conflict: refused, whoever asks.
    answer = api_client.post(url(waiting, "grant"), {"reason": "hurry"}, format="json")
    assert answer.status_code == 409 and "occupied by HT-001" in answer.json()["detail"]
    granted = permission_of(first)
    answer = api_client.post(url(granted, "revoke"), {"reason": "rock fall ahead"}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "revoked"
    assert updates(first)[-1] == ("Revoked", "rock fall ahead")
    assert trail(permission_of(first))[-1] == ("revoked", supervisor.username)
    # The section went to the next in line at once.
    assert permission_of(second).status == "granted"
    assert api_client.post(url(granted, "revoke"), {"reason": "again"}).status_code == 409
    assert api_client.post(url(granted, "grant"), {"reason": "x"}).status_code == 409


@pytest.mark.django_db
def test_a_revoked_grant_passes_the_section_on_and_the_truck_queues_again(
    api_client, supervisor, one_lane_site, zone
):
    a, b = haul_truck(one_lane_site, "HT-001"), haul_truck(one_lane_site, "HT-002")
    ask(one_lane_site, a)
    ask(one_lane_site, b)
    release(one_lane_site, a)  # b is granted by the arbiter
    ask(one_lane_site, a)  # a waits behind b
    api_client.force_authenticate(supervisor)
    answer = api_client.post(url(permission_of(b), "revoke"), {"reason": "let a first"})
    assert answer.status_code == 200
    # The section went to a (next in line); b asks again and a supervisor cannot grant it now.
    assert permission_of(a).status == "granted"
    ask(one_lane_site, b)
    release(one_lane_site, a)
    assert permission_of(b).status == "granted"
    assert permission_of(b).decided_by == "rule:fifo"
