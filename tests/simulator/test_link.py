"""The simulated trucks on the project's real Mosquitto: own identities, own topics, valid
ISO 23725 messages, and obedience to the FMS's commands."""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import paho.mqtt.client as mqtt
import pytest
from django.conf import settings
from paho.mqtt.enums import CallbackAPIVersion

from fleet.protocol import topics, wire
from fleet.simulator.engine import Engine, TruckSpec
from fleet.simulator.link import LinkOptions, SimulatedFleet
from fleet.simulator.runner import ensure_credentials
from fleet.simulator.world import world_for_site
from fleet.vehicles.models import Equipment
from tests.factories import LAT0, LON0, zone_feature

ROOT = settings.MQTT_TOPIC_ROOT


class Observer:
    """The FMS side, with its real logins: records what trucks publish under the topic root (as
    ingest) and sends them commands (as the outbox)."""

    def __init__(self, broker, topic: str = f"{ROOT}/#") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Condition()
        self.client = self._client(broker, "ingest")
        self.sender = self._client(broker, "outbox")
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = self._record
        self.client.on_connect = lambda client, *args: client.subscribe(topic, qos=1)
        for client in (self.client, self.sender):
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
        assert subscribed.wait(10)

    @staticmethod
    def _client(broker, login: str) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"fms-{login}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set(*broker.credentials(login))
        return client

    def _record(self, client, userdata, message) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))
            self.lock.notify_all()

    def wait_for(
        self, predicate, fleet: SimulatedFleet | None = None, timeout: float = 5.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self.messages):
                    return
            if fleet is not None and not fleet.closing:
                fleet.pump(0.02)
            else:
                time.sleep(0.02)
        raise AssertionError("timed out waiting for the expected messages")

    def publish(self, topic: str, payload: bytes) -> None:
        self.sender.publish(topic, payload, qos=1).wait_for_publish(5)

    def up(self, equipment_id: str, name: str) -> list:
        prefix = f"{ROOT}/testpit/{equipment_id}/up/{name}"
        with self.lock:
            return [wire.parse_message(p) for t, p, _ in self.messages if t == prefix]

    def close(self) -> None:
        for client in (self.client, self.sender):
            client.disconnect()
            client.loop_stop()


@pytest.fixture
def trucks(site):
    return [
        Equipment.objects.create(
            site=site, kind="haul_truck", name=f"HT-{n:03d}", payload_capacity_t=90, autonomous=True
        )
        for n in (1, 2, 3)
    ]


@pytest.fixture
def identities(mqtt_broker, trucks, tmp_path):
    return ensure_credentials(trucks, tmp_path / "credentials.json")


@pytest.fixture
def observer(mqtt_broker):
    fms = Observer(mqtt_broker)
    yield fms
    fms.close()


@pytest.fixture
def fleet(mqtt_broker, site, identities):
    engine = Engine(
        world_for_site(site), [TruckSpec(i.equipment_id, i.name) for i in identities], hz=5, seed=3
    )
    # Four simulated seconds per wall second keep the suite short; the behaviour under test
    # is counted in simulated time.
    options = LinkOptions(
        host="127.0.0.1", port=mqtt_broker.port, site=site.slug, topic_root=ROOT, speedup=4.0
    )
    simulated = SimulatedFleet(engine, identities, options)
    simulated.connect()
    yield simulated
    if not simulated.closing:
        simulated.shutdown()


def command(name: str, body: dict, equipment_id: str | None, command_id: str) -> bytes:
    return wire.encode(name, body, equipment_id=equipment_id, command_id=command_id)


