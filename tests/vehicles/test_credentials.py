"""Per-machine credentials: hashed at rest, tied to the machine's own topics at the broker and to
its own record at the REST API."""

from __future__ import annotations

import time

import pytest

from fleet.protocol import topics
from fleet.vehicles.credentials import authenticate_api_token, issue_credentials, revoke_credentials
from fleet.vehicles.models import Credential, Equipment
from fleet.vehicles.passwords import check_mosquitto_hash
from tests.mqtt import Session


def a_truck(site, name: str) -> Equipment:
    return Equipment.objects.create(
        site=site, kind="haul_truck", name=name, payload_capacity_t=90, autonomous=True
    )


@pytest.fixture
def truck(site):
    return a_truck(site, "HT-001")


@pytest.fixture
def other_truck(site):
    return a_truck(site, "HT-002")


def test_only_hashes_are_stored(truck):
    issued = issue_credentials(truck)
    stored = " ".join(Credential.objects.values_list("secret_hash", flat=True))
    assert issued.mqtt_password not in stored and issued.api_token.split("_", 2)[2] not in stored
    mqtt_hash = Credential.objects.get(equipment=truck, kind="mqtt").secret_hash
    assert mqtt_hash.startswith("$7$101$") and check_mosquitto_hash(issued.mqtt_password, mqtt_hash)


def test_rotating_revokes_the_old_token(truck):
    first = issue_credentials(truck)
    second = issue_credentials(truck)
    assert authenticate_api_token(first.api_token) is None
    assert authenticate_api_token(second.api_token) == truck
    revoke_credentials(truck)
    assert authenticate_api_token(second.api_token) is None


def test_a_manned_machine_gets_no_credentials(site):
    dozer = Equipment.objects.create(site=site, kind="ancillary", name="DZ-1")
    with pytest.raises(ValueError, match="not autonomous"):
        issue_credentials(dozer)


@pytest.mark.parametrize(
    "token", ["", "hm_", "hm_x_y", "Bearer abc", "hm_" + "a" * 16 + "_" + "b" * 43]
)
def test_malformed_or_unknown_tokens_are_refused(db, token):
    assert authenticate_api_token(token) is None


def test_a_truck_token_reads_its_own_record_only(api_client, truck, other_truck):
    issued = issue_credentials(truck)
    api_client.credentials(HTTP_AUTHORIZATION=f"Truck {issued.api_token}")
    me = api_client.get("/api/v1/vehicle/me/")
    assert me.status_code == 200 and me.json()["id"] == str(truck.id)
    # A machine token carries no human permissions: the operator API is closed to it.
    assert api_client.get("/api/v1/equipment/").status_code in {401, 403}
    assert api_client.get(f"/api/v1/sites/{truck.site_id}/map/").status_code in {401, 403}


def test_a_wrong_truck_token_is_refused_with_a_reason(api_client, truck):
    api_client.credentials(HTTP_AUTHORIZATION="Truck hm_0000000000000000_wrong")
    response = api_client.get("/api/v1/vehicle/me/")
    assert (
        response.status_code == 401 and "unknown, revoked or malformed" in response.json()["detail"]
    )


# --- at the broker ------------------------------------------------------------------------------


def test_the_broker_ties_each_truck_to_its_own_topics(mqtt_broker, truck, other_truck):
    mine = issue_credentials(truck)
    issue_credentials(other_truck)
    site = truck.site.slug
    session = Session(mqtt_broker.port, mine.mqtt_username, mine.mqtt_password)
    fms = Session(mqtt_broker.port, *mqtt_broker.credentials("outbox"))
    try:
        assert not session.reason.is_failure and not fms.reason.is_failure
        own_up = f"{topics.up_filter(site, str(truck.id))[:-1]}MachinePositionV1"
        other_up = f"{topics.up_filter(site, str(other_truck.id))[:-1]}MachinePositionV1"
        assert not session.publish(own_up).is_failure  # Success or "No matching subscribers"
        assert session.publish(other_up).getName() == "Not authorized"

        own_down = topics.down_filter(site, str(truck.id))
        other_down = topics.down_filter(site, str(other_truck.id))
        assert session.subscribe(other_down).getName() == "Not authorized"
        for topic_filter in (own_down, topics.fleet_down_filter(site)):
            assert not session.subscribe(topic_filter).is_failure
        for topic_filter in (other_down, own_down, topics.fleet_down_filter(site)):
            fms.publish(topic_filter[:-1] + "MachineAllStopRequestV1")
        deadline = time.monotonic() + 5
        while len(session.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # a stray delivery of the other truck's command would arrive by now
        assert sorted(session.received) == sorted(
            [
                own_down[:-1] + "MachineAllStopRequestV1",
                topics.fleet_down_filter(site)[:-1] + "MachineAllStopRequestV1",
            ]
        )
    finally:
        session.close()
        fms.close()


def test_a_wrong_or_revoked_password_cannot_connect(mqtt_broker, truck):
    issued = issue_credentials(truck)
    wrong = Session(mqtt_broker.port, issued.mqtt_username, "not-the-password")
    assert wrong.reason.is_failure
    wrong.close()
    revoke_credentials(truck)
    revoked = Session(mqtt_broker.port, issued.mqtt_username, issued.mqtt_password)
    assert revoked.reason.is_failure
    revoked.close()
