"""Traffic permissions on the database: the FMS answers every TrafficPermissionRequestV1 that
ingest admits, records the truck's acknowledgements and releases, and runs the arbiter
(``fleet.control.traffic``) over a site's open permissions when one arrives and every few
seconds (``control.sweep_traffic``). Every answer to a truck is a TrafficPermissionUpdateV1
command through the outbox; every status change is written to ``TrafficPermissionEvent``.

One site is decided by one process at a time (a transaction-scoped advisory lock), so two
ingest replicas or the sweep never grant the same section twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.gis.geos import Point
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from fleet.control import services, traffic
from fleet.control.models import TrafficPermission, TrafficPermissionEvent
from fleet.live.broadcast import broadcast_on_commit
from fleet.mine.models import PolicyZone, Site
from fleet.protocol import wire
from fleet.telemetry import latest
from fleet.vehicles.models import Equipment

log = logging.getLogger(__name__)

MESSAGE = "TrafficPermissionUpdateV1"
POLICY = "trafficPermission"
Status = TrafficPermission.Status
# The arbiter's decisions, as the permission status they lead to and the update the truck gets.
_CLOSING = {
    traffic.EXPIRE_GRANT: (Status.EXPIRED, "Revoked"),
    traffic.EXPIRE_REQUEST: (Status.EXPIRED, None),  # the truck went elsewhere: nothing to say
}


def arbiter_rules() -> traffic.Rules:
    return traffic.Rules(
        max_wait_s=settings.TRAFFIC_MAX_WAIT_S,
        max_overtakes=settings.TRAFFIC_MAX_OVERTAKES,
        grant_unused_s=settings.TRAFFIC_GRANT_UNUSED_S,
        stale_s=settings.TRAFFIC_REQUEST_STALE_S,
    )


# --- the map: sections and rings ---------------------------------------------------------------


def sections_of(site: Site) -> dict[uuid.UUID, PolicyZone]:
    """The site's one-lane sections: its active zones with the trafficPermission policy."""
    zones = PolicyZone.objects.filter(site=site, status=PolicyZone.Status.ACTIVE)
    return {zone.id: zone for zone in zones if POLICY in (zone.policies or {})}


def rings_of_site(site: Site, zones: dict[uuid.UUID, PolicyZone]) -> list[frozenset]:
    """Rings of adjacent sections: zones closer than TRAFFIC_ADJACENT_M form the graph."""
    if len(zones) < 3:
        return []
    metric = {zone_id: site.to_metric(zone.geometry) for zone_id, zone in zones.items()}
    pairs = traffic.adjacent_pairs(metric, settings.TRAFFIC_ADJACENT_M, lambda a, b: a.distance(b))
    return traffic.rings_of(pairs)


def _section(zone: PolicyZone) -> traffic.Section:
    capacity = int((zone.policies.get(POLICY) or {}).get("capacity", 1))
    return traffic.Section(zone.id, capacity, zone.name)


# --- messages from the trucks ------------------------------------------------------------------


@dataclass(frozen=True)
class _Ask:
    equipment_id: uuid.UUID
    zone_id: uuid.UUID
    way_id: int | None
    at: datetime
    lonlat: tuple[float, float] | None = None  # where the truck was when it asked


def handle_truck_messages(envelopes: Iterable[wire.Envelope]) -> int:
    """Requests, releases and acknowledgements in a batch of truck messages; the sites they
    touch are decided again at once. Returns how many traffic messages there were."""
    asks: list[_Ask] = []
    releases: list[_Ask] = []
    acks: list[tuple[uuid.UUID, uuid.UUID]] = []
    payloads: dict[uuid.UUID, tuple[datetime, bool]] = {}
    for envelope in envelopes:
        truck = envelope.equipment_id
        if truck is None:
            continue
        for body in envelope.bodies.values():
            if isinstance(body, wire.TrafficPermissionRequestV1):
                here = envelope.position
                lonlat = (here.longitude, here.latitude) if here is not None else None
                asks.append(_Ask(truck, body.zone_id, body.way_id, envelope.timestamp, lonlat))
            elif isinstance(body, wire.TrafficPermissionReleasedV1):
                releases.append(_Ask(truck, body.zone_id, body.way_id, envelope.timestamp))
            elif isinstance(body, wire.TrafficPermissionAcknowledgementV1):
                acks.append((truck, body.event_id))
            elif isinstance(body, wire.HaulTruckPayloadV1):
                seen = payloads.get(truck)
                if seen is None or seen[0] <= envelope.timestamp:
                    payloads[truck] = (envelope.timestamp, _is_loaded(body.payload_weight))
    if acks:
        _record_acknowledgements(acks)
    if not (asks or releases):
        return len(acks)
    machines = {
        m.id: m
        for m in Equipment.objects.filter(
            pk__in={a.equipment_id for a in asks + releases}
        ).select_related("site")
    }
    loaded = _loaded({a.equipment_id for a in asks}, payloads)
    asks = _with_positions(asks)
    by_site: dict[uuid.UUID, list[tuple[str, _Ask]]] = {}
    # Waiting is measured on the FMS's clock (a truck's clock may be off, or a simulator's run
    # fast): the order of arrival is kept within the batch, a microsecond apart.
    now = timezone.now()
    for kind, items in (("release", releases), ("ask", asks)):
        for k, item in enumerate(sorted(items, key=lambda a: a.at)):
            machine = machines.get(item.equipment_id)
            if machine is not None:
                at = now + timedelta(microseconds=k)
                by_site.setdefault(machine.site_id, []).append((kind, replace(item, at=at)))
    for site_id, items in by_site.items():
        _handle_site(site_id, items, machines, loaded)
    return len(asks) + len(releases) + len(acks)


