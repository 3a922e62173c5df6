"""Collision risk on a site: place every machine's path over the next seconds, find the pairs
that come closer than the safety distance (``fleet.control.collision``), and act on them with
ISO 21815-2 interventions sent through the outbox; resume what was stopped once the risk clears.

Paths come from the trajectory head's latest prediction where it still covers the future (its
model version is named in the reason), else from constant-velocity extrapolation of the newest
position along the machine's current way (or its heading, off the mapped roads). ISO 23725 has
no per-machine slow-down message, so every intervention is carried by the one per-machine
message that exists: a targeted MachineAllStopRequestV1 (``services.stop_truck``); a slow-down
stops only the machine that gives way (docs/control-collision.md).

Entry point: ``assess_collision_risk(site)``, run by Celery beat every second
(``control.assess_collision_risk``) and when a trajectory prediction arrives.
"""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from fleet.control import alerts, collision, services
from fleet.control.collision import Intervention, Lanes, Road, Thresholds
from fleet.control.models import Alert, CollisionIntervention, CollisionRisk, Command, TruckState
from fleet.learning.models import Prediction
from fleet.live.broadcast import broadcast_on_commit
from fleet.mine.models import RoadNetwork, Site, Way
from fleet.protocol import wire
from fleet.telemetry.latest import POSITION_FIELD, redis_client, truck_key
from fleet.vehicles.models import Equipment

log = logging.getLogger(__name__)

TRAJECTORY = "trajectory"
PRODUCTION_STATE = "HaulTruckProductionStateV2"
ON_ROAD_M = 30.0  # a fix this close to its reported way is on it (GNSS noise, road width)
KMH = 1 / 3.6
LABELS = {
    Intervention.SLOW_DOWN: "slow-down (ISO 21815-2; sent as a stop, ISO 23725 has no slow-down)",
    Intervention.STOP: "stop (ISO 21815-2)",
    Intervention.PREVENT_MOTION: "prevent-motion (ISO 21815-2)",
}
Kind = CollisionIntervention.Kind
ALERT_SOURCE = "rule:collision-risk"


def thresholds() -> Thresholds:
    return Thresholds(
        safety_distance_m=float(settings.COLLISION_SAFETY_DISTANCE_M),
        critical_distance_m=float(settings.COLLISION_CRITICAL_DISTANCE_M),
        stop_ttca_s=float(settings.COLLISION_STOP_TTCA_S),
    )


class Machine(NamedTuple):
    """What the assessment needs of a machine (a model instance is loaded only to act)."""

    id: uuid.UUID
    name: str
    autonomous: bool


class Trajectory(NamedTuple):
    """A trajectory prediction as the assessment reads it."""

    model_id: str
    window_end: datetime
    outputs: dict[str, Any]


@dataclass
class Placed:
    """The machines of a site placed on the common time grid, with where each path came from."""

    machines: list[Machine]
    paths: np.ndarray  # (n, K, 2) metres
    sources: list[str]
    lanes: Lanes
    dt_s: float
    held: np.ndarray  # (n,) bool: standing, held by this rule's stop (placed as if released)
    standing: np.ndarray  # (n,) bool: reported standing now (its path may still move)


@dataclass
class Report:
    """What one assessment saw and did."""

    machines: int = 0
    candidates: int = 0
    risks: int = 0
    commands: int = 0
    resumed: int = 0
    fallback: int = 0
    skipped: str = ""
    place_ms: float = 0.0
    assess_ms: float = 0.0
    act_ms: float = 0.0
    notes: list[str] = field(default_factory=list)


# --- the road graph -------------------------------------------------------------------------


_roads: dict[Any, tuple[collision.Frame, dict[int, Road]]] = {}


