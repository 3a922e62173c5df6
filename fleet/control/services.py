"""The outbox: issue commands, record the trucks' answers, expire the unanswered, and
re-synchronise a truck that (re)connects. Delivery itself is fleet/control/delivery.py.

Every command is checked by the wire encoder when it is issued, so the FMS never queues what a
truck would refuse to parse; the delivery process is woken by NOTIFY at commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from fleet.control.models import Command, CommandEvent, TruckState
from fleet.live.broadcast import broadcast_on_commit
from fleet.mine.models import PolicyZone
from fleet.protocol import wire
from fleet.vehicles.models import Equipment

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "haulmind_outbox"
Status = Command.Status

# How a standard answer body names the command it answers (beside CommandAcknowledgementV1).
_ANSWER_FIELDS = {
    "ActivateZoneRequestV1": lambda body: f"zone:{body['Zone']['id']}",
    "DeactivateZoneRequestV1": lambda body: f"unzone:{body['ZoneId']}",
    "SyncActiveZonesRequestV1": lambda body: f"request:{body['RequestId']}",
    "TrafficPermissionUpdateV1": lambda body: f"event:{body['EventId']}",
    "MachineAllStopRequestV1": lambda body: (
        f"allstop:{body['ModeAllStopId']}:{body['ModeAllStop']}"
    ),
}


def _answer_key(message_name: str, body: Any) -> str:
    key = _ANSWER_FIELDS.get(message_name)
    return key(body) if key else ""


def _audit(command: Command, status: str, detail: str, actor: str) -> None:
    """The Issued event of a new command; every later status is written by
    ``Command.change_status``, which writes its own event."""
    CommandEvent.objects.create(command=command, status=status, detail=detail[:300], actor=actor)


def _changed(command: Command) -> None:
    broadcast_on_commit(
        command.equipment.site_id,
        "command.changed",
        {
            "commandId": str(command.command_id),
            "equipmentId": str(command.equipment_id),
            "message": command.message_name,
            "status": command.status,
            "reason": command.reason,
            "answer": command.answer,
        },
    )


def _notify_on_commit() -> None:
    def notify() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [NOTIFY_CHANNEL])

    transaction.on_commit(notify)


@transaction.atomic
def issue_command(
    equipment: Equipment,
    message_name: str,
    body: Any,
    *,
    reason: str,
    actor: User | None = None,
    supersede_key: str = "",
    ttl: timedelta | None = None,
) -> Command:
    """Queue one message for one truck. A newer command with the same ``supersede_key``
    replaces the truck's open ones (a second stop replaces the first, not queues behind it)."""
    wire.encode(message_name, body, equipment_id=equipment.id, command_id=uuid.uuid4())
    if supersede_key:
        for old in Command.objects.select_for_update().filter(
            equipment=equipment, supersede_key=supersede_key, status__in=Command.OPEN
        ):
            old.change_status(Status.SUPERSEDED, actor="outbox", detail=f"replaced: {reason}")
    now = timezone.now()
    command = Command.objects.create(
        equipment=equipment,
        message_name=message_name,
        body=body,
        supersede_key=supersede_key,
        answer_key=_answer_key(message_name, body),
        reason=reason[:300],
        issued_by=actor,
        expires_at=now + (ttl or timedelta(seconds=settings.COMMAND_TTL_S)),
        next_attempt_at=now,
    )
    _audit(command, Status.ISSUED, reason, actor.get_username() if actor else "fms")
    _notify_on_commit()
    _changed(command)
    return command


def envelope_of(command: Command) -> bytes:
    """The command as sent: an ISO 23725 envelope carrying its CommandId."""
    return wire.encode(
        command.message_name,
        command.body,
        equipment_id=command.equipment_id,
        command_id=command.command_id,
        validate=False,  # checked when issued
    )


def envelope_json(command: Command) -> dict[str, Any]:
    return orjson.loads(envelope_of(command))


def fetch_for_truck(equipment: Equipment, *, after: int, limit: int) -> list[Command]:
    """The REST fallback: a truck's open commands after its cursor, marked sent."""
    commands = list(
        Command.objects.filter(
            equipment=equipment,
            serial__gt=after,
            status__in=Command.OPEN,
            expires_at__gt=timezone.now(),
        )
        .select_related("equipment")
        .order_by("serial")[:limit]
    )
    for command in commands:
        mark_sent(command, actor="rest")
    return commands


