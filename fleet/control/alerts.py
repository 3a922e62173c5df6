"""Alerts: raised by control's rules, answered by operators. Every status change writes its
``AlertEvent`` (who, when, why) in the same transaction; a repeat of an open alert is folded into
it (``count``, ``last_seen_at``) instead of written again.

Raised by ``fleet.control.compliance`` (live rules on admitted telemetry) and
``fleet.control.health`` (fault-head results); acted on by people through the REST API.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from fleet.control.models import Alert, AlertEvent
from fleet.live.broadcast import broadcast_on_commit
from fleet.vehicles.models import Equipment

Status = Alert.Status

# Which status each operator action may start from (Open -> Acknowledged -> Assigned ->
# Resolved; an alert may be assigned straight away, re-assigned, or resolved at any point).
ALLOWED_FROM = {
    Status.ACKNOWLEDGED: {Status.OPEN},
    Status.ASSIGNED: {Status.OPEN, Status.ACKNOWLEDGED, Status.ASSIGNED},
    Status.RESOLVED: {Status.OPEN, Status.ACKNOWLEDGED, Status.ASSIGNED},
}


@dataclass(frozen=True, slots=True)
class Finding:
    """What a rule found, before it is an alert."""

    kind: str
    severity: str
    source: str
    reason: str
    fold_key: str = ""  # default: the kind
    channel: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)


def live_event(alert: Alert) -> dict[str, Any]:
    """The websocket payload of an alert (event ``alert``)."""
    return {
        "id": alert.pk,
        "equipmentId": str(alert.equipment_id),
        "kind": alert.kind,
        "severity": alert.severity,
        "status": alert.status,
        "source": alert.source,
        "channel": alert.channel,
        "reason": alert.reason,
        "count": alert.count,
        "lastSeenAt": alert.last_seen_at.isoformat(),
    }


def _announce(alert: Alert) -> None:
    broadcast_on_commit(alert.site_id, "alert", live_event(alert))


def _event(alert: Alert, action: str, actor: str, detail: str = "") -> None:
    AlertEvent.objects.create(alert=alert, action=action, actor=actor[:80], detail=detail[:300])


def raise_alert(equipment: Equipment, finding: Finding) -> tuple[Alert, bool]:
    """Open an alert for ``finding``, or fold it into the machine's unresolved alert of the same
    key. Returns (the alert, whether it was opened now)."""
    key = (finding.fold_key or finding.kind)[:120]
    now = timezone.now()
    for _ in range(2):  # a second replica may open the same alert between our read and insert
        try:
            with transaction.atomic():
                alert = (
                    Alert.objects.select_for_update()
                    .filter(equipment=equipment, fold_key=key)
                    .exclude(status=Status.RESOLVED)
                    .first()
                )
                if alert is not None:
                    alert.count += 1
                    alert.last_seen_at = now
                    alert.save(update_fields=["count", "last_seen_at"])
                    _announce(alert)
                    return alert, False
                alert = Alert.objects.create(
                    site_id=equipment.site_id,
                    equipment=equipment,
                    kind=finding.kind[:40],
                    fold_key=key,
                    severity=finding.severity,
                    source=finding.source[:80],
                    inputs=finding.inputs,
                    channel=(finding.channel or "")[:80],
                    reason=finding.reason[:300],
                    last_seen_at=now,
                )
                _event(alert, "opened", finding.source, finding.reason)
                _announce(alert)
                return alert, True
        except IntegrityError:
            continue
    raise RuntimeError(f"could not open or fold alert {key} of {equipment.pk}")


def record_action(alert: Alert, command_id: uuid.UUID, *, actor: str, detail: str) -> None:
    """A command control issued because of the alert, kept on it and in its trail."""
    Alert.objects.filter(pk=alert.pk).update(command_ids=[*alert.command_ids, command_id])
    alert.command_ids = [*alert.command_ids, command_id]
    _event(alert, "command", actor, detail)


Verdict = Alert.Verdict


def _with_verdict(note: str, verdict: str, fields: dict[str, Any]) -> str:
    """The note as written to the trail, and the verdict's fields, when one is given."""
    if not verdict:
        return note
    fields.update(verdict=verdict, verdict_at=timezone.now())
    said = f"verdict: {Verdict(verdict).label.lower()}"
    return f"{said}; {note}" if note else said


@transaction.atomic
def _change(alert: Alert, status: str, *, actor: User, note: str, **fields: Any) -> Alert:
    locked = Alert.objects.select_for_update().get(pk=alert.pk)
    if locked.status not in ALLOWED_FROM[status]:
        raise ValidationError(
            f"alert {alert.pk} is {locked.get_status_display().lower()}; it cannot be "
            f"{Status(status).label.lower()} now",
            code="conflict",
        )
    locked.status = status
    for name, value in fields.items():
        setattr(locked, name, value)
    locked.save(update_fields=["status", *fields])
    _event(locked, status, actor.get_username(), note)
    _announce(locked)
    return locked


def acknowledge_alert(alert: Alert, *, actor: User, note: str = "", verdict: str = "") -> Alert:
    """An operator has seen it; ``verdict`` (``Alert.Verdict``): whether it is a real fault."""
    fields: dict[str, Any] = {}
    note = _with_verdict(note, verdict, fields)
    return _change(alert, Status.ACKNOWLEDGED, actor=actor, note=note, **fields)


def assign_alert(alert: Alert, assignee: User, *, actor: User, note: str = "") -> Alert:
    """Someone (``assignee``) is to deal with it."""
    detail = f"to {assignee.get_username()}" + (f": {note}" if note else "")
    return _change(alert, Status.ASSIGNED, actor=actor, note=detail, assigned_to=assignee)


def resolve_alert(alert: Alert, *, actor: User, note: str = "", verdict: str = "") -> Alert:
    """Dealt with. The next occurrence of the same finding opens a new alert. ``verdict``
    (``Alert.Verdict``): confirmed fault or false alarm, the label the fault head learns from;
    a verdict given at acknowledgement stands unless this one replaces it."""
    fields: dict[str, Any] = {"resolved_at": timezone.now()}
    note = _with_verdict(note, verdict, fields)
    return _change(alert, Status.RESOLVED, actor=actor, note=note, **fields)
