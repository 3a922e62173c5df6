"""Replay: a chunk of a site's history as stored (positions through the real store path), with
the alerts and commands of that time; long ranges from the minute roll-ups; bounded chunks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleet.control import alerts, services
from fleet.telemetry import rollups, status
from fleet.telemetry.intake import Inbound
from fleet.telemetry.services import EquipmentDirectory, ingest_batch
from tests.factories import LAT0, LON0, haul_truck, truck_message


def store_positions(truck, start: datetime, seconds: int) -> None:
    inbound = [
        Inbound(
            "mqtt",
            truck_message(truck.id, at=start + timedelta(seconds=s), lon=LON0 + s * 1e-5, lat=LAT0),
            start + timedelta(seconds=s, milliseconds=20),
            topic=f"iso23725/v1/{truck.site.slug}/{truck.id}/up/MachinePositionV1",
        )
        for s in range(seconds)
    ]
    ingest_batch(inbound, EquipmentDirectory())


def test_a_chunk_plays_back_positions_alerts_and_commands_in_order(site, viewer, api_client):
    truck, other = haul_truck(site, "HT-001"), haul_truck(site, "HT-002")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    store_positions(truck, start, 10)
    store_positions(other, start + timedelta(seconds=5), 3)
    alert, _ = alerts.raise_alert(
        truck,
        alerts.Finding(kind="exclusion", severity="critical", source="rule", reason="in blast"),
    )
    services.stop_truck(truck, reason=f"alert {alert.pk}")
    api_client.force_authenticate(viewer)

    body = api_client.get(
        f"/api/v1/sites/{site.id}/replay/",
        {"from": start.isoformat(), "to": (start + timedelta(minutes=2)).isoformat()},
    ).json()

    names = [t["name"] for t in body["trucks"]]
    assert names == ["HT-001", "HT-002"]
    positions = body["positions"]
    assert len(positions) == 13
    assert [p[0] for p in positions] == sorted(p[0] for p in positions)  # time order
    assert positions[0][0] == int(start.timestamp() * 1000) and positions[0][1] == 0
    assert [a["action"] for a in body["alerts"]] == ["opened"]
    assert [(c["message"], c["status"]) for c in body["commands"]] == [
        ("MachineAllStopRequestV1", "issued")
    ]


def test_a_long_range_plays_back_from_the_minute_rollups(site, viewer, api_client):
    truck = haul_truck(site)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
    store_positions(truck, start, 90)  # two minutes' worth of positions, 1 Hz
    rollups.roll_up_positions(start, start + timedelta(minutes=2))
    api_client.force_authenticate(viewer)

    body = api_client.get(
        f"/api/v1/sites/{site.id}/replay/",
        {
            "from": start.isoformat(),
            "to": (start + timedelta(hours=1)).isoformat(),
            "resolution": "minute",
        },
    ).json()

    assert [(p[0], p[1], p[4]) for p in body["positions"]] == [
        (int(start.timestamp() * 1000), 0, None),
        (int((start + timedelta(minutes=1)).timestamp() * 1000), 0, None),
    ]


def test_chunks_are_bounded_by_resolution(site, viewer, api_client):
    api_client.force_authenticate(viewer)
    url = f"/api/v1/sites/{site.id}/replay/"
    start = datetime(2026, 12, 5, 6, tzinfo=UTC)

    too_long = api_client.get(
        url, {"from": start.isoformat(), "to": (start + timedelta(minutes=3)).isoformat()}
    )
    hours = api_client.get(
        url,
        {
            "from": start.isoformat(),
            "to": (start + timedelta(hours=3)).isoformat(),
            "resolution": "minute",
        },
    )

    assert too_long.status_code == 400 and "to" in too_long.json()
    assert hours.status_code == 200


def test_a_chunk_plays_back_each_trucks_status_from_its_start(site, viewer, api_client):
    truck, other, silent = (haul_truck(site, f"HT-00{i}") for i in (1, 2, 3))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    status.record_changes(
        [
            (truck.id, start - timedelta(minutes=10), "Hauling", "truck"),
            (truck.id, start + timedelta(seconds=40), "Dumping", "truck"),
            (other.id, start + timedelta(seconds=20), "Offline", "link"),
            (other.id, start + timedelta(minutes=3), "Queued", "truck"),  # after the chunk
        ]
    )
    api_client.force_authenticate(viewer)

    body = api_client.get(
        f"/api/v1/sites/{site.id}/replay/",
        {"from": start.isoformat(), "to": (start + timedelta(minutes=2)).isoformat()},
    ).json()

    ms = int(start.timestamp() * 1000)
    # HT-001's status when the chunk starts, then each change inside; HT-003 has no history.
    assert body["states"] == [
        [ms, 0, "Hauling"],
        [ms + 20_000, 1, "Offline"],
        [ms + 40_000, 0, "Dumping"],
    ]
    assert silent.name == body["trucks"][2]["name"]