def _with_positions(asks: list[_Ask]) -> list[_Ask]:
    """Each request with the truck's position: the one riding along with it, else its latest
    in the live picture."""
    missing = {a.equipment_id for a in asks if a.lonlat is None}
    if not missing:
        return asks
    try:
        states = latest.read_latest(missing)
    except Exception:
        log.warning("live positions unavailable; directions unknown for %d trucks", len(missing))
        return asks
    out = []
    for ask in asks:
        here = states.get(str(ask.equipment_id), {}).get(latest.POSITION_FIELD) or {}
        if ask.lonlat is None and here.get("lon") is not None:
            ask = replace(ask, lonlat=(here["lon"], here["lat"]))
        out.append(ask)
    return out


# The entrances of each section, by zone id (a zone is never edited in place: a change is a new
# zone with a new id, so what is cached stays true).
_GATES: dict[uuid.UUID, list[Any]] = {}
GATE_MERGE_M = 10.0


def gates(zone: PolicyZone) -> list[Any]:
    """Where the site's roads cross the edge of the section (metric points, those closer than
    GATE_MERGE_M merged): its entrances. A truck's direction is the one it asks at."""
    if zone.pk in _GATES:
        return _GATES[zone.pk]
    site = zone.site
    edge = site.to_metric(zone.geometry).boundary
    found: list[Any] = []
    network = site.active_network
    for line in network.ways.values_list("geometry", flat=True) if network else []:
        crossing = edge.intersection(site.to_metric(line))
        parts = [crossing] if crossing.geom_type in ("Point", "LineString") else list(crossing)
        for part in parts:
            if part.empty:
                continue
            point = part if part.geom_type == "Point" else part.centroid
            if all(point.distance(other) > GATE_MERGE_M for other in found):
                found.append(point)
    _GATES[zone.pk] = found
    return found


def _gate_of(zone: PolicyZone, lonlat: tuple[float, float] | None) -> int | None:
    """The entrance of ``zone`` nearest the truck, or None when either is unknown."""
    entrances = gates(zone)
    if lonlat is None or not entrances:
        return None
    here = zone.site.to_metric(Point(*lonlat, srid=4326))
    return min(range(len(entrances)), key=lambda i: entrances[i].distance(here))


def _is_loaded(payload_t: float) -> bool:
    return payload_t >= settings.TRAFFIC_LOADED_MIN_T


def _loaded(
    trucks: set[uuid.UUID], in_batch: dict[uuid.UUID, tuple[datetime, bool]]
) -> dict[uuid.UUID, bool]:
    """Whether each truck carries a load: its payload in this batch, else its latest payload or
    production state (Hauling) in the live picture."""
    out = {truck: loaded for truck, (_, loaded) in in_batch.items() if truck in trucks}
    missing = trucks - out.keys()
    if missing:
        try:
            states = latest.read_latest(missing)
        except Exception:  # the live picture is a hint for ordering, never a reason to fail
            log.warning("live state unavailable; treating %d trucks as empty", len(missing))
            states = {}
        for truck in missing:
            state = states.get(str(truck), {})
            payload = (state.get("HaulTruckPayloadV1") or {}).get("PayloadWeight")
            production = (state.get("HaulTruckProductionStateV2") or {}).get("ProductionState")
            out[truck] = (payload is not None and _is_loaded(payload)) or production == "Hauling"
    return out