def test_every_truck_publishes_valid_messages_on_its_own_topics_only(observer, fleet, identities):
    fleet.run(3.0)
    fleet.shutdown()
    ids = {i.equipment_id for i in identities}
    observer.wait_for(lambda ms: sum(b'"Offline"' in p for _, p, _ in ms) == len(ids))
    sequences: dict[tuple[str, str], list[int]] = {}
    for topic, payload, _ in observer.messages:
        levels = topic.split("/")
        eid = levels[3]
        assert levels[:3] == [*ROOT.split("/"), "testpit"] and eid in ids, topic
        if levels[4] == "connection":
            state = orjson.loads(payload)
            assert state["EquipmentId"] == eid and state["ConnectionState"] in {"Online", "Offline"}
            continue
        assert levels[4] == "up" and len(levels) == 6, topic
        envelope = wire.parse_message(payload)
        assert str(envelope.equipment_id) == eid and envelope.name == levels[5]
        sequences.setdefault((eid, levels[5]), []).append(envelope.sequence)
    for eid in ids:
        for name in (
            "MachinePositionV1",
            "BasicMachineHealthV2",
            "HaulTruckPayloadV1",
            "HaulTruckProductionStateV2",
        ):
            assert (eid, name) in sequences, (eid, name)
        assert len(sequences[(eid, "MachinePositionV1")]) >= 14  # 5 Hz for 3 s
    for numbers in sequences.values():  # HeaderId: a gapless per-topic counter
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    health = observer.up(identities[0].equipment_id, "BasicMachineHealthV2")[-1].bodies[
        "BasicMachineHealthV2"
    ]
    assert [t.position for t in health.tires] == ["1.1", "1.2", "2.1", "2.2", "3.1", "3.2"]
    assert {r.sensor_id for r in health.additional} >= {
        "EngineCoolantTemp",
        "BrakeTempRear",
        "StrutPressureFL",
    }


def test_the_connection_state_is_retained_online_then_offline(mqtt_broker, fleet, identities):
    eid = identities[0].equipment_id
    topic = topics.connection_topic("testpit", eid)
    online = Observer(mqtt_broker, topic=topic)
    online.wait_for(lambda ms: any(retained for _, _, retained in ms))
    assert orjson.loads(online.messages[0][1])["ConnectionState"] == "Online"
    online.close()
    fleet.shutdown()
    later = Observer(mqtt_broker, topic=topic)
    later.wait_for(lambda ms: bool(ms))
    assert orjson.loads(later.messages[0][1])["ConnectionState"] == "Offline"
    later.close()


def test_a_truck_credential_cannot_publish_on_another_trucks_topic(mqtt_broker, identities):
    mine, other = identities[0], identities[1]
    outcome: dict = {}
    done = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=mine.equipment_id, protocol=mqtt.MQTTv5
    )
    client.username_pw_set(mine.equipment_id, mine.password)

    def published(client, userdata, mid, reason, properties):
        outcome["reason"] = reason
        done.set()

    client.on_publish = published
    client.connect("127.0.0.1", mqtt_broker.port)
    client.loop_start()
    try:
        client.publish(f"{ROOT}/testpit/{other.equipment_id}/up/MachinePositionV1", b"{}", qos=1)
        assert done.wait(5)
        assert outcome["reason"].getName() == "Not authorized"
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_targeted_all_stop_stops_that_truck_and_is_acknowledged(observer, fleet, identities):
    fleet.run(3.0)  # the first truck has left the park
    eid = identities[0].equipment_id
    assert fleet.engine.v[0] > 0.5
    command_id, stop_id = str(uuid.uuid4()), str(uuid.uuid4())
    body = {"ModeAllStop": "Apply", "ModeAllStopId": stop_id}
    observer.publish(
        f"{ROOT}/testpit/{eid}/down/MachineAllStopRequestV1",
        command("MachineAllStopRequestV1", body, eid, command_id),
    )
    fleet.run(3.0)

    acks = [
        e.bodies["CommandAcknowledgementV1"] for e in observer.up(eid, "CommandAcknowledgementV1")
    ]
    assert [(str(a.command_id), a.status) for a in acks] == [
        (command_id, "Accepted"),
        (command_id, "Completed"),
    ]
    state = observer.up(eid, "HaulTruckProductionStateV2")[-1].bodies["HaulTruckProductionStateV2"]
    assert state.production_state == "Stopped" and state.autonomy_mode == "Autonomous"
    assert observer.up(eid, "MachinePositionV1")[-1].position.speed < 0.5
    all_stop = observer.up(eid, "MachineAllStopV1")[-1].bodies["MachineAllStopV1"]
    assert all_stop.mode == "On" and str(all_stop.all_stop_id) == stop_id
    assert not fleet.engine.stopped[1:].any()  # the others carry on

    body = {"ModeAllStop": "Remove", "ModeAllStopId": stop_id}
    observer.publish(
        f"{ROOT}/testpit/{eid}/down/MachineAllStopRequestV1",
        command("MachineAllStopRequestV1", body, eid, str(uuid.uuid4())),
    )
    fleet.run(2.0)
    state = observer.up(eid, "HaulTruckProductionStateV2")[-1].bodies["HaulTruckProductionStateV2"]
    assert state.production_state == "Driving" and fleet.engine.v[0] > 0.5


