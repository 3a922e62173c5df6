"""Each machine's status over time, and what a shift made of it: availability and utilisation.

The history (``StatusChange``) is written from three sources, each a change only:

- ``truck``: the ProductionState a truck reports (HaulTruckProductionStateV2, sent on change),
  written in the transaction that stores the message;
- ``link``: its retained connection state (``Offline`` when it left or its link broke,
  ``Online`` when it came back, until it reports again);
- ``register``: the equipment register: ``Maintenance`` when it goes to the workshop,
  ``InService`` when it comes back.

Time categories, as the mining time-usage models count them: **down** (Maintenance), **offline**
(no link: the machine's state is unknown), **operating** (driving, spotting, loading, hauling,
dumping, queued: in the production cycle), **standby** (stopped, parked, off, back online or in
service but not yet reporting). Availability = 1 - down / calendar time; utilisation = operating
/ (calendar time - down).

A report older than the machine's latest recorded status (a redelivery, a back-filled message)
is not written: the history is the live sequence of changes as the FMS saw them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from fleet.telemetry.models import StatusChange

TRUCK, LINK, REGISTER = "truck", "link", "register"
MAINTENANCE, IN_SERVICE, OFFLINE, ONLINE = "Maintenance", "InService", "Offline", "Online"
OPERATING_STATES = frozenset({"Driving", "Spotting", "Loading", "Hauling", "Dumping", "Queued"})
LINK_STATES = {"Offline": OFFLINE, "ConnectionBroken": OFFLINE, "Online": ONLINE}
CATEGORIES = ("operating", "standby", "offline", "down")


def category(status: str) -> str:
    if status == MAINTENANCE:
        return "down"
    if status == OFFLINE:
        return "offline"
    if status in OPERATING_STATES:
        return "operating"
    return "standby"


@dataclass(frozen=True, slots=True)
class Latest:
    status: str
    at: datetime


def latest_statuses(equipment_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Latest]:
    """Each machine's newest recorded status, in one query."""
    ids = list(set(equipment_ids))
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT ON (equipment_id) equipment_id, status, at "
            "FROM telemetry_statuschange WHERE equipment_id = ANY(%s) "
            "ORDER BY equipment_id, at DESC, id DESC",
            [ids],
        )
        return {row[0]: Latest(row[1], row[2]) for row in cursor.fetchall()}


def record_changes(changes: Iterable[tuple[uuid.UUID, datetime, str, str]]) -> int:
    """Write ``(equipment_id, at, status, source)`` that change a machine's status, in time
    order; repeats and anything older than the latest are skipped. Returns rows written."""
    ordered = sorted(changes, key=lambda change: change[1])
    if not ordered:
        return 0
    latest = latest_statuses(change[0] for change in ordered)
    rows = []
    for equipment_id, at, status, source in ordered:
        last = latest.get(equipment_id)
        if last is not None and (last.status == status or at <= last.at):
            continue
        rows.append(StatusChange(equipment_id=equipment_id, at=at, status=status, source=source))
        latest[equipment_id] = Latest(status, at)
    StatusChange.objects.bulk_create(rows)
    return len(rows)


def record_reported(admitted: Iterable[Any]) -> int:
    """The ProductionStates in a batch of admitted messages (inside its transaction)."""
    return record_changes(
        (item.envelope.equipment_id, item.envelope.timestamp, body.production_state, TRUCK)
        for item in admitted
        if (body := item.envelope.bodies.get("HaulTruckProductionStateV2")) is not None
    )


def record_link(equipment_id: uuid.UUID, connection_state: str, at: datetime) -> int:
    status = LINK_STATES.get(connection_state)
    if status is None:
        return 0
    return record_changes([(equipment_id, at, status, LINK)])


def record_register(equipment_id: uuid.UUID, in_maintenance: bool) -> int:
    status = MAINTENANCE if in_maintenance else IN_SERVICE
    return record_changes([(equipment_id, timezone.now(), status, REGISTER)])


# --- what a shift made of it ------------------------------------------------------------------


