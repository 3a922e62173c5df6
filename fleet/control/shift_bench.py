"""``manage.py bench shift --trucks 300 --minutes 12 --json``: a shift of the whole stack in real
time, and its safety and production figures from what was stored.

The stack is the one ``make demo`` runs, less the inference pool (the collision rules fall back
to constant velocity along the road without trajectory predictions) and the ASGI server: an
ingest replica, the outbox's delivery, a Celery worker with beat (collision risk every second,
traffic sweeps, zone deletions and re-syncs, dispatch re-plans, command expiry) and one
simulator process for the whole fleet (one engine, so every truck sees every other) driving
over MQTT, obeying every FMS message, with no ``--self-grant``. One clock: the wall clock.

The site is the benchmark's own (``SITE_SLUG``), generated like the dispatch benchmark's large
mine (``fleet.mine.demo.build_large_map``): ``--pits`` pits with ``--loading-units`` shovels
shared among them, every third shovel's bench road narrowed to one lane over a stretch (a
trafficPermission section), the dispatcher switched on. The trucks start mid-shift, spread
round their haul cycles (``simulate --spread``), and the figures cover ``--minutes`` after a
warm-up (``WARMUP_S``). During that window ``--zones`` exclusion zones are activated, one at a
time at spread moments, each across a road in use just ahead of a moving truck (not a road
whose closing cuts a pit off: its only ramp), and deleted
after ``ZONE_HOLD_S``; a truck stopped inside one is resumed once it is deleted (the operator's
part). The definitions of the figures are in ``fleet.control.shift_figures``.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.gis.geos import Polygon
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from fleet.control import (
    alerts,
    allstop,
    collision_services,
    dispatching,
    services,
    traffic_services,
)
from fleet.control import shift_figures as sf
from fleet.control.bench import cpu_seconds, start_command
from fleet.control.collision import Frame, Road, Thresholds
from fleet.control.models import (
    Alert,
    Command,
    TrafficPermission,
    TrafficPermissionEvent,
    TruckState,
)
from fleet.mine import services as mine
from fleet.mine.demo import build_large_map, sync_trucks
from fleet.mine.mapfile import import_site_map
from fleet.mine.models import Area, DumpPoint, LoadingUnit, PolicyZone, Site, ZoneResponse
from fleet.telemetry import queries, replicas
from fleet.telemetry.bench import free_port, wait_for_metrics
from fleet.vehicles.models import Equipment

Log = Callable[[str], None]
SITE_NAME, SITE_SLUG = "Shift benchmark", "bench-shift"
ONE_LANE_EVERY = 3  # every third shovel's bench road narrows to one lane
WARMUP_S = 60.0  # after every truck is connected, before the measured window
ZONE_HOLD_S = 150.0  # each exclusion zone's time in force
ZONE_ALONG_M, ZONE_ACROSS_M = 40.0, 44.0  # its rectangle: along the road, across it
ZONE_AHEAD_M = (90.0, 160.0)  # placed this far ahead of a moving truck on its way
NODE_CLEAR_M = 70.0  # and no nearer a node than this (the zone closes one way, not a junction)
RESUME_AFTER_S = 15.0  # a deleted zone's stopped trucks are resumed after at most this
DEFAULT_NOTICE_S = 10.0  # grace for a truck with no recorded answer to an activation
GNSS_NOISE_M = 3.0  # a fix this near a zone's edge is on it (3 sigma of a 1 m GNSS fix)
SAMPLE_S = 1.0  # separation: one instant a second
PAIR_RADIUS_M = 150.0  # pairs within this are sampled (farther ones cannot be close)
AREA_RADIUS_M = 50.0  # round a loading unit or a dump point: its loading / tipping area
MAX_GAP_S = 2.5  # a truck is placed between two fixes no further apart than this
MOVING_MPS = Thresholds.moving_mps
ON_ROAD_M = collision_services.ON_ROAD_M
KMH = 1 / 3.6


# --- set-up -------------------------------------------------------------------------------------


def provision(trucks: int, pits: int, units: int) -> Site:
    """The benchmark's site (imported again only if the map changed), ``trucks`` active haul
    trucks on it, the dispatcher on."""
    import_site_map(
        build_large_map(pits, units, name=SITE_NAME, slug=SITE_SLUG, one_lane_every=ONE_LANE_EVERY)
    )
    site = Site.objects.get(slug=SITE_SLUG)
    sync_trucks(site, trucks)
    if not dispatching.enabled(site):
        dispatching.set_enabled(site, True)
    return site


def reset(site: Site, operator: User) -> None:
    """Nothing left over from an earlier run: its exclusion zones deleted, stops and all-stops
    removed, alerts resolved, commands and permissions closed."""
    for zone in PolicyZone.objects.filter(
        site=site,
        name__startswith="bench exclusion",
        status__in=[PolicyZone.Status.ACTIVE, PolicyZone.Status.PENDING],
    ):
        mine.request_zone_deletion(zone)
    for zone in PolicyZone.objects.filter(site=site, status=PolicyZone.Status.PENDING_DELETE):
        mine.confirm_zone_deleted(zone)
    if allstop.in_force(site):
        allstop.remove_all_stop(site, reason="bench start", actor=operator)
    for truck in Equipment.objects.filter(site=site, control__stop_id__isnull=False):
        services.resume_truck(truck, reason="bench start", actor=operator)
    for alert in Alert.objects.filter(site=site).exclude(status=Alert.Status.RESOLVED):
        alerts.resolve_alert(alert, actor=operator, note="bench start")
    stale = Command.objects.filter(equipment__site=site, status__in=Command.OPEN)
    Command.change_statuses(
        stale.values_list("pk", flat=True), Command.Status.EXPIRED, actor="bench", detail="reset"
    )
    for permission in TrafficPermission.objects.filter(
        site=site, status__in=TrafficPermission.OPEN
    ):
        try:
            with transaction.atomic():
                traffic_services.revoke_by_hand(permission, reason="bench start", actor=operator)
        except ValidationError:
            pass  # closed meanwhile: revoking one re-arbitrates the site, which expires others


class Stack:
    """The platform's processes and the simulator, as subprocesses logging to VAR_DIR."""

    def __init__(self, site: Site, trucks: int, hz: float, seed: int, replicas: int) -> None:
        self.name = f"bench-shift-{os.getpid()}"
        self.ingests = []
        for k in range(replicas):  # one shared subscription: the broker spreads the messages
            port = free_port()
            process = start_command(
                ["ingest", "--replica", f"{self.name}-{k}", "--share-group",
                 f"benchshift{os.getpid()}", "--session-expiry", "60", "--metrics-port", str(port)],
                f"bench-shift-ingest-{k}.log",
            )  # fmt: skip
            self.ingests.append((process, port))
        self.delivery = start_command(
            ["deliver_commands", "--client-id", self.name], "bench-shift-outbox.log"
        )
        self.celery = _start_celery(self.name)
        for process, port in self.ingests:
            wait_for_metrics(port, process)
        self.simulator = start_command(
            ["simulate", "--site", site.slug, "--trucks", str(trucks), "--hz", f"{hz:g}",
             "--seed", str(seed), "--spread", "--fault-rate", "0", "--no-validate"],
            "bench-shift-simulator.log",
        )  # fmt: skip

    def processes(self) -> dict[str, subprocess.Popen]:
        return {
            **{f"ingest-{k}": p for k, (p, _) in enumerate(self.ingests)},
            "delivery": self.delivery,
            "celery": self.celery,
            "simulator": self.simulator,
        }

    def sent(self) -> dict[str, int]:
        """What the simulator says it sent, by message (its last log line)."""
        text = (Path(settings.VAR_DIR) / "bench-shift-simulator.log").read_text()
        last = [line for line in text.splitlines() if line.startswith("stopped:")]
        if not last:
            return {}
        return ast.literal_eval(last[-1][last[-1].index("({") + 1 : -1])

    def cpu(self) -> dict[str, float]:
        return {k: _cpu_or_zero(p) for k, p in self.processes().items()}

    def check(self) -> None:
        for name, process in self.processes().items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"the {name} process exited (see {settings.VAR_DIR}/bench-shift-*.log)"
                )

    def stop_simulator(self) -> None:
        self.simulator.send_signal(signal.SIGINT)  # each truck reports Offline
        try:
            self.simulator.wait(60)
        except subprocess.TimeoutExpired:
            self.simulator.kill()

    def stop(self) -> None:
        if self.simulator.poll() is None:
            self.stop_simulator()
        others = [self.celery, self.delivery, *(p for p, _ in self.ingests)]
        for process in others:
            process.terminate()
        for process in others:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        for k in range(len(self.ingests)):
            replicas.forget(f"{self.name}-{k}")