def _record_acknowledgements(acks: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
    now = timezone.now()
    for truck, event_id in acks:
        TrafficPermission.objects.filter(equipment_id=truck, event_id=event_id).update(
            acknowledged_event_id=event_id, acknowledged_at=now
        )


@transaction.atomic
def _handle_site(
    site_id: uuid.UUID,
    items: list[tuple[str, _Ask]],
    machines: dict[uuid.UUID, Equipment],
    loaded: dict[uuid.UUID, bool],
) -> None:
    _lock_site(site_id)
    zones = {z.id: z for z in PolicyZone.objects.filter(site_id=site_id)}
    asked: list[TrafficPermission] = []
    for kind, item in items:
        machine = machines[item.equipment_id]
        if kind == "release":
            _release(machine, item)
            continue
        permission = _request(machine, item, zones.get(item.zone_id), loaded[machine.id])
        if permission is not None:
            asked.append(permission)
    outcome = arbitrate(Site.objects.get(pk=site_id), locked=True)
    # Every request is answered: those not granted just now hear where they stand.
    granted_now = set(outcome.granted())
    for permission in asked:
        if permission.pk in granted_now:
            continue
        permission.refresh_from_db()
        if permission.is_open:
            _send(permission, "Granted" if permission.status == Status.GRANTED else "Pending")


def _request(
    machine: Equipment, ask: _Ask, zone: PolicyZone | None, loaded: bool
) -> TrafficPermission | None:
    """A new request (Pending), or the renewal of an open one. Refused at once when the zone is
    no active one-lane section of the truck's site."""
    if zone is None or zone.status != PolicyZone.Status.ACTIVE or POLICY not in zone.policies:
        why = "unknown zone" if zone is None else f"{zone.name} is not an active one-lane section"
        _refuse(machine, ask, zone, why)
        return None
    permission = (
        TrafficPermission.objects.select_for_update()
        .filter(equipment=machine, zone=zone, status__in=TrafficPermission.OPEN)
        .first()
    )
    if permission is not None:
        permission.last_asked_at = max(permission.last_asked_at, ask.at)
        fields = ["last_asked_at"]
        if permission.status == Status.PENDING:
            permission.loaded, permission.way_id = loaded, ask.way_id
            permission.gate = _gate_of(zone, ask.lonlat)
            fields += ["loaded", "way_id", "gate"]
        permission.save(update_fields=fields)
        return permission
    permission = TrafficPermission.objects.create(
        site_id=machine.site_id,
        equipment=machine,
        zone=zone,
        way_id=ask.way_id,
        loaded=loaded,
        gate=_gate_of(zone, ask.lonlat),
        requested_at=ask.at,
        last_asked_at=ask.at,
        reason="waiting to be decided",
        decided_by="truck",
    )
    _event(permission, Status.PENDING, "requested" + (" (loaded)" if loaded else ""), "truck")
    return permission


def _refuse(machine: Equipment, ask: _Ask, zone: PolicyZone | None, why: str) -> None:
    if zone is not None:
        now = timezone.now()
        permission = TrafficPermission.objects.create(
            site_id=machine.site_id,
            equipment=machine,
            zone=zone,
            way_id=ask.way_id,
            requested_at=ask.at,
            last_asked_at=ask.at,
            closed_at=now,
        )
        _change(permission, Status.REJECTED, why, "rule:not-a-section", closed_at=now)
        _send(permission, "Rejected")
        return
    log.warning("traffic: %s asked for unknown zone %s; rejected", machine.name, ask.zone_id)
    services.issue_command(
        machine,
        MESSAGE,
        _body(uuid.uuid4(), ask.zone_id, ask.way_id, "Rejected", why),
        reason=f"traffic permission rejected: {why}",
        supersede_key=f"traffic:{ask.zone_id}",
    )


def _release(machine: Equipment, ask: _Ask) -> None:
    permission = (
        TrafficPermission.objects.select_for_update()
        .filter(equipment=machine, zone_id=ask.zone_id, status__in=TrafficPermission.OPEN)
        .first()
    )
    if permission is None:
        return  # a repeated release, or one of a permission already taken back
    _change(permission, Status.RELEASED, "the truck left the section", "truck")
    _send(permission, "Released")


# --- deciding ------------------------------------------------------------------------------------


def _lock_site(site_id: uuid.UUID) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"traffic:{site_id}"])


