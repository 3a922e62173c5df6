"""Cerro Rojo, the demo mine: an open pit in the Atacama, generated as one map file.

The geometry is designed in local metres (east and north of the pit centre) and carried to WGS84
through the site's own UTM zone, so the lengths and grades the importer computes (also in UTM)
are exactly the ones designed here. Everything is deterministic, ids included (uuid5 of stable
names, and for zones of their content too): running the generator again gives the same
document, and importing it changes nothing.

The pit: a rim crest at 3,900 m, six 15 m benches down to a floor at 3,810 m, a two-lane main
ramp spiralling clockwise down the east and south walls at 9 %, a one-lane switchback on the
west wall, four loading units (waste on the upper benches, ore below), and at the rim a crusher,
a waste dump, a park-up and a workshop.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import math
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from django.contrib.gis.geos import GEOSGeometry, LineString, Point
from django.contrib.gis.geos import Polygon as GeosPolygon
from django.db import transaction

from fleet.mine import services
from fleet.mine.mapfile import import_site_map
from fleet.mine.models import PolicyZone, Site
from fleet.vehicles.models import Equipment
from fleet.vehicles.services import retire_equipment

XY = tuple[float, float]
XYZ = tuple[float, float, float]

SITE_NAME = "Cerro Rojo"
SITE_SLUG = "cerro-rojo"
CENTRE_LON, CENTRE_LAT = -68.90, -22.30
UTM_SRID = 32719  # WGS84 / UTM zone 19 south
DEFAULT_SPEED_KMH = 40.0
# Every demo id is a uuid5 in this namespace, so re-runs name the same rows and zones.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://haulmind.example/demo/cerro-rojo")

RIM_Z = 3900.0
BENCH_HEIGHT_M = 15.0
BENCHES = 6
FLOOR_Z = RIM_Z - BENCHES * BENCH_HEIGHT_M
# Each bench steps the wall in by 30 m: a 15 m face at about 70 degrees (6 m of run) and a 24 m
# berm, an overall slope near 27 degrees, as in a pit with working benches and a haul ramp.
BENCH_STEP_M = 30.0
FACE_RUN_M = 6.0
PIT_A_M, PIT_B_M = 420.0, 300.0  # half-axes of the rim crest
PIT_AXIS_DEG = 20.0  # the orebody strikes east-north-east, so the pit is long that way
RAMP_GRADE = 0.09  # 8-10 % is the usual haul-ramp design grade for rigid-frame trucks
SWITCHBACK_GRADE = 0.095
RAMP_START_DEG = 90.0  # the portal is on the pit's north wall (pit axes)
TWO_LANE_WIDTH_M = 28.0  # about 4 truck widths for a 90 t truck (~7 m wide): two lanes + berm
ONE_LANE_WIDTH_M = 14.0

HAUL_TRUCK_PAYLOAD_T = 90.0
HAUL_TRUCK_MANUFACTURER = "Komatsu"
HAUL_TRUCK_MODEL = "HD785-8 AHS"
TRUCK_NAME = re.compile(r"^HT-(\d+)$")


@dataclass(frozen=True)
class ShovelSpec:
    name: str
    material: str
    loading_rate_tph: float
    manufacturer: str
    model: str


# A 90 t truck takes 4-5 passes of a 15-22 m3 bucket: 3,000-5,000 t/h per loading unit.
SHOVELS = (
    ShovelSpec("SH-01", "waste", 4500.0, "Hitachi", "EX3600-7"),
    ShovelSpec("SH-02", "waste", 4000.0, "Komatsu", "PC4000-11"),
    ShovelSpec("SH-03", "ore", 3500.0, "Komatsu", "PC3000-6"),
    ShovelSpec("SH-04", "ore", 4500.0, "Hitachi", "EX3600-7"),
)


def demo_id(kind: str, name: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{kind}/{name}")


def level_z(level: int) -> float:
    """Elevation of bench level ``level`` (0 = the rim, BENCHES = the pit floor)."""
    return RIM_Z - level * BENCH_HEIGHT_M


# --- plane geometry (local metres) ---------------------------------------------------------------


def wall_point(theta_deg: float, inset_m: float) -> XY:
    """A point of the pit at angle ``theta_deg`` (pit axes, counter-clockwise from the long
    axis) and ``inset_m`` metres in from the rim crest. A small wobble keeps the rings from
    looking drawn with a compass; the same wobble on every ring keeps the benches parallel."""
    t = math.radians(theta_deg)
    wobble = 1.0 + 0.05 * math.sin(3 * t + 0.6) + 0.03 * math.cos(5 * t + 1.1)
    x = (PIT_A_M - inset_m) * wobble * math.cos(t)
    y = (PIT_B_M - inset_m) * wobble * math.sin(t)
    r = math.radians(PIT_AXIS_DEG)
    return (x * math.cos(r) - y * math.sin(r), x * math.sin(r) + y * math.cos(r))


def crest_inset(level: int) -> float:
    """Inset of the crest of the face that drops from ``level`` to ``level + 1``."""
    return level * BENCH_STEP_M


def ramp_inset(depth_m: float) -> float:
    # The ramp moves in one bench step per bench height, so it crosses a bench ring where it
    # reaches that bench's level; it starts a few metres outside the rim crest (the portal).
    return depth_m * BENCH_STEP_M / BENCH_HEIGHT_M - 8.0


def wall_path(theta0: float, theta1: float, inset0: float, inset1: float) -> list[XY]:
    """A road along the wall from angle ``theta0`` to ``theta1``, its inset changing evenly."""
    steps = max(2, math.ceil(abs(theta1 - theta0) / 2.0))
    return [
        wall_point(theta0 + (theta1 - theta0) * i / steps, inset0 + (inset1 - inset0) * i / steps)
        for i in range(steps + 1)
    ]


def _distance(a: XY, b: XY) -> float:
    return math.hypot(b[0] - a[0], b[1] - a[1])


def path_length(points: Sequence[XY]) -> float:
    return sum(_distance(a, b) for a, b in itertools.pairwise(points))


def _point_along(points: Sequence[XY], run: float) -> XY:
    for a, b in itertools.pairwise(points):
        step = _distance(a, b)
        if run <= step and step > 0:
            f = run / step
            return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)
        run -= step
    return points[-1]


def slice_path(points: Sequence[XY], start: float, end: float, spacing: float = 20.0) -> list[XY]:
    """The part of a path between two distances along it, resampled every ~``spacing`` m."""
    n = max(1, math.ceil((end - start) / spacing))
    return [_point_along(points, start + (end - start) * i / n) for i in range(n + 1)]


def bezier(p0: XY, control: XY, p1: XY, spacing: float = 25.0) -> list[XY]:
    """A gently curved road from ``p0`` to ``p1`` (a quadratic Bezier)."""
    n = max(2, math.ceil((_distance(p0, control) + _distance(control, p1)) / spacing))
    out = []
    for i in range(n + 1):
        t = i / n
        out.append(
            (
                (1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * control[0] + t**2 * p1[0],
                (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * control[1] + t**2 * p1[1],
            )
        )
    return out


def with_elevations(points: Sequence[XY], z0: float, z1: float) -> list[XYZ]:
    """Elevations rising or falling evenly with horizontal distance, so the grade is uniform
    and the steepest segment equals the net grade."""
    total = path_length(points)
    run, out = 0.0, []
    for i, p in enumerate(points):
        if i:
            run += _distance(points[i - 1], p)
        z = z0 + (z1 - z0) * (run / total if total else 0.0)
        out.append((p[0], p[1], round(z, 2)))
    return out


def hairpin(end_of_leg: XY, start_of_leg: XY, heading: XY) -> list[XY]:
    """A half circle from one leg of a switchback to the next, bulging along ``heading``."""
    cx, cy = (end_of_leg[0] + start_of_leg[0]) / 2, (end_of_leg[1] + start_of_leg[1]) / 2
    radius = _distance(end_of_leg, start_of_leg) / 2
    ux, uy = (end_of_leg[0] - cx) / radius, (end_of_leg[1] - cy) / radius
    norm = math.hypot(*heading)
    tx, ty = heading[0] / norm, heading[1] / norm
    return [
        (
            cx + radius * (math.cos(a) * ux + math.sin(a) * tx),
            cy + radius * (math.cos(a) * uy + math.sin(a) * ty),
        )
        for a in (math.pi * i / 8 for i in range(9))
    ]


def _buffer(points: Sequence[XY], half_width: float) -> list[XY]:
    """A road or area outline as one simple ring (local metres)."""
    geometry = LineString(list(points)) if len(points) > 1 else Point(*points[0])
    outline = cast(GeosPolygon, geometry.buffer_with_style(half_width, quadsegs=4))
    return [(x, y) for x, y in outline.exterior_ring.coords]


def rectangle(centre: XY, width: float, height: float, angle_deg: float = 0.0) -> list[XY]:
    a = math.radians(angle_deg)
    corners = [(-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)]
    return [
        (
            centre[0] + sx * width / 2 * math.cos(a) - sy * height / 2 * math.sin(a),
            centre[1] + sx * width / 2 * math.sin(a) + sy * height / 2 * math.cos(a),
        )
        for sx, sy in corners
    ]


# --- the layout ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaySpec:
    way_id: int
    name: str
    start: int
    end: int
    points: list[XYZ]
    one_lane: bool = False
    speed_kmh: float | None = None


@dataclass(frozen=True)
class ZoneSpec:
    name: str
    policies: dict
    ring: list[XY]

    @property
    def zone_id(self) -> uuid.UUID:
        # Zones are never edited in place, so a zone whose design changes must be a new zone:
        # the id covers the content, and the same design always gets the same id.
        content = json.dumps(
            [self.policies, [(round(x, 2), round(y, 2)) for x, y in self.ring]], sort_keys=True
        )
        return demo_id("zone", f"{self.name}/{content}")


@dataclass
class Layout:
    """The demo mine in local metres; ``to_map_document`` turns it into the map file."""

    nodes: dict[int, XYZ] = field(default_factory=dict)
    ways: list[WaySpec] = field(default_factory=list)
    units: list[tuple[ShovelSpec, XYZ]] = field(default_factory=list)
    dumps: list[tuple[str, str, float, XYZ]] = field(default_factory=list)
    areas: list[tuple[str, str, list[XY]]] = field(default_factory=list)
    zones: list[ZoneSpec] = field(default_factory=list)
    ramp_theta: dict[int, float] = field(default_factory=dict)  # bench level -> wall angle

    def node(self, node_id: int, xy: XY, z: float) -> int:
        self.nodes[node_id] = (xy[0], xy[1], z)
        return node_id

    def way(
        self,
        way_id: int,
        name: str,
        start: int,
        end: int,
        path: Sequence[XY],
        *,
        one_lane: bool = False,
        speed_kmh: float | None = None,
    ) -> None:
        # Snap the ends onto the nodes so the graph is exact; elevations run node to node.
        (x0, y0, z0), (x1, y1, z1) = self.nodes[start], self.nodes[end]
        points = with_elevations([(x0, y0), *path[1:-1], (x1, y1)], z0, z1)
        self.ways.append(WaySpec(way_id, name, start, end, points, one_lane, speed_kmh))

    def zone(self, name: str, policies: dict, ring: list[XY]) -> None:
        self.zones.append(ZoneSpec(name, policies, ring))

    def way_path(self, way_id: int) -> list[XY]:
        way = next(w for w in self.ways if w.way_id == way_id)
        return [(x, y) for x, y, _ in way.points]


# Node ids: 1-7 on the surface, 10-16 down the main ramp (10 + bench level, 10 = the portal),
# 20-21 the ends of the switchback, 31-34 the ends of the loading units' roads.
RIM_JUNCTION, NORTH_JUNCTION, CRUSHER, DUMP_TOE, DUMP_TIP, PARK, WORKSHOP = range(1, 8)
PORTAL = 10
FLOOR_WEST, BENCH4_WEST = 20, 21
SHOVEL_END = {spec.name: 30 + i for i, spec in enumerate(SHOVELS, start=1)}


def ramp_node(level: int) -> int:
    return PORTAL + level


def _main_ramp(layout: Layout) -> None:
    """The two-lane main ramp, one way per bench, from the portal down to the floor."""
    fine: list[XY] = [wall_point(RAMP_START_DEG, ramp_inset(0.0))]
    thetas, runs = [RAMP_START_DEG], [0.0]
    total = (RIM_Z - FLOOR_Z) / RAMP_GRADE
    while runs[-1] < total + 1.0:  # ~0.5 m steps, clockwise seen from above
        theta = thetas[-1] - 0.1
        point = wall_point(theta, ramp_inset(min(runs[-1] * RAMP_GRADE, RIM_Z - FLOOR_Z)))
        runs.append(runs[-1] + _distance(fine[-1], point))
        fine.append(point)
        thetas.append(theta)
    per_bench = total / BENCHES
    for level in range(BENCHES + 1):
        layout.node(ramp_node(level), _point_along(fine, level * per_bench), level_z(level))
        layout.ramp_theta[level] = next(
            t for t, r in zip(thetas, runs, strict=True) if r >= level * per_bench - 0.5
        )
    for level in range(BENCHES):
        z0, z1 = level_z(level), level_z(level + 1)
        path = slice_path(fine, level * per_bench, (level + 1) * per_bench)
        layout.way(
            200 + level + 1,
            f"Main ramp {z0:.0f}-{z1:.0f}",
            ramp_node(level),
            ramp_node(level + 1),
            path,
        )


# The west switchback climbs from the floor (by the west wall's toe) to bench level 4; its legs
# run clockwise from here, then it turns back.
SWITCHBACK_THETA = -150.0
SWITCHBACK_FLOOR_INSET = crest_inset(BENCHES - 1) + 16.0
SWITCHBACK_TOP_INSET = crest_inset(3) + 12.0


def _switchback_path(leg_deg: float) -> list[XY]:
    """West-wall switchback from the floor up to bench level 4, legs ``leg_deg`` long."""
    turn = SWITCHBACK_THETA - leg_deg
    outer = (SWITCHBACK_FLOOR_INSET + SWITCHBACK_TOP_INSET) / 2 + 15.0
    inner = outer - 30.0  # legs 30 m apart: a hairpin of 15 m radius for a 90 t truck
    leg1 = wall_path(SWITCHBACK_THETA, turn, SWITCHBACK_FLOOR_INSET, outer)
    leg2 = wall_path(turn, SWITCHBACK_THETA, inner, SWITCHBACK_TOP_INSET)
    heading = (leg1[-1][0] - leg1[-2][0], leg1[-1][1] - leg1[-2][1])
    return [*leg1, *hairpin(leg1[-1], leg2[0], heading)[1:-1], *leg2]


def _switchback_leg_for_grade(rise_m: float, grade: float) -> float:
    """The leg length (degrees of wall) that makes the switchback climb at ``grade``."""
    low, high = 5.0, 80.0
    for _ in range(40):  # bisection: the path grows monotonically with its legs
        mid = (low + high) / 2
        if path_length(_switchback_path(mid)) * grade < rise_m:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def wall_route(waypoints: Sequence[tuple[float, float]]) -> list[XY]:
    """A road along the wall through (angle, inset) waypoints."""
    out: list[XY] = []
    for (t0, in0), (t1, in1) in itertools.pairwise(waypoints):
        out += wall_path(t0, t1, in0, in1)[1 if out else 0 :]
    return out


def _pit_roads(layout: Layout) -> None:
    """The floor road, the west switchback and the roads to the loading units."""
    theta, floor_z, top_z = layout.ramp_theta, level_z(BENCHES), level_z(4)
    bottom = ramp_inset(RIM_Z - FLOOR_Z)
    switchback = _switchback_path(_switchback_leg_for_grade(top_z - floor_z, SWITCHBACK_GRADE))
    layout.node(FLOOR_WEST, switchback[0], floor_z)
    layout.node(BENCH4_WEST, switchback[-1], top_z)
    floor_west = wall_route([(theta[6], bottom), (SWITCHBACK_THETA, SWITCHBACK_FLOOR_INSET)])
    layout.way(301, "Pit floor west", ramp_node(6), FLOOR_WEST, floor_west)
    # A tight hairpin on one lane: mapped slower than the site's default.
    layout.way(
        302,
        "West switchback 3810-3840",
        FLOOR_WEST,
        BENCH4_WEST,
        switchback,
        one_lane=True,
        speed_kmh=20.0,
    )
    routes = {
        # shovel: the node its road starts from, (wall angle, inset) waypoints, one lane or two
        "SH-01": (ramp_node(2), [(theta[2], ramp_inset(30)), (118.0, 44.0)], False),
        "SH-02": (ramp_node(3), [(theta[3], ramp_inset(45)), (-72.0, 74.0)], True),
        "SH-03": (BENCH4_WEST, [(SWITCHBACK_THETA, SWITCHBACK_TOP_INSET), (-114.0, 100.0)], False),
        # Across the floor, clear of the foot of the ramp, to the east end of the floor.
        "SH-04": (
            ramp_node(6),
            [(theta[6], bottom), (theta[6] + 40.0, 205.0), (5.0, 185.0)],
            False,
        ),
    }
    for index, spec in enumerate(SHOVELS, start=1):
        start, waypoints, one_lane = routes[spec.name]
        z = layout.nodes[start][2]
        (t_end, in_end), (t_before, _) = waypoints[-1], waypoints[-2]
        end = layout.node(SHOVEL_END[spec.name], wall_point(t_end, in_end), z)
        where = "pit floor" if z == floor_z else f"bench {z:.0f}"
        name = f"{spec.name} access, {where}" + (" (one lane)" if one_lane else "")
        layout.way(310 + index, name, start, end, wall_route(waypoints), one_lane=one_lane)
        # The loading unit stands at the face, ~20 m on from the end of its road.
        ahead = 3.0 if t_end > t_before else -3.0
        face = wall_point(t_end + ahead, in_end - 10.0)
        layout.units.append((spec, (face[0], face[1], z)))


# Surface plan (local metres): the plant east of the pit, the dump west, park and workshop north.
NORTH_JUNCTION_XY = (-150.0, 640.0)
CRUSHER_XY = (640.0, 420.0)
DUMP_TOE_XY = (-640.0, 90.0)
PARK_GATE_XY = (-300.0, 700.0)
WORKSHOP_GATE_XY = (60.0, 720.0)


def _rim(layout: Layout) -> None:
    """Rim haul roads: the portal to the crusher, the waste dump, the park and the workshop."""
    portal = layout.nodes[PORTAL]
    scale = 1 + 110 / math.hypot(portal[0], portal[1])  # 110 m out from the portal
    jxy = (portal[0] * scale, portal[1] * scale)
    junction = layout.node(RIM_JUNCTION, jxy, RIM_Z)
    north = layout.node(NORTH_JUNCTION, NORTH_JUNCTION_XY, RIM_Z + 1.0)
    crusher = layout.node(CRUSHER, CRUSHER_XY, RIM_Z + 6.0)
    dump_toe = layout.node(DUMP_TOE, DUMP_TOE_XY, RIM_Z + 2.0)
    # The dump has grown 30 m above the plain; its ramp climbs at the ramp grade.
    heading, run = math.radians(200.0), 30.0 / RAMP_GRADE
    tip = (DUMP_TOE_XY[0] + run * math.cos(heading), DUMP_TOE_XY[1] + run * math.sin(heading))
    dump_tip = layout.node(DUMP_TIP, tip, RIM_Z + 32.0)
    park = layout.node(PARK, PARK_GATE_XY, RIM_Z + 2.0)
    workshop = layout.node(WORKSHOP, WORKSHOP_GATE_XY, RIM_Z + 3.0)
    layout.way(101, "Pit portal", junction, PORTAL, [jxy, portal[:2]])
    layout.way(102, "Crusher haul road", junction, crusher, bezier(jxy, (250, 540), CRUSHER_XY))
    layout.way(
        103, "Waste dump haul road", junction, dump_toe, bezier(jxy, (-520, 420), DUMP_TOE_XY)
    )
    layout.way(104, "Waste dump ramp", dump_toe, dump_tip, [DUMP_TOE_XY, tip])
    layout.way(105, "North access", junction, north, bezier(jxy, (-150, 500), NORTH_JUNCTION_XY))
    layout.way(106, "Park entry", north, park, [NORTH_JUNCTION_XY, PARK_GATE_XY], speed_kmh=20.0)
    layout.way(
        107,
        "Workshop entry",
        north,
        workshop,
        [NORTH_JUNCTION_XY, WORKSHOP_GATE_XY],
        speed_kmh=20.0,
    )
    # Trucks tip into the crusher pocket a truck length past the end of the road.
    pocket = (CRUSHER_XY[0] + 30.0, CRUSHER_XY[1] + 15.0, RIM_Z + 6.0)
    layout.dumps.append(("Primary crusher", "crusher", 6000.0, pocket))
    layout.dumps.append(("West waste dump", "waste_dump", 12000.0, (*tip, RIM_Z + 32.0)))
    # 100 trucks of ~10 m x 7 m in bays of 14 m x 11 m, plus driving lanes: about 3 ha.
    layout.areas.append(("Truck park", "park", rectangle((-330.0, 790.0), 240.0, 140.0, 8.0)))
    layout.areas.append(("Workshop", "workshop", rectangle((90.0, 810.0), 170.0, 110.0, 8.0)))


def _zones(layout: Layout) -> None:
    ramp = [xy for w in range(201, 201 + BENCHES) for xy in layout.way_path(w)]
    layout.zone(
        "Main ramp 30 km/h",
        {"speedLimit": {"type": "absolute", "value": 8.3}},  # 30 km/h in m/s
        _buffer(_dedupe(ramp), TWO_LANE_WIDTH_M / 2 + 2),
    )
    for way in layout.ways:
        if way.one_lane:
            layout.zone(
                f"{way.name}: one truck at a time",
                {"trafficPermission": {}},
                _one_lane_section(layout, way),
            )
    for spec, (x, y, _) in layout.units:
        # The loading area: the truck's spot and its turning room beside the shovel.
        layout.zone(
            f"{spec.name} loading area",
            {"controlledAccess": {"ownerId": str(demo_id("equipment", spec.name))}},
            _buffer([(x, y)], LOADING_AREA_RADIUS_M),
        )
    crusher = next(xyz for _, kind, _, xyz in layout.dumps if kind == "crusher")
    layout.zone(
        "Crusher approach 20 km/h",
        {"speedLimit": {"type": "absolute", "value": 5.6}},
        _buffer([crusher[:2]], 70.0),
    )
    layout.zone(
        "Truck park 10 km/h",
        {"speedLimit": {"type": "absolute", "value": 2.8}},
        next(ring for _, kind, ring in layout.areas if kind == "park"),
    )
    tip = next(xyz for _, kind, _, xyz in layout.dumps if kind == "waste_dump")
    layout.zone("West waste dump tip head", {"roughRoad": {}}, _buffer([tip[:2]], 60.0))


LOADING_AREA_RADIUS_M = 45.0


def _one_lane_section(layout: Layout, way: WaySpec) -> list[XY]:
    """The traffic-permission zone of a one-lane way: its road, less the two-lane roads it
    leaves from and the loading area it leads to. Trucks driving past on the two-lane road never
    enter it, and a truck loading at the end of a one-lane spur does not hold the spur: it
    asks again to come back out, facing the next truck waiting to go in."""
    section = GEOSGeometry(LineString(layout.way_path(way.way_id))).buffer_with_style(
        ONE_LANE_WIDTH_M / 2 + 3, quadsegs=4
    )
    for other in layout.ways:
        if not other.one_lane:
            road = LineString(layout.way_path(other.way_id))
            section = section.difference(road.buffer_with_style(TWO_LANE_WIDTH_M / 2, quadsegs=4))
    for _, (x, y, _) in layout.units:
        section = section.difference(Point(x, y).buffer(LOADING_AREA_RADIUS_M, quadsegs=8))
    if section.geom_type == "MultiPolygon":  # keep the road itself, not a sliver
        section = max(section, key=lambda part: part.area)
    return [(x, y) for x, y in cast(GeosPolygon, section).exterior_ring.coords]


def _dedupe(points: Iterable[XY]) -> list[XY]:
    out: list[XY] = []
    for p in points:
        if not out or _distance(out[-1], p) > 0.01:
            out.append(p)
    return out


def build_layout() -> Layout:
    layout = Layout()
    _main_ramp(layout)
    _pit_roads(layout)
    _rim(layout)
    _zones(layout)
    return layout


def bench_rings() -> list[tuple[float, list[XY]]]:
    """Crest and toe of every bench face (local metres), for drawing contours."""
    rings = []
    for level in range(BENCHES):
        for inset, z in (
            (crest_inset(level), level_z(level)),
            (crest_inset(level) + FACE_RUN_M, level_z(level + 1)),
        ):
            rings.append((z, [wall_point(t, inset) for t in range(0, 361, 3)]))
    return rings


# --- local metres <-> WGS84 ----------------------------------------------------------------------


class LocalFrame:
    """East/north metres from a centre, through a UTM zone: a metre here is a metre to the
    importer, which measures in the same zone."""

    def __init__(self, lon: float, lat: float, utm_srid: int) -> None:
        centre = cast(Point, Point(lon, lat, srid=4326).transform(utm_srid, clone=True))
        self.east0, self.north0, self.srid = centre.x, centre.y, utm_srid

    def to_lonlat(self, points: Sequence[XY]) -> list[XY]:
        utm = _line([(self.east0 + x, self.north0 + y) for x, y in points], self.srid)
        utm.transform(4326)
        # 1e-7 degree is about a centimetre: finer digits are noise in a map file.
        return [(round(x, 7), round(y, 7)) for x, y in utm.coords[: len(points)]]

    def to_local(self, points: Sequence[Sequence[float]]) -> list[XY]:
        wgs84 = _line([(p[0], p[1]) for p in points], 4326)
        wgs84.transform(self.srid)
        return [(x - self.east0, y - self.north0) for x, y in wgs84.coords[: len(points)]]


def _line(coords: list[XY], srid: int) -> LineString:
    # One GEOS geometry per batch of points is far faster than a Point each; a LineString
    # needs two, so a lone point travels twice.
    return LineString(coords if len(coords) > 1 else coords * 2, srid=srid)


def demo_frame() -> LocalFrame:
    return LocalFrame(CENTRE_LON, CENTRE_LAT, UTM_SRID)


# --- the map document ----------------------------------------------------------------------------


def _point_feature(frame: LocalFrame, xyz: XYZ, properties: dict) -> dict:
    (lon, lat) = frame.to_lonlat([xyz[:2]])[0]
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat, xyz[2]]},
        "properties": properties,
    }


def _polygon(frame: LocalFrame, ring: Sequence[XY]) -> dict:
    return {"type": "Polygon", "coordinates": [[list(p) for p in frame.to_lonlat(ring)]]}


def _way_feature(frame: LocalFrame, way: WaySpec) -> dict:
    lonlat = frame.to_lonlat([p[:2] for p in way.points])
    return {
        "type": "Feature",
        "geometry": {
            "type": "LineString",
            "coordinates": [[x, y, p[2]] for (x, y), p in zip(lonlat, way.points, strict=True)],
        },
        "properties": {
            "featureType": "way",
            "wayId": way.way_id,
            "name": way.name,
            "startNode": way.start,
            "endNode": way.end,
            "operatingSpeedKmh": way.speed_kmh,
            "oneLane": way.one_lane,
        },
    }


def _boundary_ring() -> list[XY]:
    # The lease: the pit, the dump, the plant and the park with room to spare.
    return rectangle((-200.0, 150.0), 3000.0, 2200.0)


def to_map_document(layout: Layout, frame: LocalFrame) -> dict:
    """The layout as one map file (docs/map-format.md)."""
    features: list[dict] = [
        {
            "type": "Feature",
            "geometry": _polygon(frame, _boundary_ring()),
            "properties": {"featureType": "siteBoundary", "name": SITE_NAME},
        }
    ]
    features += [
        _point_feature(frame, xyz, {"featureType": "roadNode", "nodeId": node_id})
        for node_id, xyz in sorted(layout.nodes.items())
    ]
    features += [_way_feature(frame, way) for way in layout.ways]
    features += [
        _point_feature(
            frame,
            xyz,
            {
                "featureType": "loadingUnit",
                "name": spec.name,
                "loadingRateTph": spec.loading_rate_tph,
                "material": spec.material,
                "equipmentId": str(demo_id("equipment", spec.name)),
            },
        )
        for spec, xyz in layout.units
    ]
    features += [
        _point_feature(
            frame,
            xyz,
            {"featureType": "dumpPoint", "name": name, "kind": kind, "capacityTph": capacity},
        )
        for name, kind, capacity, xyz in layout.dumps
    ]
    features += [
        {
            "type": "Feature",
            "geometry": _polygon(frame, ring),
            "properties": {"featureType": "area", "name": name, "kind": kind},
        }
        for name, kind, ring in layout.areas
    ]
    features += [
        {
            "type": "Feature",
            "id": str(zone.zone_id),
            "featureType": "policyZone",
            "status": "active",
            "geometry": _polygon(frame, zone.ring),
            "properties": {"name": zone.name, "policies": zone.policies},
        }
        for zone in layout.zones
    ]
    return {
        "type": "FeatureCollection",
        "haulmind": {
            "format": 1,
            "site": {
                "name": SITE_NAME,
                "slug": SITE_SLUG,
                "utmSrid": UTM_SRID,
                "defaultSpeedKmh": DEFAULT_SPEED_KMH,
            },
            "roadNetwork": {"note": "demo mine, generated by create_demo_mine"},
        },
        "features": features,
    }


def build_demo_map() -> dict:
    """The demo's map file. A fresh copy each call: callers may change theirs."""
    return copy.deepcopy(_demo_map())