def site_roads(site: Site) -> tuple[collision.Frame, dict[int, Road]]:
    """The site's local frame and its active network's ways in it, built once per revision."""
    network = (
        RoadNetwork.objects.filter(site=site, status=RoadNetwork.Status.ACTIVE)
        .values_list("pk", "revision")
        .first()
    )
    key = (site.pk, network)
    if key not in _roads:
        centre = site.boundary.centroid
        frame = collision.Frame(centre.x, centre.y)
        roads = {}
        if network is not None:
            for way_id, line, one_lane, a, b in Way.objects.filter(
                network_id=network[0]
            ).values_list("way_id", "geometry", "one_lane", "start_node_id", "end_node_id"):
                lon, lat = np.asarray(line.coords, dtype=float)[:, :2].T
                roads[way_id] = Road.of(way_id, frame.to_local(lon, lat), one_lane, (a, b))
        _roads.clear()  # one site's latest revision per process is all a worker needs cached
        _roads[key] = (frame, roads)
    return _roads[key]


# --- placing the machines ----------------------------------------------------------------------


def _fresh_predictions(ids: list[uuid.UUID], now: datetime) -> dict[uuid.UUID, Trajectory]:
    """Each machine's newest trajectory prediction whose horizon still reaches past now."""
    reach = timedelta(seconds=max(_horizons(None)))
    rows = (
        Prediction.objects.filter(
            equipment_id__in=ids, model_name=TRAJECTORY, window_end__gt=now - reach
        )
        .order_by("equipment_id", "-window_end")
        .distinct("equipment_id")
        .values_list("equipment_id", "model_id", "window_end", "outputs")
    )
    return {row[0]: Trajectory(*row[1:]) for row in rows}


def _latest(ids: list[uuid.UUID]) -> list[tuple[Any, Any]]:
    """Each machine's newest position summary and production state from the latest state in
    Redis (only those two fields: a truck's hash holds every message it sends)."""
    with redis_client().pipeline(transaction=False) as pipe:
        for equipment_id in ids:
            pipe.hmget(truck_key(equipment_id), POSITION_FIELD, PRODUCTION_STATE)
        raw = pipe.execute()
    return [tuple(orjson.loads(v) if v else None for v in pair) for pair in raw]


def _horizons(prediction: Trajectory | None) -> list[float]:
    from_outputs = (prediction.outputs or {}).get("horizons_s") if prediction else None
    return [float(h) for h in (from_outputs or (1, 3, 5))]


def place_machines(site: Site, now: datetime | None = None) -> Placed:
    """Every active machine of ``site`` with a recent position, its path over the horizon."""
    now = now or timezone.now()
    dt = settings.COLLISION_STEP_MS / 1000.0
    grid = collision.time_grid(float(settings.COLLISION_HORIZON_S), dt)
    frame, roads = site_roads(site)
    machines = [
        Machine(*row)
        for row in Equipment.objects.filter(site=site, status=Equipment.Status.ACTIVE).values_list(
            "id", "name", "autonomous"
        )
    ]
    ids = [m.id for m in machines]
    latest = _latest(ids) if machines else []
    placed, paths, sources, way, direction, one_lane, held = [], [], [], [], [], [], []
    along, nodes, standing = [], [], []
    predictions = _fresh_predictions(ids, now)
    holding = held_by_rule(site)
    max_age = float(settings.COLLISION_POSITION_MAX_AGE_S)
    for machine, (fix, production) in zip(machines, latest, strict=True):
        production = production or {}
        if not fix or production.get("ProductionState") in settings.COLLISION_EXEMPT_STATES:
            continue
        t_fix = (wire.parse_timestamp(fix["at"]) - now).total_seconds()
        if t_fix < -max_age:
            continue
        speed = float(fix.get("speedKmh") or 0.0) * KMH
        # A machine this rule holds is placed where it would go if released: the risk it was
        # stopped for clears when releasing it would not bring it back, not merely because
        # both machines stand still.
        released = machine.id in holding and speed <= Thresholds.moving_mps
        path, source, lane = _path(
            frame.to_local(fix["lon"], fix["lat"]),
            float(fix.get("heading") or 0.0),
            settings.COLLISION_RELEASE_SPEED_KMH * KMH if released else speed,
            t_fix,
            roads.get(production.get("WayId")),
            None if released else predictions.get(machine.id),
            frame,
            grid,
            now,
        )
        if released:
            source = (
                f"held, as if released at {settings.COLLISION_RELEASE_SPEED_KMH} km/h: {source}"
            )
        held.append(released)
        standing.append(speed <= Thresholds.moving_mps)
        placed.append(machine)
        paths.append(path)
        sources.append(source)
        way.append(lane[0])
        direction.append(lane[1])
        one_lane.append(lane[2])
        along.append(lane[3])
        nodes.append(lane[4])
    stacked = np.stack(paths) if paths else np.zeros((0, len(grid), 2))
    lanes = Lanes(
        np.array(way, dtype=np.int64),
        np.array(direction),
        np.array(one_lane, bool),
        s=np.array(along, dtype=float),
        speed=np.hypot(*(stacked[:, 1] - stacked[:, 0]).T) / dt if paths else np.zeros(0),
        nodes=np.array(nodes, dtype=np.int64).reshape(-1, 2),
    )
    return Placed(
        placed, stacked, sources, lanes, dt, np.array(held, bool), np.array(standing, bool)
    )


