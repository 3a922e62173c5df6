"""The outbox: every message the FMS sends a truck is a Command with one lifecycle, and beside
it, per truck, the desired state and the last reported state."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models


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
        "vehicles.Equipment", on_delete=models.CASCADE, related_name="commands"
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
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ISSUED)
    issued_at = models.DateTimeField(auto_now_add=True, db_index=True)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True, help_text="First delivery.")
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    answer = models.CharField(max_length=300, blank=True, help_text="The truck's reason, if any.")

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

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN


class CommandEvent(models.Model):
    """The audit trail: every change of a command's status, with who or what caused it."""

    command = models.ForeignKey(Command, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=12, choices=Command.Status.choices)
    detail = models.CharField(max_length=300, blank=True)
    actor = models.CharField(max_length=80, help_text="A user name, 'truck', 'outbox' or 'rest'.")

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.command_id} {self.status} at {self.at:%H:%M:%S}"


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

    def __str__(self) -> str:
        return f"state of {self.equipment_id}"
