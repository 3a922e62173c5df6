"""The outbox: every message the FMS sends a truck is a Command with one lifecycle, and beside
it, per truck, the desired state and the last reported state.

A command's status changes only through ``Command.change_status``, which the control services
(``fleet.control.services``) call and which writes the ``CommandEvent`` of the change in the same
transaction; saving a new status or setting it with a query is refused. The events are an audit
record (``fleet.audit``): append-only. A command is history too: its trail PROTECTs it, and it
keeps the machine and the user it names from being deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models, transaction

from fleet.audit import AuditError, AuditRecord


def _status_refused(what: str) -> AuditError:
    return AuditError(
        f"{what} is refused: a command's status changes only through fleet.control.services "
        "(Command.change_status), which writes the change to its audit trail"
    )


class CommandQuerySet(models.QuerySet["Command"]):
    def update(self, **kwargs: Any) -> int:
        if "status" in kwargs:
            raise _status_refused("setting a command's status with a query")
        return super().update(**kwargs)

    update.alters_data = True  # type: ignore[attr-defined]

    def bulk_update(self, objs: Iterable[Command], fields: Any, batch_size: Any = None) -> int:
        # Refused before Django's bulk_update opens its transaction, like update().
        if "status" in fields:
            raise _status_refused("setting commands' status with bulk_update")
        return super().bulk_update(objs, fields, batch_size=batch_size)

    bulk_update.alters_data = True  # type: ignore[attr-defined]


class Command(models.Model):
    """One FMS -> truck message. ``command_id`` travels in the envelope (``CommandId``) and
    the truck answers with CommandAcknowledgementV1; ``serial`` is the REST cursor."""

    class Status(models.TextChoices):
        ISSUED = "issued", "Issued"  # waiting for delivery
        SENT = "sent", "Sent"  # handed to the broker (or fetched over REST), not yet answered
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        REJECTED = "rejected", "Rejected"  # the truck refused it (reason kept)
        EXPIRED = "expired", "Expired"  # no answer before expires_at
        SUPERSEDED = "superseded", "Superseded"  # a newer command of the same key replaced it

    OPEN = (Status.ISSUED, Status.SENT)

    serial = models.BigAutoField(primary_key=True)
    command_id = models.UUIDField("CommandId", unique=True, default=uuid.uuid4, editable=False)
    equipment = models.ForeignKey(
        "vehicles.Equipment", on_delete=models.PROTECT, related_name="commands"
    )
    message_name = models.CharField(max_length=64)
    body = models.JSONField(help_text="The message body in its ISO 23725 wire form.")
    supersede_key = models.CharField(
        max_length=80,
        blank=True,
        help_text="A newer open command of the same key for the same truck replaces this one "
        "(e.g. 'stop', 'assignment', 'zone-sync').",
    )
    answer_key = models.CharField(
        max_length=80,
        blank=True,
        db_index=True,
        help_text="How a standard ISO 23725 answer names this command when the truck does not "
        "echo the CommandId (e.g. 'zone:<ZoneId>', 'request:<RequestId>').",
    )
    reason = models.CharField(max_length=300, help_text="Why it was sent, for the operator.")
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.ISSUED, editable=False
    )
    issued_at = models.DateTimeField(auto_now_add=True, db_index=True)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True, help_text="First delivery.")
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    answer = models.CharField(max_length=300, blank=True, help_text="The truck's reason, if any.")

    objects = CommandQuerySet.as_manager()
    # The status as stored, to tell a new one apart on save (not a field).
    _stored_status: str | None

    class Meta:
        ordering = ["-serial"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status__in=["issued", "sent"]),
                name="command_due",
            ),
            models.Index(fields=["equipment", "serial"]),
        ]

    def __str__(self) -> str:
        return f"{self.message_name} to {self.equipment_id} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._state.adding:
            if self.status != self.Status.ISSUED:
                raise _status_refused(f"a new command with status {self.status!r} (not Issued)")
        elif "status" in (kwargs.get("update_fields") or ("status",)) and self.status != getattr(
            self, "_stored_status", self.status
        ):
            raise _status_refused(f"saving command {self.serial} with a new status")
        super().save(*args, **kwargs)
        self._stored_status = self.status

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> Command:
        command = super().from_db(db, field_names, values)
        command._stored_status = command.__dict__.get("status")
        return command

    def change_status(
        self,
        status: str,
        *,
        actor: str,
        detail: str = "",
        when: Iterable[str] = OPEN,
        **fields: Any,
    ) -> bool:
        """Move the command to ``status`` (with other ``fields``) if it is still in one of
        ``when``, and write the event, in one transaction. False if it had moved on (another
        process answered or expired it first): then nothing changes and no event is written."""
        with transaction.atomic():
            still = Command.objects.filter(pk=self.pk, status__in=list(when))
            # The one place a status is written (CommandQuerySet.update refuses it).
            if not models.QuerySet.update(still, status=status, **fields):
                return False
            for name, value in fields.items():
                setattr(self, name, value)
            self.status = self._stored_status = status
            CommandEvent.objects.create(
                command=self, status=status, detail=detail[:300], actor=actor
            )
        return True

    @classmethod
    def change_statuses(
        cls,
        pks: Iterable[int],
        status: str,
        *,
        actor: str,
        detail: str = "",
        when: Iterable[str] = OPEN,
        **fields: Any,
    ) -> list[int]:
        """``change_status`` for many commands in three statements (an all-stop reaches a
        thousand machines at once). The pks actually changed: those still in ``when``."""
        with transaction.atomic():
            still = list(
                Command.objects.select_for_update()
                .filter(pk__in=list(pks), status__in=list(when))
                .order_by("serial")  # the one lock order (services.lock_open_commands)
                .values_list("pk", flat=True)
            )
            if not still:
                return []
            models.QuerySet.update(Command.objects.filter(pk__in=still), status=status, **fields)
            CommandEvent.objects.bulk_create(
                CommandEvent(command_id=pk, status=status, detail=detail[:300], actor=actor)
                for pk in still
            )
        return still

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN


class CommandEvent(AuditRecord):
    """The audit trail: every change of a command's status, with who or what caused it."""

    audit_time_field = "at"
    audit_archive_parent = "command"

    command = models.ForeignKey(Command, on_delete=models.PROTECT, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=12, choices=Command.Status.choices)
    detail = models.CharField(max_length=300, blank=True)
    actor = models.CharField(max_length=80, help_text="A user name, 'truck', 'outbox' or 'rest'.")

    class Meta(AuditRecord.Meta):
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.command_id} {self.status} at {self.at:%H:%M:%S}"

    @classmethod
    def archivable(cls, cutoff: Any) -> models.QuerySet:
        """Whole trails only, of closed commands whose last event is older than ``cutoff``: a
        trail is never split between the database and a file, and an open command stays."""
        done = (
            Command.objects.exclude(status__in=Command.OPEN)
            .annotate(last_event=models.Max("events__at"))
            .filter(last_event__lt=cutoff)
        )
        return cls.objects.filter(command__in=done.values("pk"))