@functools.cache
def _demo_map() -> dict:
    return to_map_document(build_layout(), demo_frame())


def bench_contours() -> list[tuple[float, list[XY]]]:
    """The bench rings in WGS84, to draw over a map of the site."""
    frame = demo_frame()
    return [(z, frame.to_lonlat(ring)) for z, ring in bench_rings()]


# --- the service ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoMineSummary:
    site: str
    slug: str
    revision: int
    new_revision: bool
    ways: int
    zones: int
    zones_created: int
    loading_units: int
    trucks_active: int
    trucks_added: int
    trucks_retired: int

    def __str__(self) -> str:
        return (
            f"{self.site} ({self.slug}): roads r{self.revision} "
            f"({'new' if self.new_revision else 'unchanged'}), {self.ways} ways; "
            f"{self.zones} zones ({self.zones_created} new); {self.loading_units} loading units; "
            f"{self.trucks_active} trucks active ({self.trucks_added} added, "
            f"{self.trucks_retired} retired)"
        )


def _ensure_site(document: dict) -> Site:
    """The site must exist before its loading units' Equipment rows can; the importer then
    updates it from the same document."""
    meta = document["haulmind"]["site"]
    site = Site.objects.filter(slug=meta["slug"]).first()
    if site is not None:
        return site
    boundary = next(
        f for f in document["features"] if f["properties"].get("featureType") == "siteBoundary"
    )
    return Site.objects.create(
        slug=meta["slug"],
        name=meta["name"],
        utm_srid=meta["utmSrid"],
        default_speed_kmh=meta["defaultSpeedKmh"],
        boundary=cast(GeosPolygon, GEOSGeometry(json.dumps(boundary["geometry"]), srid=4326)),
    )