def test_a_fleet_wide_all_stop_stops_every_truck(observer, fleet, identities):
    fleet.run(1.0)
    command_id = str(uuid.uuid4())
    body = {"ModeAllStop": "Apply", "ModeAllStopId": str(uuid.uuid4())}
    observer.publish(
        f"{ROOT}/testpit/fleet/down/MachineAllStopRequestV1",
        command("MachineAllStopRequestV1", body, None, command_id),
    )
    fleet.run(3.0)
    assert fleet.engine.stopped.all() and (fleet.engine.v == 0).all()
    for identity in identities:
        acks = [
            e.bodies["CommandAcknowledgementV1"]
            for e in observer.up(identity.equipment_id, "CommandAcknowledgementV1")
        ]
        assert (command_id, "Accepted") in [(str(a.command_id), a.status) for a in acks]
        last = observer.up(identity.equipment_id, "HaulTruckProductionStateV2")[-1]
        assert last.bodies["HaulTruckProductionStateV2"].production_state == "Stopped"


def test_zone_permission_and_assignment_requests_are_answered(observer, fleet, identities, site):
    eid = identities[1].equipment_id
    down = f"{ROOT}/testpit/{eid}/down/"
    zone = zone_feature("Closed", {"exclusion": {}}, cx=LON0, cy=LAT0 + 0.002)
    zone_id = zone["id"]
    wire_zone = {k: zone[k] for k in ("type", "id", "geometry", "properties")}
    observer.publish(
        down + "ActivateZoneRequestV1",
        command("ActivateZoneRequestV1", {"Zone": wire_zone}, eid, str(uuid.uuid4())),
    )
    event_id = str(uuid.uuid4())
    update = {"EventId": event_id, "ZoneId": zone_id, "WayId": 11, "Status": "Granted"}
    observer.publish(
        down + "TrafficPermissionUpdateV1",
        command("TrafficPermissionUpdateV1", update, eid, str(uuid.uuid4())),
    )
    assignment = [{"AssignmentId": str(uuid.uuid4()), "Task": "Load", "DestinationId": 11}]
    observer.publish(
        down + "HaulTruckAssignmentRequestV2",
        command("HaulTruckAssignmentRequestV2", assignment, eid, str(uuid.uuid4())),
    )
    observer.publish(
        down + "DeactivateZoneRequestV1",
        command("DeactivateZoneRequestV1", {"ZoneId": zone_id}, eid, str(uuid.uuid4())),
    )
    observer.wait_for(
        lambda ms: any(t.endswith("DeactivateZoneResponseV1") for t, _, _ in ms), fleet
    )

    activated = observer.up(eid, "ActivateZoneResponseV1")[0].bodies["ActivateZoneResponseV1"]
    assert str(activated.zone_id) == zone_id and activated.status == "Activated"
    ack = observer.up(eid, "TrafficPermissionAcknowledgementV1")[0].bodies[
        "TrafficPermissionAcknowledgementV1"
    ]
    assert str(ack.event_id) == event_id
    response = observer.up(eid, "HaulTruckAssignmentResponseV1")[0].bodies[
        "HaulTruckAssignmentResponseV1"
    ]
    assert response.responses[0].response == "Accepted"
    assert (
        observer.up(eid, "DeactivateZoneResponseV1")[0].bodies["DeactivateZoneResponseV1"].status
        == "Accepted"
    )
    assert len(observer.up(eid, "CommandAcknowledgementV1")) == 4
    assert zone_id not in fleet.engine.zones
