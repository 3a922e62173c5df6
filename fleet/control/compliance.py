"""Live compliance with the policy zones, decided as each truck message is admitted in the
ingest process (signal ``messages_arrived``, before the batch is stored):

- a machine inside an active exclusion zone raises an ``exclusion`` alert (critical) and, with
  ``CONTROL_STOP_ON_EXCLUSION``, a stop;
- a machine faster than the lowest speed limit of the active zones it is in, by more than
  ``CONTROL_SPEED_TOLERANCE_KMH``, raises a ``speeding`` alert (warning) and, with
  ``CONTROL_STOP_ON_SPEEDING``, a stop.

Cheap per message: the active zones are held per site in memory (``ZoneIndex``, reloaded in one
query at most every ``CONTROL_ZONE_INDEX_S``), a point is tested against a zone's bounding box
first and its polygon (ray casting in plain Python: cheaper than a GEOS call per message) only
inside it; nothing is read from the database per message. Only a finding writes (the alert, the stop), and the same finding on the same truck is
acted on at most once per ``CONTROL_ALERT_REPEAT_S`` in this process (``Debounce``); past that,
a repeat folds into the open alert. A stop is issued when the alert opens, not on its repeats:
an operator who resumed the truck (to drive it out of the zone, say) is not overruled every few
seconds.

The rules run on the ingest replica's MQTT thread, on each message as it arrives (``live``);
what they decide is written and published by the process's reflex thread
(``fleet.control.reflex``): the stop leaves as soon as its alert and command commit, without
waiting for the message's batch, its store, or the outbox's delivery process.

Late messages (stored as history, older than ``INGEST_LATE_AFTER_S`` on arrival) are not judged:
they say where a truck was, not where it is.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from fleet.control import alerts, services
from fleet.control.models import Alert, Command
from fleet.control.reflex import REFLEX, Decision, first_attempt_in
from fleet.mine.models import PolicyZone, Site
from fleet.vehicles.models import Equipment

log = logging.getLogger(__name__)

MPS_TO_KMH = 3.6
EXCLUSION, SPEEDING = "exclusion", "speeding"


@dataclass(frozen=True, slots=True)
class IndexedZone:
    zone_id: uuid.UUID
    name: str
    bbox: tuple[float, float, float, float]  # lon/lat min x, min y, max x, max y
    edges: tuple[tuple[float, float, float, float], ...]  # the exterior ring's (x0, y0, x1, y1)
    exclusion: bool
    speed_limit_kmh: float | None

    def contains(self, lon: float, lat: float) -> bool:
        x0, y0, x1, y1 = self.bbox
        if not (x0 <= lon <= x1 and y0 <= lat <= y1):
            return False
        return _inside(self.edges, lon, lat)


def _inside(edges: tuple[tuple[float, float, float, float], ...], x: float, y: float) -> bool:
    """Ray casting on the ring's edges. Zones are simple polygons without holes (checked when
    drawn, ``fleet.mine.geometry``), so this is exact away from the boundary; a point within
    floating-point error of an edge may go either way. In plain Python it costs about a
    microsecond per edge, where building a GEOS point per message costs ten times that."""
    inside = False
    for ax, ay, bx, by in edges:
        if (ay > y) != (by > y) and x < (bx - ax) * (y - ay) / (by - ay) + ax:
            inside = not inside
    return inside


def _edges(ring: Any) -> tuple[tuple[float, float, float, float], ...]:
    points = [(float(p[0]), float(p[1])) for p in ring]
    return tuple(
        (ax, ay, bx, by)
        for (ax, ay), (bx, by) in itertools.pairwise(points)
        if ay != by  # a horizontal edge never crosses the ray
    )


def speed_limit_kmh(policies: dict[str, Any], mapped_speed_kmh: float) -> float | None:
    """A zone's speedLimit in km/h (absolute: m/s; percent: of the mapped operating speed, the
    site's default: which way a truck is on is not known at admission)."""
    limit = policies.get("speedLimit")
    if not isinstance(limit, dict):
        return None
    value = float(limit.get("value", 0))
    if limit.get("type") == "percent":
        return mapped_speed_kmh * value / 100.0
    return value * MPS_TO_KMH