@transaction.atomic
def arbitrate(site: Site, *, locked: bool = False, now: datetime | None = None) -> traffic.Outcome:
    """Run the arbiter over the site's open permissions and carry out what it decides."""
    if not locked:
        _lock_site(site.pk)
    now = now or timezone.now()
    open_ = list(
        # Only the permissions' rows: locking the trucks' and zones' rows too (the join) would
        # deadlock with ingest, which updates trucks in its own order.
        TrafficPermission.objects.select_for_update(of=("self",))
        .filter(site=site, status__in=TrafficPermission.OPEN)
        .select_related("equipment", "zone")
    )
    if not open_:
        return traffic.Outcome()
    zones = sections_of(site)
    _mark_entered(open_, zones, now)
    by_key = {p.pk: p for p in open_}
    outcome = traffic.decide(
        {zone_id: _section(zone) for zone_id, zone in zones.items()},
        [_as_arbiter(p) for p in open_],
        now,
        arbiter_rules(),
        rings_of_site(site, zones),
    )
    for decision in outcome.decisions:
        _apply(by_key[decision.key], decision, now)
    waiting = []
    for key, (overtakes, why) in outcome.waiting.items():
        permission = by_key[key]
        if permission.overtakes != overtakes or permission.reason != why[:300]:
            permission.overtakes, permission.reason = overtakes, why[:300]
            waiting.append(permission)
    TrafficPermission.objects.bulk_update(waiting, ["overtakes", "reason"])
    return outcome


def _as_arbiter(p: TrafficPermission) -> traffic.Permission:
    return traffic.Permission(
        key=p.pk,
        truck=p.equipment.name or str(p.equipment_id),
        zone=p.zone_id,
        # Its direction: the entrance it asked at. Asking from inside, or from where no
        # entrance is known, it conflicts with everyone.
        way=p.gate if p.way_id is not None else None,
        status=traffic.GRANTED if p.status == Status.GRANTED else traffic.PENDING,
        requested_at=p.requested_at,
        loaded=p.loaded,
        last_asked_at=p.last_asked_at,
        granted_at=p.granted_at,
        entered=p.entered_at is not None,
        overtakes=p.overtakes,
    )


def _mark_entered(
    permissions: list[TrafficPermission], zones: dict[uuid.UUID, PolicyZone], now: datetime
) -> None:
    """A grant is in use once its truck is seen inside the section (its latest position), or
    at once when it asked from inside."""
    unused = [p for p in permissions if p.status == Status.GRANTED and p.entered_at is None]
    if not unused:
        return
    try:
        states = latest.read_latest({p.equipment_id for p in unused})
    except Exception:
        log.warning("live positions unavailable; grants not checked for use this round")
        return
    entered = []
    for p in unused:
        position = states.get(str(p.equipment_id), {}).get(latest.POSITION_FIELD) or {}
        zone = zones.get(p.zone_id)
        inside = (
            zone is not None
            and position.get("lon") is not None
            and zone.geometry.contains(Point(position["lon"], position["lat"], srid=4326))
        )
        if p.way_id is None or inside:
            p.entered_at = now
            entered.append(p)
    TrafficPermission.objects.bulk_update(entered, ["entered_at"])


def _apply(permission: TrafficPermission, decision: traffic.Decision, now: datetime) -> None:
    actor = f"rule:{decision.rule}"
    if decision.action == traffic.GRANT:
        _change(permission, Status.GRANTED, decision.reason, actor, granted_at=now)
        _send(permission, "Granted")
        return
    status, update = _CLOSING[decision.action]
    _change(permission, status, decision.reason, actor, closed_at=now)
    if update is not None:
        _send(permission, update)


# --- by hand (supervisors) -------------------------------------------------------------------


@transaction.atomic
def grant_by_hand(permission: TrafficPermission, *, reason: str, actor: User) -> TrafficPermission:
    """A supervisor grants a waiting request out of turn. Never against a grant in force: a
    conflicting grant is refused whoever asks."""
    _lock_site(permission.site_id)
    permission = TrafficPermission.objects.select_related("equipment", "zone").get(pk=permission.pk)
    if permission.status != Status.PENDING:
        raise ValidationError(
            f"only a waiting request can be granted; this one is {permission.status}"
        )
    zone = sections_of(permission.zone.site).get(permission.zone_id)
    if zone is None:
        raise ValidationError(f"{permission.zone.name} is not an active one-lane section")
    holders = [
        _as_arbiter(p)
        for p in TrafficPermission.objects.filter(
            zone=permission.zone, status=Status.GRANTED
        ).select_related("equipment")
    ]
    why = traffic.conflict(_section(zone), holders, _as_arbiter(permission))
    if why is not None:
        raise ValidationError(f"{zone.name} is {why}")
    _change(permission, Status.GRANTED, reason, actor.get_username(), granted_at=timezone.now())
    _send(permission, "Granted")
    return permission


