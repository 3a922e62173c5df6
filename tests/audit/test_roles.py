"""No role holds a permission to change or delete an audit row, or to delete what history
refers to (machines, sites, zones, commands); the admin role included. Superusers hold every
permission by definition, so the audit rules never rely on permissions alone."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.auth.models import Group

from fleet.accounts.roles import ROLES, sync_roles
from fleet.audit import audit_models

pytestmark = pytest.mark.django_db


@pytest.fixture
def role_codenames() -> dict[str, set[str]]:
    sync_roles(apps)
    return {
        role: {
            f"{p.content_type.app_label}.{p.codename}"
            for p in Group.objects.get(name=role).permissions.select_related("content_type")
        }
        for role in ROLES
    }


@pytest.mark.parametrize("role", ROLES)
def test_no_role_may_add_change_or_delete_audit_rows(role, role_codenames):
    for model in audit_models():
        opts = model._meta
        for verb in ("add", "change", "delete"):
            assert f"{opts.app_label}.{verb}_{opts.model_name}" not in role_codenames[role]
        assert f"{opts.app_label}.view_{opts.model_name}" in role_codenames[role]


@pytest.mark.parametrize("role", ROLES)
def test_no_role_may_delete_machines_sites_zones_or_commands(role, role_codenames):
    forbidden = {
        "vehicles.delete_equipment",
        "mine.delete_site",
        "mine.delete_policyzone",
        "control.delete_command",
        "control.change_command",
    }
    assert not forbidden & role_codenames[role]


def test_supervisors_still_maintain_the_equipment_register_and_the_map(role_codenames):
    held = role_codenames["supervisor"]
    assert {"vehicles.add_equipment", "vehicles.change_equipment", "mine.change_site"} <= held


def test_operators_still_issue_commands(role_codenames):
    assert "control.add_command" in role_codenames["operator"]


def test_the_admin_role_still_manages_users(role_codenames):
    assert {"auth.add_user", "auth.change_user", "auth.delete_user"} <= role_codenames["admin"]