def held_by_rule(site: Site) -> set[uuid.UUID]:
    """Machines whose newest targeted stop is an Apply this rule sent for a risk still open."""
    acted = set(
        CollisionIntervention.objects.filter(risk__site=site, risk__closed_at__isnull=True)
        .exclude(kind=Kind.RESUME)
        .values_list("equipment_id", flat=True)
    )
    if not acted:
        return set()
    newest = {
        pk: equipment_id
        for equipment_id, pk, body in Command.objects.filter(
            equipment_id__in=acted, supersede_key="stop"
        )
        .order_by("equipment_id", "-serial")
        .distinct("equipment_id")
        .values_list("equipment_id", "pk", "body")
        if body.get("ModeAllStop") == "Apply"
    }
    ours = CollisionIntervention.objects.filter(command_id__in=newest).values_list(
        "command_id", flat=True
    )
    return {newest[pk] for pk in ours}


def _path(
    position: np.ndarray,
    heading: float,
    speed: float,
    t_fix: float,
    road: Road | None,
    prediction: Trajectory | None,
    frame: collision.Frame,
    grid: np.ndarray,
    now: datetime,
) -> tuple[np.ndarray, str, tuple[int, int, bool, float, tuple[int, int]]]:
    """One machine's path on ``grid``, where it came from, and where it is on the road graph
    (way, direction, one-lane, distance along the way, the way's end nodes)."""
    projected = road.project(position) if road is not None else None
    if projected is not None and projected[2] > ON_ROAD_M:
        road = None
    lane: tuple[int, int, bool, float, tuple[int, int]] = (-1, 0, False, 0.0, (-1, -2))
    fallback: np.ndarray | None = None
    if road is not None:
        fallback, sign = collision.along_road(
            road, position, heading, speed, grid - t_fix, projected=projected
        )
        now_s = projected[0] - sign * speed * t_fix  # where along the way it is now
        lane = (road.way_id, sign, road.one_lane, now_s, road.nodes)
    if prediction is not None:
        ahead = [
            ((prediction.window_end - now).total_seconds() + h, p)
            for h, p in zip(_horizons(prediction), prediction.outputs["positions"], strict=False)
        ]
        ahead = [(t, p) for t, p in ahead if t > t_fix]
        if ahead:
            points = frame.to_local([p[0] for _, p in ahead], [p[1] for _, p in ahead])
            path = collision.resample(
                [t_fix, *(t for t, _ in ahead)], np.vstack([position, points]), grid
            )
            return path, f"{prediction.model_id or TRAJECTORY}", lane
    if fallback is not None:
        return fallback, f"constant velocity along way {road.way_id} (no fresh prediction)", lane
    path = collision.straight(position, heading, speed, grid - t_fix)
    return path, "constant velocity on its heading, off the roads (no fresh prediction)", lane


# --- the entry point ------------------------------------------------------------------------------