def _ensure_loading_units(site: Site) -> None:
    for spec in SHOVELS:
        Equipment.objects.update_or_create(
            id=demo_id("equipment", spec.name),
            defaults={
                "site": site,
                "kind": Equipment.Kind.LOADING_UNIT,
                "name": spec.name,
                "manufacturer": spec.manufacturer,
                "model": spec.model,
                # Shovels are crewed; only trucks run the AHS and speak ISO 23725.
                "autonomous": False,
            },
        )


def _delete_superseded_zones(site: Site, document: dict) -> int:
    """A demo zone whose design changed came in under a new id; the zone of the same name
    from the old design goes the ISO 23725 way (Pending Delete, then Deleted)."""
    zones = [f for f in document["features"] if f.get("featureType") == "policyZone"]
    stale = site.zones.filter(
        name__in=[f["properties"]["name"] for f in zones],
        status__in=[PolicyZone.Status.PENDING, PolicyZone.Status.ACTIVE],
    ).exclude(id__in=[f["id"] for f in zones])
    for zone in stale:
        services.request_zone_deletion(zone)
    return len(stale)


def _truck_id(site: Site, name: str) -> uuid.UUID:
    """A truck's fixed id: by fleet number on the demo mine, by site and number elsewhere (two
    generated sites in one database each have their HT-001)."""
    return demo_id("equipment", name if site.slug == SITE_SLUG else f"{site.slug}/{name}")