class TruckState(models.Model):
    """Per truck: what the FMS wants it to be (desired) and what it last said it is (reported).
    Reconciled whenever the truck connects or reports it is out of sync."""

    equipment = models.OneToOneField(
        "vehicles.Equipment", on_delete=models.CASCADE, primary_key=True, related_name="control"
    )
    # Desired. Active zones are not copied here: they are the site's active zones.
    stop_id = models.UUIDField(
        null=True, blank=True, help_text="ModeAllStopId of a targeted stop in force, if any."
    )
    all_stop_id = models.UUIDField(
        null=True, blank=True, help_text="ModeAllStopId of the site-wide all-stop in force."
    )
    assignment = models.JSONField(null=True, blank=True, help_text="The current assignment body.")
    # Reported.
    connection = models.CharField(max_length=20, blank=True)
    reported_all_stop = models.CharField(max_length=3, blank=True, help_text="On or Off.")
    reported_zone_ids = ArrayField(models.UUIDField(), default=list, blank=True)
    reported_at = models.DateTimeField(null=True, blank=True)
    resynced_at = models.DateTimeField(null=True, blank=True)
    safe_stopped_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the machine reported it stopped itself because the FMS heartbeat was "
        "lost (ISO 17757 safe state); cleared when it reports it resumed.",
    )

    def __str__(self) -> str:
        return f"state of {self.equipment_id}"


