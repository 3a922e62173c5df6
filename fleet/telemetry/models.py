"""Telemetry history: positions and other truck messages, partitioned by day.

1,000 trucks at 10 Hz is 864 million positions a day, so the history tables are PostgreSQL
range-partitioned on the envelope Timestamp (``sent_at``): a day is one partition, retention
drops whole partitions, and the de-duplication key (which must include the partition column) is
the primary key: the message's declared identity (EquipmentId, message name, Timestamp, HeaderId)
plus a digest of the body's canonical form (``fleet.telemetry.store``). Rows that share a
Timestamp are read in HeaderId order, then in order of arrival. The tables are created by SQL in
the migrations (Django does not declare partitioning); these ORM models only read them.
"""

from __future__ import annotations

from django.contrib.gis.db import models

from fleet.audit import AuditRecord

NO_SEQUENCE = -1  # the truck sent no HeaderId (a key column cannot be NULL)
# The order of rows that share a Timestamp: HeaderId, then arrival; the digest makes it total.
TIME_ORDER = ("sent_at", "sequence", "received_at", "body_digest")
# An envelope may carry several bodies: they share all but the name.
EVENT_TIME_ORDER = ("sent_at", "sequence", "received_at", "message_name", "body_digest")


class Position(models.Model):
    """One MachinePositionV1 body. Key: (EquipmentId, envelope Timestamp, HeaderId or -1, body
    digest)."""

    pk = models.CompositePrimaryKey("equipment_id", "sent_at", "sequence", "body_digest")
    equipment_id = models.UUIDField()
    sent_at = models.DateTimeField(help_text="Envelope Timestamp: when the truck sent it.")
    measured_at = models.DateTimeField(null=True, help_text="The body's own Timestamp, if given.")
    received_at = models.DateTimeField()
    location = models.PointField(srid=4326)
    elevation_m = models.FloatField()
    heading_deg = models.SmallIntegerField()
    speed_kmh = models.FloatField()
    horizontal_accuracy_m = models.FloatField(null=True)
    road_revision = models.IntegerField(null=True, help_text="Active road network when received.")
    sequence = models.BigIntegerField(help_text="HeaderId, or -1 when the truck sent none.")
    body_digest = models.BigIntegerField(help_text="64 bits of BLAKE2b of the canonical body.")
    late = models.BooleanField(help_text="Back-filled: stored, never used for live decisions.")

    class Meta:
        managed = False
        db_table = "telemetry_position"
        ordering = ["equipment_id", *TIME_ORDER]


class Event(models.Model):
    """Any other truck message body (health, diagnostics, payload, production state, ...).
    Key: (EquipmentId, message name, envelope Timestamp, HeaderId or -1, body digest): ISO 23725
    has no message id; the HeaderId, where sent, and the body tell two messages of the same
    millisecond apart."""

    pk = models.CompositePrimaryKey(
        "equipment_id", "message_name", "sent_at", "sequence", "body_digest"
    )
    equipment_id = models.UUIDField()
    message_name = models.CharField(max_length=64)
    sent_at = models.DateTimeField()
    received_at = models.DateTimeField()
    body = models.JSONField()
    sequence = models.BigIntegerField(help_text="HeaderId, or -1 when the truck sent none.")
    body_digest = models.BigIntegerField(help_text="64 bits of BLAKE2b of the canonical body.")
    late = models.BooleanField()

    class Meta:
        managed = False
        db_table = "telemetry_event"
        ordering = ["equipment_id", *EVENT_TIME_ORDER]


class PositionMinute(models.Model):
    """One-minute roll-up of positions, for long time ranges (a week of track is 10,080 rows
    per truck instead of 6 million)."""

    pk = models.CompositePrimaryKey("equipment_id", "minute")
    equipment_id = models.UUIDField()
    minute = models.DateTimeField()
    samples = models.IntegerField()
    location = models.PointField(srid=4326, help_text="The last position of the minute.")
    mean_speed_kmh = models.FloatField()
    max_speed_kmh = models.FloatField()

    class Meta:
        managed = False
        db_table = "telemetry_position_minute"
        ordering = ["equipment_id", "minute"]