def sync_trucks(site: Site, count: int) -> tuple[int, int]:
    """HT-001..HT-``count`` active; higher fleet numbers retired (never deleted: history and
    haul cycles refer to them). Returns (added, retired)."""
    existing = {
        e.name: e for e in Equipment.objects.filter(site=site, kind=Equipment.Kind.HAUL_TRUCK)
    }
    wanted = [f"HT-{n:03d}" for n in range(1, count + 1)]
    missing = [
        Equipment(
            id=_truck_id(site, name),
            site=site,
            kind=Equipment.Kind.HAUL_TRUCK,
            name=name,
            manufacturer=HAUL_TRUCK_MANUFACTURER,
            model=HAUL_TRUCK_MODEL,
            payload_capacity_t=HAUL_TRUCK_PAYLOAD_T,
            autonomous=True,
        )
        for name in wanted
        if name not in existing
    ]
    Equipment.objects.bulk_create(missing)
    revived = [
        e.pk for n, e in existing.items() if n in wanted and e.status == Equipment.Status.RETIRED
    ]
    surplus = [
        e
        for n, e in existing.items()
        if (m := TRUCK_NAME.match(n))
        and int(m.group(1)) > count
        and e.status != Equipment.Status.RETIRED
    ]
    Equipment.objects.filter(pk__in=revived).update(status=Equipment.Status.ACTIVE)
    for truck in surplus:  # their broker logins go too
        retire_equipment(truck)
    return len(missing) + len(revived), len(surplus)