class AllStop(AuditRecord):
    """One all-stop action on a site (ISO 23725 MachineAllStopRequestV1 to its fleet topic):
    Apply by an operator or a rule, Remove by a supervisor. The latest row of a site is the
    state in force; each machine's acknowledgement is its command (answer key
    ``allstop:<stop_id>:<mode>``)."""

    audit_time_field = "at"

    class Mode(models.TextChoices):
        APPLY = "Apply", "Apply"
        REMOVE = "Remove", "Remove"

    site = models.ForeignKey("mine.Site", on_delete=models.PROTECT, related_name="all_stops")
    mode = models.CharField(max_length=6, choices=Mode.choices)
    stop_id = models.UUIDField("ModeAllStopId")
    reason = models.CharField(max_length=300)
    actor = models.CharField(max_length=80, help_text="The user, or the rule that applied it.")
    machines = models.PositiveIntegerField(help_text="Machines of the site it was sent to.")
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta(AuditRecord.Meta):
        ordering = ["-at", "-id"]
        permissions = [
            ("apply_allstop", "Can apply a site's all-stop"),
            ("remove_allstop", "Can remove a site's all-stop"),
        ]

    def __str__(self) -> str:
        return f"all-stop {self.mode} on {self.site_id} by {self.actor}"


class FleetMessage(models.Model):
    """A message for every machine of a site, published once on the site's fleet topic by the
    delivery process; the per-machine commands beside it track each acknowledgement and retry
    on the machine's own topic."""

    site = models.ForeignKey("mine.Site", on_delete=models.PROTECT, related_name="+")
    message_name = models.CharField(max_length=64)
    body = models.JSONField()
    answer_key = models.CharField(max_length=80, help_text="The machines' commands it stands for.")
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.message_name} to the fleet of {self.site_id}"


# --- dispatch (fleet.control.dispatching; the optimiser is fleet.control.dispatch) -------------


class SiteDispatch(models.Model):
    """Whether the dispatcher runs a site's trucks (off until a supervisor switches it on)."""

    site = models.OneToOneField(
        "mine.Site", on_delete=models.CASCADE, primary_key=True, related_name="dispatch"
    )
    enabled = models.BooleanField(default=False)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        permissions = [
            ("dispatch_trucks", "Can reassign trucks, release them and report loading units")
        ]

    def __str__(self) -> str:
        return f"dispatch of {self.site_id} ({'on' if self.enabled else 'off'})"


class LoadingUnitStatus(AuditRecord):
    """A loading unit reported down or back (and, optionally, digging at a changed rate): the
    latest row of a unit is its state; none means available at its mapped rate."""

    audit_time_field = "at"

    loading_unit = models.ForeignKey(
        "mine.LoadingUnit", on_delete=models.PROTECT, related_name="statuses"
    )
    available = models.BooleanField()
    dig_rate_tph = models.FloatField(
        null=True, blank=True, help_text="The rate it digs at now, if not its mapped rate."
    )
    reason = models.CharField(max_length=300)
    actor = models.CharField(max_length=80)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta(AuditRecord.Meta):
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.loading_unit_id} {'up' if self.available else 'down'} by {self.actor}"


