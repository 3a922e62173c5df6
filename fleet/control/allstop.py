"""The site-wide all-stop (ISO 23725 MachineAllStopRequestV1 on the site's fleet topic).

Apply: any operator, or a rule (the emergency-stop rule); Remove: supervisors only, with the
same ModeAllStopId, so it lifts exactly the stop that was applied. The desired state is kept per
machine (``TruckState.all_stop_id``): a machine that connects during an all-stop receives it on
re-synchronisation. The message goes once on the fleet topic (one publish reaches every machine);
beside it each machine has a command that records its acknowledgement (its MachineAllStopV1
report) and is retried on the machine's own topic if the acknowledgement does not come.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count

from fleet.control import services
from fleet.control.models import AllStop, Command, FleetMessage, TruckState
from fleet.live.broadcast import broadcast_on_commit
from fleet.mine.models import Site
from fleet.vehicles.models import Equipment

log = logging.getLogger(__name__)

MESSAGE = "MachineAllStopRequestV1"


def in_force(site: Site) -> AllStop | None:
    """The all-stop applied on ``site`` and not removed, if any."""
    latest = AllStop.objects.filter(site=site).order_by("-at", "-id").first()
    return latest if latest is not None and latest.mode == AllStop.Mode.APPLY else None


def _machines(site: Site) -> list[Equipment]:
    return list(
        Equipment.objects.filter(
            site=site, autonomous=True, status=Equipment.Status.ACTIVE
        ).select_related("site")
    )


def _who(actor: User | None, rule: str) -> str:
    if actor is not None:
        return actor.get_username()
    if not rule:
        raise ValueError("an all-stop is applied by a user or by a named rule")
    return f"rule:{rule}"


@transaction.atomic
def apply_all_stop(
    site: Site, *, reason: str, actor: User | None = None, rule: str = ""
) -> AllStop:
    """Stop every machine of ``site``. Applying while one is in force changes nothing (the
    machines are already told) and returns the one in force."""
    who = _who(actor, rule)
    Site.objects.select_for_update().get(pk=site.pk)  # one all-stop decision per site at a time
    current = in_force(site)
    if current is not None:
        return current
    return _send(site, AllStop.Mode.APPLY, uuid.uuid4(), reason=reason, who=who, actor=actor)


@transaction.atomic
def remove_all_stop(site: Site, *, reason: str, actor: User) -> AllStop:
    """Lift the all-stop in force (supervisors: the view checks the role; a rule never lifts
    one, so ``actor`` is required)."""
    if actor is None:
        raise PermissionDenied("an all-stop is removed by a supervisor, never by a rule")
    Site.objects.select_for_update().get(pk=site.pk)
    current = in_force(site)
    if current is None:
        raise ValidationError(f"no all-stop is in force on {site.name}")
    return _send(
        site,
        AllStop.Mode.REMOVE,
        current.stop_id,
        reason=reason,
        who=actor.get_username(),
        actor=actor,
    )


def _send(
    site: Site, mode: str, stop_id: uuid.UUID, *, reason: str, who: str, actor: User | None
) -> AllStop:
    machines = _machines(site)
    body = {"ModeAllStop": mode, "ModeAllStopId": str(stop_id)}
    _set_desired(machines, stop_id if mode == AllStop.Mode.APPLY else None)
    commands = services.issue_commands_to(
        machines,
        MESSAGE,
        body,
        reason=f"all-stop {mode.lower()}: {reason}",
        actor=actor,
        actor_name=who,
        supersede_key="all-stop",
        # The fleet-topic publish is every machine's first attempt; its own topic is the retry.
        first_attempt_in=timedelta(seconds=settings.COMMAND_RETRY_S),
    )
    FleetMessage.objects.create(
        site=site,
        message_name=MESSAGE,
        body=body,
        answer_key=commands[0].answer_key if commands else f"allstop:{stop_id}:{mode}",
    )
    event = AllStop.objects.create(
        site=site,
        mode=mode,
        stop_id=stop_id,
        reason=reason[:300],
        actor=who,
        machines=len(machines),
    )
    log.warning(
        "ALL-STOP %s on %s by %s: %s (%d machines)",
        mode.upper(),
        site.slug,
        who,
        reason,
        len(machines),
    )
    broadcast_on_commit(
        site.id,
        "allstop.changed",
        {"mode": mode, "stopId": str(stop_id), "reason": reason, "actor": who},
    )
    return event


def _set_desired(machines: list[Equipment], stop_id: uuid.UUID | None) -> None:
    """Every machine's desired all-stop (a new machine state row where none exists yet)."""
    ids = [machine.id for machine in machines]
    existing = set(
        TruckState.objects.filter(equipment_id__in=ids).values_list("equipment_id", flat=True)
    )
    TruckState.objects.bulk_create(TruckState(equipment_id=i) for i in ids if i not in existing)
    TruckState.objects.filter(equipment_id__in=ids).update(all_stop_id=stop_id)


@dataclass(frozen=True)
class AllStopStatus:
    """What the control room sees: the action in force and each machine's answer."""

    event: AllStop | None
    acknowledged: list[str]
    waiting: list[str]  # sent (or still to be sent), no answer yet
    failed: list[str]  # rejected or expired

    @property
    def complete(self) -> bool:
        return not self.waiting


def all_stop_status(site: Site) -> AllStopStatus:
    """The latest all-stop action of ``site`` and how far its machines have answered."""
    event = AllStop.objects.filter(site=site).order_by("-at", "-id").first()
    if event is None:
        return AllStopStatus(None, [], [], [])
    commands = Command.objects.filter(
        equipment__site=site,
        message_name=MESSAGE,
        answer_key=f"allstop:{event.stop_id}:{event.mode}",
    ).values_list("equipment__name", "status")
    by_status: dict[str, list[str]] = {"ok": [], "wait": [], "bad": []}
    for name, status in commands:
        if status == Command.Status.ACKNOWLEDGED:
            by_status["ok"].append(name)
        elif status in Command.OPEN:
            by_status["wait"].append(name)
        elif status != Command.Status.SUPERSEDED:
            by_status["bad"].append(name)
    return AllStopStatus(
        event, sorted(by_status["ok"]), sorted(by_status["wait"]), sorted(by_status["bad"])
    )


def acknowledgements_by_status(event: AllStop) -> dict[str, int]:
    """Counts of the machines' commands of ``event`` by status (benchmarks, metrics)."""
    rows = (
        Command.objects.filter(
            message_name=MESSAGE, answer_key=f"allstop:{event.stop_id}:{event.mode}"
        )
        .values("status")
        .annotate(n=Count("pk"))
    )
    return {row["status"]: row["n"] for row in rows}
