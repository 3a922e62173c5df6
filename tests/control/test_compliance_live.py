"""Live compliance end to end: a truck (a real MQTT 5 client with its own credentials) publishes
positions through the project's broker; a real ingest replica admits them and control's rules
act before the store; the outbox's delivery publishes the stop to the truck's down topic."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as paho
import pytest
from django.contrib.gis.geos import Polygon
from paho.mqtt.enums import CallbackAPIVersion

from fleet.control import compliance
from fleet.control.delivery import OutboxDelivery
from fleet.control.models import Alert, Command
from fleet.mine import services as mine
from fleet.protocol import wire
from fleet.telemetry.ingest import IngestOptions, IngestRunner
from fleet.vehicles.credentials import issue_credentials
from tests.conftest import wait_until
from tests.factories import LAT0, LON0, haul_truck, square, truck_message


@dataclass
class Truck:
    equipment: object
    client: paho.Client
    received: queue.Queue
    topic_root: str

    def publish_position(self, *, speed: float, lon: float = LON0, lat: float = LAT0) -> None:
        payload = truck_message(
            self.equipment.id, at=datetime.now(UTC), speed=speed, lon=lon, lat=lat
        )
        self.client.publish(f"{self.topic_root}/up/MachinePositionV1", payload, qos=1)

    def answer(self, command_id) -> None:
        ack = wire.encode(
            "CommandAcknowledgementV1",
            {"CommandId": str(command_id), "Status": "Accepted"},
            equipment_id=self.equipment.id,
        )
        self.client.publish(f"{self.topic_root}/up/CommandAcknowledgementV1", ack, qos=1)

    def drive_until_told(self, name: str, *, speed: float, timeout: float = 15.0):
        """Publish a position every 100 ms (10 Hz) until a ``name`` message arrives."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.publish_position(speed=speed)
            try:
                message = self.received.get(timeout=0.1)
            except queue.Empty:
                continue
            if message.topic.endswith(f"/down/{name}"):
                return wire.parse_fms_message(message.payload)
        raise AssertionError(f"no {name} reached the truck in {timeout} s")


@pytest.fixture
def live(mqtt_broker, site, settings) -> Iterator[Truck]:
    yield from _running_truck(mqtt_broker, site, settings, with_outbox=True)


@pytest.fixture
def live_without_outbox(mqtt_broker, site, settings) -> Iterator[Truck]:
    """Only the ingest replica runs: no outbox delivery process."""
    yield from _running_truck(mqtt_broker, site, settings, with_outbox=False)


def _running_truck(mqtt_broker, site, settings, *, with_outbox: bool) -> Iterator[Truck]:
    settings.CONTROL_ZONE_INDEX_S = 0
    compliance.INDEX.invalidate()
    compliance.DEBOUNCE.clear()
    equipment = haul_truck(site)
    secrets = issue_credentials(equipment)
    received: queue.Queue = queue.Queue()
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=secrets.mqtt_username, protocol=paho.MQTTv5
    )
    client.username_pw_set(secrets.mqtt_username, secrets.mqtt_password)
    client.on_message = lambda c, u, message: received.put(message)
    client.connect("127.0.0.1", mqtt_broker.port)
    root = f"iso23725/v1/{site.slug}/{equipment.id}"
    client.subscribe(f"{root}/down/#", qos=1)
    client.loop_start()
    ingest = IngestRunner(IngestOptions(client_id="ingest-compliance-test", batch_delay_s=0.02))
    runners = [ingest, OutboxDelivery("outbox-compliance-test")] if with_outbox else [ingest]
    threads = [threading.Thread(target=r.run, daemon=True) for r in runners]
    for thread in threads:
        thread.start()
    try:
        assert all(runner.connected.wait(10) for runner in runners)
        yield Truck(equipment, client, received, root)
    finally:
        for runner in runners:
            runner.stop()
        for thread in threads:
            thread.join(10)
        client.loop_stop()
        client.disconnect()
        compliance.DEBOUNCE.clear()


def activate(site, name: str, policies: dict):
    zone = mine.create_zone(
        site=site,
        name=name,
        geometry=Polygon(square(LON0, LAT0, 0.0004), srid=4326),
        policies=policies,
    )
    return mine.activate_zone(zone)


def recorded_alert(truck: Truck, envelope) -> Alert:
    """The stop leaves as it is decided; its record (the alert and the command) follows."""
    wait_until(
        lambda: Alert.objects.filter(
            equipment=truck.equipment, command_ids__contains=[str(envelope.command_id)]
        ).exists(),
        5,
        "the stop recorded with its alert",
    )
    return Alert.objects.get(equipment=truck.equipment)


def stop_acknowledged(truck: Truck, envelope) -> Command:
    command = Command.objects.get(command_id=envelope.command_id)
    truck.answer(command.command_id)
    wait_until(
        lambda: Command.objects.get(pk=command.pk).status == Command.Status.ACKNOWLEDGED,
        10,
        "the stop acknowledged",
    )
    return command


@pytest.mark.django_db(transaction=True)
def test_a_truck_inside_an_activated_exclusion_zone_is_alerted_and_receives_a_stop(live, site):
    blast = activate(site, "Blast at bench 4", {"exclusion": {}})

    envelope = live.drive_until_told("MachineAllStopRequestV1", speed=8.0)

    body = envelope.bodies["MachineAllStopRequestV1"]
    assert body.mode == "Apply" and envelope.equipment_id == live.equipment.id
    alert = recorded_alert(live, envelope)
    assert alert.kind == "exclusion"
    assert alert.severity == "critical" and alert.inputs["zone_id"] == str(blast.id)
    command = stop_acknowledged(live, envelope)
    assert alert.command_ids == [command.command_id]
    assert f"alert {alert.pk}" in command.reason


@pytest.mark.django_db(transaction=True)
def test_a_speeding_truck_is_alerted_and_receives_a_stop_where_configured(live, site, settings):
    settings.CONTROL_STOP_ON_SPEEDING = True
    settings.CONTROL_SPEED_TOLERANCE_KMH = 3
    activate(site, "Crusher approach", {"speedLimit": {"type": "absolute", "value": 5.0}})

    for _ in range(10):  # 15 km/h under an 18 km/h limit: nothing to say
        live.publish_position(speed=15.0)
        time.sleep(0.05)
    envelope = live.drive_until_told("MachineAllStopRequestV1", speed=40.0)

    alert = recorded_alert(live, envelope)
    assert (alert.kind, alert.inputs["limit_kmh"]) == ("speeding", 18.0)
    assert alert.inputs["speed_kmh"] == 40.0
    stop_acknowledged(live, envelope)


@pytest.mark.django_db(transaction=True)
def test_the_ingest_replica_publishes_the_stop_itself_then_records_it(live_without_outbox, site):
    """No delivery process runs: the stop reaches the truck from the replica that decided it,
    then is recorded (alert, command Sent by the reflex) and acknowledged."""
    activate(site, "Blast at bench 5", {"exclusion": {}})

    envelope = live_without_outbox.drive_until_told("MachineAllStopRequestV1", speed=8.0)

    alert = recorded_alert(live_without_outbox, envelope)
    command = Command.objects.get(command_id=envelope.command_id)
    assert alert.command_ids == [command.command_id] and f"alert {alert.pk}" in command.reason
    assert command.events.get(status=Command.Status.SENT).actor == "reflex"
    assert command.attempts == 1
    stop_acknowledged(live_without_outbox, envelope)
