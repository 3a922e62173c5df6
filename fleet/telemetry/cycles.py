"""Haul cycles from the trucks' production states: the labels for the ETA models and the base
of production KPIs.

Derived periodically from the stored history, never in memory at ingest: a shared subscription
spreads one truck's messages over all ingest replicas, so no replica sees a whole cycle. A
cycle runs from the start of one Loading to the start of the next; the time between is split
by production state into its phases.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.gis.db.models.functions import Distance
from django.contrib.gis.geos import Point
from django.db.models import Max
from django.utils import timezone

from fleet.mine.models import DumpPoint, LoadingUnit
from fleet.telemetry.models import Event, HaulCycle, Position
from fleet.vehicles.models import Equipment

PRODUCTION_STATE = "HaulTruckProductionStateV2"
PAYLOAD = "HaulTruckPayloadV1"
# Where a state's time goes. States not named (Off, Parked, Stopped) count to none of them.
PHASE_OF_STATE = {
    "Queued": "queue_s",
    "Spotting": "spot_s",
    "Loading": "load_s",
    "Hauling": "haul_s",
    "Dumping": "dump_s",
    "Driving": "return_s",
}
NEAREST_WITHIN_M = 300.0  # a loading unit or dump further than this is not where it happened
POSITION_NEAR_S = 30


@dataclass
class CycleDraft:
    started_at: datetime
    ended_at: datetime | None = None
    phases: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(PHASE_OF_STATE.values(), 0.0)
    )
    dump_started_at: datetime | None = None


def cycles_from_states(states: list[tuple[datetime, str]]) -> list[CycleDraft]:
    """Completed cycles in a time-ordered list of (time, ProductionState) changes."""
    cycles: list[CycleDraft] = []
    current: CycleDraft | None = None
    previous = ""
    # Each state with the time of the next one (None for the last: its phase has not ended).
    following = [at for at, _ in states[1:]] + [None] if states else []
    for (at, state), next_at in zip(states, following, strict=True):
        if state == "Loading" and previous != "Loading":
            if current is not None:
                current.ended_at = at
                cycles.append(current)
            current = CycleDraft(started_at=at)
        previous = state
        if current is None or next_at is None:
            continue
        if state == "Dumping" and current.dump_started_at is None:
            current.dump_started_at = at
        phase = PHASE_OF_STATE.get(state)
        if phase == "return_s" and current.dump_started_at is None:
            phase = "haul_s"  # Driving before the dump is driving loaded
        if phase:
            current.phases[phase] += (next_at - at).total_seconds()
    return cycles


def _position_at(equipment_id: uuid.UUID, at: datetime) -> Point | None:
    near = timedelta(seconds=POSITION_NEAR_S)
    return (
        Position.objects.filter(
            equipment_id=equipment_id, sent_at__gte=at - near, sent_at__lte=at + near
        )
        .order_by("sent_at")
        .values_list("location", flat=True)
        .first()
    )


def _nearest(model, site_id, point: Point | None):
    if point is None:
        return None
    candidate = (
        model.objects.filter(site_id=site_id)
        .annotate(distance=Distance("location", point))
        .order_by("distance")
        .first()
    )
    if candidate is None or candidate.distance.m > NEAREST_WITHIN_M:
        return None
    return candidate


def derive_haul_cycles(*, lookback: timedelta = timedelta(hours=3)) -> int:
    """Store the cycles completed since each truck's last stored one. Idempotent."""
    now = timezone.now()
    last_stored = dict(
        HaulCycle.objects.values("equipment_id")
        .annotate(last=Max("started_at"))
        .values_list("equipment_id", "last")
    )
    trucks = Equipment.objects.filter(kind=Equipment.Kind.HAUL_TRUCK).exclude(
        status=Equipment.Status.RETIRED
    )
    stored = 0
    for truck in trucks.only("id", "site_id"):
        since = max(now - lookback, last_stored.get(truck.id) or now - lookback)
        stored += _derive_for_truck(truck, since, now)
    return stored


def _derive_for_truck(truck: Equipment, since: datetime, until: datetime) -> int:
    events = Event.objects.filter(
        equipment_id=truck.id, message_name=PRODUCTION_STATE, sent_at__gte=since, sent_at__lte=until
    ).order_by("sent_at")
    states = [
        (event.sent_at, event.body.get("ProductionState", ""))
        for event in events.only("sent_at", "body")
    ]
    # The cycle that started at ``since`` was stored before: upserting it again is harmless.
    rows = [_cycle_row(truck, draft) for draft in cycles_from_states(states)]
    HaulCycle.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["equipment", "started_at"],
        update_fields=[
            "ended_at",
            "tonnes",
            "queue_s",
            "spot_s",
            "load_s",
            "haul_s",
            "dump_s",
            "return_s",
            "loading_unit",
            "dump_point",
        ],
    )
    return len(rows)


def _cycle_row(truck: Equipment, draft: CycleDraft) -> HaulCycle:
    loading_unit = _nearest(LoadingUnit, truck.site_id, _position_at(truck.id, draft.started_at))
    dump_point = (
        _nearest(DumpPoint, truck.site_id, _position_at(truck.id, draft.dump_started_at))
        if draft.dump_started_at
        else None
    )
    tonnes = (
        Event.objects.filter(
            equipment_id=truck.id,
            message_name=PAYLOAD,
            sent_at__gte=draft.started_at,
            sent_at__lt=draft.dump_started_at or draft.ended_at,
        )
        .order_by("-sent_at")
        .values_list("body__PayloadWeight", flat=True)
        .first()
    )
    revision = (
        Position.objects.filter(equipment_id=truck.id, sent_at__gte=draft.started_at)
        .order_by("sent_at")
        .values_list("road_revision", flat=True)
        .first()
    )
    return HaulCycle(
        equipment=truck,
        loading_unit=loading_unit,
        dump_point=dump_point,
        started_at=draft.started_at,
        ended_at=draft.ended_at,
        tonnes=tonnes,
        road_revision=revision,
        **draft.phases,
    )
