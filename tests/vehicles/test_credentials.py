"""Per-machine credentials: hashed at rest, tied to the machine's own topics at the broker and to
its own record at the REST API."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet.vehicles import topics
from fleet.vehicles.credentials import (
    authenticate_api_token,
    check_mosquitto_hash,
    issue_credentials,
    revoke_credentials,
)
from fleet.vehicles.models import Credential, Equipment


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
    assert issued.mqtt_password not in stored and issued.api_token.split("_")[2] not in stored
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


class Session:
    """A paho MQTT 5 client that records the broker's answers."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(username, password)
        self.connected = threading.Event()
        self.reason = None
        self.acks: dict[int, object] = {}
        self.acked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda client, userdata, message: self.received.append(
            message.topic
        )
        self.received: list[str] = []
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connected.wait(10)

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        self.reason = reason
        self.connected.set()

    def _record(self, mid: int, outcome: object) -> None:
        with self.acked:
            self.acks[mid] = outcome
            self.acked.notify_all()

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        self._record(mid, reason)

    def _on_subscribe(self, client, userdata, mid, reasons, properties) -> None:
        self._record(mid, reasons[0])

    def wait(self, mid: int):
        with self.acked:
            assert self.acked.wait_for(lambda: mid in self.acks, timeout=10)
            return self.acks[mid]

    def publish(self, topic: str):
        return self.wait(
            self.client.publish(topic, b"{}", qos=1, properties=Properties(PacketTypes.PUBLISH)).mid
        )

    def subscribe(self, topic: str):
        return self.wait(self.client.subscribe(topic, qos=1)[1])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_broker_ties_each_truck_to_its_own_topics(mqtt_broker, truck, other_truck):
    mine = issue_credentials(truck)
    issue_credentials(other_truck)
    mqtt_broker.sync()
    site = truck.site.slug
    session = Session(mqtt_broker.port, mine.mqtt_username, mine.mqtt_password)
    fms = Session(mqtt_broker.port, *mqtt_broker.service_credentials)
    try:
        assert not session.reason.is_failure and not fms.reason.is_failure
        own_up = f"{topics.up_filter(site, str(truck.id))[:-1]}MachinePositionV1"
        other_up = f"{topics.up_filter(site, str(other_truck.id))[:-1]}MachinePositionV1"
        assert not session.publish(own_up).is_failure  # Success or "No matching subscribers"
        assert session.publish(other_up).getName() == "Not authorized"

        own_down = topics.down_filter(site, str(truck.id))
        other_down = topics.down_filter(site, str(other_truck.id))
        for topic_filter in (own_down, other_down, topics.fleet_down_filter(site)):
            session.subscribe(topic_filter)
        # Mosquitto grants any subscription but delivers only what the ACL lets the user read.
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
    mqtt_broker.sync()
    wrong = Session(mqtt_broker.port, issued.mqtt_username, "not-the-password")
    assert wrong.reason.is_failure
    wrong.close()
    revoke_credentials(truck)
    mqtt_broker.sync()
    revoked = Session(mqtt_broker.port, issued.mqtt_username, issued.mqtt_password)
    assert revoked.reason.is_failure
    revoked.close()
