"""Admission of one inbound truck message: parse, check who sent it, apply the time rules.

The same rules hold for every channel (MQTT ingest and the REST fallback), so both go through
:func:`admit`. Nothing here touches the database: the equipment directory is passed in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings

from fleet.protocol import wire

# Reasons added at admission, beside the parser's own (wire.REASONS). Stable metric labels.
ADMISSION_REASONS = frozenset(
    {
        "bad_topic",  # not a truck up-topic of our layout
        "wrong_equipment",  # the topic's (or credential's) truck is not the EquipmentId inside
        "unknown_equipment",  # no such autonomous truck on that site
        "from_the_future",  # further ahead than the clock-skew tolerance
        "too_old",  # older than the back-fill window
        "store_failed",  # passed validation but the database refused it
    }
)
REASONS = wire.REASONS | ADMISSION_REASONS


@dataclass(frozen=True, slots=True)
class TimeRules:
    clock_skew: timedelta  # how far in the future a truck clock may be
    late_after: timedelta  # older than this on arrival: stored, marked late
    backfill: timedelta  # older than this: refused

    @classmethod
    def from_settings(cls) -> TimeRules:
        return cls(
            clock_skew=timedelta(seconds=settings.INGEST_CLOCK_SKEW_S),
            late_after=timedelta(seconds=settings.INGEST_LATE_AFTER_S),
            backfill=timedelta(seconds=settings.INGEST_BACKFILL_S),
        )


@dataclass(frozen=True, slots=True)
class TruckRef:
    """What ingest needs to know about a sender, cached from the equipment table."""

    equipment_id: uuid.UUID
    site_id: uuid.UUID
    site_slug: str
    road_revision: int | None


@dataclass(frozen=True, slots=True)
class TopicAddress:
    site_slug: str
    equipment_id: str
    message_name: str


@dataclass(slots=True)
class Inbound:
    """One message as it arrived, before anything is known to be right about it."""

    channel: str  # "mqtt" or "rest"
    payload: bytes
    received_at: datetime
    topic: str = ""
    # REST: the authenticated truck; MQTT: None (read from the topic).
    sender: uuid.UUID | None = None
    decoded: Any = None  # REST: the element of the posted batch, already decoded
    ack: Any = None  # MQTT: (mid, qos) to acknowledge once the batch is committed
    # MQTT: admitted as it arrived (``IngestRunner``), so the store does not parse it again.
    outcome: Admitted | Refused | None = None


@dataclass(slots=True)
class Admitted:
    inbound: Inbound
    envelope: wire.Envelope
    truck: TruckRef
    late: bool
    judged_live: bool = False  # the live rules saw it as it arrived, not with its batch
    # fleet.telemetry.latest.position_summary, made once for the latest state and the live feed
    summary: dict[str, Any] | None = None


@dataclass(slots=True)
class Refused:
    inbound: Inbound
    reason: str
    detail: str
    equipment_id: uuid.UUID | None


class AdmissionError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_up_topic(topic: str, root: str | None = None) -> TopicAddress:
    """``{root}/{site}/{EquipmentId}/up/{MessageName}`` -> its parts, or AdmissionError."""
    root = root or settings.MQTT_TOPIC_ROOT
    prefix = root + "/"
    levels = topic[len(prefix) :].split("/") if topic.startswith(prefix) else []
    if len(levels) != 4 or levels[2] != "up" or not all(levels):
        raise AdmissionError("bad_topic", f"not a truck up-topic: {topic[:200]!r}")
    return TopicAddress(site_slug=levels[0], equipment_id=levels[1], message_name=levels[3])


def admit(
    inbound: Inbound,
    directory: dict[uuid.UUID, TruckRef],
    rules: TimeRules,
) -> Admitted | Refused:
    """Validate one message; never raises for bad input."""
    address = None
    try:
        address = parse_up_topic(inbound.topic) if inbound.channel == "mqtt" else None
        envelope = (
            wire.parse_decoded_message(inbound.decoded)
            if inbound.decoded is not None
            else wire.parse_message(inbound.payload)
        )
        truck = _check_sender(envelope, address, inbound.sender, directory)
        late = _check_time(envelope.timestamp, inbound.received_at, rules)
    except (wire.WireError, AdmissionError) as error:
        # Who it claims to be (the topic's truck, or the REST token's): only a refusal needs it.
        claimed = inbound.sender if address is None else _uuid_or_none(address.equipment_id)
        return Refused(inbound, error.reason, error.detail, claimed)
    return Admitted(inbound, envelope, truck, late)


def _uuid_or_none(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _check_sender(
    envelope: wire.Envelope,
    address: TopicAddress | None,
    sender: uuid.UUID | None,
    directory: dict[uuid.UUID, TruckRef],
) -> TruckRef:
    # Ingest never sees the publisher's credential: the broker's ACL ties credential to topic,
    # and this ties topic to the EquipmentId inside, so a truck cannot speak for another.
    equipment_id = cast(uuid.UUID, envelope.equipment_id)  # parse_message requires it
    if address is not None:
        if address.equipment_id != str(equipment_id):
            raise AdmissionError(
                "wrong_equipment",
                f"topic is for {address.equipment_id[:40]} but EquipmentId is {equipment_id}",
            )
        if address.message_name != envelope.name:
            raise AdmissionError(
                "bad_topic",
                f"topic names {address.message_name[:64]} but the message is {envelope.name}",
            )
    elif sender is not None and sender != equipment_id:
        raise AdmissionError(
            "wrong_equipment", f"this token belongs to {sender}, not to {equipment_id}"
        )
    truck = directory.get(equipment_id)
    if truck is None or (address is not None and truck.site_slug != address.site_slug):
        raise AdmissionError(
            "unknown_equipment", f"{equipment_id} is not an active autonomous truck of this site"
        )
    return truck


def _check_time(sent_at: datetime, received_at: datetime, rules: TimeRules) -> bool:
    """True when the message is late (stored, never used live)."""
    age = received_at - sent_at
    if age < -rules.clock_skew:
        raise AdmissionError(
            "from_the_future",
            f"Timestamp {wire.format_timestamp(sent_at)} is {-age.total_seconds():.1f} s ahead "
            f"of the FMS clock (tolerance {rules.clock_skew.total_seconds():.0f} s)",
        )
    if age > rules.backfill:
        raise AdmissionError(
            "too_old",
            f"Timestamp {wire.format_timestamp(sent_at)} is older than the back-fill window "
            f"of {rules.backfill.total_seconds() / 3600:.1f} h",
        )
    return age > rules.late_after
