"""Each machine's status history (fleet.telemetry.status): changes only, from what the truck
reports, its link and the equipment register; and what a shift made of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleet.telemetry import status
from fleet.telemetry.ingest import record_connection_state
from fleet.telemetry.intake import Inbound
from fleet.telemetry.models import StatusChange
from fleet.telemetry.services import EquipmentDirectory, ingest_batch
from fleet.vehicles.models import Equipment
from tests.factories import haul_truck, truck_message

T0 = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)


def report(truck, state: str, at: datetime) -> Inbound:
    body = {
        "AssignmentId": None,
        "WayId": 1,
        "AutonomyMode": "Autonomous",
        "ProductionState": state,
    }
    return Inbound(
        "mqtt",
        truck_message(truck.id, "HaulTruckProductionStateV2", body, at=at),
        at + timedelta(milliseconds=50),
        topic=f"iso23725/v1/{truck.site.slug}/{truck.id}/up/HaulTruckProductionStateV2",
    )


def history(truck) -> list[tuple[str, str]]:
    return list(
        StatusChange.objects.filter(equipment=truck).order_by("at").values_list("status", "source")
    )


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def test_a_reported_production_state_is_written_once_per_change(site, now):
    truck = haul_truck(site)
    states = ["Driving", "Driving", "Loading", "Hauling", "Hauling", "Dumping"]
    ingest_batch(
        [report(truck, s, now + timedelta(seconds=i)) for i, s in enumerate(states)],
        EquipmentDirectory(),
    )
    # a redelivery and a late message: not a change of the live sequence
    ingest_batch(
        [report(truck, "Dumping", now + timedelta(seconds=5)), report(truck, "Queued", now)],
        EquipmentDirectory(),
    )

    assert history(truck) == [(s, "truck") for s in ("Driving", "Loading", "Hauling", "Dumping")]


def test_the_link_and_the_register_change_the_status(site, now):
    truck = haul_truck(site)
    ingest_batch([report(truck, "Hauling", now - timedelta(seconds=5))], EquipmentDirectory())
    record_connection_state(
        Inbound(
            "mqtt",
            b'{"ConnectionState": "ConnectionBroken"}',
            now,
            topic=f"iso23725/v1/{site.slug}/{truck.id}/connection",
        )
    )
    truck.status = Equipment.Status.MAINTENANCE
    truck.save()
    truck.name = "HT-001b"  # not a status change
    truck.save()
    truck.status = Equipment.Status.ACTIVE
    truck.save()

    assert history(truck) == [
        ("Hauling", "truck"),
        ("Offline", "link"),
        ("Maintenance", "register"),
        ("InService", "register"),
    ]


def test_a_shifts_time_use_counts_each_category_from_the_history(site):
    truck, idle = haul_truck(site, "HT-001"), haul_truck(site, "HT-002")
    status.record_changes(
        [
            (
                truck.id,
                T0 - timedelta(hours=1),
                "Parked",
                "truck",
            ),  # before: the shift starts parked
            (truck.id, T0 + timedelta(minutes=10), "Driving", "truck"),
            (truck.id, T0 + timedelta(minutes=40), "Offline", "link"),
            (truck.id, T0 + timedelta(minutes=50), "Hauling", "truck"),
            (truck.id, T0 + timedelta(minutes=80), "Maintenance", "register"),
        ]
    )

    uses = status.time_use([truck.id, idle.id], T0, T0 + timedelta(minutes=120))

    assert uses[truck.id].seconds == {
        "standby": 600.0,
        "operating": 1800.0 + 1800.0,
        "offline": 600.0,
        "down": 2400.0,
    }
    assert uses[truck.id].availability == pytest.approx(1 - 2400 / 7200)
    assert uses[truck.id].utilisation == pytest.approx(3600 / 4800)
    # nothing recorded: unknown all shift
    assert uses[idle.id].seconds["offline"] == 7200.0 and uses[idle.id].utilisation == 0.0


def test_the_availability_api_sums_the_fleet_and_keeps_to_the_users_sites(site, viewer, api_client):
    truck = haul_truck(site)
    status.record_changes(
        [
            (truck.id, T0, "Hauling", "truck"),
            (truck.id, T0 + timedelta(minutes=30), "Maintenance", "register"),
        ]
    )
    api_client.force_authenticate(viewer)
    url = f"/api/v1/sites/{site.id}/availability/"

    answer = api_client.get(
        url, {"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()}
    )

    assert answer.status_code == 200
    body = answer.json()
    assert body["fleet"]["availability"] == 0.5 and body["fleet"]["utilisation"] == 1.0
    assert [m["name"] for m in body["machines"]] == ["HT-001"]
    backwards = api_client.get(
        url, {"from": T0.isoformat(), "to": (T0 - timedelta(hours=1)).isoformat()}
    )
    assert backwards.status_code == 400 and "to" in backwards.json()
    viewer.sites.clear()
    assert api_client.get(url, {"from": T0.isoformat()}).status_code == 404


def test_the_availability_api_gives_the_fleets_series_in_buckets(site, viewer, api_client):
    one, two = haul_truck(site, "HT-001"), haul_truck(site, "HT-002")
    status.record_changes(
        [
            (one.id, T0 - timedelta(hours=1), "Hauling", "truck"),
            (two.id, T0 - timedelta(hours=1), "Parked", "truck"),
            (one.id, T0 + timedelta(minutes=45), "Maintenance", "register"),
            (two.id, T0 + timedelta(minutes=90), "Driving", "truck"),
        ]
    )
    api_client.force_authenticate(viewer)
    url = f"/api/v1/sites/{site.id}/availability/"
    end = T0 + timedelta(hours=2)

    body = api_client.get(
        url, {"from": T0.isoformat(), "to": end.isoformat(), "bucket": 3600}
    ).json()

    first, second = body["series"]
    assert first["at"] == T0.isoformat().replace("+00:00", "Z")
    # First hour: one hauls 45 min then is down 15; two parked all hour.
    assert first["seconds"] == {
        "operating": 2700.0,
        "standby": 3600.0,
        "offline": 0.0,
        "down": 900.0,
    }
    assert first["availability"] == pytest.approx(1 - 900 / 7200, abs=1e-4)
    # Second hour: one down; two parked 30 min, driving 30 min.
    assert second["seconds"]["down"] == 3600.0 and second["seconds"]["operating"] == 1800.0
    assert second["availability"] == 0.5 and second["utilisation"] == 0.5
    assert "series" not in api_client.get(url, {"from": T0.isoformat()}).json()
    too_many = api_client.get(
        url, {"from": T0.isoformat(), "to": (T0 + timedelta(days=30)).isoformat(), "bucket": 60}
    )
    assert too_many.status_code == 400 and "bucket" in too_many.json()
    assert api_client.get(url, {"from": T0.isoformat(), "bucket": 5}).json().keys() == {"bucket"}