class ZoneIndex:
    """The active zones that carry an exclusion or a speed limit, per site, in memory."""

    def __init__(self) -> None:
        self._by_site: dict[uuid.UUID, list[IndexedZone]] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def zones(self, site_id: uuid.UUID) -> list[IndexedZone]:
        if time.monotonic() - self._loaded_at > settings.CONTROL_ZONE_INDEX_S:
            with self._lock:
                if time.monotonic() - self._loaded_at > settings.CONTROL_ZONE_INDEX_S:
                    self._reload()
        return self._by_site.get(site_id, ())  # type: ignore[return-value]

    def _reload(self) -> None:
        try:
            self._by_site = load_zones()
        except DatabaseError as error:
            # The rules keep judging against the zones they know; the next interval retries.
            log.warning("could not reload the active zones (%s); keeping the last ones", error)
            connection.close()
        self._loaded_at = time.monotonic()

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")


def load_zones() -> dict[uuid.UUID, list[IndexedZone]]:
    mapped = dict(Site.objects.values_list("id", "default_speed_kmh"))
    by_site: dict[uuid.UUID, list[IndexedZone]] = {}
    for zone in PolicyZone.objects.filter(status=PolicyZone.Status.ACTIVE).only(
        "id", "site_id", "name", "geometry", "policies"
    ):
        exclusion = "exclusion" in zone.policies
        limit = speed_limit_kmh(zone.policies, mapped.get(zone.site_id) or 0.0)
        if not exclusion and limit is None:
            continue
        by_site.setdefault(zone.site_id, []).append(
            IndexedZone(
                zone_id=zone.id,
                name=zone.name,
                bbox=zone.geometry.extent,
                edges=_edges(zone.geometry.exterior_ring.coords),
                exclusion=exclusion,
                speed_limit_kmh=limit,
            )
        )
    return by_site


class Debounce:
    """When each (truck, rule, zone) was last acted on in this process."""

    def __init__(self) -> None:
        self._last: dict[tuple[Any, ...], float] = {}
        self._lock = threading.Lock()

    def due(self, key: tuple[Any, ...], now: float) -> bool:
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < settings.CONTROL_ALERT_REPEAT_S:
                return False
            self._last[key] = now
            if len(self._last) > 100_000:  # a long-running replica: forget the old ones
                horizon = now - settings.CONTROL_ALERT_REPEAT_S
                self._last = {k: t for k, t in self._last.items() if t >= horizon}
            return True

    def forget(self, key: tuple[Any, ...]) -> None:
        with self._lock:
            self._last.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._last.clear()


INDEX = ZoneIndex()
DEBOUNCE = Debounce()


@dataclass(frozen=True, slots=True)
class Violation:
    equipment_id: uuid.UUID
    rule: str
    zone: IndexedZone
    speed_kmh: float
    lon: float
    lat: float
    at: Any

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.equipment_id, self.rule, self.zone.zone_id)


def violations(admitted: Iterable[Any]) -> list[Violation]:
    """The findings in a batch of admitted messages (``fleet.telemetry.intake.Admitted``):
    pure, no database."""
    found = []
    for item in admitted:
        position = item.envelope.position
        if position is None or item.late:
            continue
        zones = INDEX.zones(item.truck.site_id)
        if not zones:
            continue
        lon, lat, speed = position.longitude, position.latitude, abs(position.speed)
        inside = [zone for zone in zones if zone.contains(lon, lat)]
        if not inside:
            continue
        found += _judge(item.envelope, inside, lon, lat, speed)
    return found


def _judge(envelope: Any, inside: list[IndexedZone], lon: float, lat: float, speed: float) -> list:
    found = []
    at = envelope.timestamp
    for zone in inside:
        if zone.exclusion:
            found.append(Violation(envelope.equipment_id, EXCLUSION, zone, speed, lon, lat, at))
    limited = [zone for zone in inside if zone.speed_limit_kmh is not None]
    if limited:
        lowest = min(limited, key=lambda zone: zone.speed_limit_kmh or 0.0)
        if speed > (lowest.speed_limit_kmh or 0.0) + settings.CONTROL_SPEED_TOLERANCE_KMH:
            found.append(Violation(envelope.equipment_id, SPEEDING, lowest, speed, lon, lat, at))
    return found