def mark_sent(command: Command, *, actor: str) -> None:
    """One delivery attempt made; the next is due after a growing back-off."""
    now = timezone.now()
    backoff = min(settings.COMMAND_RETRY_S * 2**command.attempts, settings.COMMAND_RETRY_MAX_S)
    updates: dict[str, Any] = {
        "attempts": command.attempts + 1,
        "next_attempt_at": now + timedelta(seconds=backoff),
    }
    # The first attempt: Issued -> Sent, with its event (unless another process sent it first).
    if command.status == Status.ISSUED and command.change_status(
        Status.SENT,
        actor=actor,
        detail=f"via {actor}",
        when=[Status.ISSUED],
        sent_at=now,
        **updates,
    ):
        _changed(command)
        return
    if Command.objects.filter(pk=command.pk, status__in=Command.OPEN).update(**updates):
        for name, value in updates.items():
            setattr(command, name, value)


@transaction.atomic
def record_answer(
    equipment_id: uuid.UUID,
    *,
    command_id: uuid.UUID | None = None,
    answer_key: str = "",
    accepted: bool,
    reason: str | None = None,
    actor: str = "truck",
) -> Command | None:
    """A truck's answer. Unknown or already closed commands are ignored (a repeated answer
    to a redelivered command is normal)."""
    commands = Command.objects.select_for_update().filter(
        equipment_id=equipment_id, status__in=Command.OPEN
    )
    if command_id is not None:
        command = commands.filter(command_id=command_id).first()
    elif answer_key:
        command = commands.filter(answer_key=answer_key).order_by("-serial").first()
    else:
        return None
    if command is None:
        return None
    command.change_status(
        Status.ACKNOWLEDGED if accepted else Status.REJECTED,
        actor=actor,
        detail=reason or "",
        answered_at=timezone.now(),
        answer=(reason or "")[:300],
    )
    _changed(command)
    return command


@transaction.atomic
def expire_commands() -> int:
    """Open commands past their expiry become Expired (and an operator sees why)."""
    expired = list(
        Command.objects.select_for_update(skip_locked=True)
        .select_related("equipment")
        .filter(status__in=Command.OPEN, expires_at__lte=timezone.now())
    )
    for command in expired:
        command.change_status(
            Status.EXPIRED, actor="outbox", detail=f"no answer after {command.attempts} attempt(s)"
        )
        _changed(command)
    return len(expired)


def due_commands(limit: int = 500) -> list[Command]:
    """Open commands whose next attempt is due, locked for this delivery process."""
    return list(
        Command.objects.select_for_update(skip_locked=True)
        .filter(
            status__in=Command.OPEN,
            next_attempt_at__lte=timezone.now(),
            expires_at__gt=timezone.now(),
        )
        .select_related("equipment__site")
        .order_by("next_attempt_at")[:limit]
    )


# --- desired state ----------------------------------------------------------------------------


def _state(equipment: Equipment) -> TruckState:
    state, _ = TruckState.objects.select_for_update().get_or_create(equipment=equipment)
    return state


@transaction.atomic
def stop_truck(equipment: Equipment, *, reason: str, actor: User | None = None) -> Command:
    """A targeted stop (ISO 17757 remote stop): MachineAllStopRequestV1 Apply to one truck."""
    state = _state(equipment)
    state.stop_id = state.stop_id or uuid.uuid4()
    state.save(update_fields=["stop_id"])
    return issue_command(
        equipment,
        "MachineAllStopRequestV1",
        {"ModeAllStop": "Apply", "ModeAllStopId": str(state.stop_id)},
        reason=reason,
        actor=actor,
        supersede_key="stop",
    )


@transaction.atomic
def resume_truck(equipment: Equipment, *, reason: str, actor: User | None = None) -> Command | None:
    """Remove the targeted stop in force (the same ModeAllStopId removes what it applied)."""
    state = _state(equipment)
    if state.stop_id is None:
        return None
    stop_id, state.stop_id = state.stop_id, None
    state.save(update_fields=["stop_id"])
    return issue_command(
        equipment,
        "MachineAllStopRequestV1",
        {"ModeAllStop": "Remove", "ModeAllStopId": str(stop_id)},
        reason=reason,
        actor=actor,
        supersede_key="stop",
    )


def _zone_sync_body(equipment: Equipment) -> dict[str, Any]:
    zones = PolicyZone.objects.filter(site_id=equipment.site_id, status=PolicyZone.Status.ACTIVE)
    return {"RequestId": str(uuid.uuid4()), "Zones": [zone.to_feature() for zone in zones]}


@transaction.atomic
def resync_truck(equipment: Equipment, *, reason: str) -> list[Command]:
    """Bring a (re)connected truck to the desired state: every active zone, any stop or
    all-stop in force, its assignment. Replaces whatever resync was still open."""
    state = _state(equipment)
    state.resynced_at = timezone.now()
    state.save(update_fields=["resynced_at"])
    commands = [
        issue_command(
            equipment,
            "SyncActiveZonesRequestV1",
            _zone_sync_body(equipment),
            reason=reason,
            supersede_key="zone-sync",
        )
    ]
    for stop_id, key in ((state.all_stop_id, "all-stop"), (state.stop_id, "stop")):
        if stop_id is not None:
            commands.append(
                issue_command(
                    equipment,
                    "MachineAllStopRequestV1",
                    {"ModeAllStop": "Apply", "ModeAllStopId": str(stop_id)},
                    reason=reason,
                    supersede_key=key,
                )
            )
    if state.assignment:
        commands.append(
            issue_command(
                equipment,
                "HaulTruckAssignmentRequestV2",
                state.assignment,
                reason=reason,
                supersede_key="assignment",
            )
        )
    return commands


