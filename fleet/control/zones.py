"""Policy zones reach the trucks: activation and deletion are sent to every connected machine of
the site through the outbox, each machine's answer is recorded, a deletion completes when every
machine asked has answered (or at its deadline, naming who did not), and a machine whose reported
zone set differs from the desired one is re-synchronised.

The desired zone set of a machine is its site's Active zones; a machine that is not connected
when a zone changes gets the whole set when it connects (``services.resync_truck``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from fleet.control import services
from fleet.control.models import Command, TruckState
from fleet.mine import services as mine
from fleet.mine.models import PolicyZone, ZoneResponse
from fleet.protocol import wire
from fleet.vehicles.models import Equipment

log = logging.getLogger(__name__)

ACTIVATE_KEY = "zone:{}"  # services._ANSWER_FIELDS names a zone command's answer so
DEACTIVATE_KEY = "unzone:{}"


def connected_machines(site_id: int) -> QuerySet[Equipment]:
    """The site's autonomous machines in service whose last connection state is Online."""
    return Equipment.objects.filter(
        site_id=site_id,
        autonomous=True,
        status=Equipment.Status.ACTIVE,
        control__connection="Online",
    ).select_related("site")


def _actor_of(zone: PolicyZone) -> str:
    return zone.created_by.get_username() if zone.created_by_id else "fms"


def _why(reason: str) -> str:
    return f": {reason}" if reason else ""


def send_zone_activation(zone_id: uuid.UUID) -> list[Command]:
    """ActivateZoneRequestV1 to every connected machine of the zone's site."""
    zone = PolicyZone.objects.select_related("created_by").get(pk=zone_id)
    if zone.status != PolicyZone.Status.ACTIVE:
        return []  # deleted again before this ran: nothing to send
    body = {"Zone": zone.to_feature()}
    reason = f"zone {zone.name!r} activated (by {_actor_of(zone)})" + _why(zone.reason)
    commands = _send_to_connected(zone, "ActivateZoneRequestV1", body, reason)
    log.info("zone %s activated: sent to %d connected machine(s)", zone.name, len(commands))
    return commands


def send_zone_deactivation(zone_id: uuid.UUID) -> list[Command]:
    """DeactivateZoneRequestV1 to every connected machine of the zone's site."""
    zone = PolicyZone.objects.get(pk=zone_id)
    if zone.status != PolicyZone.Status.PENDING_DELETE:
        return []
    body = {"ZoneId": str(zone.id)}
    commands = _send_to_connected(
        zone,
        "DeactivateZoneRequestV1",
        body,
        f"zone {zone.name!r} is being deleted" + _why(zone.delete_reason),
    )
    log.info("zone %s deletion: sent to %d connected machine(s)", zone.name, len(commands))
    return commands


@transaction.atomic
def _send_to_connected(
    zone: PolicyZone, message_name: str, body: dict, reason: str
) -> list[Command]:
    # One key per zone: a deletion supersedes an activation still unanswered, not queues behind.
    key = f"zone-change:{zone.id}"
    # A command's reason holds 300 characters: a long zone name and reason are cut, not refused.
    reason = reason[:300]
    return [
        services.issue_command(machine, message_name, body, reason=reason, supersede_key=key)
        for machine in connected_machines(zone.site_id)
    ]


# --- answers ----------------------------------------------------------------------------------


def record_zone_responses(envelopes: Iterable[wire.Envelope]) -> int:
    """Keep each Activate/Deactivate answer as a ZoneResponse (the first answer per machine and
    request stands: a redelivered answer is the same answer). Returns how many were new."""
    recorded = 0
    for envelope in envelopes:
        if envelope.equipment_id is None:
            continue
        for body in envelope.bodies.values():
            if isinstance(body, wire.ActivateZoneResponseV1):
                request = ZoneResponse.Request.ACTIVATE
            elif isinstance(body, wire.DeactivateZoneResponseV1):
                request = ZoneResponse.Request.DEACTIVATE
            else:
                continue
            recorded += _record_response(envelope.equipment_id, body, request, envelope.timestamp)
    return recorded


def _record_response(
    equipment_id: uuid.UUID,
    body: wire.ActivateZoneResponseV1 | wire.DeactivateZoneResponseV1,
    request: str,
    at: datetime,
) -> int:
    if not PolicyZone.objects.filter(pk=body.zone_id).exists():
        log.warning("machine %s answered about unknown zone %s", equipment_id, body.zone_id)
        return 0
    try:
        with transaction.atomic():
            ZoneResponse.objects.create(
                zone_id=body.zone_id,
                equipment_id=equipment_id,
                request=request,
                accepted=body.accepted,
                reason=(body.reason or "")[:200],
                responded_at=at,
            )
    except IntegrityError:
        return 0  # already answered
    if not body.accepted:
        log.warning(
            "machine %s rejected the %s of zone %s: %s",
            equipment_id,
            request,
            body.zone_id,
            body.reason or "no reason given",
        )
    return 1


# --- the control room's view ------------------------------------------------------------------

# A deleted zone stays in the control room's list this long, with its machines' last answers.
RECENTLY_DELETED = timedelta(minutes=15)


