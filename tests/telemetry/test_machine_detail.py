"""What the dashboard's machine detail reads: a truck's recent speed and health readings
(``/trucks/<id>/series/``), the same readings live (event ``health``), and its newest prediction
of each head (``/trucks/<id>/predictions/``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from fleet.accounts.roles import VIEWER
from fleet.learning.models import Prediction
from fleet.vehicles.credentials import issue_credentials
from tests.conftest import _user_with_role
from tests.factories import LAT0, LON0, haul_truck, truck_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def truck(site):
    return haul_truck(site)


@pytest.fixture
def truck_client(truck):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Truck {issue_credentials(truck).api_token}")
    return client


def health_body(coolant: float | None, pressure: int | None) -> dict:
    return {
        "FuelLevel": 70.0,
        "TotalMachineHour": 1200.0,
        "TotalEngineHour": 1100.0,
        "Tire": [
            {"TirePosition": "1.1", "TirePressure": pressure, "TireTemperature": 55},
            {"TirePosition": "2.1", "TirePressure": 700, "TireTemperature": 56},
        ],
        "Additional": [
            {"SensorId": "EngineCoolantTemp", "Value": coolant, "Unit": "°C"},
            {"SensorId": "BrakeTempFront", "Value": 180.5, "Unit": "°C"},
            {"SensorId": "BrakeTempRear", "Value": 170.0, "Unit": "°C"},
            {"SensorId": "StrutPressureFL", "Value": 9000, "Unit": "kPa"},
        ],
    }


def post(truck_client, messages: list[bytes]) -> None:
    response = truck_client.post(
        "/api/v1/vehicle/messages/", [orjson.loads(m) for m in messages], format="json"
    )
    assert response.status_code == 200, response.json()


def drive(truck, truck_client, start: datetime, seconds: int) -> None:
    """A position every half second at 10 + second km/h, and a health reading every second
    whose coolant climbs a degree a second."""
    messages = []
    for i in range(seconds * 2):
        at = start + timedelta(milliseconds=500 * i)
        messages.append(truck_message(truck.id, at=at, lon=LON0, lat=LAT0, speed=10.0 + i // 2))
    for s in range(seconds):
        body = health_body(80.0 + s, 690 + s)
        at = start + timedelta(seconds=s, milliseconds=250)
        messages.append(truck_message(truck.id, "BasicMachineHealthV2", body, at=at))
    post(truck_client, messages)


def test_a_trucks_series_is_its_mean_speed_and_newest_health_reading_per_step(
    api_client, viewer, truck, truck_client
):
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    drive(truck, truck_client, start, 6)
    api_client.force_authenticate(viewer)

    answer = api_client.get(
        f"/api/v1/trucks/{truck.id}/series/", {"from": start.isoformat(), "step": 2}
    )

    assert answer.status_code == 200
    series = answer.json()
    assert series["step"] == 2
    # Steps of 2 s: positions at 10, 10, 11, 11 km/h -> 10.5; then 12.5; then 14.5.
    assert [p["speedKmh"] for p in series["speed"]] == [10.5, 12.5, 14.5]
    assert datetime.fromisoformat(series["speed"][0]["at"]) == start
    # The newest reading of each step: seconds 1, 3 and 5.
    assert [h["coolantC"] for h in series["health"]] == [81.0, 83.0, 85.0]
    assert {k: v for k, v in series["health"][0].items() if k != "at"} == {
        "coolantC": 81.0,
        "brakeFrontC": 180.5,
        "brakeRearC": 170.0,
        "tyresKpa": {"1.1": 691, "2.1": 700},
    }
    assert datetime.fromisoformat(series["health"][0]["at"]) == start + timedelta(
        seconds=1, milliseconds=250
    )


def test_an_unavailable_reading_stays_null(api_client, viewer, truck, truck_client):
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    post(
        truck_client,
        [truck_message(truck.id, "BasicMachineHealthV2", health_body(None, None), at=start)],
    )
    api_client.force_authenticate(viewer)

    health = api_client.get(
        f"/api/v1/trucks/{truck.id}/series/", {"from": start.isoformat()}
    ).json()["health"]

    assert health[0]["coolantC"] is None and health[0]["tyresKpa"]["1.1"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({}, "from"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-01-01T10:00:00Z", "to": "2026-01-01T09:00:00Z"}, "to"),
        ({"from": "2026-01-01T08:00:00Z", "to": "2026-01-01T10:00:00Z"}, "from"),
        ({"from": "2026-01-01T10:00:00Z", "step": 0}, "step"),
        ({"from": "2026-01-01T10:00:00Z", "step": 61}, "step"),
        ({"from": "2026-01-01T10:00:00Z", "to": "2026-01-01T11:00:00Z", "step": "x"}, "step"),
    ],
)
def test_a_bad_series_request_is_refused_naming_the_field(api_client, viewer, truck, query, field):
    api_client.force_authenticate(viewer)
    answer = api_client.get(f"/api/v1/trucks/{truck.id}/series/", query)
    assert answer.status_code == 400
    assert field in answer.json(), answer.json()


def test_a_truck_of_a_site_the_user_is_not_crew_of_is_not_found(api_client, truck):
    stranger = _user_with_role("nina-north", VIEWER, crew=False)
    api_client.force_authenticate(stranger)
    since = {"from": (timezone.now() - timedelta(minutes=1)).isoformat()}
    assert api_client.get(f"/api/v1/trucks/{truck.id}/series/", since).status_code == 404
    assert api_client.get(f"/api/v1/trucks/{truck.id}/predictions/").status_code == 404


def test_a_user_without_a_role_is_refused(api_client, outsider, truck):
    api_client.force_authenticate(outsider)
    since = {"from": (timezone.now() - timedelta(minutes=1)).isoformat()}
    assert api_client.get(f"/api/v1/trucks/{truck.id}/series/", since).status_code == 403
    assert api_client.get(f"/api/v1/trucks/{truck.id}/predictions/").status_code == 403


def test_health_readings_go_live_with_each_trucks_newest(truck, truck_client, monkeypatch):
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        "fleet.telemetry.services.broadcast_now",
        lambda site, event, data: sent.append((event, data)),
    )
    start = datetime.now(UTC) - timedelta(seconds=3)
    post(
        truck_client,
        [
            truck_message(truck.id, "BasicMachineHealthV2", health_body(90.0, 700), at=start),
            truck_message(
                truck.id,
                "BasicMachineHealthV2",
                health_body(91.5, 702),
                at=start + timedelta(seconds=1),
            ),
        ],
    )

    health = [data for event, data in sent if event == "health"]
    assert len(health) == 1
    [reading] = health[0]["trucks"]
    assert reading["equipmentId"] == str(truck.id)
    assert (reading["coolantC"], reading["tyresKpa"]["1.1"]) == (91.5, 702)


def predict(truck, head: str, age_s: float, outputs: dict) -> Prediction:
    return Prediction.objects.create(
        equipment=truck,
        model_name=head,
        model_id=f"{head}@2",
        window_end=timezone.now() - timedelta(seconds=age_s),
        outputs=outputs,
        queue_ms=1.5,
        compute_ms=4.0,
    )


def test_a_trucks_newest_prediction_of_each_head(api_client, viewer, truck, site):
    predict(truck, "fault", 30, {"probabilities": {"normal": 0.2}, "top_channel": "old"})
    newest_fault = predict(
        truck, "fault", 5, {"probabilities": {"normal": 0.9}, "top_channel": "coolant_temp_c"}
    )
    predict(truck, "eta", 5, {"p10_s": 50.0, "p50_s": 60.0, "p90_s": 80.0})
    predict(haul_truck(site, "HT-002"), "eta", 1, {"p10_s": 1.0, "p50_s": 2.0, "p90_s": 3.0})
    api_client.force_authenticate(viewer)

    answer = api_client.get(f"/api/v1/trucks/{truck.id}/predictions/")

    assert answer.status_code == 200
    by_head = {p["model"]: p for p in answer.json()}
    assert set(by_head) == {"fault", "eta"}
    assert by_head["fault"]["outputs"]["top_channel"] == "coolant_temp_c"
    assert by_head["fault"]["windowEnd"] == newest_fault.window_end.isoformat()
    assert by_head["eta"]["outputs"]["p50_s"] == 60.0
    assert by_head["eta"]["modelId"] == "eta@2"
