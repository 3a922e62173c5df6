"""The outbox: issue commands, record the trucks' answers, expire the unanswered, and
re-synchronise a truck that (re)connects. Delivery itself is fleet/control/delivery.py.

Every command is checked by the wire encoder when it is issued, so the FMS never queues what a
truck would refuse to parse; the delivery process is woken by NOTIFY at commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from fleet.control.models import Command, CommandEvent, FleetMessage, TruckState
from fleet.live.broadcast import broadcast_on_commit
from fleet.mine.models import PolicyZone
from fleet.protocol import topics, wire
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


# The supersede key of a truck's assignment: a new one (dispatch, a re-sync, send to the
# workshop) replaces the open one.
ASSIGNMENT_KEY = "assignment"


def lock_open_commands(equipment_ids: Sequence[uuid.UUID], supersede_key: str) -> list[Command]:
    """The open commands of these machines under ``supersede_key``, locked in serial order.
    Every process that locks several commands takes them in that one order (answers, status
    changes, re-plans): a re-plan that superseded truck B's command, then A's, against an
    ingest recording A's answer, then B's, deadlocked (CI, 2026-12-06). A caller about to
    issue commands to many machines locks them all here first."""
    return list(
        Command.objects.select_for_update(of=("self",))
        .filter(equipment_id__in=list(equipment_ids), supersede_key=supersede_key)
        .filter(status__in=Command.OPEN)
        .order_by("serial")
    )


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
    command_id: uuid.UUID | None = None,
    published_by: str = "",
) -> Command:
    """Queue one message for one truck. A newer command with the same ``supersede_key``
    replaces the truck's open ones (a second stop replaces the first, not queues behind it).
    ``published_by``: the message, with ``command_id``, has already been handed to the broker
    by that process (``fleet.control.reflex``); it is recorded as Sent, and the outbox only
    retries it."""
    command_id = command_id or uuid.uuid4()
    wire.encode(message_name, body, equipment_id=equipment.id, command_id=command_id)
    if supersede_key:
        for old in lock_open_commands([equipment.pk], supersede_key):
            old.change_status(Status.SUPERSEDED, actor="outbox", detail=f"replaced: {reason}")
    now = timezone.now()
    command = Command.objects.create(
        command_id=command_id,
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
    if published_by:
        mark_sent(command, actor=published_by)
    else:
        _notify_on_commit()
        _changed(command)
    return command


@transaction.atomic
def issue_commands_to(
    machines: list[Equipment],
    message_name: str,
    body: Any,
    *,
    reason: str,
    actor: User | None = None,
    actor_name: str = "",
    supersede_key: str = "",
    first_attempt_in: timedelta = timedelta(0),
) -> list[Command]:
    """``issue_command`` for many machines at once, in a handful of statements: the same body
    to each (an all-stop). ``first_attempt_in`` delays each machine's own delivery, when a
    message on the fleet topic is the first attempt for all of them."""
    wire.encode(message_name, body, equipment_id=None, command_id=uuid.uuid4())
    if supersede_key:
        old = Command.objects.filter(
            equipment__in=machines, supersede_key=supersede_key, status__in=Command.OPEN
        ).values_list("pk", flat=True)
        Command.change_statuses(
            old, Status.SUPERSEDED, actor="outbox", detail=f"replaced: {reason}"
        )
    now = timezone.now()
    commands = Command.objects.bulk_create(
        Command(
            equipment=machine,
            message_name=message_name,
            body=body,
            supersede_key=supersede_key,
            answer_key=_answer_key(message_name, body),
            reason=reason[:300],
            issued_by=actor,
            expires_at=now + timedelta(seconds=settings.COMMAND_TTL_S),
            next_attempt_at=now + first_attempt_in,
        )
        for machine in machines
    )
    who = actor.get_username() if actor else actor_name or "fms"
    CommandEvent.objects.bulk_create(
        CommandEvent(command=command, status=Status.ISSUED, detail=reason[:300], actor=who)
        for command in commands
    )
    _notify_on_commit()
    return commands


def envelope_of(command: Command) -> bytes:
    """The command as sent: an ISO 23725 envelope carrying its CommandId."""
    return wire.encode(
        command.message_name,
        command.body,
        equipment_id=command.equipment_id,
        command_id=command.command_id,
        validate=False,  # checked when issued
    )


def down_topic_of(command: Command) -> str:
    equipment = command.equipment
    return topics.down_topic(equipment.site.slug, str(equipment.id), command.message_name)


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


def due_commands(limit: int = 500, sites: Sequence[str] | None = None) -> list[Command]:
    """Open commands whose next attempt is due, locked for this delivery process; only those
    of the machines of ``sites`` (slugs) when given: a delivery process connected to one pit's
    broker takes only that pit's commands (the site-per-broker layout, docs/scaling.md)."""
    due = Command.objects.select_for_update(skip_locked=True).filter(
        status__in=Command.OPEN,
        next_attempt_at__lte=timezone.now(),
        expires_at__gt=timezone.now(),
    )
    if sites is not None:
        due = due.filter(equipment__site__slug__in=sites)
    return list(due.select_related("equipment__site").order_by("next_attempt_at")[:limit])