class Rejection(models.Model):
    """A message refused at ingest, kept for an admin to look at. Bounded: the payload is cut to
    ``PAYLOAD_LIMIT`` bytes and only the newest ``settings.INGEST_QUARANTINE_ROWS`` are kept."""

    PAYLOAD_LIMIT = 4096

    received_at = models.DateTimeField(db_index=True)
    channel = models.CharField(max_length=8, help_text="mqtt or rest")
    topic = models.CharField(max_length=300, blank=True)
    equipment_id = models.UUIDField(
        null=True, blank=True, help_text="From the topic or credential."
    )
    reason = models.CharField(max_length=32, db_index=True)
    detail = models.CharField(max_length=500)
    payload = models.BinaryField(max_length=PAYLOAD_LIMIT)
    payload_bytes = models.IntegerField(help_text="Size of the whole payload as received.")

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class HaulCycle(models.Model):
    """One haul cycle of a truck, from the start of one loading to the start of the next:
    the labels for ETA models and the base of production KPIs. Phase times in seconds."""

    # Production history: the machine, shovel and dump it names are kept (retired), never
    # deleted from under it.
    equipment = models.ForeignKey(
        "vehicles.Equipment", on_delete=models.PROTECT, related_name="haul_cycles"
    )
    loading_unit = models.ForeignKey(
        "mine.LoadingUnit", null=True, on_delete=models.PROTECT, related_name="+"
    )
    dump_point = models.ForeignKey(
        "mine.DumpPoint", null=True, on_delete=models.PROTECT, related_name="+"
    )
    started_at = models.DateTimeField(help_text="Loading began.")
    ended_at = models.DateTimeField(help_text="The next loading began (or the truck parked).")
    tonnes = models.FloatField(null=True, help_text="Payload reported after loading.")
    queue_s = models.FloatField(default=0)
    spot_s = models.FloatField(default=0)
    load_s = models.FloatField(default=0)
    haul_s = models.FloatField(default=0)
    dump_s = models.FloatField(default=0)
    return_s = models.FloatField(default=0)
    road_revision = models.IntegerField(null=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["equipment", "started_at"], name="one_cycle_per_loading"
            )
        ]
        indexes = [models.Index(fields=["equipment", "-started_at"])]

    def __str__(self) -> str:
        return f"{self.equipment} cycle at {self.started_at:%Y-%m-%d %H:%M}"


class StatusChange(AuditRecord):
    """A machine's status from this moment until its next change: what it reported (its
    ProductionState, sent on change), its link (Offline, Online) and its register status
    (Maintenance, back in service). The base of availability and utilisation over a shift
    (``fleet.telemetry.status``); history, so written once and never changed."""

    audit_time_field = "at"

    equipment = models.ForeignKey(
        "vehicles.Equipment", on_delete=models.PROTECT, related_name="status_changes"
    )
    at = models.DateTimeField(help_text="When the machine took this status (its own clock).")
    status = models.CharField(max_length=32)
    source = models.CharField(max_length=16, help_text="truck, link or register.")

    class Meta(AuditRecord.Meta):
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["equipment", "-at"])]

    def __str__(self) -> str:
        return f"{self.equipment_id} {self.status} at {self.at:%Y-%m-%d %H:%M:%S}"


class IngestReplica(models.Model):
    """A known ingest replica. Its name is its persistent broker session in the ``$share/ingest``
    group, which the broker keeps while the replica is away and to which it goes on sending its
    share (1/N) of the trucks' messages. So replicas are known by name, their last activity is
    watched, and one that leaves for good is retired: its session drained into the history, then
    ended (``manage.py ingest --retire NAME``)."""

    name = models.CharField(primary_key=True, max_length=48)
    client_id = models.CharField(max_length=64, help_text="Its MQTT client id (the session).")
    host = models.CharField(max_length=200, blank=True, help_text="Where it last ran.")
    pid = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(help_text="Its last heartbeat.")
    stored = models.BigIntegerField(default=0, help_text="History rows it stored, all runs.")
    silent_alerted_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When its silence was last reported (cleared on its next beat).",
    )
    retired_at = models.DateTimeField(null=True, blank=True)
    drained = models.BigIntegerField(
        null=True, blank=True, help_text="Messages its session held when it was retired."
    )
    drain_lag_p50_s = models.FloatField(null=True, blank=True)
    drain_lag_max_s = models.FloatField(
        null=True, blank=True, help_text="From a drained message's Timestamp to its storage."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