class DispatchPlan(AuditRecord):
    """One solve of the upper stage (the flow plan) with its inputs and why it was made."""

    audit_time_field = "at"

    site = models.ForeignKey("mine.Site", on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    trigger = models.CharField(max_length=20)  # unit-down | unit-up | periodic | operator | first
    reason = models.CharField(max_length=300)
    status = models.CharField(max_length=12)
    tph = models.FloatField(help_text="Planned tonnes per hour.")
    trucks = models.PositiveIntegerField(help_text="Trucks the plan had.")
    solve_ms = models.FloatField()
    plan = models.JSONField(help_text="Routes with their rates, and what binds.")
    inputs = models.JSONField(help_text="Loading units and dumps as the optimiser saw them.")

    class Meta(AuditRecord.Meta):
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"plan {self.pk} of {self.site_id}: {self.tph:.0f} t/h ({self.trigger})"


class Assignment(AuditRecord):
    """One assignment sent to a truck: the loading unit it goes to next (and the dump after),
    who decided it (the dispatcher with the plan in force, or an operator by hand) and why."""

    audit_time_field = "at"

    equipment = models.ForeignKey(
        "vehicles.Equipment", on_delete=models.PROTECT, related_name="assignments"
    )
    assignment_id = models.UUIDField("AssignmentId", unique=True)
    loading_unit = models.ForeignKey("mine.LoadingUnit", on_delete=models.PROTECT, related_name="+")
    dump = models.ForeignKey(
        "mine.DumpPoint", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    plan = models.ForeignKey(
        DispatchPlan, null=True, blank=True, on_delete=models.PROTECT, related_name="assignments"
    )
    manual = models.BooleanField(default=False)
    reason = models.CharField(max_length=300)
    actor = models.CharField(max_length=80, help_text="A user, or 'dispatcher'.")
    command = models.ForeignKey(
        Command, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    expected_arrival = models.DateTimeField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta(AuditRecord.Meta):
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["equipment", "-at"])]

    def __str__(self) -> str:
        return f"{self.equipment_id} -> {self.loading_unit_id} ({self.actor})"


class DispatchTruck(models.Model):
    """Per truck, what the dispatcher tracks: its reported production state, whether it is
    empty, the assignment in force, and whether an operator's assignment holds it."""

    equipment = models.OneToOneField(
        "vehicles.Equipment", on_delete=models.CASCADE, primary_key=True, related_name="dispatch"
    )
    production_state = models.CharField(max_length=12, blank=True)
    state_at = models.DateTimeField(null=True, blank=True)
    way_id = models.IntegerField(null=True, blank=True)
    reported_assignment_id = models.UUIDField(null=True, blank=True)
    empty = models.BooleanField(default=True, help_text="Between a dump and its next load.")
    arrived = models.BooleanField(default=False, help_text="At its loading unit (queued or on).")
    assignment = models.ForeignKey(
        Assignment, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    manual_hold = models.BooleanField(
        default=False, help_text="An operator's assignment, kept until the next dump."
    )

    def __str__(self) -> str:
        return f"dispatch state of {self.equipment_id}"


class CollisionRisk(models.Model):
    """A pair of machines predicted to come closer than the safety distance
    (``fleet.control.collision_services``): open while the assessments keep seeing it, closed
    once they have not for ``COLLISION_CLEAR_S``. ``first`` is the machine whose id sorts
    first. What was done about it is in its ``interventions`` (an audit record)."""

    site = models.ForeignKey("mine.Site", on_delete=models.PROTECT, related_name="+")
    first = models.ForeignKey("vehicles.Equipment", on_delete=models.PROTECT, related_name="+")
    second = models.ForeignKey("vehicles.Equipment", on_delete=models.PROTECT, related_name="+")
    opened_at = models.DateTimeField(auto_now_add=True, db_index=True)
    last_seen_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    t_ca_s = models.FloatField("time to closest approach (s)", help_text="At the last sighting.")
    d_ca_m = models.FloatField("closest approach (m)", help_text="At the last sighting.")
    min_d_ca_m = models.FloatField("closest approach predicted while open (m)")
    source = models.CharField(
        max_length=300,
        help_text="Where each machine's path came from: a model version or the fallback.",
    )

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["first", "second"],
                condition=models.Q(closed_at__isnull=True),
                name="one_open_collision_risk_per_pair",
            )
        ]

    def __str__(self) -> str:
        return f"collision risk {self.first_id} / {self.second_id}"