def due_fleet_messages(sites: Sequence[str] | None = None) -> list[FleetMessage]:
    """Fleet-topic messages not yet published, locked for this delivery process (of ``sites``
    only, when given)."""
    due = FleetMessage.objects.select_for_update(skip_locked=True).filter(published_at__isnull=True)
    if sites is not None:
        due = due.filter(site__slug__in=sites)
    return list(due.select_related("site").order_by("created_at", "id")[:50])


def fleet_envelope(message: FleetMessage) -> bytes:
    """A fleet-wide envelope: no EquipmentId, no CommandId (each machine answers by the
    message's own identifiers, e.g. the ModeAllStopId)."""
    return wire.encode(message.message_name, message.body, equipment_id=None, validate=False)


def mark_fleet_message_published(message: FleetMessage) -> int:
    """The broker took it: the machines' commands it stands for are Sent (their first
    attempt). Returns how many."""
    now = timezone.now()
    FleetMessage.objects.filter(pk=message.pk).update(published_at=now)
    pending = Command.objects.filter(
        answer_key=message.answer_key,
        message_name=message.message_name,
        equipment__site_id=message.site_id,
        status=Status.ISSUED,
    ).values_list("pk", flat=True)
    return len(
        Command.change_statuses(
            pending,
            Status.SENT,
            actor="mqtt",
            detail="via the fleet topic",
            when=[Status.ISSUED],
            sent_at=now,
            attempts=1,
        )
    )


def heartbeat_sites(sites: Sequence[str] | None = None) -> list[str]:
    """Slugs of the sites whose fleet topic carries the FMS heartbeat: those with autonomous
    machines in service (among ``sites``, when given)."""
    machines = Equipment.objects.filter(autonomous=True, status=Equipment.Status.ACTIVE)
    if sites is not None:
        machines = machines.filter(site__slug__in=sites)
    # order_by() first: Equipment's default ordering would join the DISTINCT and make it one
    # row per machine, i.e. one heartbeat per truck per interval on the same topic (300 a
    # second to each of 300 trucks, seen in bench shift).
    return sorted(machines.order_by().values_list("site__slug", flat=True).distinct())


def heartbeat_envelope() -> bytes:
    return wire.encode(
        "FmsHeartbeatV1",
        {"IntervalMs": settings.FMS_HEARTBEAT_MS},
        equipment_id=None,
        validate=False,
    )


# --- desired state ----------------------------------------------------------------------------


def _state(equipment: Equipment) -> TruckState:
    state, _ = TruckState.objects.select_for_update().get_or_create(equipment=equipment)
    return state


# The FMS's targeted stop of a truck has one ModeAllStopId per truck (a truck keeps the set of
# stops in force, ISO 17757, and a Remove lifts the one it names), known without asking the
# database: a stop published before it is recorded (fleet.control.reflex) carries the id its
# Remove will.
TARGETED_STOP = uuid.UUID("6f1d2c84-2f53-4c39-9a35-3f4a1b1c2d5e")


