"""Audit rows are append-only in the ORM: written once, never changed, never deleted, whatever
the path (the row, a query, a related manager, a cascade, a fixture load)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.core.serializers import serialize
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from fleet.audit import audit_models
from fleet.learning.models import AliasChange
from tests.audit.conftest import AUDIT_ROWS, tamper_field

pytestmark = pytest.mark.django_db


def stored(row):
    return type(row)._base_manager.filter(pk=row.pk)


def test_every_audit_table_has_a_fixture_here():
    assert set(audit_models()) == set(AUDIT_ROWS)


def test_an_audit_row_is_written_once_and_read_back(audit_row):
    assert stored(audit_row).count() == 1


def test_saving_a_changed_audit_row_is_refused(audit_row):
    field = tamper_field(audit_row)
    setattr(audit_row, field, "rewritten history")
    with pytest.raises(PermissionDenied, match="append-only"):
        audit_row.save()
    with pytest.raises(PermissionDenied, match="append-only"):
        audit_row.save(update_fields=[field])
    assert stored(audit_row).get().__dict__[field] != "rewritten history"


def test_deleting_an_audit_row_is_refused(audit_row):
    with pytest.raises(PermissionDenied, match="append-only"):
        audit_row.delete()
    assert stored(audit_row).exists()


def test_a_query_can_neither_update_nor_delete_audit_rows(audit_row):
    model, field = type(audit_row), tamper_field(audit_row)
    with pytest.raises(PermissionDenied, match="append-only"):
        model.objects.filter(pk=audit_row.pk).update(**{field: "rewritten history"})
    with pytest.raises(PermissionDenied, match="append-only"):
        model.objects.all().delete()
    with pytest.raises(PermissionDenied, match="append-only"):
        model.objects.bulk_update([audit_row], [field])
    assert stored(audit_row).get().__dict__[field] != "rewritten history"


def test_the_base_manager_django_uses_internally_refuses_too(audit_row):
    with pytest.raises(PermissionDenied, match="append-only"):
        type(audit_row)._base_manager.filter(pk=audit_row.pk).delete()


def test_a_new_row_with_the_primary_key_of_a_stored_one_does_not_overwrite_it(audit_row):
    model, field = type(audit_row), tamper_field(audit_row)
    copy = model._base_manager.get(pk=audit_row.pk)
    copy._state.adding = True
    setattr(copy, field, "rewritten history")
    with pytest.raises(IntegrityError), transaction.atomic():
        copy.save()
    assert stored(audit_row).get().__dict__[field] != "rewritten history"


def test_loading_a_fixture_over_a_stored_audit_row_is_refused(audit_row, tmp_path):
    field = tamper_field(audit_row)
    setattr(audit_row, field, "rewritten history")
    fixture = tmp_path / "tampered.json"
    fixture.write_text(serialize("json", [audit_row]))
    with pytest.raises(PermissionDenied, match="append-only"):
        call_command("loaddata", str(fixture), verbosity=0)
    assert stored(audit_row).get().__dict__[field] != "rewritten history"


def test_a_command_event_cannot_be_erased_through_its_command(command_event):
    with pytest.raises(PermissionDenied, match="append-only"):
        command_event.command.events.all().delete()
    with pytest.raises(PermissionDenied, match="append-only"):
        command_event.command.events.update(detail="nothing happened")
    with pytest.raises(ProtectedError):
        command_event.command.delete()
    assert stored(command_event).exists()


def test_deleting_the_machine_an_audit_row_names_is_refused(command_event, zone_response):
    truck = zone_response.equipment
    with pytest.raises(ProtectedError):
        truck.delete()
    assert stored(command_event).exists() and stored(zone_response).exists()


def test_deleting_the_zone_or_the_site_a_zone_response_names_is_refused(zone_response):
    with pytest.raises(ProtectedError):
        zone_response.zone.delete()
    with pytest.raises(ProtectedError):
        zone_response.zone.site.delete()
    assert stored(zone_response).exists()


@pytest.mark.parametrize("fixture", ["command", "alias_change", "drain_change"])
def test_deleting_the_user_an_audit_row_names_is_refused(request, fixture, supervisor):
    row = request.getfixturevalue(fixture)
    with pytest.raises(ProtectedError):
        supervisor.delete()
    assert stored(row).exists()
    # PROTECT, not SET_NULL: who did it is never rewritten.
    assert supervisor.pk in stored(row).values_list(
        "issued_by" if fixture == "command" else "by", flat=True
    )


def test_a_promotion_is_marked_rolled_back_once_and_never_unmarked(alias_change):
    """The one change an audit table declares (AliasChange.audit_one_way_flags): a roll-back
    marks the promotion it undid, False to True, and nothing else."""
    alias_change.rolled_back = True
    alias_change.save(update_fields=["rolled_back"])
    assert stored(alias_change).get().rolled_back is True

    alias_change.rolled_back = False
    with pytest.raises(PermissionDenied, match="append-only"):
        alias_change.save(update_fields=["rolled_back"])
    again = AliasChange.objects.get(pk=alias_change.pk)
    again.rolled_back = True
    with pytest.raises(PermissionDenied, match="already"):
        again.save(update_fields=["rolled_back"])
    alias_change.rolled_back, alias_change.name = True, "other-head"
    with pytest.raises(PermissionDenied, match="append-only"):
        alias_change.save(update_fields=["rolled_back", "name"])
    assert stored(alias_change).get().name == "fault-head"


def test_only_the_archive_enters_the_path_that_deletes_audit_rows():
    fleet = Path(__file__).resolve().parents[2] / "fleet"
    callers = {
        str(path.relative_to(fleet))
        for path in fleet.rglob("*.py")
        if "archive_deletions" in path.read_text()
    }
    assert callers == {"audit/records.py", "audit/archive.py"}