def _start_celery(name: str) -> subprocess.Popen:
    log_path = Path(settings.VAR_DIR) / "bench-shift-celery.log"
    schedule = Path(settings.VAR_DIR) / "bench-shift-celerybeat"
    return subprocess.Popen(  # noqa: S603 - our own worker
        [sys.executable, "-m", "celery", "-A", "fleet", "worker", "--beat", "--loglevel=INFO",
         "--concurrency=1", "-n", f"{name}@%h", "-s", str(schedule),
         "-Q", settings.CELERY_TASK_DEFAULT_QUEUE],
        cwd=settings.BASE_DIR,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def _cpu_or_zero(process: subprocess.Popen) -> float:
    try:
        return cpu_seconds(process)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def _wait_connected(
    site: Site, trucks: int, stack: Stack, log: Log, limit_s: float = 300.0
) -> None:
    online = TruckState.objects.filter(
        equipment__site=site, equipment__status=Equipment.Status.ACTIVE, connection="Online"
    )
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        stack.check()
        count = online.count()
        if count >= trucks:
            log(f"shift: {count} trucks connected")
            return
        time.sleep(2.0)
    raise RuntimeError(f"only {online.count()} of {trucks} trucks connected in {limit_s:.0f} s")


# --- the exclusion zones --------------------------------------------------------------------------


class Zones:
    """The benchmark's exclusion zones: each placed across a road in use, then deleted, and
    the trucks it stopped resumed."""

    def __init__(self, site: Site, operator: User, log: Log) -> None:
        self.site, self.operator, self.log = site, operator, log
        self.frame, self.roads = collision_services.site_roads(site)
        sections = [z.geometry for z in traffic_services.sections_of(site).values()]
        self.narrow_ways = {
            w for w, road in self.roads.items() if road.one_lane
        }  # a zone on a one-lane way would sit in its section
        self.sections = sections
        self.lifelines = self._lifelines(site)
        self.activated: list[PolicyZone] = []
        self.deleting: list[tuple[PolicyZone, float]] = []
        self.rng = np.random.default_rng(7)

    def activate(self) -> PolicyZone | None:
        """One zone across a two-lane way carrying moving trucks, ahead of one of them."""
        placed = collision_services.place_machines(self.site)
        lanes = placed.lanes
        if not len(placed.machines):
            return None
        speed = lanes.speed if lanes.speed is not None else np.zeros(len(placed.machines))
        moving = (lanes.way >= 0) & (speed > 3.0)
        used = [
            w
            for w in lanes.way[moving].tolist()
            if w not in self.narrow_ways and w not in self.lifelines
        ]
        ways, counts = np.unique(np.asarray(used, dtype=np.int64), return_counts=True)
        for way in ways[np.argsort(-counts, kind="stable")].tolist():
            road = self.roads[way]
            if any(self._near(road, zone) for zone in self._in_force()):
                continue
            for k in self.rng.permutation(np.flatnonzero(moving & (lanes.way == way))).tolist():
                ahead = float(self.rng.uniform(*ZONE_AHEAD_M))
                s = float(lanes.s[k]) + lanes.direction[k] * ahead
                if NODE_CLEAR_M <= s <= road.length - NODE_CLEAR_M:
                    return self._create(road, s)
        return None

    def _lifelines(self, site: Site) -> set[int]:
        """Ways whose closing cuts several loading units off every dump (a pit's only ramp,
        the trunk between pits): a zone there stops a whole pit, not a road; the benchmark
        closes roads, as a spill or a survey crew does, and leaves those open."""
        ends: dict[int, tuple[int, int]] = {w: road.nodes for w, road in self.roads.items()}
        where: dict[int, np.ndarray] = {}
        for road in self.roads.values():
            where[road.nodes[0]], where[road.nodes[1]] = road.xy[0], road.xy[-1]
        ids, xy = list(where), np.array(list(where.values()))

        def node_at(points: Any) -> set[int]:
            local = self.frame.to_local([p.x for p in points], [p.y for p in points])
            return {ids[int(np.argmin(np.hypot(*(xy - q).T)))] for q in local.reshape(-1, 2)}

        units = node_at(LoadingUnit.objects.filter(site=site).values_list("location", flat=True))
        dumps = node_at(DumpPoint.objects.filter(site=site).values_list("location", flat=True))
        lifelines = set()
        for closed in ends:
            reached, frontier = set(dumps), list(dumps)
            while frontier:
                node = frontier.pop()
                for way, (a, b) in ends.items():
                    if way != closed and node in (a, b):
                        other = b if node == a else a
                        if other not in reached:
                            reached.add(other)
                            frontier.append(other)
            if len(units - reached) >= 2:
                lifelines.add(closed)
        return lifelines

    def _near(self, road: Road, zone: PolicyZone) -> bool:
        lon, lat = zone.geometry.centroid.coords
        centre = self.frame.to_local(lon, lat)
        return road.project(centre)[2] < 2 * ZONE_ACROSS_M

    def _create(self, road: Road, s: float) -> PolicyZone:
        centre = road.at(np.array([s]))[0]
        _, unit, _ = road.project(centre)
        normal = np.array([-unit[1], unit[0]])
        a, c = ZONE_ALONG_M / 2, ZONE_ACROSS_M / 2
        corners = [centre + sa * a * unit + sc * c * normal for sa, sc in
                   ((-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1))]  # fmt: skip
        lon, lat = self.frame.to_lonlat(np.array(corners))
        name = f"bench exclusion {len(self.activated) + 1} on way {road.way_id}"
        zone = mine.activate_zone(
            mine.create_zone(
                site=self.site,
                name=name,
                geometry=Polygon(list(zip(lon.tolist(), lat.tolist(), strict=True)), srid=4326),
                policies={"exclusion": {}},
                created_by=self.operator,
            )
        )
        self.activated.append(zone)
        self.log(f"shift: {name} activated ({s:.0f} m along it)")
        return zone

    def _in_force(self) -> list[PolicyZone]:
        return [z for z in self.activated if z.delete_requested_at is None]

    def delete_due(self, now: float) -> None:
        for zone in self._in_force():
            if zone.activated_at and now - zone.activated_at.timestamp() >= ZONE_HOLD_S:
                zone = mine.request_zone_deletion(zone)
                self.activated[[z.pk for z in self.activated].index(zone.pk)] = zone
                self.deleting.append((zone, now))
                self.log(f"shift: {zone.name} deleted")

    def resume_due(self, now: float) -> None:
        """Trucks the zone's exclusion alert stopped drive on once it is gone (or shortly after
        its deletion was sent): what the operator does."""
        for zone, asked in list(self.deleting):
            zone.refresh_from_db(fields=["status"])
            if zone.status != PolicyZone.Status.DELETED and now - asked < RESUME_AFTER_S:
                continue
            self.deleting.remove((zone, asked))
            for alert in Alert.objects.filter(
                site=self.site, kind="exclusion", fold_key=f"exclusion:{zone.pk}"
            ).exclude(status=Alert.Status.RESOLVED):
                alerts.resolve_alert(alert, actor=self.operator, note="zone deleted")
                services.resume_truck(
                    alert.equipment, reason=f"zone {zone.name!r} deleted", actor=self.operator
                )
                self.log(f"shift: {alert.equipment.name} resumed after {zone.name}")


# --- the run ------------------------------------------------------------------------------------


def run(options: dict, log: Log) -> dict:
    trucks, minutes = options["trucks"], options.get("minutes") or 12.0
    hz = options.get("hz") or 2.0
    zone_count = options.get("exclusion_zones", 4)
    safety_m = float(options.get("safety_distance") or 50.0)
    pits, units = options.get("pits") or 5, options.get("loading_units") or 25
    operator, _ = User.objects.get_or_create(username="bench-operator")
    log(f"shift: provisioning {trucks} trucks on {pits} pits, {units} loading units")
    site = provision(trucks, pits, units)
    reset(site, operator)
    connection.close()
    started = timezone.now()
    stack = Stack(site, trucks, hz, options.get("seed") or 0, options.get("replicas") or 2)
    zones = Zones(site, operator, log)
    window_s = minutes * 60.0
    # Activations spread over the window, each held ZONE_HOLD_S, the last deleted before it ends.
    first, last = 30.0, max(30.0, window_s - ZONE_HOLD_S - 30.0)
    plan = list(np.linspace(first, last, zone_count)) if zone_count else []
    try:
        _wait_connected(site, trucks, stack, log)
        time.sleep(WARMUP_S)
        t0 = time.time()
        cpu0 = stack.cpu()
        log(f"shift: measuring {minutes:g} min from {datetime.fromtimestamp(t0, UTC):%H:%M:%S}")
        next_log = t0 + 60.0
        while (now := time.time()) < t0 + window_s:
            stack.check()
            try:
                if plan and now - t0 >= plan[0] and zones.activate() is not None:
                    plan.pop(0)
                zones.delete_due(now)
                zones.resume_due(now)
            except DatabaseError as error:  # a deadlock victim, say: the operator tries again
                log(f"shift: operator action failed, retried: {str(error).splitlines()[0]}")
            if now >= next_log:
                next_log += 60.0
                log(f"shift: {now - t0:.0f} s, {_status(site)}")
            time.sleep(0.5)
        t1 = time.time()
        cpu1 = stack.cpu()
        load = os.getloadavg()
        stack.stop_simulator()
        sent = stack.sent()
        _wait_drained(ids_of(site), started, log)
    finally:
        stack.stop()
    log("shift: computing the figures from the stored history")
    figures = compute_figures(site, started.timestamp(), t0, t1, safety_m, zones.activated)
    messages = figures.pop("_messages")
    return {
        "trucks": trucks,
        "minutes": minutes,
        "hz": hz,
        "pits": pits,
        "loading_units": units,
        "one_lane_sections": len(traffic_services.sections_of(site)),
        "warmup_s": WARMUP_S,
        **figures,
        "zones_activated": len(zones.activated),
        "ingest_replicas": len(stack.ingests),
        "messages_stored": messages,
        "messages_sent": sum(sent.values()) or None,
        "ingest_cpu_us_per_msg": round(
            sum(cpu1[k] - cpu0[k] for k in cpu0 if k.startswith("ingest")) / max(messages, 1) * 1e6,
            1,
        ),
        "cpu_s": {k: round(cpu1[k] - cpu0[k], 1) for k in cpu0},
        "load_average": [round(x, 2) for x in load],
    }


def ids_of(site: Site) -> list[uuid.UUID]:
    return list(
        Equipment.objects.filter(site=site, kind=Equipment.Kind.HAUL_TRUCK).values_list(
            "id", flat=True
        )
    )


def _wait_drained(ids: list[uuid.UUID], since: datetime, log: Log, limit_s: float = 300.0) -> int:
    """Wait until the history stops growing (what the broker still held for ingest is stored);
    the positions stored since ``since``."""
    from fleet.telemetry.models import Position

    count, deadline = -1, time.monotonic() + limit_s
    while time.monotonic() < deadline:
        now = Position.objects.filter(equipment_id__in=ids, sent_at__gte=since).count()
        if now == count:
            return now
        count = now
        time.sleep(5.0)
    log(f"shift: ingest still storing after {limit_s:.0f} s")
    return count


def _status(site: Site) -> str:
    states = TruckState.objects.filter(equipment__site=site)
    stopped = states.filter(stop_id__isnull=False).count()
    waiting = TrafficPermission.objects.filter(
        site=site, status=TrafficPermission.Status.PENDING
    ).count()
    granted = TrafficPermission.objects.filter(
        site=site, status=TrafficPermission.Status.GRANTED
    ).count()
    return f"{stopped} trucks stopped by the FMS, permissions {granted} granted / {waiting} waiting"


# --- the figures ----------------------------------------------------------------------------------


def compute_figures(
    site: Site, run_from: float, t0: float, t1: float, safety_m: float, zones: list[PolicyZone]
) -> dict[str, Any]:
    ids = list(
        Equipment.objects.filter(site=site, kind=Equipment.Kind.HAUL_TRUCK).values_list(
            "id", flat=True
        )
    )
    start, end = datetime.fromtimestamp(run_from, UTC), datetime.fromtimestamp(t1, UTC)
    frame, roads = collision_services.site_roads(site)
    tracks = _tracks(ids, start, end, frame)
    events = queries.fleet_events(
        ids,
        ["HaulTruckProductionStateV2", "HaulTruckPayloadV1"],
        start - timedelta(minutes=10),
        end,
    )
    conflicts, grants = _permission_figures(site, run_from, t1)
    exclusion = _exclusion_figures(zones, tracks, frame, t1)
    samples = _samples(site, tracks, events, roads, frame, t0, t1)
    sep = sf.separation(samples, safety_m=safety_m, radius_m=PAIR_RADIUS_M)
    names = dict(Equipment.objects.filter(pk__in=ids).values_list("id", "name"))
    order = [names[truck] for truck in tracks]
    ways = {}  # WayId -> name, for the notes
    closest = [
        {
            **pair,
            "trucks": [order[k] for k in pair["trucks"]],
            "at": _hms(t0 + pair["instant"] * SAMPLE_S),
            "ways": [ways.setdefault(w, _way_name(site, w)) for w in pair["ways"]],
        }
        for pair in sep.closest
    ]
    tonnes, dumps = sf.tonnes_dumped(
        ((e, at.timestamp(), name, body) for e, at, name, body in events), t0, t1
    )
    window = datetime.fromtimestamp(t0, UTC), end
    return (
        {
            "permission_conflicts": len(conflicts),
            "permission_grants": grants,
            "exclusion_entries": len(exclusion.entries),
            "trucks_caught_in_zones": len(exclusion.caught),
            "min_separation_m": sep.min_separation_m,
            "safety_distance_m": safety_m,
            "pairs_sampled": sep.pairs_sampled,
            "pairs_below_safety": sep.below_safety,
            "pairs_kept_apart_by_road": sep.pairs_road_apart,
            "closest_pairs": closest,
            "tph": round(sf.per_hour(tonnes, t1 - t0)),
            "tonnes": round(tonnes),
            "dumps": dumps,
            "collision_alerts": Alert.objects.filter(
                site=site, source=collision_services.ALERT_SOURCE, first_seen_at__range=window
            ).count(),
            "exclusion_alerts": Alert.objects.filter(
                site=site, kind="exclusion", first_seen_at__range=window
            ).count(),
            **{f"ingest_lag_{k}_s": v for k, v in queries.arrival_lag(ids, *window).items()},
            "_messages": _stored_messages(ids, *window),
        }
        | ({"conflicts_seen": [_describe(a, b, names) for a, b in conflicts[:5]]})
        | {
            "entries_seen": [
                {"zone": str(z), "truck": names.get(t, str(t)), "at": _hms(at)}
                for z, t, at in exclusion.entries[:5]
            ]
        }
    )


def _hms(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S")


def _way_name(site: Site, way_id: int) -> str:
    from fleet.mine.models import Way

    name = Way.objects.filter(network=site.active_network, way_id=way_id).values_list(
        "name", flat=True
    )
    return f"{way_id} {name.first() or ''}".strip()


def _describe(a: sf.Grant, b: sf.Grant, names: dict) -> dict[str, Any]:
    return {
        "zone": str(a.zone),
        "trucks": [names.get(a.truck, str(a.truck)), names.get(b.truck, str(b.truck))],
        "gates": [a.gate, b.gate],
        "granted": [_hms(a.start), _hms(b.start)],
    }


def _stored_messages(ids: list[uuid.UUID], start: datetime, end: datetime) -> int:
    from fleet.telemetry.models import Event, Position

    positions = Position.objects.filter(equipment_id__in=ids, sent_at__range=(start, end)).count()
    others = Event.objects.filter(equipment_id__in=ids, sent_at__range=(start, end)).count()
    return positions + others


def _tracks(
    ids: list[uuid.UUID], start: datetime, end: datetime, frame: Frame
) -> dict[uuid.UUID, sf.Track]:
    rows = queries.fleet_positions(ids, start, end)
    by_truck: dict[uuid.UUID, list] = defaultdict(list)
    for truck, at, lon, lat, speed, heading in rows:
        by_truck[truck].append((at, lon, lat, speed, heading))
    tracks = {}
    for truck, fixes in by_truck.items():
        a = np.asarray(fixes, dtype=float)
        xy = frame.to_local(a[:, 1], a[:, 2])
        tracks[truck] = sf.Track(a[:, 0], xy[:, 0], xy[:, 1], a[:, 3] * KMH, a[:, 4])
    return tracks


def _permission_figures(site: Site, run_from: float, t1: float) -> tuple[list, int]:
    rows = (
        TrafficPermissionEvent.objects.filter(
            permission__site=site, at__gte=datetime.fromtimestamp(run_from, UTC)
        )
        .order_by("permission_id", "at", "id")
        .values_list("permission_id", "permission__zone_id", "permission__equipment_id",
                     "permission__gate", "at", "status")
    )  # fmt: skip
    grants = sf.grant_intervals(((p, z, e, g, at.timestamp(), s) for p, z, e, g, at, s in rows), t1)
    capacity = {
        zone_id: int((zone.policies.get("trafficPermission") or {}).get("capacity", 1))
        for zone_id, zone in traffic_services.sections_of(site).items()
    }
    return sf.permission_conflicts(grants, capacity), len(grants)


def _exclusion_figures(
    zones: list[PolicyZone], tracks: dict[uuid.UUID, sf.Track], frame: Frame, t1: float
) -> sf.ExclusionFigures:
    windows = []
    for zone in zones:
        zone.refresh_from_db()
        lon, lat = np.asarray(zone.geometry.exterior_ring.coords).T
        ring = frame.to_local(lon, lat)
        active_from = zone.activated_at.timestamp()
        until = zone.delete_requested_at.timestamp() if zone.delete_requested_at else t1
        grace = {}
        for truck, at in ZoneResponse.objects.filter(
            zone=zone, request=ZoneResponse.Request.ACTIVATE, accepted=True
        ).values_list("equipment_id", "responded_at"):
            track = tracks.get(truck)
            told = at.timestamp()
            speed = 0.0
            if track is not None and len(track.t):
                k = max(int(np.searchsorted(track.t, told, side="right")) - 1, 0)
                speed = float(track.speed[k])
            grace[truck] = told + sf.stop_allowance(speed)
        default = active_from + DEFAULT_NOTICE_S + sf.stop_allowance(50 * KMH)
        windows.append(sf.ExclusionWindow(zone.pk, ring, active_from, until, grace, default))
    return sf.exclusion_entries(windows, tracks, noise_m=GNSS_NOISE_M)


def _samples(
    site: Site,
    tracks: dict[uuid.UUID, sf.Track],
    events: list,
    roads: dict[int, Road],
    frame: Frame,
    t0: float,
    t1: float,
) -> sf.Samples:
    """Each truck at each instant of [t0, t1) (1 s apart) where it is eligible: moving, in a
    driving state (Driving, Hauling), on its reported way, outside the loading and dumping areas
    and the park."""
    at = np.arange(t0, t1, SAMPLE_S)
    states: dict[uuid.UUID, tuple[list[float], list[tuple[str, int | None]]]] = defaultdict(
        lambda: ([], [])
    )
    for truck, sent, name, body in events:
        if name == "HaulTruckProductionStateV2":
            states[truck][0].append(sent.timestamp())
            states[truck][1].append((body.get("ProductionState"), body.get("WayId")))
    points = [
        *LoadingUnit.objects.filter(site=site).values_list("location", flat=True),
        *DumpPoint.objects.filter(site=site).values_list("location", flat=True),
    ]
    areas = frame.to_local([p.x for p in points], [p.y for p in points])
    parks = [
        frame.to_local(*np.asarray(g.exterior_ring.coords).T)
        for g in Area.objects.filter(site=site, kind=Area.Kind.PARK).values_list(
            "geometry", flat=True
        )
    ]
    cols: dict[str, list] = defaultdict(list)
    for index, (truck, track) in enumerate(tracks.items()):
        if truck not in states or len(track.t) < 2:
            continue
        x = sf.resample(track.t, track.x, at, MAX_GAP_S)
        y = sf.resample(track.t, track.y, at, MAX_GAP_S)
        v = sf.resample(track.t, track.speed, at, MAX_GAP_S)
        heading = np.asarray(sf.step_values(track.t, list(track.heading), at, np.nan), dtype=float)
        st = sf.step_values(np.asarray(states[truck][0]), states[truck][1], at, (None, None))
        state = np.array([s for s, _ in st], dtype=object)
        way = np.array([w if w is not None else -1 for _, w in st], dtype=np.int64)
        ways = [w if w is not None else -1 for _, w in states[truck][1]]
        next_way = sf.next_values(np.asarray(states[truck][0]), ways, at)
        ok = ~np.isnan(x) & (v > MOVING_MPS) & np.isin(state, ["Driving", "Hauling"]) & (way >= 0)
        if len(areas):
            near = np.hypot(x[:, None] - areas[None, :, 0], y[:, None] - areas[None, :, 1])
            ok &= ~(near < AREA_RADIUS_M).any(axis=1)
        for ring in parks:
            ok &= ~sf.inside_polygon(ring, x, y)
        for w in np.unique(way[ok]).tolist():
            road = roads.get(w)
            rows = np.flatnonzero(ok & (way == w))
            if road is None:
                continue
            pts = np.c_[x[rows], y[rows]]
            s, unit, off = sf.project_on_road(road, pts)
            on = off <= ON_ROAD_M
            rows, s, unit, pts = rows[on], s[on], unit[on], pts[on]
            h = np.radians(heading[rows])
            sign = np.where(np.sin(h) * unit[:, 0] + np.cos(h) * unit[:, 1] >= 0, 1, -1)
            cols["instant"].append(rows)
            cols["truck"].append(np.full(len(rows), index))
            cols["xy"].append(pts)
            cols["speed"].append(v[rows])
            cols["way"].append(np.full(len(rows), w))
            cols["direction"].append(sign)
            cols["one_lane"].append(np.full(len(rows), road.one_lane))
            cols["s"].append(s)
            cols["nodes"].append(np.tile(np.asarray(road.nodes), (len(rows), 1)))
            cols["next_way"].append(next_way[rows])
            cols["length"].append(np.full(len(rows), road.length))
    names = ("instant", "truck", "xy", "speed", "way", "direction", "one_lane", "s", "nodes",
             "next_way", "length")  # fmt: skip
    if not cols:
        two = {"xy", "nodes"}
        return sf.Samples(**{n: np.zeros((0, 2) if n in two else 0) for n in names})
    return sf.Samples(**{n: np.concatenate(cols[n]) for n in names})