def site_zone_answers(site_id: uuid.UUID, *, now: datetime | None = None) -> list[dict]:
    """The site's zones in force or on their way in or out (and those deleted lately), each with
    its machines' answers to the latest request about it: activation while Pending or Active,
    deactivation once its deletion was requested."""
    now = now or timezone.now()
    zones = PolicyZone.objects.filter(site_id=site_id).exclude(
        status=PolicyZone.Status.DELETED, deleted_at__lt=now - RECENTLY_DELETED
    )
    return [{"zone": zone, **_answers(zone)} for zone in zones.order_by("-activated_at", "name")]


def _answers(zone: PolicyZone) -> dict:
    """Each machine asked about ``zone``'s latest request: accepted, rejected (with the
    machine's reason), waiting (its command still open), or silent (the command expired or was
    superseded with no answer)."""
    deleting = zone.status in (PolicyZone.Status.PENDING_DELETE, PolicyZone.Status.DELETED)
    request = ZoneResponse.Request.DEACTIVATE if deleting else ZoneResponse.Request.ACTIVATE
    key = (DEACTIVATE_KEY if deleting else ACTIVATE_KEY).format(zone.id)
    responses = {
        r.equipment_id: r
        for r in zone.responses.filter(request=request).select_related("equipment")
    }
    result: dict[str, Any] = {
        "request": request,
        "accepted": [],
        "rejected": [],
        "waiting": [],
        "silent": [],
    }
    commands = (
        Command.objects.filter(answer_key=key)
        .select_related("equipment")
        .order_by("equipment__name", "-serial")
    )
    seen: set[uuid.UUID] = set()
    for command in commands:  # newest command per machine first
        machine = command.equipment
        if machine.pk in seen:
            continue
        seen.add(machine.pk)
        response = responses.get(machine.pk)
        if response is not None and response.accepted:
            result["accepted"].append(machine.name)
        elif response is not None:
            result["rejected"].append({"machine": machine.name, "reason": response.reason})
        elif command.status in Command.OPEN:
            result["waiting"].append(machine.name)
        else:
            result["silent"].append(machine.name)
    return result


# --- deletion ---------------------------------------------------------------------------------


def complete_zone_deletions(*, timeout: timedelta) -> list[PolicyZone]:
    """Pending Delete -> Deleted for each zone every machine that was asked to drop it has
    answered, or whose request is older than ``timeout`` (then the zone keeps the names of the
    machines that did not answer): a machine that never answers must not keep a road closed."""
    done = []
    cutoff = timezone.now() - timeout
    for zone in PolicyZone.objects.filter(status=PolicyZone.Status.PENDING_DELETE):
        silent = _not_answered(zone)
        if not silent or zone.delete_requested_at <= cutoff:
            done.append(mine.confirm_zone_deleted(zone, unanswered=silent))
            if silent:
                log.warning(
                    "zone %s deleted at its deadline; no answer from %s",
                    zone.name,
                    ", ".join(silent),
                )
    return done


def _not_answered(zone: PolicyZone) -> list[str]:
    """Names of the machines asked to drop ``zone`` that have not answered."""
    asked = Command.objects.filter(
        message_name="DeactivateZoneRequestV1", answer_key=DEACTIVATE_KEY.format(zone.id)
    ).values("equipment_id")
    answered = zone.responses.filter(request=ZoneResponse.Request.DEACTIVATE).values("equipment_id")
    silent = Equipment.objects.filter(pk__in=asked).exclude(pk__in=answered)
    return sorted(silent.values_list("name", flat=True))


# --- reconciliation ---------------------------------------------------------------------------


def reconcile_zone_sets(*, settle: timedelta) -> list[Equipment]:
    """Re-synchronise each connected machine whose reported zone set differs from its site's
    Active zones, once nothing about zones is in flight to it and its last re-sync is older than
    ``settle`` (answers take a moment; a machine is not flooded). Returns those re-synced."""
    now = timezone.now()
    desired: dict[int, set[uuid.UUID]] = {}
    resynced = []
    states = TruckState.objects.filter(
        connection="Online", reported_at__isnull=False, equipment__autonomous=True
    ).select_related("equipment__site")
    for state in states:
        machine = state.equipment
        if state.resynced_at and now - state.resynced_at < settle:
            continue
        if machine.site_id not in desired:
            desired[machine.site_id] = set(
                PolicyZone.objects.filter(
                    site_id=machine.site_id, status=PolicyZone.Status.ACTIVE
                ).values_list("id", flat=True)
            )
        want, have = desired[machine.site_id], set(state.reported_zone_ids)
        if want == have or _zone_commands_open(machine):
            continue
        missing, extra = len(want - have), len(have - want)
        services.resync_truck(
            machine, reason=f"reported zones differ: {missing} missing, {extra} not active"
        )
        resynced.append(machine)
    return resynced


def _zone_commands_open(machine: Equipment) -> bool:
    return Command.objects.filter(
        equipment=machine,
        status__in=Command.OPEN,
        message_name__in=(
            "ActivateZoneRequestV1",
            "DeactivateZoneRequestV1",
            "SyncActiveZonesRequestV1",
        ),
    ).exists()