@dataclass
class TimeUse:
    """Seconds in each category over [start, end] for one machine (or summed for a fleet)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0.0))

    @property
    def calendar_s(self) -> float:
        return sum(self.seconds.values())

    @property
    def availability(self) -> float | None:
        total = self.calendar_s
        return None if total <= 0 else 1 - self.seconds["down"] / total

    @property
    def utilisation(self) -> float | None:
        available = self.calendar_s - self.seconds["down"]
        return None if available <= 0 else self.seconds["operating"] / available

    def add(self, other: TimeUse) -> None:
        for name, value in other.seconds.items():
            self.seconds[name] += value

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": {name: round(value, 1) for name, value in self.seconds.items()},
            "availability": _rounded(self.availability),
            "utilisation": _rounded(self.utilisation),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def time_use(
    equipment_ids: list[uuid.UUID], start: datetime, end: datetime
) -> dict[uuid.UUID, TimeUse]:
    """Each machine's time in each category over [start, end], from its status at ``start``
    (its last change before it) and its changes inside. Before its first recorded status a
    machine counts as offline: nothing is known of it."""
    uses = {equipment_id: TimeUse() for equipment_id in equipment_ids}
    for equipment_id, spans in _spans(equipment_ids, start, end).items():
        for since, until, status in spans:
            uses[equipment_id].seconds[category(status)] += (until - since).total_seconds()
    return uses


def fleet_series(
    equipment_ids: list[uuid.UUID], start: datetime, end: datetime, bucket: timedelta
) -> list[dict[str, Any]]:
    """The fleet's time use in consecutive buckets from ``start`` (the last may be shorter):
    availability and utilisation over the shift as a series, from the same two queries as
    ``time_use``."""
    buckets: list[tuple[datetime, datetime, TimeUse]] = []
    at = start
    while at < end:
        buckets.append((at, min(at + bucket, end), TimeUse()))
        at += bucket
    size = bucket.total_seconds()
    for spans in _spans(equipment_ids, start, end).values():
        for since, until, status in spans:
            first = int((since - start).total_seconds() // size)
            for bucket_start, bucket_end, use in buckets[first:]:
                if bucket_start >= until:
                    break
                overlap = (min(until, bucket_end) - max(since, bucket_start)).total_seconds()
                use.seconds[category(status)] += max(0.0, overlap)
    return [{"at": bucket_start, **use.as_dict()} for bucket_start, _, use in buckets]


def _before_and_inside(
    equipment_ids: list[uuid.UUID], start: datetime, end: datetime
) -> tuple[dict[uuid.UUID, str], dict[uuid.UUID, list[tuple[datetime, str]]]]:
    """Each machine's status at ``start`` (its last change at or before it; absent when it has
    none) and its changes inside (start, end), in time order: two queries."""
    before = {
        row.equipment_id: row.status
        for row in StatusChange.objects.filter(equipment_id__in=equipment_ids, at__lte=start)
        .order_by("equipment_id", "-at", "-id")
        .distinct("equipment_id")
    }
    inside: dict[uuid.UUID, list[tuple[datetime, str]]] = {}
    for equipment_id, at, status in (
        StatusChange.objects.filter(equipment_id__in=equipment_ids, at__gt=start, at__lt=end)
        .order_by("at", "id")
        .values_list("equipment_id", "at", "status")
    ):
        inside.setdefault(equipment_id, []).append((at, status))
    return before, inside


def changes(
    equipment_ids: list[uuid.UUID], start: datetime, end: datetime
) -> list[tuple[datetime, uuid.UUID, str]]:
    """The machines' statuses over [start, end) for playing them back: each one's status at
    ``start`` (stamped ``start``; none for a machine with no history yet), then every change,
    in time order."""
    if end <= start or not equipment_ids:
        return []
    before, inside = _before_and_inside(equipment_ids, start, end)
    rows = [(start, equipment_id, status) for equipment_id, status in before.items()]
    rows += [(at, equipment_id, status) for equipment_id, c in inside.items() for at, status in c]
    return sorted(rows, key=lambda row: row[0])


def _spans(
    equipment_ids: list[uuid.UUID], start: datetime, end: datetime
) -> dict[uuid.UUID, list[tuple[datetime, datetime, str]]]:
    """Each machine's (from, to, status) spans covering [start, end]."""
    if end <= start or not equipment_ids:
        return {}
    before, inside = _before_and_inside(equipment_ids, start, end)
    spans: dict[uuid.UUID, list[tuple[datetime, datetime, str]]] = {}
    for equipment_id in equipment_ids:
        status, since = before.get(equipment_id, OFFLINE), start
        machine = spans.setdefault(equipment_id, [])
        for at, new_status in inside.get(equipment_id, []):
            machine.append((since, at, status))
            status, since = new_status, at
        machine.append((since, end, status))
    return spans
