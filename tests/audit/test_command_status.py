"""A command's status changes only through the control services, and every change is an event
in its trail: never by saving the row, never by a query, never in the admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.db.models import ProtectedError
from django.test import Client
from django.utils import timezone

from fleet.control import services
from fleet.control.models import Command

pytestmark = pytest.mark.django_db
Status = Command.Status


def trail(command: Command) -> list[tuple[str, str]]:
    return list(command.events.order_by("at", "id").values_list("status", "actor"))


def test_saving_a_command_with_a_new_status_is_refused(command):
    command.status = Status.ACKNOWLEDGED
    with pytest.raises(PermissionDenied, match=r"fleet\.control\.services"):
        command.save()
    with pytest.raises(PermissionDenied, match=r"fleet\.control\.services"):
        command.save(update_fields=["status"])
    assert Command.objects.get(pk=command.pk).status == Status.ISSUED


def test_a_query_cannot_set_a_command_status(command):
    with pytest.raises(PermissionDenied, match=r"fleet\.control\.services"):
        Command.objects.filter(pk=command.pk).update(status=Status.ACKNOWLEDGED)
    command.status = Status.EXPIRED
    with pytest.raises(PermissionDenied, match=r"fleet\.control\.services"):
        Command.objects.bulk_update([command], ["status"])
    assert Command.objects.get(pk=command.pk).status == Status.ISSUED


def test_a_command_is_born_issued(truck):
    with pytest.raises(PermissionDenied, match="Issued"):
        Command.objects.create(
            equipment=truck,
            message_name="MachineAllStopRequestV1",
            body={},
            reason="typed in",
            status=Status.ACKNOWLEDGED,
            expires_at=timezone.now() + timedelta(minutes=5),
        )


def test_other_fields_of_a_command_still_save(command):
    command.attempts = 3
    command.save(update_fields=["attempts"])
    assert Command.objects.get(pk=command.pk).attempts == 3


def test_every_change_the_services_make_is_an_event(truck, supervisor):
    first = services.stop_truck(truck, reason="rock on the ramp", actor=supervisor)
    services.mark_sent(first, actor="mqtt")
    services.mark_sent(first, actor="mqtt")  # a retry: no new status, no event
    second = services.stop_truck(truck, reason="still blocked", actor=supervisor)
    services.record_answer(truck.pk, command_id=second.command_id, accepted=False, reason="busy")
    third = services.resume_truck(truck, reason="clear", actor=supervisor)
    Command.objects.filter(pk=third.pk).update(expires_at=timezone.now())
    assert services.expire_commands() == 1

    first.refresh_from_db()
    second.refresh_from_db()
    third.refresh_from_db()
    assert (first.status, first.attempts) == (Status.SUPERSEDED, 2)
    assert trail(first) == [
        ("issued", supervisor.username),
        ("sent", "mqtt"),
        ("superseded", "outbox"),
    ]
    assert (second.status, second.answer) == (Status.REJECTED, "busy")
    assert trail(second) == [("issued", supervisor.username), ("rejected", "truck")]
    assert trail(third) == [("issued", supervisor.username), ("expired", "outbox")]
    for command in (first, second, third):
        assert command.events.order_by("-at", "-id").first().status == command.status


def test_a_command_cannot_be_deleted_while_its_trail_exists(command):
    with pytest.raises(ProtectedError):
        command.delete()
    with pytest.raises(ProtectedError):
        Command.objects.all().delete()
    assert Command.objects.filter(pk=command.pk).exists()


def test_no_role_edits_or_deletes_a_command_in_the_admin(staff, command):
    client = Client()
    client.force_login(staff)
    url = f"/admin/control/command/{command.pk}/"
    page = client.get(f"{url}change/")
    assert page.status_code == 200
    assert 'name="status"' not in page.content.decode()
    assert client.post(f"{url}change/", {"status": "acknowledged"}).status_code == 403
    assert client.post(f"{url}delete/", {"post": "yes"}).status_code == 403
    client.post(
        "/admin/control/command/",
        {"action": "delete_selected", "_selected_action": [command.pk], "post": "yes"},
    )
    command.refresh_from_db()
    assert command.status == Status.ISSUED and command.events.count() == 1
