"""The outbox: one lifecycle for every command, answers by CommandId or by the standard
ISO 23725 answer, expiry, the REST fallback, and delivery through the real broker."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as paho
import pytest
from django.db import transaction
from paho.mqtt.enums import CallbackAPIVersion
from rest_framework.test import APIClient

from fleet.control import services
from fleet.control.delivery import OutboxDelivery
from fleet.control.models import Command
from fleet.protocol import wire
from fleet.telemetry.ingest import IngestOptions, IngestRunner
from fleet.telemetry.intake import Inbound
from fleet.telemetry.services import EquipmentDirectory, ingest_batch
from fleet.vehicles.credentials import issue_credentials
from inference.health import problem
from tests.factories import haul_truck, truck_message

Status = Command.Status


@pytest.fixture
def truck(site):
    return haul_truck(site)


def answer(site, truck, name: str, body) -> list:
    payload = truck_message(truck.id, name, body)
    topic = f"iso23725/v1/{site.slug}/{truck.id}/up/{name}"
    result = ingest_batch(
        [Inbound("mqtt", payload, datetime.now(UTC), topic=topic)], EquipmentDirectory()
    )
    assert not result.refused, result.refused
    return result.admitted


def trail(command: Command) -> list[str]:
    return list(command.events.values_list("status", flat=True))


def test_a_command_the_truck_could_not_parse_is_refused_when_issued(truck):
    with pytest.raises(wire.WireError):
        services.issue_command(
            truck, "MachineAllStopRequestV1", {"ModeAllStop": "Sometimes"}, reason="x"
        )
    assert not Command.objects.exists()


def test_a_second_stop_supersedes_the_first(truck):
    first = services.stop_truck(truck, reason="obstacle on ramp")
    second = services.stop_truck(truck, reason="still blocked")
    first.refresh_from_db()

    assert first.status == Status.SUPERSEDED
    assert second.status == Status.ISSUED
    assert second.body["ModeAllStopId"] == first.body["ModeAllStopId"]  # the same stop in force


def test_an_acknowledgement_by_command_id_closes_the_command_with_an_audit_trail(site, truck):
    command = services.stop_truck(truck, reason="shovel swing")
    answer(
        site,
        truck,
        "CommandAcknowledgementV1",
        {"CommandId": str(command.command_id), "Status": "Accepted"},
    )
    command.refresh_from_db()

    assert command.status == Status.ACKNOWLEDGED
    assert trail(command) == ["issued", "acknowledged"]


def test_a_rejection_keeps_the_trucks_reason(site, truck):
    command = services.stop_truck(truck, reason="test")
    answer(
        site,
        truck,
        "CommandAcknowledgementV1",
        {
            "CommandId": str(command.command_id),
            "Status": "Rejected",
            "Reason": "already stopped by the on-board system",
        },
    )
    command.refresh_from_db()

    assert command.status == Status.REJECTED
    assert command.answer == "already stopped by the on-board system"


def test_a_resync_is_answered_by_the_standard_sync_response(site, truck):
    (sync,) = services.resync_truck(truck, reason="truck connected")
    zone_ids = [feature["id"] for feature in sync.body["Zones"]]
    answer(
        site,
        truck,
        "SyncActiveZonesResponseV1",
        {
            "RequestId": sync.body["RequestId"],
            "Status": "Activated",
            "Zones": [{"ZoneId": z} for z in zone_ids],
        },
    )
    sync.refresh_from_db()

    assert sync.status == Status.ACKNOWLEDGED


def test_a_resync_restores_a_stop_in_force(truck):
    stop = services.stop_truck(truck, reason="maintenance check")
    commands = services.resync_truck(truck, reason="truck connected")

    assert [c.message_name for c in commands] == [
        "SyncActiveZonesRequestV1",
        "MachineAllStopRequestV1",
    ]
    assert commands[1].body["ModeAllStopId"] == stop.body["ModeAllStopId"]


def test_the_all_stop_state_a_truck_reports_answers_the_stop(site, truck):
    command = services.stop_truck(truck, reason="test")
    answer(
        site,
        truck,
        "MachineAllStopV1",
        {"ModeAllStop": "On", "ModeAllStopId": command.body["ModeAllStopId"]},
    )
    command.refresh_from_db()
    assert command.status == Status.ACKNOWLEDGED


def test_an_unanswered_command_expires(truck):
    command = services.issue_command(
        truck,
        "MachineAllStopRequestV1",
        {"ModeAllStop": "Apply", "ModeAllStopId": str(uuid.uuid4())},
        reason="test",
        ttl=timedelta(seconds=-1),
    )
    assert services.expire_commands() == 1
    command.refresh_from_db()
    assert command.status == Status.EXPIRED
    assert trail(command) == ["issued", "expired"]


def test_resume_without_a_stop_does_nothing(truck):
    assert services.resume_truck(truck, reason="nothing to resume") is None


# --- REST -----------------------------------------------------------------------------------


def machine_client(truck) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Truck {issue_credentials(truck).api_token}")
    return client


def test_a_truck_fetches_its_commands_as_envelopes_and_acknowledges_over_rest(site, truck):
    command = services.stop_truck(truck, reason="blast clearance")
    client = machine_client(truck)

    fetched = client.get("/api/v1/vehicle/commands/").json()
    (item,) = fetched["commands"]
    envelope = wire.parse_fms_message(orjson.dumps(item["envelope"]))
    again = client.get("/api/v1/vehicle/commands/", {"after": fetched["cursor"]}).json()
    ack = client.post(
        f"/api/v1/vehicle/commands/{command.command_id}/ack/", {"status": "Accepted"}, format="json"
    )

    assert envelope.command_id == command.command_id
    assert envelope.equipment_id == truck.id
    assert again["commands"] == []
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
    assert [e["status"] for e in ack.json()["events"]] == ["issued", "sent", "acknowledged"]


def test_a_truck_cannot_see_or_answer_another_trucks_commands(site, truck):
    other = haul_truck(site, "HT-002")
    command = services.stop_truck(other, reason="test")
    client = machine_client(truck)

    assert client.get("/api/v1/vehicle/commands/").json()["commands"] == []
    response = client.post(
        f"/api/v1/vehicle/commands/{command.command_id}/ack/", {"status": "Accepted"}, format="json"
    )
    assert response.status_code == 404


def test_operators_stop_and_resume_with_a_reason_and_viewers_cannot(
    api_client, operator, viewer, truck
):
    api_client.force_authenticate(viewer)
    assert (
        api_client.post(
            f"/api/v1/trucks/{truck.id}/stop/", {"reason": "x"}, format="json"
        ).status_code
        == 403
    )

    api_client.force_authenticate(operator)
    assert api_client.post(f"/api/v1/trucks/{truck.id}/stop/", {}, format="json").status_code == 400
    stop = api_client.post(
        f"/api/v1/trucks/{truck.id}/stop/", {"reason": "person on road"}, format="json"
    )
    resume = api_client.post(
        f"/api/v1/trucks/{truck.id}/resume/", {"reason": "road clear"}, format="json"
    )

    assert stop.status_code == 201 and stop.json()["issued_by"] == operator.username
    assert resume.status_code == 201 and resume.json()["body"]["ModeAllStop"] == "Remove"
    listed = api_client.get("/api/v1/commands/", {"equipment": str(truck.id)}).json()
    assert [c["reason"] for c in listed] == ["road clear", "person on road"]


# --- through the broker -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_delivery_publishes_retries_and_closes_on_the_trucks_answer(mqtt_broker, site, settings):
    truck = haul_truck(site)
    secrets = issue_credentials(truck)
    settings.COMMAND_RETRY_S = 1

    received: queue.Queue = queue.Queue()
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=secrets.mqtt_username, protocol=paho.MQTTv5
    )
    client.username_pw_set(secrets.mqtt_username, secrets.mqtt_password)
    client.on_message = lambda c, u, message: received.put(message)
    client.connect("127.0.0.1", mqtt_broker.port)
    client.subscribe(f"iso23725/v1/{site.slug}/{truck.id}/down/#", qos=1)
    client.loop_start()

    delivery, ingest = (
        OutboxDelivery("outbox-test"),
        IngestRunner(IngestOptions(client_id="ingest-outbox-test", batch_delay_s=0.02)),
    )
    threads = [threading.Thread(target=r.run, daemon=True) for r in (delivery, ingest)]
    for thread in threads:
        thread.start()
    try:
        assert ingest.connected.wait(10) and delivery.connected.wait(10)
        command = services.stop_truck(truck, reason="person on the haul road")
        first = received.get(timeout=10)
        retried = received.get(timeout=10)  # no answer yet: delivered again
        envelope = wire.parse_fms_message(first.payload)
        assert first.topic.endswith("/down/MachineAllStopRequestV1")
        assert envelope.command_id == command.command_id
        assert wire.parse_fms_message(retried.payload).command_id == command.command_id

        ack = wire.encode(
            "CommandAcknowledgementV1",
            {"CommandId": str(command.command_id), "Status": "Accepted"},
            equipment_id=truck.id,
        )
        client.publish(
            f"iso23725/v1/{site.slug}/{truck.id}/up/CommandAcknowledgementV1", ack, qos=1
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            command.refresh_from_db()
            if command.status == Status.ACKNOWLEDGED:
                break
            time.sleep(0.1)
    finally:
        delivery.stop()
        ingest.stop()
        for thread in threads:
            thread.join(10)
        client.loop_stop()
    assert command.status == Status.ACKNOWLEDGED
    assert command.attempts >= 2
    assert trail(command) == ["issued", "sent", "acknowledged"]


def test_the_reported_state_follows_the_trucks_answers(site, truck):
    (sync,) = services.resync_truck(truck, reason="truck connected")
    zone_ids = sorted(feature["id"] for feature in sync.body["Zones"])
    answer(
        site,
        truck,
        "SyncActiveZonesResponseV1",
        {
            "RequestId": sync.body["RequestId"],
            "Status": "Activated",
            "Zones": [{"ZoneId": z} for z in zone_ids],
        },
    )
    answer(site, truck, "MachineAllStopV1", {"ModeAllStop": "Off"})

    state = truck.control
    state.refresh_from_db()
    assert sorted(map(str, state.reported_zone_ids)) == zone_ids
    assert state.reported_all_stop == "Off"


def test_a_truck_out_of_sync_is_resynchronised(site, truck):
    answer(site, truck, "OutOfSyncV1", {"Reason": "zone store lost after a reboot"})

    (sync,) = Command.objects.filter(equipment=truck, message_name="SyncActiveZonesRequestV1")
    assert sync.reason == "truck reported it is out of sync"


@pytest.mark.django_db(transaction=True)
def test_delivery_touches_its_health_file_while_its_rounds_succeed(
    mqtt_broker, site, monkeypatch, tmp_path
):
    health = tmp_path / "delivery-healthy"
    monkeypatch.setenv("HAULMIND_HEALTH_FILE", str(health))
    delivery = OutboxDelivery("outbox-health-test")
    thread = threading.Thread(target=delivery.run, daemon=True)
    thread.start()
    try:
        assert delivery.connected.wait(10)
        deadline = time.monotonic() + 10
        while not health.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert problem(health, 5) is None
    finally:
        delivery.stop()
        thread.join(10)
    assert not health.exists(), "a delivery process that stopped leaves no health file"


@pytest.mark.django_db(transaction=True)
def test_a_delivery_process_of_one_pits_broker_takes_only_that_pits_commands(site):
    from fleet.mine.mapfile import import_site_map
    from tests.factories import small_site_map

    other = import_site_map(small_site_map(slug="pit-b")).site
    here, there = haul_truck(site, "HT-001"), haul_truck(other, "HT-101")
    services.stop_truck(here, reason="blast")
    services.stop_truck(there, reason="blast")
    with transaction.atomic():
        assert {c.equipment_id for c in services.due_commands(sites=["pit-b"])} == {there.id}
        assert {c.equipment_id for c in services.due_commands()} == {here.id, there.id}
    assert services.heartbeat_sites(["pit-b"]) == ["pit-b"]
    assert services.heartbeat_sites() == sorted([site.slug, "pit-b"])
    assert OutboxDelivery("outbox-sites-test", sites=["pit-b"]).sites == ["pit-b"]
