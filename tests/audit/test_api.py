"""The REST API reads the audit trail and never writes it: no route changes or deletes an audit
row, or deletes a machine or a site, for any role (superusers included)."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from fleet.audit import audit_models
from fleet.learning.models import AliasChange
from fleet.mine.models import Site
from fleet.vehicles.models import Equipment

pytestmark = pytest.mark.django_db

WRITES = ("put", "patch", "delete")


def api_routes(resolver: URLResolver | None = None, prefix: str = "") -> list[tuple[str, object]]:
    routes = []
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            routes += api_routes(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and (prefix + str(entry.pattern)).startswith("api/"):
            routes.append((prefix + str(entry.pattern), entry.callback))
    return routes


def write_methods(callback) -> set[str]:
    """The write methods a DRF route answers: a viewset's mapped actions, an APIView's handlers."""
    if getattr(callback, "actions", None):
        return {method for method in callback.actions if method in WRITES}
    view = getattr(callback, "cls", None)
    return {method for method in WRITES if view is not None and hasattr(view, method)}


def route_model(callback):
    view = getattr(callback, "cls", None)
    queryset = getattr(view, "queryset", None)
    return getattr(queryset, "model", None)


def test_no_api_route_writes_an_audit_table_or_deletes_a_machine_or_a_site():
    protected = {model: set(WRITES) for model in audit_models()}
    protected |= {Equipment: {"delete"}, Site: {"delete"}}
    offending = [
        (route, sorted(methods & protected[model]))
        for route, callback in api_routes()
        if (model := route_model(callback)) in protected
        and (methods := write_methods(callback)) & protected[model]
    ]
    assert offending == []


def test_no_role_changes_or_deletes_an_alias_change_over_the_api(staff, alias_change):
    client = APIClient()
    client.force_authenticate(staff)
    url = "/api/v1/models/changes/"
    assert client.get(url).status_code == 200
    for method in WRITES:
        response = getattr(client, method)(url, {"name": "other"}, format="json")
        assert response.status_code in (403, 405), (method, response.status_code)
    assert AliasChange.objects.get(pk=alias_change.pk).name == "fault-head"


def test_no_role_deletes_a_machine_or_a_site_over_the_api(staff, truck, site):
    client = APIClient()
    client.force_authenticate(staff)
    for url in (f"/api/v1/equipment/{truck.pk}/", f"/api/v1/sites/{site.pk}/"):
        assert client.delete(url).status_code in (403, 405), url
    assert (
        Equipment.objects.filter(pk=truck.pk).exists() and Site.objects.filter(pk=site.pk).exists()
    )


def test_no_role_changes_a_command_over_the_api(staff, command):
    client = APIClient()
    client.force_authenticate(staff)
    for method in WRITES:
        response = getattr(client, method)("/api/v1/commands/", {"status": "acknowledged"})
        assert response.status_code in (403, 405), (method, response.status_code)
    command.refresh_from_db()
    assert command.status == "issued"