class CollisionIntervention(AuditRecord):
    """What the FMS did about a collision risk, per machine: an ISO 21815-2 intervention (or
    the resume once the risk cleared), with the command that carried it (none when the machine
    was already held by another stop, or is not autonomous) and the operator-readable reason."""

    audit_time_field = "at"

    class Kind(models.TextChoices):
        SLOW_DOWN = "slow_down", "Slow down"
        STOP = "stop", "Stop"
        PREVENT_MOTION = "prevent_motion", "Prevent motion"
        RESUME = "resume", "Resume"

    risk = models.ForeignKey(CollisionRisk, on_delete=models.PROTECT, related_name="interventions")
    equipment = models.ForeignKey("vehicles.Equipment", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    command = models.ForeignKey(
        Command, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=300)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta(AuditRecord.Meta):
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.equipment_id} ({self.risk_id})"


# --- alerts -------------------------------------------------------------------------------------


class Alert(models.Model):
    """Something an operator must look at, raised by control's rules (live compliance, a fault
    prediction's run) and answered by people: Open -> Acknowledged -> Assigned -> Resolved.

    Repeats of the same open alert (same machine, same ``fold_key``) are folded into it:
    ``count`` and ``last_seen_at`` grow, no second row is written (a partial unique index makes
    that hold across ingest replicas). The status changes only through
    ``fleet.control.alerts``, which writes each change to ``AlertEvent`` with who made it."""

    class Severity(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        ASSIGNED = "assigned", "Assigned"
        RESOLVED = "resolved", "Resolved"

    class Verdict(models.TextChoices):
        NONE = "", "No verdict"
        CONFIRMED = "confirmed", "Confirmed fault"
        FALSE_ALARM = "false_alarm", "False alarm"

    site = models.ForeignKey("mine.Site", on_delete=models.PROTECT, related_name="alerts")
    equipment = models.ForeignKey(
        "vehicles.Equipment", on_delete=models.PROTECT, related_name="alerts"
    )
    kind = models.CharField(
        max_length=40, help_text="What was found: 'exclusion', 'speeding', 'fault:tyre_leak'..."
    )
    fold_key = models.CharField(
        max_length=120, help_text="Repeats with the same key fold into the open alert."
    )
    severity = models.CharField(max_length=8, choices=Severity.choices)
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.OPEN, editable=False
    )
    source = models.CharField(
        max_length=80,
        help_text="The rule that raised it (e.g. 'compliance.exclusion'), or the model version "
        "(e.g. 'fault@3').",
    )
    inputs = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the decision was made on: the zone and the reading, or the model "
        "version, the input window and the probabilities.",
    )
    channel = models.CharField(
        max_length=80, blank=True, help_text="The contributing channel (sensor or message field)."
    )
    reason = models.CharField(max_length=300, help_text="Why, for the operator.")
    count = models.PositiveIntegerField(default=1, help_text="Occurrences folded into it.")
    first_seen_at = models.DateTimeField(auto_now_add=True, db_index=True)
    last_seen_at = models.DateTimeField()
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    # The operator's answer to "was it real?": for a fault alert, a label the site's own fault
    # head learns from (fleet.learning.onsite). Given when acknowledging or resolving.
    verdict = models.CharField(
        max_length=12, choices=Verdict.choices, default="", blank=True, editable=False
    )
    verdict_at = models.DateTimeField(null=True, blank=True, editable=False)
    command_ids = ArrayField(
        models.UUIDField(),
        default=list,
        blank=True,
        help_text="The commands its configured actions issued (stop, workshop assignment).",
    )

    class Meta:
        ordering = ["-last_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["equipment", "fold_key"],
                condition=~models.Q(status="resolved"),
                name="one_unresolved_alert_per_key",
            )
        ]
        indexes = [models.Index(fields=["site", "status", "-last_seen_at"])]

    def __str__(self) -> str:
        return f"{self.get_severity_display()} {self.kind} on {self.equipment_id} ({self.status})"


