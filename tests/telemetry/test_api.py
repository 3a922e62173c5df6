"""REST for vehicles (the MQTT fallback) and for operators (latest state, track, area, history)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from rest_framework.test import APIClient

from fleet.telemetry.models import Position, Rejection
from fleet.vehicles.credentials import issue_credentials
from tests.factories import LAT0, LON0, haul_truck, position_body, square, truck_message


@pytest.fixture
def truck(site):
    return haul_truck(site)


@pytest.fixture
def truck_client(truck):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Truck {issue_credentials(truck).api_token}")
    return client


def envelope(truck, **kwargs) -> dict:
    return orjson.loads(truck_message(truck.id, **kwargs))


def test_a_truck_posts_a_batch_and_the_bad_ones_are_refused_with_reasons(truck, truck_client):
    now = datetime.now(UTC)
    good = [envelope(truck, at=now - timedelta(seconds=i)) for i in range(3)]
    bad = {**envelope(truck), "Version": 7}

    response = truck_client.post(
        "/api/v1/vehicle/messages/", [good[0], bad, *good[1:]], format="json"
    )

    assert response.status_code == 207
    assert response.json()["stored"] == 3
    assert response.json()["rejected"] == [
        {"index": 1, "reason": "bad_version", "detail": "Version must be 1, got 7"}
    ]
    assert Position.objects.filter(equipment_id=truck.id).count() == 3
    assert Rejection.objects.get().channel == "rest"


def test_a_repeated_post_is_stored_once(truck, truck_client):
    batch = [envelope(truck)]
    truck_client.post("/api/v1/vehicle/messages/", batch, format="json")
    response = truck_client.post("/api/v1/vehicle/messages/", batch, format="json")

    assert response.status_code == 200
    assert response.json()["duplicates"] == 1
    assert Position.objects.filter(equipment_id=truck.id).count() == 1


def test_a_truck_token_cannot_post_for_another_truck(site, truck_client):
    other = haul_truck(site, "HT-002")
    response = truck_client.post("/api/v1/vehicle/messages/", [envelope(other)], format="json")

    assert response.json()["rejected"][0]["reason"] == "wrong_equipment"
    assert not Position.objects.filter(equipment_id=other.id).exists()


def test_garbage_bodies_get_a_clear_error(truck_client):
    not_json = truck_client.generic(
        "POST", "/api/v1/vehicle/messages/", b"{oops", content_type="application/json"
    )
    empty = truck_client.post("/api/v1/vehicle/messages/", [], format="json")

    assert not_json.status_code == 400 and "not JSON" in not_json.json()["detail"]
    assert empty.status_code == 400


def test_operators_cannot_post_as_a_truck_and_trucks_cannot_read_the_fleet(
    api_client, operator, truck_client
):
    api_client.force_authenticate(operator)
    assert api_client.post("/api/v1/vehicle/messages/", [], format="json").status_code == 403
    assert truck_client.get("/api/v1/trucks/").status_code in (401, 403)


def test_the_truck_list_carries_the_latest_state(api_client, viewer, truck, truck_client):
    truck_client.post(
        "/api/v1/vehicle/messages/", [envelope(truck, lon=LON0 + 0.001)], format="json"
    )
    api_client.force_authenticate(viewer)

    (row,) = api_client.get("/api/v1/trucks/").json()

    assert row["name"] == "HT-001"
    assert row["latest"]["position"]["lon"] == pytest.approx(LON0 + 0.001)
    assert row["latest"]["seenAgeS"] < 10


def test_an_outsider_reads_nothing(api_client, outsider):
    api_client.force_authenticate(outsider)
    assert api_client.get("/api/v1/trucks/").status_code == 403


def _drive(truck, truck_client, points: int, start: datetime) -> None:
    batch = [
        envelope(truck, at=start + timedelta(seconds=i), lon=LON0 + i * 0.0001, lat=LAT0)
        for i in range(points)
    ]
    assert (
        truck_client.post("/api/v1/vehicle/messages/", batch, format="json").json()["stored"]
        == points
    )


def test_a_track_is_a_linestring_simplified_in_metres(api_client, viewer, truck, truck_client):
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    _drive(truck, truck_client, 120, start)  # a straight line east: simplifies to 2 points
    api_client.force_authenticate(viewer)
    url = f"/api/v1/trucks/{truck.id}/track/"

    raw = api_client.get(url, {"from": start.isoformat(), "simplify": 0}).json()
    simple = api_client.get(url, {"from": start.isoformat(), "simplify": 1}).json()

    assert raw["geometry"]["type"] == "LineString"
    assert len(raw["geometry"]["coordinates"]) == 120
    assert len(simple["geometry"]["coordinates"]) == 2
    assert simple["properties"]["samples"] == 120


def test_a_track_range_is_checked(api_client, viewer, truck):
    api_client.force_authenticate(viewer)
    url = f"/api/v1/trucks/{truck.id}/track/"
    assert api_client.get(url, {"from": "yesterday"}).status_code == 400
    now = datetime.now(UTC)
    assert api_client.get(url, {"from": (now - timedelta(days=30)).isoformat()}).status_code == 400


def test_trucks_in_a_polygon_at_a_time(api_client, viewer, site, truck, truck_client):
    other = haul_truck(site, "HT-002")
    other_client = APIClient()
    other_client.credentials(HTTP_AUTHORIZATION=f"Truck {issue_credentials(other).api_token}")
    now = datetime.now(UTC)
    truck_client.post(
        "/api/v1/vehicle/messages/", [envelope(truck, at=now - timedelta(seconds=5))], format="json"
    )
    other_client.post(
        "/api/v1/vehicle/messages/",
        [envelope(other, at=now - timedelta(seconds=5), lon=LON0 + 0.003)],
        format="json",
    )
    area = json.dumps({"type": "Polygon", "coordinates": [square(LON0, LAT0, 0.001)]})
    api_client.force_authenticate(viewer)

    found = api_client.get("/api/v1/trucks/in-area/", {"area": area, "at": now.isoformat()}).json()
    before = api_client.get(
        "/api/v1/trucks/in-area/", {"area": area, "at": (now - timedelta(minutes=5)).isoformat()}
    ).json()

    assert [f["properties"]["equipmentId"] for f in found["features"]] == [str(truck.id)]
    assert before["features"] == []
    bad = api_client.get("/api/v1/trucks/in-area/", {"area": "not a polygon"})
    assert bad.status_code == 400


def test_history_is_paged_with_a_cursor(api_client, viewer, truck, truck_client):
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    _drive(truck, truck_client, 25, start)
    health = {
        "FuelLevel": 71.5,
        "TotalMachineHour": 1200.5,
        "TotalEngineHour": 1100.25,
        "Tire": [],
        "Additional": [],
    }
    truck_client.post(
        "/api/v1/vehicle/messages/",
        [orjson.loads(truck_message(truck.id, "BasicMachineHealthV2", health, sequence=4))],
        format="json",
    )
    api_client.force_authenticate(viewer)

    seen, url = (
        [],
        f"/api/v1/trucks/{truck.id}/positions/?from={start.isoformat().replace('+', '%2B')}&limit=10",
    )
    while url:
        page = api_client.get(url).json()
        seen += page["results"]
        url = page["next"]
    events = api_client.get(
        f"/api/v1/trucks/{truck.id}/events/", {"from": start.isoformat()}
    ).json()

    assert len(seen) == 25
    assert [p["sent_at"] for p in seen] == sorted(p["sent_at"] for p in seen)
    assert events["results"][0]["message"] == "BasicMachineHealthV2"
    assert events["results"][0]["body"]["FuelLevel"] == 71.5
    assert events["results"][0]["sequence"] == 4


def test_position_body_factory_is_valid():
    assert position_body()["Heading"] == 90


def test_events_of_one_millisecond_are_not_lost_at_a_page_boundary(
    api_client, viewer, truck, truck_client
):
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    payload = {"PayloadWeight": 88, "Accuracy": 1.5}
    batch = [
        orjson.loads(truck_message(truck.id, "HaulTruckPayloadV1", payload, at=at, sequence=s))
        for s in (1, 2, 3)
    ]
    assert (
        truck_client.post("/api/v1/vehicle/messages/", batch, format="json").json()["stored"] == 3
    )
    api_client.force_authenticate(viewer)

    seen, url = (
        [],
        f"/api/v1/trucks/{truck.id}/events/?from={(at - timedelta(seconds=1)).isoformat().replace('+', '%2B')}&limit=1",
    )
    while url:
        page = api_client.get(url).json()
        seen += page["results"]
        url = page["next"]

    assert [event["sequence"] for event in seen] == [1, 2, 3]