@transaction.atomic
def create_demo_mine(trucks: int = 100) -> DemoMineSummary:
    """Build or refresh Cerro Rojo with ``trucks`` active haul trucks. Idempotent: the same
    document imports without a new revision or new zones."""
    if trucks < 0:
        raise ValueError("the number of trucks cannot be negative")
    document = build_demo_map()
    site = _ensure_site(document)
    _ensure_loading_units(site)
    report = import_site_map(document)
    _delete_superseded_zones(site, document)
    added, retired = sync_trucks(site, trucks)
    network = report.network
    if network is None:  # the document always has roads; this guards against editing it wrong
        raise RuntimeError("the demo map imported without a road network")
    return DemoMineSummary(
        site=site.name,
        slug=site.slug,
        revision=network.revision,
        new_revision=report.created_network,
        ways=network.ways.count(),
        zones=report.zones_created + report.zones_unchanged,
        zones_created=report.zones_created,
        loading_units=site.loading_units.count(),
        trucks_active=Equipment.objects.filter(
            site=site, kind=Equipment.Kind.HAUL_TRUCK, status=Equipment.Status.ACTIVE
        ).count(),
        trucks_added=added,
        trucks_retired=retired,
    )


# --- the picture ---------------------------------------------------------------------------------

ZONE_STYLES = {
    "speedLimit": ("#e67e22", "speed limit"),
    "controlledAccess": ("#1f6fd1", "controlled access"),
    "trafficPermission": ("#d62728", "traffic permission"),
    "exclusion": ("#000000", "exclusion"),
    "lowTraction": ("#8c564b", "low traction"),
    "roughRoad": ("#8c564b", "rough road"),
}