class AlertEvent(AuditRecord):
    """The alert's trail: opened, each operator action, each action control took, with who."""

    audit_time_field = "at"
    audit_archive_parent = "alert"

    alert = models.ForeignKey(Alert, on_delete=models.PROTECT, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    action = models.CharField(
        max_length=12,
        help_text="opened, acknowledged, assigned, resolved, or command (an action taken).",
    )
    detail = models.CharField(max_length=300, blank=True)
    actor = models.CharField(max_length=80, help_text="A user name, or the rule / model.")

    class Meta(AuditRecord.Meta):
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"alert {self.alert_id} {self.action} by {self.actor}"

    @classmethod
    def archivable(cls, cutoff: Any) -> models.QuerySet:
        """Whole trails of resolved alerts only, resolved before ``cutoff``."""
        done = Alert.objects.filter(status=Alert.Status.RESOLVED, resolved_at__lt=cutoff)
        return cls.objects.filter(alert__in=done.values("pk"))


class HealthPolicy(models.Model):
    """A site's rules for the fault head's results (``fleet.control.health``): per fault class
    the probability threshold, the severity and the action; how many decisions in a row it
    takes; where the workshop is. Empty entries take the defaults (``health.DEFAULTS``, and
    the threshold and run length the model version was calibrated with)."""

    class Action(models.TextChoices):
        NONE = "none", "Alert only"
        STOP = "stop", "Stop the truck"
        WORKSHOP = "workshop", "Send to the workshop"

    site = models.OneToOneField(
        "mine.Site", on_delete=models.CASCADE, primary_key=True, related_name="health_policy"
    )
    thresholds = models.JSONField(
        default=dict, blank=True, help_text='Per fault class, e.g. {"tyre_leak": 0.8}.'
    )
    consecutive = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Decisions in a row above the threshold; empty: the model version's own rule.",
    )
    severities = models.JSONField(default=dict, blank=True, help_text="Per fault class.")
    actions = models.JSONField(
        default=dict, blank=True, help_text='Per fault class: "none", "stop" or "workshop".'
    )
    workshop_way_id = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="WayId of the workshop (the destination of a 'workshop' assignment).",
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "health policies"

    def __str__(self) -> str:
        return f"health policy of {self.site_id}"


class FaultRun(models.Model):
    """Per truck and fault class, how many fault-head decisions in a row were above the
    threshold, and the window end of the last: the state of the run-length rule, kept by
    control (the callback only hands each prediction over)."""

    equipment = models.ForeignKey("vehicles.Equipment", on_delete=models.CASCADE, related_name="+")
    fault_class = models.CharField(max_length=40)
    count = models.PositiveIntegerField(default=0)
    last_window_end = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["equipment", "fault_class"], name="one_run_per_fault")
        ]

    def __str__(self) -> str:
        return f"{self.fault_class} x{self.count} on {self.equipment_id}"


# --- traffic permissions (fleet.control.traffic_services; the arbiter is fleet.control.traffic) --


