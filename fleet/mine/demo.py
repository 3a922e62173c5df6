"""Cerro Rojo, the demo mine: an open pit in the Atacama, generated as one map file.

The geometry is designed in local metres (east and north of the pit centre) and carried to WGS84
through the site's own UTM zone, so the lengths and grades the importer computes (also in UTM)
are exactly the ones designed here. Everything is deterministic, ids included (uuid5 of stable
names): running the generator again gives the same document, and importing it changes nothing.

The pit: a rim crest at 3,900 m, six 15 m benches down to a floor at 3,810 m, a two-lane main
ramp spiralling clockwise down the east and south walls at 9 %, a one-lane switchback on the
west wall, four loading units (waste on the upper benches, ore below), and at the rim a crusher,
a waste dump, a park-up and a workshop.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.contrib.gis.geos import GEOSGeometry, LineString, MultiPoint, Point
from django.contrib.gis.geos import Polygon as GeosPolygon
from django.db import transaction

from fleet.mine.mapfile import import_site_map
from fleet.mine.models import Site
from fleet.vehicles.models import Equipment

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
        wall_point(
            theta0 + (theta1 - theta0) * i / steps, inset0 + (inset1 - inset0) * i / steps
        )
        for i in range(steps + 1)
    ]


def _distance(a: XY, b: XY) -> float:
    return math.hypot(b[0] - a[0], b[1] - a[1])


def path_length(points: Sequence[XY]) -> float:
    return sum(_distance(a, b) for a, b in zip(points, points[1:], strict=False))


def _point_along(points: Sequence[XY], run: float) -> XY:
    for a, b in zip(points, points[1:], strict=False):
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
    ring = geometry.buffer_with_style(half_width, quadsegs=4).exterior_ring.coords
    return [(x, y) for x, y in ring]


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
        return demo_id("zone", self.name)


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

    def way(self, way_id: int, name: str, start: int, end: int, path: Sequence[XY], **kw) -> None:
        # Snap the ends onto the nodes so the graph is exact; elevations run node to node.
        (x0, y0, z0), (x1, y1, z1) = self.nodes[start], self.nodes[end]
        xy = [(x0, y0), *path[1:-1], (x1, y1)]
        self.ways.append(WaySpec(way_id, name, start, end, with_elevations(xy, z0, z1), **kw))

    def zone(self, name: str, policies: dict, ring: list[XY]) -> None:
        self.zones.append(ZoneSpec(name, policies, ring))

    def way_path(self, way_id: int) -> list[XY]:
        way = next(w for w in self.ways if w.way_id == way_id)
        return [(x, y) for x, y, _ in way.points]


# Node ids: 1-9 the rim, 10-16 the main ramp (10 = portal, 10 + k = bench level k), 20+ the pit.
PORTAL, RIM_JUNCTION, NORTH_JUNCTION, CRUSHER, DUMP_TOE, DUMP_TIP, PARK, WORKSHOP = (
    10,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
)
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
            speed_kmh=30.0,
        )


def _switchback_path(leg_deg: float) -> list[XY]:
    """West-wall switchback from the floor up to bench level 4, legs ``leg_deg`` long."""
    start_theta, floor_in, top_in = -150.0, crest_inset(BENCHES - 1) + 16.0, crest_inset(3) + 12
    turn_theta = start_theta - leg_deg
    mid_out = (floor_in + top_in) / 2 + 15.0
    mid_in = mid_out - 30.0  # legs 30 m apart: a hairpin of 15 m radius for a 90 t truck
    leg1 = wall_path(start_theta, turn_theta, floor_in, mid_out)
    leg2 = wall_path(turn_theta, start_theta, mid_in, top_in)
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


def _pit_roads(layout: Layout) -> None:
    """Bench roads, the switchback and the spurs to the loading units."""
    floor, bench4 = level_z(BENCHES), level_z(4)
    leg = _switchback_leg_for_grade(bench4 - floor, SWITCHBACK_GRADE)
    switchback = _switchback_path(leg)
    layout.node(FLOOR_WEST, switchback[0], floor)
    layout.node(BENCH4_WEST, switchback[-1], bench4)
    theta = layout.ramp_theta
    # Bench 3840 road: from the ramp west along level 4, outside the lower ramp.
    layout.way(
        301, "Bench 3840 road", ramp_node(4), BENCH4_WEST, wall_path(theta[4], -150, ramp_inset(60), 104)
    )
    layout.way(
        302,
        "West switchback 3810-3840",
        FLOOR_WEST,
        BENCH4_WEST,
        switchback,
        one_lane=True,
        speed_kmh=15.0,
    )
    floor_in = ramp_inset(RIM_Z - FLOOR_Z)
    layout.way(
        303, "Pit floor west", ramp_node(6), FLOOR_WEST, wall_path(theta[6], -150, floor_in, 172)
    )
    spurs = (
        # shovel, from node, theta at the node, theta at the face, inset at node, at face, level
        ("SH-01", ramp_node(2), theta[2], 140.0, 52.0, 44.0, 2, False),
        ("SH-02", ramp_node(3), theta[3], -72.0, 82.0, 74.0, 3, True),
        ("SH-03", BENCH4_WEST, -150.0, -198.0, 104.0, 100.0, 4, False),
        ("SH-04", ramp_node(6), theta[6] + 360.0, 365.0, 172.0, 185.0, BENCHES, False),
    )
    for index, (name, start, t0, t1, in0, in1, level, one_lane) in enumerate(spurs, start=1):
        end = layout.node(SHOVEL_END[name], wall_point(t1, in1), level_z(level))
        spec = next(s for s in SHOVELS if s.name == name)
        label = f"{name} access" if one_lane else f"Bench {level_z(level):.0f} road to {name}"
        if level == BENCHES:
            label = f"Pit floor road to {name}"
        layout.way(310 + index, label, start, end, wall_path(t0, t1, in0, in1), one_lane=one_lane)
        # The loading unit stands at the face, ~20 m beyond the end of its road.
        face = wall_point(t1 + (8.0 if t1 > t0 else -8.0), in1 - 6.0)
        layout.units.append((spec, (face[0], face[1], level_z(level))))


def _rim(layout: Layout) -> None:
    """Rim haul roads: the portal to the crusher, the waste dump, the park and the workshop."""
    portal = layout.nodes[PORTAL]
    scale = 1 + 110 / math.hypot(portal[0], portal[1])
    junction = layout.node(RIM_JUNCTION, (portal[0] * scale, portal[1] * scale), RIM_Z)
    north = layout.node(NORTH_JUNCTION, (-150.0, 640.0), RIM_Z + 1.0)
    crusher = layout.node(CRUSHER, (760.0, 430.0), RIM_Z + 6.0)
    dump_toe = layout.node(DUMP_TOE, (-780.0, 120.0), RIM_Z + 2.0)
    # The dump has grown 30 m above the plain; its ramp climbs at the ramp grade.
    heading = math.radians(200.0)
    run = 30.0 / RAMP_GRADE
    tip = (-780.0 + run * math.cos(heading), 120.0 + run * math.sin(heading))
    dump_tip = layout.node(DUMP_TIP, tip, RIM_Z + 32.0)
    park = layout.node(PARK, (-300.0, 700.0), RIM_Z + 2.0)
    workshop = layout.node(WORKSHOP, (60.0, 720.0), RIM_Z + 3.0)
    jxy, nxy = layout.nodes[junction][:2], layout.nodes[north][:2]
    layout.way(101, "Pit portal", junction, PORTAL, [jxy, portal[:2]])
    layout.way(
        102, "Crusher haul road", junction, crusher, bezier(jxy, (330.0, 560.0), (760.0, 430.0))
    )
    layout.way(
        103, "Waste dump haul road", junction, dump_toe, bezier(jxy, (-600.0, 470.0), (-780.0, 120.0))
    )
    layout.way(104, "Waste dump ramp", dump_toe, dump_tip, [(-780.0, 120.0), tip])
    layout.way(105, "North access", junction, north, bezier(jxy, (-150.0, 500.0), nxy))
    layout.way(106, "Park entry", north, park, [nxy, (-300.0, 700.0)], speed_kmh=20.0)
    layout.way(107, "Workshop entry", north, workshop, [nxy, (60.0, 720.0)], speed_kmh=20.0)
    layout.dumps.append(("Primary crusher", "crusher", 6000.0, (790.0, 445.0, RIM_Z + 6.0)))
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
                _buffer(layout.way_path(way.way_id), ONE_LANE_WIDTH_M / 2 + 3),
            )
    for spec, (x, y, _) in layout.units:
        # The loading area: the truck's spot and its turning room beside the shovel.
        layout.zone(
            f"{spec.name} loading area",
            {"controlledAccess": {"ownerId": str(demo_id("equipment", spec.name))}},
            _buffer([(x, y)], 45.0),
        )
    crusher = layout.dumps[0][3]
    layout.zone(
        "Crusher approach 20 km/h",
        {"speedLimit": {"type": "absolute", "value": 5.6}},
        _buffer([crusher[:2]], 70.0),
    )
    layout.zone(
        "Truck park 10 km/h",
        {"speedLimit": {"type": "absolute", "value": 2.8}},
        layout.areas[0][2],
    )
    tip = layout.dumps[1][3]
    layout.zone("West waste dump tip head", {"roughRoad": {}}, _buffer([tip[:2]], 60.0))


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
        for inset, z in ((crest_inset(level), level_z(level)), (crest_inset(level) + FACE_RUN_M, level_z(level + 1))):
            rings.append((z, [wall_point(t, inset) for t in range(0, 361, 3)]))
    return rings
