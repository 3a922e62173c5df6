"""Equipment (one table with a kind, as ISO 23725's fleet definition has it) and credentials."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class Equipment(models.Model):
    """A machine. One with history (commands, zone responses, predictions, credentials, haul
    cycles) is retired, never deleted: those relations PROTECT it."""

    class Kind(models.TextChoices):
        HAUL_TRUCK = "haul_truck", "Haul truck"
        LOADING_UNIT = "loading_unit", "Loading unit"
        LIGHT_VEHICLE = "light_vehicle", "Light vehicle"
        ANCILLARY = "ancillary", "Ancillary"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        MAINTENANCE = "maintenance", "In maintenance"
        RETIRED = "retired", "Retired"

    id = models.UUIDField("EquipmentId", primary_key=True, default=uuid.uuid4, editable=False)
    site = models.ForeignKey("mine.Site", on_delete=models.PROTECT, related_name="equipment")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(
        max_length=40, help_text="Fleet number painted on the machine, e.g. HT-017."
    )
    manufacturer = models.CharField(max_length=60, blank=True)
    model = models.CharField(max_length=60, blank=True)
    payload_capacity_t = models.FloatField(
        "payload capacity (t)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(500)],
        help_text="Rated payload; required for haul trucks.",
    )
    autonomous = models.BooleanField(
        default=False, help_text="Driven by an autonomous haulage system that speaks ISO 23725."
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["site", "kind", "name"]
        verbose_name_plural = "equipment"
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="unique_fleet_number_per_site"),
            models.CheckConstraint(
                condition=~Q(kind="haul_truck") | Q(payload_capacity_t__isnull=False),
                name="haul_truck_has_payload_capacity",
            ),
        ]
        permissions = [("provision_equipment", "Can issue and revoke equipment credentials")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.kind == self.Kind.HAUL_TRUCK and self.payload_capacity_t is None:
            raise ValidationError({"payload_capacity_t": "a haul truck needs its payload capacity"})


class Credential(models.Model):
    """A secret a machine authenticates with. Only hashes are stored; the secret is shown once,
    at provisioning.

    - ``mqtt``: the broker user name is the EquipmentId; ``secret_hash`` is Mosquitto's own
      PBKDF2-SHA512 form (``$7$...``) so the broker's password file is generated from this table.
    - ``api``: a REST token ``hm_<key_id>_<secret>``; ``secret_hash`` is its SHA-256 (the secret
      is 256 random bits, so a slow hash would add latency and no safety).
    """

    class Kind(models.TextChoices):
        MQTT = "mqtt", "MQTT"
        API = "api", "REST API"

    # Which key a machine used, and when it stopped working, is history.
    equipment = models.ForeignKey(Equipment, on_delete=models.PROTECT, related_name="credentials")
    kind = models.CharField(max_length=4, choices=Kind.choices)
    key_id = models.CharField(max_length=64, unique=True)
    secret_hash = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["equipment", "kind", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["equipment", "kind"],
                condition=Q(revoked_at__isnull=True),
                name="one_live_credential_per_kind",
            )
        ]

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "live"
        return f"{self.get_kind_display()} credential of {self.equipment} ({state})"


class WorkshopRecord(models.Model):
    """A fault the workshop found on a machine: what it was, when it was found, when it began
    (as far as the workshop can tell) and when the machine was repaired. The labels a site's
    own fault head learns from (``fleet.learning.onsite``), beside operators' verdicts on
    alerts. Records imported from the simulator's fault-label log say so (``source``): the
    demo mine has no workshop, so the simulator's ground truth stands in for one."""

    class Kind(models.TextChoices):
        # The fault head's classes (fleet.learning.features.FAULT_CLASSES, less "normal"),
        # and what the workshop may find beyond them.
        OVERHEATING = "overheating", "Overheating"
        TYRE_LEAK = "tyre_leak", "Tyre leak"
        BRAKE_FADE = "brake_fade", "Brake fade"
        STUCK_SENSOR = "stuck_sensor", "Stuck sensor"
        GPS_DROPOUT = "gps_dropout", "GPS dropout"
        OTHER = "other", "Other"

    class Source(models.TextChoices):
        WORKSHOP = "workshop", "Workshop"
        SIMULATOR = "simulator", "Imported from the simulator's fault-label log"

    equipment = models.ForeignKey(
        Equipment, on_delete=models.PROTECT, related_name="workshop_records"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    channel = models.CharField(
        max_length=80, blank=True, help_text="The part or sensor, e.g. tyre_pressure_kpa_2.1."
    )
    found_at = models.DateTimeField(help_text="When the workshop found it.")
    onset_at = models.DateTimeField(
        null=True, blank=True, help_text="When it began, as far as can be told."
    )
    repaired_at = models.DateTimeField(
        null=True, blank=True, help_text="Back in service; empty while it is being repaired."
    )
    source = models.CharField(max_length=12, choices=Source.choices, default=Source.WORKSHOP)
    external_key = models.CharField(
        max_length=200,
        blank=True,
        help_text="The record's key where it came from (an import is idempotent by it).",
    )
    note = models.CharField(max_length=300, blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-found_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_key"],
                condition=~Q(external_key=""),
                name="workshop_record_external_key",
            )
        ]
        indexes = [models.Index(fields=["equipment", "found_at"], name="workshop_equipment_found")]

    def __str__(self) -> str:
        return f"{self.kind} on {self.equipment_id} found {self.found_at:%Y-%m-%d %H:%M}"
