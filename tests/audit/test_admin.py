"""In the admin console no role, superusers included, adds, changes or deletes an audit row:
each audit table is browsed read-only, with no delete action."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.admin import AdminSite
from django.test import Client

from fleet.audit import audit_models
from fleet.audit.admin import AuditAdmin, AuditInline
from fleet.audit.checks import check_audit_tables
from fleet.mine.models import ZoneResponse
from tests.audit.conftest import tamper_field

pytestmark = pytest.mark.django_db


def urls(row) -> tuple[str, str, str]:
    opts = row._meta
    base = f"/admin/{opts.app_label}/{opts.model_name}/"
    return base, f"{base}{row.pk}/change/", f"{base}{row.pk}/delete/"


def stored(row):
    return type(row)._base_manager.get(pk=row.pk)


@pytest.fixture
def client_of(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def test_every_role_reads_an_audit_row_without_a_save_or_delete_button(client_of, audit_row):
    changelist, change, _ = urls(audit_row)
    assert client_of.get(changelist).status_code == 200
    page = client_of.get(change)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html and "deletelink" not in html


def test_no_role_changes_an_audit_row_in_the_admin(client_of, audit_row):
    _, change, _ = urls(audit_row)
    field = tamper_field(audit_row)
    response = client_of.post(change, {field: "rewritten history", "_save": "Save"})
    assert response.status_code == 403
    assert getattr(stored(audit_row), field) != "rewritten history"


def test_no_role_deletes_an_audit_row_in_the_admin(client_of, audit_row):
    _, _, delete = urls(audit_row)
    assert client_of.get(delete).status_code == 403
    assert client_of.post(delete, {"post": "yes"}).status_code == 403
    assert type(audit_row)._base_manager.filter(pk=audit_row.pk).exists()


def test_no_role_bulk_deletes_audit_rows_in_the_admin(client_of, audit_row):
    changelist, _, _ = urls(audit_row)
    assert "delete_selected" not in client_of.get(changelist).content.decode()
    client_of.post(
        changelist,
        {"action": "delete_selected", "_selected_action": [audit_row.pk], "post": "yes"},
    )
    assert type(audit_row)._base_manager.filter(pk=audit_row.pk).exists()


def test_the_zone_responses_admin_no_longer_deletes_for_the_superuser(superuser, zone_response):
    client = Client()
    client.force_login(superuser)
    _, _, delete = urls(zone_response)
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert ZoneResponse.objects.filter(pk=zone_response.pk).exists()


def test_every_audit_table_is_in_the_admin_as_an_audit_admin():
    for model in audit_models():
        assert isinstance(admin.site._registry.get(model), AuditAdmin), model


def test_every_inline_showing_audit_rows_is_an_audit_inline():
    for model_admin in admin.site._registry.values():
        for inline in model_admin.inlines:
            if inline.model in audit_models():
                assert issubclass(inline, AuditInline), inline


def test_the_system_checks_pass_for_the_project():
    assert check_audit_tables(admin_site=admin.site) == []


def test_an_audit_table_given_an_ordinary_admin_fails_the_system_checks():
    site = AdminSite(name="careless")
    site.register(ZoneResponse, admin.ModelAdmin)
    errors = check_audit_tables(admin_site=site)
    assert [e.id for e in errors] == ["audit.E001"]
    assert "mine.ZoneResponse" in errors[0].msg