def targeted_stop_id(equipment_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(TARGETED_STOP, str(equipment_id))


@transaction.atomic
def stop_truck(
    equipment: Equipment,
    *,
    reason: str,
    actor: User | None = None,
    command_id: uuid.UUID | None = None,
    published_by: str = "",
) -> Command:
    """A targeted stop (ISO 17757 remote stop): MachineAllStopRequestV1 Apply to one truck.
    ``command_id`` and ``published_by``: see ``issue_command``."""
    state = _state(equipment)
    state.stop_id = targeted_stop_id(equipment.id)
    state.save(update_fields=["stop_id"])
    return issue_command(
        equipment,
        "MachineAllStopRequestV1",
        {"ModeAllStop": "Apply", "ModeAllStopId": str(state.stop_id)},
        reason=reason,
        actor=actor,
        supersede_key="stop",
        command_id=command_id,
        published_by=published_by,
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
                supersede_key=ASSIGNMENT_KEY,
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
        "SafeStateV1",
    }
)


def record_answers(envelopes: Iterable[wire.Envelope]) -> int:
    """Apply the answers found in a batch of truck messages, and what they report of the
    truck's own state; a truck that says it is out of sync is re-synchronised. A batch's answers
    are applied together, in a few statements (a thousand machines answer an all-stop at once).
    Returns how many commands they closed."""
    relevant = [
        envelope
        for envelope in envelopes
        if envelope.equipment_id is not None
        and not (
            ANSWER_MESSAGES.isdisjoint(envelope.bodies) and "OutOfSyncV1" not in envelope.bodies
        )
    ]
    if not relevant:
        return 0
    with transaction.atomic():
        applied = _apply_answers(
            [
                (envelope.equipment_id, answer)
                for envelope in relevant
                for answer in _answers(envelope)
            ]
        )
        _record_reported_states(relevant)
    return applied


def _apply_answers(answers: list[tuple[uuid.UUID, dict[str, Any]]]) -> int:
    """Match each answer to its open command (by CommandId, else the newest by answer key) and
    close the matched ones, grouped by verdict. Unknown or closed commands are ignored."""
    if not answers:
        return 0
    command_ids = [a["command_id"] for _, a in answers if a.get("command_id")]
    keys = [(equipment_id, a["answer_key"]) for equipment_id, a in answers if a.get("answer_key")]
    wanted = Q(command_id__in=command_ids) | Q(
        equipment_id__in={e for e, _ in keys}, answer_key__in={k for _, k in keys}
    )
    by_id: dict[uuid.UUID, Command] = {}
    by_key: dict[tuple[uuid.UUID, str], Command] = {}
    for command in (
        # of=self: without it FOR UPDATE also locks the joined machines' rows, which every
        # insert referencing a machine (a command, an alert) must share-lock: answers and
        # commands to the same trucks then deadlocked (bench shift, two ingest replicas).
        Command.objects.select_for_update(of=("self",))
        .filter(wanted, status__in=Command.OPEN)
        .select_related("equipment")
        .order_by("serial")
    ):
        by_id[command.command_id] = command
        by_key[(command.equipment_id, command.answer_key)] = command  # the newest wins
    verdicts: dict[tuple[bool, str], list[Command]] = {}
    seen: set[int] = set()
    for equipment_id, answer in answers:
        if answer.get("command_id"):
            command = by_id.get(answer["command_id"])
            if command is not None and command.equipment_id != equipment_id:
                command = None  # a truck answers only its own commands
        else:
            command = by_key.get((equipment_id, answer.get("answer_key", "")))
        if command is None or command.pk in seen:
            continue
        seen.add(command.pk)
        verdict = (bool(answer["accepted"]), (answer.get("reason") or "")[:300])
        verdicts.setdefault(verdict, []).append(command)
    now = timezone.now()
    closed = 0
    for (accepted, reason), commands in verdicts.items():
        status = Status.ACKNOWLEDGED if accepted else Status.REJECTED
        changed = set(
            Command.change_statuses(
                [c.pk for c in commands],
                status,
                actor="truck",
                detail=reason,
                answered_at=now,
                answer=reason,
            )
        )
        done = [c for c in commands if c.pk in changed]
        for command in done:
            command.status, command.answer = status, reason
        _announce_answered(done)
        closed += len(done)
    return closed


