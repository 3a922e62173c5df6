"""Fixtures of the audit-trail tests: one row of every audit table, written the way the system
writes it, and every role as staff who can open the admin console.

``AUDIT_ROWS`` names a fixture per audit table; ``test_every_audit_table_has_a_fixture_here``
fails when a new audit table is declared without one, so each new table is tested like these.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.db import models
from django.utils import timezone

from fleet.control import alerts, allstop
from fleet.control import services as control
from fleet.control.models import (
    AlertEvent,
    AllStop,
    Assignment,
    CollisionIntervention,
    CollisionRisk,
    Command,
    CommandEvent,
    DispatchPlan,
    LoadingUnitStatus,
    TrafficPermission,
    TrafficPermissionEvent,
)
from fleet.learning.models import AliasChange, ModelVersion
from fleet.mine.models import ZoneResponse
from fleet.pool.models import DrainChange
from fleet.telemetry.models import StatusChange
from fleet.vehicles.models import Equipment
from tests.factories import haul_truck, user_with_password

# The audit tables, each with the fixture that writes one row and a text field to tamper with.
AUDIT_ROWS: dict[type[models.Model], tuple[str, str]] = {
    CommandEvent: ("command_event", "detail"),
    ZoneResponse: ("zone_response", "reason"),
    AliasChange: ("alias_change", "name"),
    DrainChange: ("drain_change", "reason"),
    AllStop: ("all_stop", "reason"),
    CollisionIntervention: ("collision_intervention", "reason"),
    AlertEvent: ("alert_event", "detail"),
    LoadingUnitStatus: ("loading_unit_status", "reason"),
    DispatchPlan: ("dispatch_plan", "reason"),
    Assignment: ("assignment", "reason"),
    TrafficPermissionEvent: ("traffic_permission_event", "reason"),
    StatusChange: ("status_change", "status"),
}
ROLES = ("viewer", "operator", "supervisor", "admin", "superuser")


@contextmanager
def written_at(moment: datetime) -> Iterator[None]:
    """Rows written inside are stamped ``moment`` where Django stamps them (auto_now_add): the
    only way to have an old audit row, since none can be changed once written. A field whose
    default is ``timezone.now`` kept its own reference to it: pass that time explicitly."""
    with mock.patch.object(timezone, "now", return_value=moment):
        yield


@pytest.fixture
def superuser(db) -> User:
    return user_with_password("sam-superuser", superuser=True, email="sam@mine.local")


@pytest.fixture(params=ROLES)
def staff(request) -> User:
    """Each role in turn, able to log into the admin console (is_staff), so what stops them is
    the audit rules, never the login page."""
    name = {"admin": "admin_user"}.get(request.param, request.param)
    user = request.getfixturevalue(name)
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    return user


@pytest.fixture
def truck(site) -> Equipment:
    return haul_truck(site)


@pytest.fixture
def command(truck, supervisor) -> Command:
    return control.stop_truck(truck, reason="rock on the ramp", actor=supervisor)


@pytest.fixture
def command_event(command) -> CommandEvent:
    return command.events.get()


@pytest.fixture
def zone_response(site, truck) -> ZoneResponse:
    return ZoneResponse.objects.create(
        zone=site.zones.first(),
        equipment=truck,
        request=ZoneResponse.Request.ACTIVATE,
        accepted=True,
        responded_at=timezone.now(),
    )


def model_version(version: int) -> ModelVersion:
    return ModelVersion.objects.create(
        name="fault-head",
        version=version,
        kind=ModelVersion.Kind.HEAD,
        level=ModelVersion.Level.L2,
        path=f"/checkpoints/fault-head/{version}",
        sha256=f"{version}" * 64,
        config={},
        created_at=datetime(2025, 1, version, tzinfo=UTC),
    )


@pytest.fixture
def alias_change(supervisor) -> AliasChange:
    return AliasChange.objects.create(
        name="fault-head",
        alias="champion",
        action=AliasChange.Action.PROMOTE,
        from_version=model_version(1),
        to_version=model_version(2),
        by=supervisor,
    )


@pytest.fixture
def drain_change(supervisor) -> DrainChange:
    return DrainChange.objects.create(
        node="gpu-node-1", draining=True, by=supervisor, by_name=supervisor.username, reason="fan"
    )


@pytest.fixture
def all_stop(site, truck, operator) -> AllStop:
    return allstop.apply_all_stop(site, reason="blast at bench 4", actor=operator)


@pytest.fixture
def collision_intervention(site, truck) -> CollisionIntervention:
    other = haul_truck(site, "HT-002")
    risk = CollisionRisk.objects.create(
        site=site,
        first=truck,
        second=other,
        last_seen_at=timezone.now(),
        t_ca_s=3.0,
        d_ca_m=12.0,
        min_d_ca_m=12.0,
        source="test",
    )
    reason = "stop (ISO 21815-2): collision risk with HT-002, closest approach 12 m in 3.0 s"
    return CollisionIntervention.objects.create(
        risk=risk,
        equipment=truck,
        kind=CollisionIntervention.Kind.STOP,
        command=control.stop_truck(truck, reason=reason),
        reason=reason,
    )


@pytest.fixture
def alert_event(truck) -> AlertEvent:
    alert, _ = alerts.raise_alert(
        truck,
        alerts.Finding(
            kind="speeding", severity="warning", source="compliance.speeding", reason="x"
        ),
    )
    return alert.events.get()


@pytest.fixture
def loading_unit_status(site) -> LoadingUnitStatus:
    return LoadingUnitStatus.objects.create(
        loading_unit=site.loading_units.first(),
        available=False,
        reason="hydraulic leak",
        actor="ana-operator",
    )


@pytest.fixture
def dispatch_plan(site) -> DispatchPlan:
    return DispatchPlan.objects.create(
        site=site,
        trigger="unit-down",
        reason="shovel down",
        status="optimal",
        tph=1200.0,
        trucks=3,
        solve_ms=4.2,
        plan={"routes": []},
        inputs={"units": []},
    )


@pytest.fixture
def assignment(site, truck, dispatch_plan) -> Assignment:
    return Assignment.objects.create(
        equipment=truck,
        assignment_id=uuid.uuid4(),
        loading_unit=site.loading_units.first(),
        dump=site.dump_points.first(),
        plan=dispatch_plan,
        reason="shovel furthest behind",
        actor="dispatcher",
    )


@pytest.fixture
def traffic_permission_event(site, truck) -> TrafficPermissionEvent:
    now = timezone.now()
    permission = TrafficPermission.objects.create(
        site=site, equipment=truck, zone=site.zones.first(), requested_at=now, last_asked_at=now
    )
    return TrafficPermissionEvent.objects.create(
        permission=permission, status="pending", reason="section occupied", actor="rule:fifo"
    )


@pytest.fixture
def status_change(truck) -> StatusChange:
    return StatusChange.objects.create(
        equipment=truck, at=timezone.now(), status="Hauling", source="truck"
    )


@pytest.fixture(params=list(AUDIT_ROWS), ids=lambda model: model.__name__)
def audit_row(request) -> models.Model:
    """One row of each audit table in turn."""
    return request.getfixturevalue(AUDIT_ROWS[request.param][0])


def tamper_field(row: models.Model) -> str:
    return AUDIT_ROWS[type(row)][1]