def record_connection(equipment_id: uuid.UUID, connection_state: str) -> None:
    """The truck's retained connection state; Online means it must be re-synchronised."""
    equipment = Equipment.objects.filter(pk=equipment_id, autonomous=True).first()
    if equipment is None:
        return
    with transaction.atomic():
        state = _state(equipment)
        state.connection = connection_state[:20]
        state.save(update_fields=["connection"])
        if connection_state == "Online":
            resync_truck(equipment, reason="truck connected")


# --- answers arriving with the telemetry --------------------------------------------------


def _answers(envelope: wire.Envelope) -> Iterable[dict[str, Any]]:
    """Every command answer an envelope holds, as keyword arguments of record_answer."""
    for body in envelope.bodies.values():
        if isinstance(body, wire.CommandAcknowledgementV1):
            yield {
                "command_id": body.command_id,
                "accepted": body.status != "Rejected",
                "reason": body.reason,
            }
        elif isinstance(body, wire.ActivateZoneResponseV1):
            yield {
                "answer_key": f"zone:{body.zone_id}",
                "accepted": body.accepted,
                "reason": body.reason,
            }
        elif isinstance(body, wire.DeactivateZoneResponseV1):
            yield {
                "answer_key": f"unzone:{body.zone_id}",
                "accepted": body.accepted,
                "reason": body.reason,
            }
        elif isinstance(body, wire.SyncActiveZonesResponseV1):
            yield {
                "answer_key": f"request:{body.request_id}",
                "accepted": body.accepted,
                "reason": body.reason,
            }
        elif isinstance(body, wire.TrafficPermissionAcknowledgementV1):
            yield {"answer_key": f"event:{body.event_id}", "accepted": True}
        elif isinstance(body, wire.MachineAllStopV1) and body.all_stop_id is not None:
            mode = "Apply" if body.mode == "On" else "Remove"
            yield {"answer_key": f"allstop:{body.all_stop_id}:{mode}", "accepted": True}


ANSWER_MESSAGES = frozenset(
    {
        "CommandAcknowledgementV1",
        "ActivateZoneResponseV1",
        "DeactivateZoneResponseV1",
        "SyncActiveZonesResponseV1",
        "TrafficPermissionAcknowledgementV1",
        "MachineAllStopV1",
    }
)


def record_answers(envelopes: Iterable[wire.Envelope]) -> int:
    """Apply the answers found in a batch of truck messages, and what they report of the
    truck's own state; a truck that says it is out of sync is re-synchronised."""
    applied = 0
    for envelope in envelopes:
        if ANSWER_MESSAGES.isdisjoint(envelope.bodies) and "OutOfSyncV1" not in envelope.bodies:
            continue
        equipment_id = envelope.equipment_id
        if equipment_id is None:
            continue
        for answer in _answers(envelope):
            if record_answer(equipment_id, **answer) is not None:
                applied += 1
        _record_reported_state(equipment_id, envelope)
    return applied


def _record_reported_state(equipment_id: uuid.UUID, envelope: wire.Envelope) -> None:
    """The last reported state beside the desired one: all-stop mode and the zones the truck
    says it holds. Only messages newer than what is recorded count."""
    equipment = Equipment.objects.filter(pk=equipment_id).first()
    if equipment is None:
        return
    state = _state(equipment)
    if state.reported_at is not None and envelope.timestamp < state.reported_at:
        return
    zones = set(state.reported_zone_ids)
    for body in envelope.bodies.values():
        if isinstance(body, wire.MachineAllStopV1):
            state.reported_all_stop = body.mode
        elif isinstance(body, wire.SyncActiveZonesResponseV1) and body.accepted:
            zones = set(body.zone_ids)
        elif isinstance(body, wire.ActivateZoneResponseV1) and body.accepted:
            zones.add(body.zone_id)
        elif isinstance(body, wire.DeactivateZoneResponseV1) and body.accepted:
            zones.discard(body.zone_id)
    state.reported_zone_ids = sorted(zones)
    state.reported_at = envelope.timestamp
    state.save(update_fields=["reported_all_stop", "reported_zone_ids", "reported_at"])
    if "OutOfSyncV1" in envelope.bodies:
        resync_truck(equipment, reason="truck reported it is out of sync")