def assess_collision_risk(site: Site | uuid.UUID | str, *, force: bool = True) -> Report:
    """Assess ``site`` now and act: open or refresh each risky pair, intervene where the
    machine has not been acted on as strongly for this pair yet, close the pairs no longer
    seen for ``COLLISION_CLEAR_S`` and resume the stops they alone were holding. One
    assessment per site at a time (a second one meanwhile returns at once). ``force=False``
    skips it when the site was assessed less than ``COLLISION_MIN_INTERVAL_MS`` ago."""
    if not isinstance(site, Site):
        site = Site.objects.get(pk=site)
    report = Report()
    if not force and not _due(site):
        report.skipped = "assessed moments ago"
        return report
    with transaction.atomic():
        if not _lock(site):
            report.skipped = "another assessment is running"
            return report
        now = timezone.now()
        started = time.perf_counter()
        placed = place_machines(site, now)
        report.place_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        limits = thresholds()
        assessment = collision.assess(placed.paths, placed.dt_s, limits, lanes=placed.lanes)
        report.assess_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        report.machines, report.candidates = len(placed.machines), assessment.candidates
        report.risks = len(assessment.encounters)
        report.fallback = sum(not s.startswith(TRAJECTORY) for s in placed.sources)
        book = RiskBook.of(site)
        for encounter in assessment.encounters:
            report.commands += _act(site, book, placed, encounter, limits, now)
        book.save_refreshed()
        report.resumed = _release_first(placed, assessment.encounters, book)
        report.resumed += _close_cleared(site, book.seen, now)
        report.act_ms = (time.perf_counter() - started) * 1000
    return report


def _lock(site: Site) -> bool:
    with connection.cursor() as cursor:
        key = zlib.crc32(f"collision:{site.pk}".encode())
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [key])
        return bool(cursor.fetchone()[0])


def _due(site: Site) -> bool:
    """At most one prediction-triggered assessment per site per COLLISION_MIN_INTERVAL_MS."""
    from django.core.cache import cache

    interval = settings.COLLISION_MIN_INTERVAL_MS / 1000.0
    return bool(cache.add(f"collision-due:{site.pk}", 1, timeout=max(interval, 0.001)))


# --- acting on a risk -------------------------------------------------------------------------------


@dataclass
class RiskBook:
    """A site's open risks and what each machine got from each, read once per assessment;
    the risks seen again are written back in one statement."""

    risks: dict[tuple[uuid.UUID, uuid.UUID], CollisionRisk]
    done: dict[int, dict[uuid.UUID, int]]  # risk pk -> machine -> strongest intervention
    seen: set[int] = field(default_factory=set)
    refreshed: list[CollisionRisk] = field(default_factory=list)

    @classmethod
    def of(cls, site: Site) -> RiskBook:
        risks = {
            (r.first_id, r.second_id): r
            for r in CollisionRisk.objects.filter(site=site, closed_at__isnull=True)
        }
        done: dict[int, dict[uuid.UUID, int]] = {}
        for risk_id, equipment_id, kind in (
            CollisionIntervention.objects.filter(risk__in=[r.pk for r in risks.values()])
            .exclude(kind=Kind.RESUME)
            .values_list("risk_id", "equipment_id", "kind")
        ):
            strongest = done.setdefault(risk_id, {})
            strength = collision.STRENGTH[Intervention(kind)]
            strongest[equipment_id] = max(strongest.get(equipment_id, 0), strength)
        return cls(risks, done)

    def save_refreshed(self) -> None:
        fields = ["last_seen_at", "source", "t_ca_s", "d_ca_m", "min_d_ca_m"]
        CollisionRisk.objects.bulk_update(self.refreshed, fields)