# Past this many answers in one batch the dashboard gets one summary per site, not one event each.
ANNOUNCE_EACH_UP_TO = 3


def _announce_answered(commands: list[Command]) -> None:
    if len(commands) <= ANNOUNCE_EACH_UP_TO:
        for command in commands:
            _changed(command)
        return
    by_site: dict[int, list[Command]] = {}
    for command in commands:
        by_site.setdefault(command.equipment.site_id, []).append(command)
    for site_id, answered in by_site.items():
        broadcast_on_commit(
            site_id,
            "commands.answered",
            {
                "count": len(answered),
                "status": answered[0].status,
                "message": answered[0].message_name,
                "equipmentIds": [str(c.equipment_id) for c in answered],
            },
        )


def _record_reported_states(envelopes: list[wire.Envelope]) -> None:
    """The last reported state beside the desired one: all-stop mode, the zones the truck says
    it holds, a safe stop on heartbeat loss. Only messages newer than what is recorded count.
    One read and one write for the whole batch."""
    ids = {envelope.equipment_id for envelope in envelopes}
    machines = Equipment.objects.filter(pk__in=ids).only("id", "site_id")
    known = {machine.id: machine for machine in machines}
    existing = set(TruckState.objects.filter(pk__in=known).values_list("pk", flat=True))
    TruckState.objects.bulk_create(TruckState(equipment_id=i) for i in known if i not in existing)
    states = {
        # In key order: two ingest replicas share a site's trucks, and rows locked in
        # whatever order the plan gives deadlock between them.
        state.pk: state
        for state in TruckState.objects.select_for_update().filter(pk__in=known).order_by("pk")
    }
    out_of_sync = []
    for envelope in sorted(envelopes, key=lambda e: e.timestamp):
        state = states.get(envelope.equipment_id)
        if state is None:
            continue
        if state.reported_at is None or envelope.timestamp >= state.reported_at:
            _apply_report(state, envelope)
        if "OutOfSyncV1" in envelope.bodies:
            out_of_sync.append(known[envelope.equipment_id])
    _write_reports(list(states.values()))
    for machine in {m.id: m for m in out_of_sync}.values():
        resync_truck(machine, reason="truck reported it is out of sync")


def _write_reports(states: list[TruckState]) -> None:
    """One UPDATE ... FROM (VALUES ...) for the batch: Django's bulk_update builds a CASE per
    field and row, which cost most of the ingest process's time when a thousand trucks answered
    an all-stop (py-spy)."""
    if not states:
        return
    rows = ", ".join(["(%s::uuid, %s, %s::uuid[], %s::timestamptz, %s::timestamptz)"] * len(states))
    params: list[Any] = []
    for state in states:
        params += [
            state.pk,
            state.reported_all_stop,
            [str(zone) for zone in state.reported_zone_ids],
            state.reported_at,
            state.safe_stopped_at,
        ]
    table = connection.ops.quote_name(TruckState._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS t SET reported_all_stop = v.mode, reported_zone_ids = v.zones, "  # noqa: S608 - the table name is ours
            f"reported_at = v.at, safe_stopped_at = v.safe FROM (VALUES {rows}) "
            "AS v(id, mode, zones, at, safe) WHERE t.equipment_id = v.id",
            params,
        )


def _apply_report(state: TruckState, envelope: wire.Envelope) -> None:
    zones = set(state.reported_zone_ids)
    for body in envelope.bodies.values():
        if isinstance(body, wire.MachineAllStopV1):
            state.reported_all_stop = body.mode
        elif isinstance(body, wire.SafeStateV1):
            state.safe_stopped_at = envelope.timestamp if body.state == "Stopped" else None
        elif isinstance(body, wire.SyncActiveZonesResponseV1) and body.accepted:
            zones = set(body.zone_ids)
        elif isinstance(body, wire.ActivateZoneResponseV1) and body.accepted:
            zones.add(body.zone_id)
        elif isinstance(body, wire.DeactivateZoneResponseV1) and body.accepted:
            zones.discard(body.zone_id)
    state.reported_zone_ids = sorted(zones)
    state.reported_at = envelope.timestamp