class TrafficPermission(models.Model):
    """A truck's permission to enter a one-lane section (a policy zone with the
    ``trafficPermission`` policy), from its TrafficPermissionRequestV1 to its release. Its status
    changes only through ``fleet.control.traffic_services``, which writes each change to the
    append-only ``TrafficPermissionEvent`` trail; each change the truck must know of goes to it
    as a TrafficPermissionUpdateV1 command (``event_id`` names the latest)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        GRANTED = "granted", "Granted"
        REJECTED = "rejected", "Rejected"
        REVOKED = "revoked", "Revoked"
        RELEASED = "released", "Released"
        EXPIRED = "expired", "Expired"  # a grant not used, or a request not renewed, in time

    OPEN = (Status.PENDING, Status.GRANTED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    site = models.ForeignKey("mine.Site", on_delete=models.PROTECT, related_name="+")
    equipment = models.ForeignKey(
        "vehicles.Equipment", on_delete=models.PROTECT, related_name="traffic_permissions"
    )
    zone = models.ForeignKey(
        "mine.PolicyZone", on_delete=models.PROTECT, related_name="traffic_permissions"
    )
    way_id = models.IntegerField(
        "WayId",
        null=True,
        blank=True,
        help_text="The way the truck enters by (its direction); empty: it asked from inside.",
    )
    loaded = models.BooleanField(default=False, help_text="Carrying a payload when it asked.")
    gate = models.SmallIntegerField(
        null=True,
        blank=True,
        help_text="Which entrance of the section it asked at (where a road crosses the zone's "
        "edge nearest the truck): its direction. Empty: not known, conflicts with everyone.",
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, editable=False
    )
    reason = models.CharField(max_length=300, blank=True, help_text="Why it is where it is.")
    decided_by = models.CharField(
        max_length=80, blank=True, help_text="'rule:<name>' or the user who decided by hand."
    )
    requested_at = models.DateTimeField(db_index=True)
    last_asked_at = models.DateTimeField(help_text="The truck's latest request for it.")
    granted_at = models.DateTimeField(null=True, blank=True)
    entered_at = models.DateTimeField(
        null=True, blank=True, help_text="When the truck was first seen inside with the grant."
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    overtakes = models.PositiveIntegerField(
        default=0, help_text="Grants to others in the section while it waited."
    )
    event_id = models.UUIDField(
        null=True, blank=True, help_text="EventId of the latest TrafficPermissionUpdateV1 sent."
    )
    acknowledged_event_id = models.UUIDField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["equipment", "zone"],
                condition=models.Q(status__in=["pending", "granted"]),
                name="one_open_traffic_permission",
            )
        ]
        indexes = [
            models.Index(
                fields=["site"],
                condition=models.Q(status__in=["pending", "granted"]),
                name="traffic_permission_open",
            )
        ]
        permissions = [
            ("decide_trafficpermission", "Can grant or revoke a traffic permission by hand")
        ]

    def __str__(self) -> str:
        return f"{self.equipment_id} in {self.zone_id} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN


class TrafficPermissionEvent(AuditRecord):
    """The audit trail of a traffic permission: every status it took, why, and who decided
    (a rule, a user, or the truck)."""

    audit_time_field = "at"
    audit_archive_parent = "permission"

    permission = models.ForeignKey(
        TrafficPermission, on_delete=models.PROTECT, related_name="events"
    )
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    status = models.CharField(max_length=10, choices=TrafficPermission.Status.choices)
    reason = models.CharField(max_length=300, blank=True)
    actor = models.CharField(max_length=80, help_text="'rule:<name>', a user name, or 'truck'.")

    class Meta(AuditRecord.Meta):
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.permission_id} {self.status} by {self.actor}"

    @classmethod
    def archivable(cls, cutoff: Any) -> models.QuerySet:
        """Whole trails of closed permissions only (an open one is still being decided)."""
        done = (
            TrafficPermission.objects.exclude(status__in=TrafficPermission.OPEN)
            .annotate(last_event=models.Max("events__at"))
            .filter(last_event__lt=cutoff)
        )
        return cls.objects.filter(permission__in=done.values("pk"))