def _act(
    site: Site,
    book: RiskBook,
    placed: Placed,
    encounter: collision.Encounter,
    limits: Thresholds,
    now: datetime,
) -> int:
    """Open or refresh the pair's risk and intervene where this pair has not yet had as
    strong an intervention from that machine (the debounce). Returns the commands sent."""
    a, b = sorted((encounter.first, encounter.second), key=lambda k: str(placed.machines[k].id))
    first, second = placed.machines[a], placed.machines[b]
    source = f"{first.name}: {placed.sources[a]}; {second.name}: {placed.sources[b]}"[:300]
    risk = book.risks.get(_pair(first, second))
    if risk is None:
        risk = CollisionRisk.objects.create(
            site=site,
            first_id=first.id,
            second_id=second.id,
            last_seen_at=now,
            t_ca_s=encounter.t_ca_s,
            d_ca_m=encounter.d_ca_m,
            min_d_ca_m=encounter.d_ca_m,
            source=source,
        )
        book.risks[_pair(first, second)] = risk
        _announce(risk, "opened")
    else:
        risk.last_seen_at, risk.source = now, source
        risk.t_ca_s, risk.d_ca_m = encounter.t_ca_s, encounter.d_ca_m
        risk.min_d_ca_m = min(risk.min_d_ca_m, encounter.d_ca_m)
        book.refreshed.append(risk)
    book.seen.add(risk.pk)
    done = book.done.setdefault(risk.pk, {})
    issued = 0
    for index, kind in collision.interventions(
        placed.paths, encounter, placed.dt_s, limits, placed.standing
    ).items():
        machine = placed.machines[index]
        if collision.STRENGTH[kind] <= done.get(machine.id, 0):
            continue  # debounced: this pair already got as much from this machine
        other = placed.machines[b if index == a else a]
        reason = _reason(kind, machine, other, encounter, placed.sources[index])
        issued += _intervene(risk, machine, other, kind, reason, encounter)
        done[machine.id] = collision.STRENGTH[kind]
    return issued


def _pair(a: Machine, b: Machine) -> tuple[uuid.UUID, uuid.UUID]:
    """A pair's key: (first, second) as CollisionRisk stores them, ids in text order."""
    first, second = sorted((a, b), key=lambda m: str(m.id))
    return first.id, second.id


def _release_first(placed: Placed, encounters: list[collision.Encounter], book: RiskBook) -> int:
    """Where both machines of a risk stand held by this rule (they would meet if both were
    released), release the one with priority: the one driving less towards the other (the
    leader of a following pair, the one further into a crossing). The other stays held until
    they are clear. Not two machines facing each other on one way: one of them must back off,
    which an operator decides (their alerts are critical)."""
    released: set[int] = set()
    count = 0
    for encounter in encounters:
        pair = (encounter.first, encounter.second)
        if not placed.held[list(pair)].all() or released & set(pair):
            continue
        a, b = pair
        lanes = placed.lanes
        if (
            lanes.way[a] >= 0
            and lanes.way[a] == lanes.way[b]
            and lanes.direction[a] != lanes.direction[b]
        ):
            continue
        go = min(pair, key=lambda m: collision.towards(placed.paths, m, pair, placed.dt_s))
        wait = b if go == a else a
        risk = book.risks[_pair(placed.machines[a], placed.machines[b])]
        if _release(risk, placed.machines[go], placed.machines[wait]):
            released.add(go)
            count += 1
    return count


def _release(risk: CollisionRisk, go: Machine, wait: Machine) -> bool:
    equipment = Equipment.objects.get(pk=go.id)
    reason = (
        f"resume: goes first after the collision-risk stop with {wait.name} (both were "
        f"standing; {wait.name} stays held until they are clear)"
    )
    command = services.resume_truck(equipment, reason=reason)
    if command is None:
        return False
    CollisionIntervention.objects.create(
        risk=risk, equipment=equipment, kind=Kind.RESUME, command=command, reason=reason
    )
    log.info("collision risk: %s (%s)", reason, go.name)
    return True


def _reason(
    kind: Intervention,
    machine: Machine,
    other: Machine,
    encounter: collision.Encounter,
    source: str,
) -> str:
    """What the operator reads, e.g. 'stop (ISO 21815-2): collision risk with HT-002, closest
    approach 12 m in 3.5 s; path of HT-001 from trajectory@4'."""
    return (
        f"{LABELS[kind]}: collision risk with {other.name}, closest approach "
        f"{encounter.d_ca_m:.0f} m in {encounter.t_ca_s:.1f} s; path of {machine.name} from {source}"
    )[:300]