def check_admitted(admitted: list[Any], *, live: bool = False) -> int:
    """The hook: judge the messages, act on the findings that are due. Returns how many acted.

    ``live``: called on the ingest replica's MQTT thread as a message arrives; the acting (the
    database, the publish) goes to the process's reflex thread, which publishes the stop the
    moment it commits. Otherwise (a batch: the REST fallback) it acts here, and the outbox
    delivers."""
    now = time.monotonic()
    due = [v for v in violations(admitted) if DEBOUNCE.due(v.key, now)]
    for violation in due:
        if live:
            REFLEX.submit(
                Decision(
                    act=functools.partial(_act_and_publish, violation),
                    failed=functools.partial(DEBOUNCE.forget, violation.key),
                    what=f"{violation.rule} of {violation.equipment_id}",
                )
            )
            continue
        try:
            act_on(violation)
        except Exception:  # one truck's failure must not cost the others their stop
            log.exception("could not act on %s of %s", violation.rule, violation.equipment_id)
            DEBOUNCE.forget(violation.key)  # not acted on: the next message tries again
    return len(due)


def _act_and_publish(violation: Violation) -> list[Command]:
    _, command = act_on(violation, first_attempt_in=first_attempt_in())
    return [command] if command is not None else []


@transaction.atomic
def act_on(
    violation: Violation, *, first_attempt_in: timedelta = timedelta(0)
) -> tuple[Alert | None, Command | None]:
    """Raise (or fold) the alert, and stop the truck where configured and newly alerted: one
    transaction, so the stop is never sent without the alert that explains it."""
    equipment = Equipment.objects.select_related("site").filter(pk=violation.equipment_id).first()
    if equipment is None:
        return None, None
    alert, opened = alerts.raise_alert(equipment, finding(violation))
    stop = (
        settings.CONTROL_STOP_ON_EXCLUSION
        if violation.rule == EXCLUSION
        else settings.CONTROL_STOP_ON_SPEEDING
    )
    if not (opened and stop):
        return alert, None
    command = services.stop_truck(
        equipment,
        reason=f"alert {alert.pk}: {alert.reason}",
        first_attempt_in=first_attempt_in,
    )
    alerts.record_action(
        alert, command.command_id, actor=alert.source, detail=f"stop {violation.rule}"
    )
    return alert, command


def finding(violation: Violation) -> alerts.Finding:
    zone = violation.zone
    inputs = {
        "zone_id": str(zone.zone_id),
        "zone": zone.name,
        "longitude": violation.lon,
        "latitude": violation.lat,
        "speed_kmh": round(violation.speed_kmh, 2),
        "message_time": violation.at.isoformat() if violation.at else None,
    }
    if violation.rule == EXCLUSION:
        return alerts.Finding(
            kind=EXCLUSION,
            fold_key=f"{EXCLUSION}:{zone.zone_id}",
            severity=Alert.Severity.CRITICAL,
            source=f"compliance.{EXCLUSION}",
            channel="MachinePositionV1.Latitude/Longitude",
            reason=f"inside exclusion zone {zone.name!r} at {violation.speed_kmh:.1f} km/h",
            inputs=inputs,
        )
    limit = zone.speed_limit_kmh or 0.0
    return alerts.Finding(
        kind=SPEEDING,
        fold_key=f"{SPEEDING}:{zone.zone_id}",
        severity=Alert.Severity.WARNING,
        source=f"compliance.{SPEEDING}",
        channel="MachinePositionV1.Speed",
        reason=(
            f"{violation.speed_kmh:.1f} km/h in zone {zone.name!r}, limit {limit:.1f} km/h "
            f"(tolerance {settings.CONTROL_SPEED_TOLERANCE_KMH} km/h)"
        ),
        inputs={**inputs, "limit_kmh": round(limit, 2)},
    )