@transaction.atomic
def revoke_by_hand(permission: TrafficPermission, *, reason: str, actor: User) -> TrafficPermission:
    """A supervisor takes back a grant (Revoked: the truck must not enter, or stops where it is)
    or refuses a waiting request (Rejected); the section goes to the next in line."""
    _lock_site(permission.site_id)
    permission = TrafficPermission.objects.select_related("equipment", "zone").get(pk=permission.pk)
    if not permission.is_open:
        raise ValidationError(f"this permission is already {permission.status}")
    granted = permission.status == Status.GRANTED
    status = Status.REVOKED if granted else Status.REJECTED
    _change(permission, status, reason, actor.get_username(), closed_at=timezone.now())
    _send(permission, "Revoked" if granted else "Rejected")
    arbitrate(permission.site, locked=True)
    return permission


# --- status changes and what the truck is told ------------------------------------------------


def _change(
    permission: TrafficPermission, status: str, reason: str, actor: str, **fields: Any
) -> None:
    """The one place a permission's status changes: with its audit event, a log line and the
    dashboard's event."""
    permission.status, permission.reason, permission.decided_by = status, reason[:300], actor
    for name, value in fields.items():
        setattr(permission, name, value)
    permission.save(update_fields=["status", "reason", "decided_by", *fields])
    _event(permission, status, reason, actor)
    level = logging.INFO if status != Status.PENDING else logging.DEBUG
    log.log(
        level,
        "traffic: %s %s, %s: %s [%s]",
        permission.equipment.name,
        status,
        permission.zone.name,
        reason,
        actor,
    )
    broadcast_on_commit(
        permission.site_id,
        "traffic.changed",
        {
            "permissionId": str(permission.pk),
            "equipmentId": str(permission.equipment_id),
            "zoneId": str(permission.zone_id),
            "status": status,
            "reason": reason[:300],
            "actor": actor,
        },
    )


def _event(permission: TrafficPermission, status: str, reason: str, actor: str) -> None:
    TrafficPermissionEvent.objects.create(
        permission=permission, status=status, reason=reason[:300], actor=actor[:80]
    )


def _body(
    event_id: uuid.UUID, zone_id: uuid.UUID, way_id: int | None, status: str, reason: str
) -> dict[str, Any]:
    return {
        "EventId": str(event_id),
        "ZoneId": str(zone_id),
        "WayId": way_id,
        "Status": status,
        "Reason": reason[:200],
    }


def _send(permission: TrafficPermission, status: str) -> None:
    """Tell the truck (a TrafficPermissionUpdateV1 through the outbox); a newer update about the
    same zone supersedes one it has not acknowledged yet."""
    event_id = uuid.uuid4()
    permission.event_id = event_id
    permission.save(update_fields=["event_id"])
    services.issue_command(
        permission.equipment,
        MESSAGE,
        _body(event_id, permission.zone_id, permission.way_id, status, permission.reason),
        reason=f"traffic permission {status.lower()}: {permission.reason}",
        supersede_key=f"traffic:{permission.zone_id}",
    )


def yielding_pairs(site: Site) -> set[frozenset[uuid.UUID]]:
    """Pairs of trucks (one waiting for a section, one holding it) that the traffic rules keep
    apart: the waiting truck stands short of the section until the other has left it. For the
    collision rules, which would otherwise see the holder driving out towards the waiting
    truck as a head-on risk on the one-lane road, stop both, and hold the section for good."""
    holders: dict[uuid.UUID, set[uuid.UUID]] = {}
    waiters: dict[uuid.UUID, set[uuid.UUID]] = {}
    for zone_id, truck, status in TrafficPermission.objects.filter(
        site=site, status__in=TrafficPermission.OPEN
    ).values_list("zone_id", "equipment_id", "status"):
        (holders if status == Status.GRANTED else waiters).setdefault(zone_id, set()).add(truck)
    return {
        frozenset((waiter, holder))
        for zone_id, waiting in waiters.items()
        for waiter in waiting
        for holder in holders.get(zone_id, ())
        if waiter != holder
    }


def sweep() -> int:
    """The periodic pass: expiry and the waiting bounds on every site with open permissions.
    Returns how many decisions were made."""
    made = 0
    site_ids = set(
        TrafficPermission.objects.filter(status__in=TrafficPermission.OPEN).values_list(
            "site_id", flat=True
        )
    )
    for site in Site.objects.filter(pk__in=site_ids):
        made += len(arbitrate(site).decisions)
    return made