def _intervene(
    risk: CollisionRisk,
    machine: Machine,
    other: Machine,
    kind: Intervention,
    reason: str,
    encounter: collision.Encounter,
) -> int:
    """Stop the machine unless a targeted stop already holds it, or it is not ours to stop (a
    manned machine: the operator sees the record). The record is kept either way, and the
    machine's alert for this other machine raised (or folded into the open one)."""
    equipment = Equipment.objects.get(pk=machine.id)
    command: Command | None = None
    if machine.autonomous:
        state, _ = TruckState.objects.get_or_create(equipment=equipment)
        if state.stop_id is None:
            command = services.stop_truck(equipment, reason=reason)
    note = "" if command else " [no command: already held by a stop]"
    if not machine.autonomous:
        note = " [no command: not an autonomous machine]"
    CollisionIntervention.objects.create(
        risk=risk,
        equipment=equipment,
        kind=kind.value,
        command=command,
        reason=(reason + note)[:300],
    )
    log.warning("collision risk: %s%s", reason, note)
    alert, _ = alerts.raise_alert(
        equipment,
        alerts.Finding(
            kind="collision_risk",
            fold_key=f"collision_risk:{other.id}",
            severity=Alert.Severity.WARNING
            if kind == Intervention.SLOW_DOWN
            else Alert.Severity.CRITICAL,
            source=ALERT_SOURCE,
            channel="MachinePositionV1",
            reason=reason + note,
            inputs={
                "riskId": risk.pk,
                "other": str(other.id),
                "intervention": kind.value,
                "tCaS": round(encounter.t_ca_s, 2),
                "dCaM": round(encounter.d_ca_m, 1),
                "paths": risk.source,
            },
        ),
    )
    if command is not None:
        alerts.record_action(alert, command.command_id, actor=ALERT_SOURCE, detail=kind.value)
    return int(command is not None)


# --- clearing -----------------------------------------------------------------------------------------


def _close_cleared(site: Site, seen: set[int], now: datetime) -> int:
    """Close the open risks not seen for COLLISION_CLEAR_S; resume each machine they stopped
    if no other open risk involves it and the newest stop it was sent is still ours."""
    quiet = now - timedelta(seconds=settings.COLLISION_CLEAR_S)
    cleared = list(
        CollisionRisk.objects.filter(site=site, closed_at__isnull=True, last_seen_at__lt=quiet)
        .exclude(pk__in=seen)
        .select_related("first", "second")
    )
    resumed = 0
    for risk in cleared:
        risk.closed_at = now
        risk.save(update_fields=["closed_at"])
        _announce(risk, "cleared")
        held = {i.equipment_id for i in risk.interventions.exclude(kind=Kind.RESUME)}
        for machine in (risk.first, risk.second):
            if machine.id in held and _resume_if_ours(risk, machine):
                resumed += 1
    return resumed


def _resume_if_ours(risk: CollisionRisk, machine: Equipment) -> bool:
    still = CollisionIntervention.objects.filter(
        equipment=machine, risk__closed_at__isnull=True
    ).exclude(kind=Kind.RESUME)
    if still.exists():
        return False  # another open risk still holds it
    newest = (
        Command.objects.filter(equipment=machine, supersede_key="stop").order_by("-serial").first()
    )
    if newest is None or newest.body.get("ModeAllStop") != "Apply":
        return False
    if not CollisionIntervention.objects.filter(command=newest).exists():
        return False  # an operator or another rule stopped it since: theirs to lift
    other = risk.second if machine.id == risk.first_id else risk.first
    reason = (
        f"resume: collision risk with {other.name} cleared (closest approach predicted "
        f"{risk.min_d_ca_m:.0f} m; no risk for {settings.COLLISION_CLEAR_S} s)"
    )
    command = services.resume_truck(machine, reason=reason)
    CollisionIntervention.objects.create(
        risk=risk, equipment=machine, kind=Kind.RESUME, command=command, reason=reason
    )
    log.info("collision risk: %s (%s)", reason, machine.name)
    return command is not None


def _announce(risk: CollisionRisk, what: str) -> None:
    broadcast_on_commit(
        risk.site_id,
        "collision.risk",
        {
            "riskId": risk.pk,
            "state": what,
            "equipmentIds": [str(risk.first_id), str(risk.second_id)],
            "tCaS": round(risk.t_ca_s, 2),
            "dCaM": round(risk.d_ca_m, 1),
            "source": risk.source,
        },
    )
