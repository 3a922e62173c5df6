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

The rules run on the ingest replica's MQTT thread, on each message as it arrives
(``check_live``), and decide from memory: a stop is published at once by the process's own
outbox connection (``fleet.control.reflex``), and recorded (alert, command as Sent) by the ingest
writer before it stores the next batch. Nothing waits for the message's batch, its store, a
database round trip or the outbox's delivery process. Whether a stop is due is decided from the
unresolved alerts as of the zone index's last reload, plus the ones this process opened since.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from fleet.control import alerts, services
from fleet.control.models import Alert
from fleet.control.reflex import REFLEX
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
        self._open_alerts: set[tuple[uuid.UUID, str]] = set()
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def zones(self, site_id: uuid.UUID) -> list[IndexedZone]:
        self._reload_when_due()
        return self._by_site.get(site_id, ())  # type: ignore[return-value]

    def alert_open(self, equipment_id: uuid.UUID, fold_key: str) -> bool:
        """Whether the machine has an unresolved alert of this key, as of the last reload (or
        opened by this process since)."""
        self._reload_when_due()
        return (equipment_id, fold_key) in self._open_alerts

    def alert_opened(self, equipment_id: uuid.UUID, fold_key: str) -> None:
        self._open_alerts.add((equipment_id, fold_key))

    def _reload_when_due(self) -> None:
        if time.monotonic() - self._loaded_at > settings.CONTROL_ZONE_INDEX_S:
            with self._lock:
                if time.monotonic() - self._loaded_at > settings.CONTROL_ZONE_INDEX_S:
                    self._reload()

    def _reload(self) -> None:
        try:
            self._by_site = load_zones()
            self._open_alerts = set(
                Alert.objects.filter(kind__in=(EXCLUSION, SPEEDING))
                .exclude(status=Alert.Status.RESOLVED)
                .values_list("equipment_id", "fold_key")
            )
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
    site_slug: str
    rule: str
    zone: IndexedZone
    speed_kmh: float
    lon: float
    lat: float
    at: Any

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.equipment_id, self.rule, self.zone.zone_id)

    @property
    def fold_key(self) -> str:
        return f"{self.rule}:{self.zone.zone_id}"

    @property
    def stops(self) -> bool:
        """Whether this rule stops the truck (when its alert opens)."""
        if self.rule == EXCLUSION:
            return settings.CONTROL_STOP_ON_EXCLUSION
        return settings.CONTROL_STOP_ON_SPEEDING


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
        found += _judge(item, inside, lon, lat, speed)
    return found


def _judge(item: Any, inside: list[IndexedZone], lon: float, lat: float, speed: float) -> list:
    found = []
    equipment_id, slug, at = (
        item.envelope.equipment_id,
        item.truck.site_slug,
        item.envelope.timestamp,
    )
    for zone in inside:
        if zone.exclusion:
            found.append(Violation(equipment_id, slug, EXCLUSION, zone, speed, lon, lat, at))
    limited = [zone for zone in inside if zone.speed_limit_kmh is not None]
    if limited:
        lowest = min(limited, key=lambda zone: zone.speed_limit_kmh or 0.0)
        if speed > (lowest.speed_limit_kmh or 0.0) + settings.CONTROL_SPEED_TOLERANCE_KMH:
            found.append(Violation(equipment_id, slug, SPEEDING, lowest, speed, lon, lat, at))
    return found


def check_admitted(admitted: list[Any]) -> int:
    """The batch hook (the REST fallback, or messages the ingest replica's MQTT thread could not
    admit): judge the messages, act on the findings that are due, here; the outbox delivers.
    Returns how many acted."""
    due = _due(admitted)
    for violation in due:
        try:
            act_on(violation)
        except Exception:  # one truck's failure must not cost the others their stop
            log.exception("could not act on %s of %s", violation.rule, violation.equipment_id)
            DEBOUNCE.forget(violation.key)  # not acted on: the next message tries again
    return len(due)


def check_live(admitted: list[Any]) -> list[Callable[[], None]]:
    """The live hook, on the ingest replica's MQTT thread, one message as it arrives: decide
    from memory and publish a stop at once (``fleet.control.reflex``); return the recording of
    each decision (alert, command), which the ingest writer runs before it stores the next
    batch. No database here."""
    records = []
    for violation in _due(admitted):
        command_id = None
        if violation.stops and not INDEX.alert_open(violation.equipment_id, violation.fold_key):
            command_id = uuid.uuid4()
            sent = REFLEX.stop_now(violation.site_slug, violation.equipment_id, command_id)
            INDEX.alert_opened(violation.equipment_id, violation.fold_key)
            records.append(functools.partial(record_stop, violation, command_id, sent=sent))
        else:
            records.append(functools.partial(act_on, violation))
    return records


def make_ready() -> None:
    """Before the first message: the stop's connection, the zones and open alerts in memory."""
    REFLEX.start()
    INDEX.invalidate()
    INDEX.zones(uuid.UUID(int=0))


def _due(admitted: list[Any]) -> list[Violation]:
    now = time.monotonic()
    return [v for v in violations(admitted) if DEBOUNCE.due(v.key, now)]


@transaction.atomic
def act_on(violation: Violation) -> Alert | None:
    """Raise (or fold) the alert, and stop the truck where configured and newly alerted: one
    transaction, so the stop is never sent without the alert that explains it."""
    equipment = Equipment.objects.filter(pk=violation.equipment_id).first()
    if equipment is None:
        return None
    alert, opened = alerts.raise_alert(equipment, finding(violation))
    if opened and violation.stops:
        command = services.stop_truck(equipment, reason=f"alert {alert.pk}: {alert.reason}")
        alerts.record_action(
            alert, command.command_id, actor=alert.source, detail=f"stop {violation.rule}"
        )
    return alert


@transaction.atomic
def record_stop(violation: Violation, command_id: uuid.UUID, *, sent: bool) -> Alert | None:
    """The record of a stop ``check_live`` published (``sent``) or could not (the outbox sends
    it): the alert that explains it, the command under the CommandId the truck has."""
    equipment = Equipment.objects.filter(pk=violation.equipment_id).first()
    if equipment is None:
        return None
    alert, _ = alerts.raise_alert(equipment, finding(violation))
    command = services.stop_truck(
        equipment,
        reason=f"alert {alert.pk}: {alert.reason}",
        command_id=command_id,
        published_by="reflex" if sent else "",
    )
    alerts.record_action(
        alert, command.command_id, actor=alert.source, detail=f"stop {violation.rule}"
    )
    return alert


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
            fold_key=violation.fold_key,
            severity=Alert.Severity.CRITICAL,
            source=f"compliance.{EXCLUSION}",
            channel="MachinePositionV1.Latitude/Longitude",
            reason=f"inside exclusion zone {zone.name!r} at {violation.speed_kmh:.1f} km/h",
            inputs=inputs,
        )
    limit = zone.speed_limit_kmh or 0.0
    return alerts.Finding(
        kind=SPEEDING,
        fold_key=violation.fold_key,
        severity=Alert.Severity.WARNING,
        source=f"compliance.{SPEEDING}",
        channel="MachinePositionV1.Speed",
        reason=(
            f"{violation.speed_kmh:.1f} km/h in zone {zone.name!r}, limit {limit:.1f} km/h "
            f"(tolerance {settings.CONTROL_SPEED_TOLERANCE_KMH} km/h)"
        ),
        inputs={**inputs, "limit_kmh": round(limit, 2)},
    )