def _zone_kind(policies: dict) -> str:
    # The policy that says most about who may be inside names the outline's colour.
    for kind in ("exclusion", "trafficPermission", "controlledAccess", "speedLimit"):
        if kind in policies:
            return kind
    return next(iter(policies))


def plot_site_map(
    collection: dict,
    path: Path,
    *,
    contours: Sequence[tuple[float, Sequence[XY]]] = (),
    centre: tuple[float, float] | None = None,
) -> Path:
    """A PNG of a map file: ways coloured by grade (one-lane dashed), zones outlined by policy,
    destinations labelled; ``contours`` (elevation, WGS84 ring) are drawn underneath. Axes are
    metres from ``centre`` (lon, lat; default the site boundary's centroid)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    from matplotlib import pyplot as plt

    meta = collection["haulmind"]["site"]
    by_type = _features_by_type(collection)
    boundary = by_type["siteBoundary"][0]["geometry"]["coordinates"][0]
    if centre is None:
        centroid = GeosPolygon(boundary).centroid
        centre = (centroid.x, centroid.y)
    frame = LocalFrame(*centre, meta["utmSrid"])
    fig, ax = plt.subplots(figsize=(14, 9.5), dpi=120)
    ax.set_facecolor("#efe6d8")  # Atacama dust
    _draw_contours(ax, frame, contours)
    _draw_areas(ax, frame, by_type.get("area", []))
    _draw_ways(ax, fig, frame, by_type.get("way", []))
    _draw_zones(ax, frame, by_type.get("policyZone", []))
    _draw_destinations(ax, frame, by_type)
    _frame_axes(ax, frame, by_type, meta, collection)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _features_by_type(collection: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for feature in collection["features"]:
        kind = feature.get("featureType") or feature["properties"].get("featureType")
        out.setdefault(kind, []).append(feature)
    return out


def _draw_contours(ax: Any, frame: LocalFrame, contours: Sequence) -> None:
    from matplotlib import cm, colors

    if not contours:
        return
    zs = [z for z, _ in contours]
    depth = colors.Normalize(-0.4 * (max(zs) - min(zs)), 2.2 * (max(zs) - min(zs)))
    rings = [(z, frame.to_local(ring)) for z, ring in contours]
    # Paint from the rim inwards (high and wide first) so each deeper ring covers the one above.
    for z, local in sorted(rings, key=lambda r: (-r[0], _ring_area(r[1]))):
        ax.fill(*zip(*local, strict=True), color=cm.YlOrBr(depth(max(zs) - z)), lw=0)
        ax.plot(*zip(*local, strict=True), color="#7a5c3e", lw=0.5)
    for z, local in [*rings[::4], rings[-1]]:
        x, y = local[len(local) * 140 // 360]  # on the north-west wall, clear of the roads
        ax.annotate(f"{z:.0f}", (x, y), fontsize=6, color="#4a3220", ha="center", va="center")


def _ring_area(ring: Sequence[XY]) -> float:
    return -abs(GeosPolygon(list(ring)).area)  # larger rings first


def _draw_areas(ax: Any, frame: LocalFrame, areas: list[dict]) -> None:
    fills = {"park": "#b8d8a8", "workshop": "#c9c9d6", "fuel": "#f2d28b"}
    for area in areas:
        ring = frame.to_local(area["geometry"]["coordinates"][0])
        kind = area["properties"]["kind"]
        ax.fill(*zip(*ring, strict=True), color=fills.get(kind, "#ddd"), ec="#555", lw=0.8)
        cx = sum(p[0] for p in ring[:-1]) / (len(ring) - 1)
        cy = sum(p[1] for p in ring[:-1]) / (len(ring) - 1)
        ax.annotate(area["properties"]["name"], (cx, cy), ha="center", va="center", fontsize=8)


def _grade(way: dict, local: list[XY]) -> float:
    props = way["properties"]
    if props.get("gradePct") is not None:
        return float(props["gradePct"])
    zs = [c[2] for c in way["geometry"]["coordinates"]]
    length = path_length(local)
    return (zs[-1] - zs[0]) / length * 100 if length else 0.0


def _draw_ways(ax: Any, fig: Any, frame: LocalFrame, ways: list[dict]) -> None:
    from matplotlib import cm, colors

    norm = colors.Normalize(0, 12)
    for way in ways:
        local = frame.to_local(way["geometry"]["coordinates"])
        props = way["properties"]
        one_lane = bool(props.get("oneLane"))
        # The road itself at its real width, then its centre line coloured by grade.
        width = ONE_LANE_WIDTH_M if one_lane else TWO_LANE_WIDTH_M
        road = _buffer(_dedupe(local), width / 2)
        ax.fill(*zip(*road, strict=True), color="#9c9284", ec="#6b6256", lw=0.4, zorder=3)
        xs, ys = zip(*local, strict=True)
        ax.plot(
            xs,
            ys,
            color=cm.viridis(norm(abs(_grade(way, local)))),
            lw=1.4,
            ls=(0, (3, 2)) if one_lane else "-",
            zorder=4,
        )
        mx, my = local[len(local) // 2]
        ax.annotate(str(props["wayId"]), (mx, my), fontsize=6, color="#111", zorder=6)
    mappable = cm.ScalarMappable(norm=norm, cmap=cm.viridis)
    # Inside the axes, lower left: a colour bar beside the map would crowd the labels.
    bar = fig.colorbar(
        mappable, cax=ax.inset_axes((0.03, 0.07, 0.25, 0.022)), orientation="horizontal"
    )
    bar.set_label("|grade| of way (%)", fontsize=8)
    bar.ax.tick_params(labelsize=7)


def _draw_zones(ax: Any, frame: LocalFrame, zones: list[dict]) -> None:
    from matplotlib.lines import Line2D

    seen: dict[str, Any] = {}
    for zone in zones:
        kind = _zone_kind(zone["properties"]["policies"])
        colour, label = ZONE_STYLES.get(kind, ("#444", kind))
        ring = frame.to_local(zone["geometry"]["coordinates"][0])
        ax.plot(*zip(*ring, strict=True), color=colour, lw=1.3, ls="--", zorder=5)
        seen[kind] = Line2D([], [], color=colour, ls="--", label=f"zone: {label}")
    handles = [
        *seen.values(),
        Line2D([], [], color="#9c9284", lw=5, label=f"two-lane way ({TWO_LANE_WIDTH_M:.0f} m)"),
        Line2D([], [], color="#555", lw=1.4, ls=(0, (3, 2)), label="one-lane way (dashed)"),
    ]
    ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.9)


def _label(ax: Any, xy: XY, text: str, away_from: XY) -> None:
    """A label pushed away from ``away_from`` (the pit centre), so labels fan out."""
    dx, dy = xy[0] - away_from[0], xy[1] - away_from[1]
    norm = math.hypot(dx, dy) or 1.0
    ax.annotate(
        text,
        xy,
        (22 * dx / norm, 22 * dy / norm),
        textcoords="offset points",
        ha="left" if dx >= 0 else "right",
        va="center",
        fontsize=7.5,
        weight="bold",
        zorder=8,
        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
    )


def _draw_destinations(ax: Any, frame: LocalFrame, by_type: dict[str, list[dict]]) -> None:
    units = by_type.get("loadingUnit", [])
    points = [frame.to_local([u["geometry"]["coordinates"]])[0] for u in units]
    centre = (
        (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))
        if points
        else (0.0, 0.0)
    )
    for unit, (x, y) in zip(units, points, strict=True):
        props, z = unit["properties"], unit["geometry"]["coordinates"][2]
        colour = "#c0392b" if props["material"] == "ore" else "#7f8c8d"
        ax.plot(x, y, marker="^", ms=11, color=colour, mec="black", zorder=7)
        rate = f"{props['loadingRateTph']:.0f} t/h"
        _label(ax, (x, y), f"{props['name']} {props['material']}, {z:.0f} m, {rate}", centre)
    for dump in by_type.get("dumpPoint", []):
        (x, y), props = frame.to_local([dump["geometry"]["coordinates"]])[0], dump["properties"]
        marker = "s" if props["kind"] == "crusher" else "D"
        ax.plot(x, y, marker=marker, ms=10, color="#f1c40f", mec="black", zorder=7)
        _label(ax, (x, y), props["name"], centre)
    degree = _node_degrees(by_type.get("way", []))
    for node in by_type.get("roadNode", []):
        (x, y) = frame.to_local([node["geometry"]["coordinates"]])[0]
        big = degree.get(node["properties"]["nodeId"], 0) >= 3
        ax.plot(x, y, "o", ms=5 if big else 3, color="white" if big else "#333", mec="k", zorder=6)


def _node_degrees(ways: list[dict]) -> dict[int, int]:
    degree: dict[int, int] = {}
    for way in ways:
        for end in (way["properties"]["startNode"], way["properties"]["endNode"]):
            degree[end] = degree.get(end, 0) + 1
    return degree


def _frame_axes(ax: Any, frame: LocalFrame, by_type: dict, meta: dict, collection: dict) -> None:
    points = [
        xy
        for way in by_type.get("way", [])
        for xy in frame.to_local(way["geometry"]["coordinates"])
    ]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    margin = 250.0
    ax.set_xlim(min(xs) - margin, max(xs) + margin)
    ax.set_ylim(min(ys) - margin, max(ys) + margin)
    ax.set_aspect("equal")
    ax.set_xlabel(f"metres east (UTM, EPSG:{meta['utmSrid']})")
    ax.set_ylabel("metres north")
    ax.grid(color="white", lw=0.4, alpha=0.6)
    network = collection["haulmind"].get("roadNetwork") or {}
    revision = f" - roads r{network['revision']}" if network.get("revision") else ""
    ax.set_title(
        f"{meta['name']}{revision}: {len(by_type.get('way', []))} ways, "
        f"{len(by_type.get('policyZone', []))} zones, "
        f"{len(by_type.get('loadingUnit', []))} loading units"
    )


# --- a large generated mine (the dispatch benchmark) ----------------------------------------------

LARGE_NAME = "Cerro Grande"
LARGE_SLUG = "cerro-grande"
LARGE_PIT_SPACING_M = 3000.0
LARGE_PIT_DEPTH_M = 150.0
LARGE_RAMP_M = 1700.0  # portal to pit floor: ~9 % down 150 m
LARGE_FACE_RADIUS_M = 350.0  # loading units stand on a ring this far from the floor hub


def build_large_map(
    pits: int = 5,
    loading_units: int = 50,
    *,
    name: str = LARGE_NAME,
    slug: str = LARGE_SLUG,
    one_lane_every: int = 0,
) -> dict:
    """A generated mine of ``pits`` pits in a row, ``loading_units`` shovels shared among them
    (half ore, half waste), per pit a crusher and a waste dump at the rim, a trunk road joining
    the pits' portals and a park at the first: a map document (docs/map-format.md) for the
    dispatch benchmark. Deterministic.

    ``one_lane_every`` = k > 0 narrows the bench road of every k-th loading unit of a pit (the
    second, then every k-th) to one lane over a stretch in its middle, a trafficPermission zone
    (``LARGE_NARROW_M``): trucks take it one direction at a time (the shift benchmark)."""
    if pits < 1 or loading_units < pits:
        raise ValueError("at least one pit, and at least one loading unit per pit")
    lat0 = CENTRE_LAT - 0.1
    m_lat = 110_574.0
    m_lon = 111_320.0 * math.cos(math.radians(lat0))
    width = (pits - 1) * LARGE_PIT_SPACING_M

    def lonlat(x: float, y: float, z: float) -> list[float]:
        return [CENTRE_LON + (x - width / 2) / m_lon, lat0 + y / m_lat, round(z, 2)]

    nodes: dict[int, tuple[float, float, float]] = {}
    ways: list[tuple[int, str, int, int] | tuple[int, str, int, int, bool]] = []
    zones: list[tuple[str, int, int]] = []  # one-lane stretches: name, the way's two nodes
    units: list[tuple[str, str, float, int]] = []
    dumps: list[tuple[str, str, float, int]] = []
    per_pit = [loading_units // pits + (p < loading_units % pits) for p in range(pits)]
    for p in range(pits):
        x0 = p * LARGE_PIT_SPACING_M
        portal, hub = 1000 * (p + 1), 1000 * (p + 1) + 1
        nodes[portal] = (x0, LARGE_RAMP_M, RIM_Z)
        nodes[hub] = (x0, 0.0, RIM_Z - LARGE_PIT_DEPTH_M)
        ways.append((portal, f"Pit {p + 1} ramp", portal, hub))
        if p:
            ways.append((portal - 1000 + 2, f"Trunk {p}-{p + 1}", portal - 1000, portal))
        for k, (kind, dx) in enumerate((("crusher", 600.0), ("waste_dump", -600.0))):
            node = portal + 3 + k
            nodes[node] = (x0 + dx, LARGE_RAMP_M + 500.0, RIM_Z + 5.0)
            ways.append((node, f"Pit {p + 1} {kind} road", portal, node))
            name = f"P{p + 1} {'crusher' if kind == 'crusher' else 'waste dump'}"
            ore_units = (per_pit[p] + 1) // 2
            capacity = 3500.0 * ore_units if kind == "crusher" else 4500.0 * per_pit[p]
            dumps.append((name, kind, min(capacity, 50_000.0), node))
        for u in range(per_pit[p]):
            angle = math.pi * (0.15 + 0.7 * u / max(per_pit[p] - 1, 1))
            node = portal + 10 + u
            nodes[node] = (
                x0 + LARGE_FACE_RADIUS_M * math.cos(angle),
                -LARGE_FACE_RADIUS_M * math.sin(angle),
                RIM_Z - LARGE_PIT_DEPTH_M + 15.0 * (u % 3),
            )
            road = f"Pit {p + 1} bench road {u + 1}"
            if one_lane_every > 0 and u % one_lane_every == 1:
                # Two-lane from the hub, one lane over LARGE_NARROW_M, two-lane to the face.
                a, b = portal + 40 + u, portal + 70 + u
                for mid, along in ((a, LARGE_NARROW_M[0]), (b, LARGE_NARROW_M[1])):
                    share = along / LARGE_FACE_RADIUS_M
                    nodes[mid] = tuple(
                        h + share * (n - h) for h, n in zip(nodes[hub], nodes[node], strict=True)
                    )  # type: ignore[assignment]
                ways.append((a, road, hub, a))
                ways.append((b, f"{road}, one lane", a, b, True))
                ways.append((node, f"{road} to the face", b, node))
                zones.append((f"{road} narrows: one truck at a time", a, b))
            else:
                ways.append((node, road, hub, node))
            material = "ore" if u % 2 == 0 else "waste"
            rate = 3000.0 + 500.0 * ((u * 7 + p) % 4)
            units.append((f"P{p + 1}-SH{u + 1:02d}", material, rate, node))
    park = 9000
    nodes[park] = (0.0, LARGE_RAMP_M + 400.0, RIM_Z)  # north of pit 1, between its dump roads
    ways.append((park, "Park entry", 1000, park))
    features: list[dict] = []
    xs = [n[0] for n in nodes.values()]
    ys = [n[1] for n in nodes.values()]
    lo, hi = (min(xs) - 500, min(ys) - 500), (max(xs) + 500, max(ys) + 500)
    ring = [lonlat(*c, 0)[:2] for c in (lo, (hi[0], lo[1]), hi, (lo[0], hi[1]), lo)]
    features.append(
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"featureType": "siteBoundary", "name": name},
        }
    )
    for node_id, xyz in sorted(nodes.items()):
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": lonlat(*xyz)},
                "properties": {"featureType": "roadNode", "nodeId": node_id},
            }
        )
    for way_id, way_name, start, end, *narrow in ways:
        features.append(
            {
                "type": "Feature",
                "geometry": {
                    "type": "LineString",
                    "coordinates": [lonlat(*nodes[start]), lonlat(*nodes[end])],
                },
                "properties": {
                    "featureType": "way",
                    "wayId": way_id,
                    "name": way_name,
                    "startNode": start,
                    "endNode": end,
                    "oneLane": bool(narrow and narrow[0]),
                },
            }
        )
    for zone_name, start, end in zones:
        ring = _narrow_section(nodes[start][:2], nodes[end][:2])
        features.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid5(NAMESPACE, f"{slug}/zone/{zone_name}")),
                "featureType": "policyZone",
                "status": "active",
                "geometry": {"type": "Polygon", "coordinates": [[lonlat(*c, 0)[:2] for c in ring]]},
                "properties": {"name": zone_name, "policies": {"trafficPermission": {}}},
            }
        )
    for unit_name, material, rate, node in units:
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": lonlat(*nodes[node])},
                "properties": {
                    "featureType": "loadingUnit",
                    "name": unit_name,
                    "loadingRateTph": rate,
                    "material": material,
                },
            }
        )
    for dump_name, kind, capacity, node in dumps:
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": lonlat(*nodes[node])},
                "properties": {
                    "featureType": "dumpPoint",
                    "name": dump_name,
                    "kind": kind,
                    "capacityTph": capacity,
                },
            }
        )
    px, py, _ = nodes[park]
    park_ring = [lonlat(px + dx, py + dy, 0)[:2] for dx, dy in _PARK_CORNERS]
    features.append(
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [park_ring]},
            "properties": {"featureType": "area", "name": "Truck park", "kind": "park"},
        }
    )
    return {
        "type": "FeatureCollection",
        "haulmind": {
            "format": 1,
            "site": {
                "name": name,
                "slug": slug,
                "utmSrid": UTM_SRID,
                "defaultSpeedKmh": DEFAULT_SPEED_KMH,
            },
            "roadNetwork": {"note": f"generated: {pits} pits, {loading_units} loading units"},
        },
        "features": features,
    }


_PARK_CORNERS = ((-150, -80), (150, -80), (150, 80), (-150, 80), (-150, -80))
# A narrowed bench road is one lane (a way of its own) from this far along it from the pit
# floor's hub (clear of the other bench roads fanning out from the hub) to that far: the last
# 120 m before the loading unit (LARGE_FACE_RADIUS_M away) hold the truck spotting there and a
# queue, on two lanes, outside the section.
LARGE_NARROW_M = (120.0, 230.0)
LARGE_NARROW_HALF_WIDTH_M = ONE_LANE_WIDTH_M / 2 + 3


def _narrow_section(start: tuple[float, float], end: tuple[float, float]) -> list[XY]:
    """The trafficPermission zone of a one-lane (straight) way: its road, its ends a metre in,
    so a truck on the two-lane ways either side is never inside (local metres)."""
    (x0, y0), (x1, y1) = start, end
    length = math.hypot(x1 - x0, y1 - y0)
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    a, b, w = 1.0, length - 1.0, LARGE_NARROW_HALF_WIDTH_M
    corners = [(a, -w), (b, -w), (b, w), (a, w), (a, -w)]
    return [(x0 + s * ux - t * uy, y0 + s * uy + t * ux) for s, t in corners]


@transaction.atomic
def create_large_mine(trucks: int, pits: int = 5, loading_units: int = 50) -> DemoMineSummary:
    """Import the generated large mine (``build_large_map``) with ``trucks`` haul trucks."""
    document = build_large_map(pits, loading_units)
    report = import_site_map(document)
    site = report.site
    added, retired = sync_trucks(site, trucks)
    network = report.network or site.active_network
    return DemoMineSummary(
        site=site.name,
        slug=site.slug,
        revision=network.revision if network else 0,
        new_revision=report.created_network,
        ways=network.ways.count() if network else 0,
        zones=0,
        zones_created=0,
        loading_units=site.loading_units.count(),
        trucks_active=Equipment.objects.filter(
            site=site, kind=Equipment.Kind.HAUL_TRUCK, status=Equipment.Status.ACTIVE
        ).count(),
        trucks_added=added,
        trucks_retired=retired,
    )
