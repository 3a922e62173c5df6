"""The site-wide all-stop: Apply by operators, Remove by supervisors only, sent once on the
site's fleet topic, each machine's acknowledgement tracked and shown, the desired state kept for
machines that connect later — through the real broker with simulated trucks, and on the
database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError

from fleet.audit import AuditError
from fleet.control import allstop, compliance, services
from fleet.control.models import AllStop, Command, FleetMessage, TruckState
from fleet.telemetry.intake import Inbound
from fleet.telemetry.services import EquipmentDirectory, ingest_batch
from tests.conftest import wait_until
from tests.control.conftest import autonomous_trucks
from tests.factories import truck_message


def url(site, *rest: str) -> str:
    return "/".join([f"/api/v1/sites/{site.id}/all-stop", *rest, ""])


@pytest.mark.django_db(transaction=True)
def test_a_viewer_is_refused_and_an_operators_all_stop_is_acknowledged_by_every_truck(
    live_mine, site, api_client, viewer, operator, supervisor
):
    api_client.force_authenticate(viewer)
    assert api_client.post(url(site), {"reason": "x"}, format="json").status_code == 403
    assert not AllStop.objects.exists()

    api_client.force_authenticate(operator)
    applied = api_client.post(url(site), {"reason": "person on the haul road"}, format="json")
    assert applied.status_code == 201, applied.content
    assert applied.json()["in_force"] and applied.json()["last"]["actor"] == operator.username

    names = sorted(truck.name for truck in live_mine.trucks)
    wait_until(
        lambda: api_client.get(url(site)).json()["acknowledged"] == names,
        30,
        "every truck's acknowledgement",
    )
    assert FleetMessage.objects.get().published_at is not None  # one publish for the fleet
    assert all(live_mine.fleet.engine.stopped[: len(names)])
    wait_until(
        lambda: (
            set(
                TruckState.objects.filter(equipment__in=live_mine.trucks).values_list(
                    "reported_all_stop", flat=True
                )
            )
            == {"On"}
        ),
        10,
        "every truck reporting On",
    )

    # An operator cannot lift it; a supervisor can, and the trucks move again.
    assert api_client.post(url(site, "remove"), {"reason": "x"}, format="json").status_code == 403
    api_client.force_authenticate(supervisor)
    removed = api_client.post(url(site, "remove"), {"reason": "road clear"}, format="json")
    assert removed.status_code == 200 and not removed.json()["in_force"]
    wait_until(
        lambda: api_client.get(url(site)).json()["acknowledged"] == names,
        30,
        "every truck's acknowledgement of the removal",
    )
    assert not any(live_mine.fleet.engine.stopped[: len(names)])
    assert list(AllStop.objects.order_by("at").values_list("mode", "actor")) == [
        ("Apply", operator.username),
        ("Remove", supervisor.username),
    ]


# --- on the database ----------------------------------------------------------------------------


def ingest(site, truck, name: str, body) -> None:
    payload = truck_message(truck.id, name, body)
    topic = f"iso23725/v1/{site.slug}/{truck.id}/up/{name}"
    result = ingest_batch(
        [Inbound("mqtt", payload, datetime.now(UTC), topic=topic)], EquipmentDirectory()
    )
    assert not result.refused, result.refused


def test_apply_sends_one_fleet_message_and_tracks_every_machine(site, operator):
    trucks = autonomous_trucks(site, 4)
    event = allstop.apply_all_stop(site, reason="blast", actor=operator)

    message = FleetMessage.objects.get()
    assert message.body == {"ModeAllStop": "Apply", "ModeAllStopId": str(event.stop_id)}
    commands = Command.objects.filter(message_name="MachineAllStopRequestV1")
    assert commands.count() == 4 and event.machines == 4
    assert set(TruckState.objects.values_list("all_stop_id", flat=True)) == {event.stop_id}
    state = allstop.all_stop_status(site)
    assert state.waiting == sorted(t.name for t in trucks) and not state.complete


def test_applying_twice_keeps_the_one_in_force(site, operator):
    autonomous_trucks(site, 2)
    first = allstop.apply_all_stop(site, reason="blast", actor=operator)
    again = allstop.apply_all_stop(site, reason="still", actor=operator)
    assert again == first and AllStop.objects.count() == 1


def test_a_rule_applies_by_name_but_never_removes(site, supervisor):
    autonomous_trucks(site, 1)
    event = allstop.apply_all_stop(site, reason="collision risk", rule="emergency-stop")
    assert event.actor == "rule:emergency-stop"
    with pytest.raises(ValueError):
        allstop.apply_all_stop(site, reason="anonymous")
    allstop.remove_all_stop(site, reason="clear", actor=supervisor)
    with pytest.raises(ValidationError):
        allstop.remove_all_stop(site, reason="again", actor=supervisor)


def test_a_truck_connecting_during_an_all_stop_receives_it(site, operator):
    event = allstop.apply_all_stop(site, reason="blast", actor=operator)
    (late,) = autonomous_trucks(site, 1)  # registered after the all-stop
    TruckState.objects.create(equipment=late, all_stop_id=event.stop_id)
    commands = services.resync_truck(late, reason="truck connected")
    stop = next(c for c in commands if c.message_name == "MachineAllStopRequestV1")
    assert stop.body == {"ModeAllStop": "Apply", "ModeAllStopId": str(event.stop_id)}


def test_a_thousand_acknowledgements_close_their_commands_in_a_few_statements(
    site, operator, django_assert_max_num_queries
):
    trucks = autonomous_trucks(site, 50)
    event = allstop.apply_all_stop(site, reason="blast", actor=operator)
    inbound = [
        Inbound(
            "mqtt",
            truck_message(
                truck.id,
                "MachineAllStopV1",
                {"ModeAllStop": "On", "ModeAllStopId": str(event.stop_id)},
            ),
            datetime.now(UTC),
            topic=f"iso23725/v1/{site.slug}/{truck.id}/up/MachineAllStopV1",
        )
        for truck in trucks
    ]
    directory = EquipmentDirectory()
    compliance.INDEX.invalidate()
    compliance.INDEX.zones(site.id)  # the live rules' periodic reload is not the acks' cost
    with django_assert_max_num_queries(45):  # a few, whatever the number of trucks (50 here)
        ingest_batch(inbound, directory)
    assert allstop.all_stop_status(site).acknowledged == sorted(t.name for t in trucks)
    assert allstop.acknowledgements_by_status(event) == {"acknowledged": 50}


def test_the_all_stop_history_cannot_be_changed(site, operator):
    autonomous_trucks(site, 1)
    event = allstop.apply_all_stop(site, reason="blast", actor=operator)
    with pytest.raises(AuditError):
        event.delete()
    with pytest.raises(AuditError):
        AllStop.objects.filter(pk=event.pk).update(reason="nothing happened")
