"""A truck's login is the truck, and nothing else: against the project's real Mosquitto, a truck
credential cannot take over a service's session or another truck's, and a machine whose
credential is revoked (or that is retired) is disconnected at once and cannot come back."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from django.test import Client

from fleet.control import services as control
from fleet.control.delivery import OutboxDelivery
from fleet.protocol import topics
from fleet.telemetry.ingest import IngestOptions, IngestRunner
from fleet.telemetry.models import Position
from fleet.vehicles.credentials import issue_credentials, revoke_credentials
from fleet.vehicles.models import Equipment
from fleet.vehicles.services import retire_equipment
from tests.conftest import wait_until
from tests.factories import haul_truck, truck_message
from tests.mqtt import Session

REFUSED = "Not authorized"


@pytest.fixture
def services_running(mqtt_broker):
    """An ingest replica and the outbox's delivery, each on its own service login."""
    ingest = IngestRunner(IngestOptions(replica="a", batch_delay_s=0.02))
    outbox = OutboxDelivery("haulmind-outbox-control-room")
    threads = [threading.Thread(target=r.run, daemon=True) for r in (ingest, outbox)]
    for thread in threads:
        thread.start()
    assert ingest.connected.wait(10) and outbox.connected.wait(10)
    yield ingest, outbox
    ingest.stop()
    outbox.stop()
    for thread in threads:
        thread.join(10)


def test_a_truck_login_cannot_take_over_a_service_session(mqtt_broker, site, services_running):
    ingest, outbox = services_running
    truck = haul_truck(site)
    issued = issue_credentials(truck)
    for service_id in (ingest.options.client_id, outbox.client_id):
        intruder = Session(
            mqtt_broker.port, issued.mqtt_username, issued.mqtt_password, client_id=service_id
        )
        assert intruder.reason.getName() == REFUSED, service_id
        intruder.close()
    # Both services kept their sessions, and still do their work: the truck's own position is
    # stored, and a command reaches the truck.
    assert ingest.connected.is_set() and outbox.connected.is_set()
    own = Session(mqtt_broker.port, issued.mqtt_username, issued.mqtt_password)
    try:
        own.subscribe(topics.down_filter(site.slug, str(truck.id)))
        own.publish_payload(
            topics.up_topic(site.slug, str(truck.id), "MachinePositionV1"),
            truck_message(truck.id, at=datetime.now(UTC)),
        )
        wait_until(lambda: Position.objects.filter(equipment_id=truck.id).exists(), what="stored")
        control.stop_truck(truck, reason="a person on the haul road")
        wait_until(lambda: own.received, what="the stop command at the truck")
    finally:
        own.close()
    assert own.received[0].endswith("/down/MachineAllStopRequestV1")


def test_a_truck_login_cannot_take_over_another_trucks_session(mqtt_broker, site):
    mine, other = haul_truck(site, "HT-001"), haul_truck(site, "HT-002")
    my_login, other_login = issue_credentials(mine), issue_credentials(other)
    victim = Session(mqtt_broker.port, other_login.mqtt_username, other_login.mqtt_password)
    try:
        assert not victim.reason.is_failure
        intruder = Session(
            mqtt_broker.port,
            my_login.mqtt_username,
            my_login.mqtt_password,
            client_id=str(other.id),
        )
        assert intruder.reason.getName() == REFUSED
        intruder.close()
        time.sleep(0.3)  # a take-over would have disconnected the victim by now
        assert not victim.disconnected.is_set()
        up = topics.up_topic(site.slug, str(other.id), "MachinePositionV1")
        assert not victim.publish(up).is_failure
    finally:
        victim.close()


@pytest.mark.parametrize("how", ["revoked", "retired"])
def test_a_machine_that_loses_its_login_is_disconnected_and_cannot_reconnect(
    mqtt_broker, site, how
):
    truck = haul_truck(site)
    issued = issue_credentials(truck)
    session = Session(mqtt_broker.port, issued.mqtt_username, issued.mqtt_password)
    assert not session.reason.is_failure
    if how == "revoked":
        revoke_credentials(truck)
    else:
        retire_equipment(truck)
        assert Equipment.objects.get(pk=truck.pk).status == Equipment.Status.RETIRED
    try:
        assert session.disconnected.wait(5), "the broker kept the session open"
    finally:
        session.close()
    again = Session(mqtt_broker.port, issued.mqtt_username, issued.mqtt_password)
    assert again.reason.is_failure
    again.close()


def test_reconciliation_removes_a_login_whose_change_never_reached_the_broker(
    mqtt_broker, site, settings
):
    truck = haul_truck(site)
    issued = issue_credentials(truck)
    settings.MQTT_MANAGE_LOGINS = False  # the revocation's message is lost
    revoke_credentials(truck)
    session = Session(mqtt_broker.port, issued.mqtt_username, issued.mqtt_password)
    assert not session.reason.is_failure  # the broker still has the login
    settings.MQTT_MANAGE_LOGINS = True
    report = mqtt_broker.sync()
    try:
        assert report.removed == [str(truck.id)]
        assert session.disconnected.wait(5)
    finally:
        session.close()
    assert mqtt_broker.sync().changed is False  # nothing left to do


def test_the_broker_starts_with_the_logins_of_the_credential_table(mqtt_broker, site):
    """A broker that was down while a credential was issued loads it when it starts."""
    truck = haul_truck(site)
    mqtt_broker.stop()
    issued = issue_credentials(truck)  # the broker cannot be told now
    mqtt_broker.start()
    session = Session(mqtt_broker.port, issued.mqtt_username, issued.mqtt_password)
    assert not session.reason.is_failure
    session.close()
    refused = Session(
        mqtt_broker.port, issued.mqtt_username, issued.mqtt_password, client_id="someone-else"
    )
    assert refused.reason.getName() == REFUSED
    refused.close()


def test_retiring_a_machine_in_its_admin_form_closes_its_session(mqtt_broker, site, supervisor):
    truck = haul_truck(site)
    issued = issue_credentials(truck)
    session = Session(mqtt_broker.port, issued.mqtt_username, issued.mqtt_password)
    supervisor.is_staff = True
    supervisor.save()
    client = Client()
    client.force_login(supervisor)
    url = f"/admin/vehicles/equipment/{truck.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data = {name: "" if value is None else value for name, value in data.items()}
    data |= {"status": Equipment.Status.RETIRED, "_save": "Save"}
    data |= {f"credentials-{k}": v for k, v in {"TOTAL_FORMS": 0, "INITIAL_FORMS": 0}.items()}
    try:
        response = client.post(url, data)
        assert response.status_code == 302, response.content[:2000]
        assert session.disconnected.wait(5), "the broker kept the session open"
    finally:
        session.close()
    assert Equipment.objects.get(pk=truck.pk).status == Equipment.Status.RETIRED
    assert not truck.credentials.filter(revoked_at__isnull=True).exists()
