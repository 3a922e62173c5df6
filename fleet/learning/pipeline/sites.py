"""Five simulated open pits for the domain models: map documents as pure functions (no database).

- A, Cerro Rojo: the demo mine (``fleet.mine.demo``), pretraining.
- B, Quebrada Azul: deeper, steeper (10 %), ramp counter-clockwise, pretraining.
- C, Loma Verde: shallow, 8 % ramp, three shovels, the L1 adaptation site.
- D, Pampa Alta: the validation site (every design choice is made on it): 8.5 %
  counter-clockwise ramp, a one-lane shovel road under a traffic-permission zone, an ore
  stockpile beside the crusher.
- E, Salar Grande: the sealed test site (``SEALED_SITES``): 9.5 % clockwise ramp, three
  shovels, the floor one on a one-lane road, a stockpile. Its data is simulated and read
  by ``fleet.learning.pipeline.testsite`` alone (``bench models``), never by training or
  selection (docs/models.md, "The sealed evaluation").

B to E are built like Cerro Rojo (a ramp spiralling down the benches at a design grade, bench
roads to the shovels, rim haul roads to the crusher, the waste dump and the park) with the demo's
``Layout``, curve and map-document helpers. Only the wall geometry is re-stated here, with the
pit's shape as a parameter: ``demo.wall_point`` reads the demo's module constants.

Every document is deterministic (ids are uuid5 of stable names), so the same site is the same
road graph on every run, and ``World.from_map`` reads it like any exported site map.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass

import numpy as np

from fleet.mine import demo
from fleet.mine.demo import XY, Layout, LocalFrame, ShovelSpec, bezier, rectangle
from fleet.simulator.engine import simulate_arrays
from fleet.simulator.world import World

# Node ids as in the demo: 1-5 on the surface, 10 + bench level down the ramp, 31.. the shovels.
RIM_JUNCTION, CRUSHER, DUMP_TOE, DUMP_TIP, PARK = 1, 2, 3, 4, 5
STOCKPILE = 6
PORTAL = 10
SHOVEL_NODE0 = 31
RAMP_WAY0, SHOVEL_WAY0 = 201, 311
DUMP_RISE_M = 25.0  # the waste dump has grown this far above the plain
FACE_RUN_M = 6.0  # a 15 m face at ~70 degrees, as in the demo


@dataclass(frozen=True)
class ShovelPlace:
    spec: ShovelSpec
    level: int  # bench level it works on (benches = the pit floor)
    theta_deg: float  # wall angle (pit axes) its road runs to along the bench
    one_lane: bool = False


@dataclass(frozen=True)
class PitDesign:
    """One open pit: its shape, benches, ramp, loading units and surface plan (local metres)."""

    key: str
    name: str
    slug: str
    centre: tuple[float, float]  # lon, lat of the local origin
    utm_srid: int
    half_axes_m: tuple[float, float]  # rim crest
    axis_deg: float  # strike of the long axis, counter-clockwise from east
    wobble_phase: float  # keeps the walls from being drawn with a compass, differently per pit
    rim_z: float
    bench_height_m: float
    benches: int
    bench_step_m: float  # wall moves in this far per bench (face run + berm)
    ramp_grade: float
    ramp_start_deg: float  # wall angle of the portal
    ramp_clockwise: bool
    shovels: tuple[ShovelPlace, ...]
    # Surface plan as (bearing, distance) from the pit centre: bearing counter-clockwise from
    # east, near the portal's so no haul road crosses the pit.
    crusher_at: tuple[float, float]
    dump_at: tuple[float, float]  # the toe of the waste dump; its ramp climbs away from the pit
    park_at: tuple[float, float]
    stockpile_at: tuple[float, float] | None = None
    ramp_limit_kmh: float | None = None  # a speed-limit zone over the ramp
    default_speed_kmh: float = 40.0

    def level_z(self, level: int) -> float:
        return self.rim_z - level * self.bench_height_m

    @property
    def depth_m(self) -> float:
        return self.benches * self.bench_height_m


# --- wall geometry, with the pit's shape as a parameter -----------------------------------------


def wall_point(pit: PitDesign, theta_deg: float, inset_m: float) -> XY:
    """As ``demo.wall_point``, for any pit."""
    t = math.radians(theta_deg)
    wobble = 1.0 + 0.05 * math.sin(3 * t + pit.wobble_phase) + 0.03 * math.cos(5 * t + 1.1)
    a, b = pit.half_axes_m
    x, y = (a - inset_m) * wobble * math.cos(t), (b - inset_m) * wobble * math.sin(t)
    r = math.radians(pit.axis_deg)
    return (x * math.cos(r) - y * math.sin(r), x * math.sin(r) + y * math.cos(r))


def wall_path(pit: PitDesign, theta0: float, theta1: float, in0: float, in1: float) -> list[XY]:
    """As ``demo.wall_path``: along the wall between two angles, the inset changing evenly."""
    steps = max(2, math.ceil(abs(theta1 - theta0) / 2.0))
    return [
        wall_point(pit, theta0 + (theta1 - theta0) * i / steps, in0 + (in1 - in0) * i / steps)
        for i in range(steps + 1)
    ]


def ramp_inset(pit: PitDesign, depth_m: float) -> float:
    # One bench step in per bench height, starting a few metres outside the crest (the portal).
    return depth_m * pit.bench_step_m / pit.bench_height_m - 8.0


def berm_inset(pit: PitDesign, level: int) -> float:
    """Mid-berm of bench ``level``: where a bench road runs."""
    return level * pit.bench_step_m - (pit.bench_step_m - FACE_RUN_M) / 2 - 4.0


# --- the layout ------------------------------------------------------------------------------------


def _ramp(layout: Layout, pit: PitDesign) -> dict[int, float]:
    """The two-lane ramp, one way per bench, portal to floor; returns the wall angle per level."""
    sign = -1.0 if pit.ramp_clockwise else 1.0
    total = pit.depth_m / pit.ramp_grade  # horizontal length at the design grade
    thetas, runs = [pit.ramp_start_deg], [0.0]
    fine = [wall_point(pit, pit.ramp_start_deg, ramp_inset(pit, 0.0))]
    while runs[-1] < total + 1.0:  # 0.1 degree steps: under a metre along the wall
        theta = thetas[-1] + sign * 0.1
        point = wall_point(pit, theta, ramp_inset(pit, min(runs[-1] * pit.ramp_grade, pit.depth_m)))
        runs.append(runs[-1] + math.dist(fine[-1], point))
        fine.append(point)
        thetas.append(theta)
    per_bench = total / pit.benches
    angles = {}
    for level in range(pit.benches + 1):
        layout.node(PORTAL + level, demo._point_along(fine, level * per_bench), pit.level_z(level))
        angles[level] = next(
            t for t, r in zip(thetas, runs, strict=True) if r >= level * per_bench - 0.5
        )
    for level in range(pit.benches):
        z0, z1 = pit.level_z(level), pit.level_z(level + 1)
        path = demo.slice_path(fine, level * per_bench, (level + 1) * per_bench)
        name = f"Main ramp {z0:.0f}-{z1:.0f}"
        layout.way(RAMP_WAY0 + level, name, PORTAL + level, PORTAL + level + 1, path)
    return angles


def _shovels(layout: Layout, pit: PitDesign, ramp_theta: dict[int, float]) -> None:
    """Each loading unit at the end of a flat road along its bench from the ramp."""
    for index, place in enumerate(pit.shovels):
        start, z = PORTAL + place.level, pit.level_z(place.level)
        inset = berm_inset(pit, place.level)
        if place.level == pit.benches:  # on the floor the road cuts in towards the middle
            inset += 20.0
        path = [
            layout.nodes[start][:2],
            *wall_path(pit, ramp_theta[place.level], place.theta_deg, inset, inset)[1:],
        ]
        end = layout.node(SHOVEL_NODE0 + index, path[-1], z)
        road = f"{place.spec.name} access, bench {z:.0f}" + (
            " (one lane)" if place.one_lane else ""
        )
        layout.way(SHOVEL_WAY0 + index, road, start, end, path, one_lane=place.one_lane)
        ahead = 3.0 if place.theta_deg > ramp_theta[place.level] else -3.0
        face = wall_point(pit, place.theta_deg + ahead, inset - 10.0)
        layout.units.append((place.spec, (face[0], face[1], z)))


def _polar(at: tuple[float, float], extra_m: float = 0.0) -> XY:
    bearing, distance = math.radians(at[0]), at[1] + extra_m
    return (distance * math.cos(bearing), distance * math.sin(bearing))


def _surface(layout: Layout, pit: PitDesign) -> None:
    """Rim haul roads from a junction outside the portal to the crusher, dump and park."""
    portal = layout.nodes[PORTAL]
    scale = 1 + 110 / math.hypot(portal[0], portal[1])  # 110 m out from the portal
    jxy = (portal[0] * scale, portal[1] * scale)
    rim = pit.rim_z
    junction = layout.node(RIM_JUNCTION, jxy, rim)
    crusher_xy, toe_xy, park_xy = _polar(pit.crusher_at), _polar(pit.dump_at), _polar(pit.park_at)
    crusher = layout.node(CRUSHER, crusher_xy, rim + 6.0)
    toe = layout.node(DUMP_TOE, toe_xy, rim + 2.0)
    # The dump's ramp climbs away from the pit at the ramp grade.
    tip_xy = _polar(pit.dump_at, DUMP_RISE_M / pit.ramp_grade)
    tip = layout.node(DUMP_TIP, tip_xy, rim + 2.0 + DUMP_RISE_M)
    park = layout.node(PARK, park_xy, rim + 2.0)
    layout.way(101, "Pit portal", junction, PORTAL, [jxy, portal[:2]])
    layout.way(102, "Crusher haul road", junction, crusher, _curve(jxy, crusher_xy))
    layout.way(103, "Waste dump haul road", junction, toe, _curve(jxy, toe_xy))
    layout.way(104, "Waste dump ramp", toe, tip, [toe_xy, tip_xy])
    layout.way(105, "Park road", junction, park, _curve(jxy, park_xy), speed_kmh=20.0)
    # Trucks tip into the crusher pocket a truck length past the end of the road.
    pocket = _polar(pit.crusher_at, 30.0)
    layout.dumps.append((f"{pit.name} crusher", "crusher", 6000.0, (*pocket, rim + 6.0)))
    waste = (*tip_xy, rim + 2.0 + DUMP_RISE_M)
    layout.dumps.append((f"{pit.name} waste dump", "waste_dump", 12000.0, waste))
    if pit.stockpile_at is not None:
        stock_xy = _polar(pit.stockpile_at)
        stock = layout.node(STOCKPILE, stock_xy, rim + 4.0)
        layout.way(106, "Stockpile road", crusher, stock, _curve(crusher_xy, stock_xy))
        pile = (*stock_xy, rim + 4.0)
        layout.dumps.append((f"{pit.name} ROM stockpile", "stockpile", 8000.0, pile))
    # The park area lies just beyond its gate node, so the park snaps to that node.
    bay = _polar(pit.park_at, 90.0)
    layout.areas.append(("Truck park", "park", rectangle(bay, 200.0, 120.0, pit.park_at[0])))


def _curve(a: XY, b: XY) -> list[XY]:
    """A gently bent haul road: a Bezier whose control point sits off the chord's middle."""
    mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    dx, dy = b[0] - a[0], b[1] - a[1]
    return bezier(a, (mid[0] - 0.15 * dy, mid[1] + 0.15 * dx), b)


def _zones(layout: Layout, pit: PitDesign) -> None:
    """The policies that change how trucks drive: ramp speed limit, shovel loading areas (owned
    by the shovel, so only trucks bound for it enter) and one-lane roads (one truck at a time)."""
    if pit.ramp_limit_kmh is not None:
        ramp = [xy for w in range(pit.benches) for xy in layout.way_path(RAMP_WAY0 + w)]
        limit = {"speedLimit": {"type": "absolute", "value": round(pit.ramp_limit_kmh / 3.6, 1)}}
        layout.zone(
            f"{pit.name} main ramp {pit.ramp_limit_kmh:.0f} km/h", limit, _outline(ramp, 16.0)
        )
    for way in layout.ways:
        if way.one_lane:
            ring = _outline(layout.way_path(way.way_id), demo.ONE_LANE_WIDTH_M / 2 + 3)
            layout.zone(f"{way.name}: one truck at a time", {"trafficPermission": {}}, ring)
    for spec, (x, y, _) in layout.units:
        owner = {"controlledAccess": {"ownerId": str(demo.demo_id("equipment", spec.name))}}
        layout.zone(f"{spec.name} loading area", owner, _outline([(x, y)], 45.0))


def _outline(points: list[XY], half_width: float) -> list[XY]:
    # demo's buffer helper: the same road outline the demo's zones use.
    return demo._buffer(_dedupe(points), half_width)


def _dedupe(points: list[XY]) -> list[XY]:
    out: list[XY] = []
    for p in points:
        if not out or math.dist(out[-1], p) > 0.01:
            out.append(p)
    return out


def build_layout(pit: PitDesign) -> Layout:
    layout = Layout()
    ramp_theta = _ramp(layout, pit)
    _shovels(layout, pit, ramp_theta)
    _surface(layout, pit)
    _zones(layout, pit)
    return layout


def map_document(pit: PitDesign) -> dict:
    """The pit as a map file (docs/map-format.md): the demo's writer, with this site's name,
    slug, UTM zone and a lease boundary around its roads."""
    layout = build_layout(pit)
    frame = LocalFrame(*pit.centre, pit.utm_srid)
    doc = demo.to_map_document(layout, frame)
    doc["haulmind"]["site"] = {
        "name": pit.name,
        "slug": pit.slug,
        "utmSrid": pit.utm_srid,
        "defaultSpeedKmh": pit.default_speed_kmh,
    }
    doc["haulmind"]["roadNetwork"] = {
        "note": f"simulated site {pit.key}, fleet.learning.pipeline.sites"
    }
    boundary = doc["features"][0]
    boundary["properties"]["name"] = pit.name
    boundary["geometry"] = {
        "type": "Polygon",
        "coordinates": [[list(p) for p in frame.to_lonlat(_lease(layout))]],
    }
    return doc


def _lease(layout: Layout) -> list[XY]:
    xs = [p[0] for p in layout.nodes.values()] + [x for w in layout.ways for x, _, _ in w.points]
    ys = [p[1] for p in layout.nodes.values()] + [y for w in layout.ways for _, y, _ in w.points]
    margin = 300.0
    centre = ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2)
    return rectangle(centre, max(xs) - min(xs) + 2 * margin, max(ys) - min(ys) + 2 * margin)


# --- the four sites ----------------------------------------------------------------------------------


def _shovel(site: str, n: int, material: str, rate: float) -> ShovelSpec:
    # Names carry the site, so no two sites share an equipment id (uuid5 of the name).
    model = ("Hitachi", "EX3600-7") if rate >= 4000 else ("Komatsu", "PC3000-6")
    return ShovelSpec(f"{site}-SH-{n:02d}", material, rate, *model)


QUEBRADA_AZUL = PitDesign(
    key="B",
    name="Quebrada Azul",
    slug="quebrada-azul",
    centre=(-69.10, -24.20),
    utm_srid=32719,
    half_axes_m=(540.0, 380.0),
    axis_deg=-15.0,
    wobble_phase=2.1,
    rim_z=3450.0,
    bench_height_m=12.0,
    benches=8,
    bench_step_m=26.0,
    ramp_grade=0.10,
    ramp_start_deg=-90.0,
    ramp_clockwise=False,
    shovels=(
        ShovelPlace(_shovel("QA", 1, "waste", 4500.0), 2, -140.0),
        ShovelPlace(_shovel("QA", 2, "waste", 4000.0), 4, 110.0),
        ShovelPlace(_shovel("QA", 3, "ore", 3500.0), 6, 160.0),
        ShovelPlace(_shovel("QA", 4, "ore", 4500.0), 8, 215.0),
    ),
    crusher_at=(-70.0, 760.0),
    dump_at=(-140.0, 820.0),
    park_at=(-108.0, 900.0),
    ramp_limit_kmh=25.0,
)

LOMA_VERDE = PitDesign(
    key="C",
    name="Loma Verde",
    slug="loma-verde",
    centre=(-70.30, -27.40),
    utm_srid=32719,
    half_axes_m=(400.0, 290.0),
    axis_deg=45.0,
    wobble_phase=4.0,
    rim_z=1850.0,
    bench_height_m=15.0,
    benches=5,
    bench_step_m=30.0,
    ramp_grade=0.08,
    ramp_start_deg=120.0,
    ramp_clockwise=True,
    shovels=(
        ShovelPlace(_shovel("LV", 1, "waste", 4000.0), 2, 175.0),
        ShovelPlace(_shovel("LV", 2, "ore", 3500.0), 4, -135.0),
        ShovelPlace(_shovel("LV", 3, "ore", 4500.0), 5, -200.0),
    ),
    crusher_at=(130.0, 680.0),
    dump_at=(205.0, 720.0),
    park_at=(162.0, 900.0),
)

PAMPA_ALTA = PitDesign(
    key="D",
    name="Pampa Alta",
    slug="pampa-alta",
    centre=(-70.60, -17.20),
    utm_srid=32719,
    half_axes_m=(480.0, 340.0),
    axis_deg=70.0,
    wobble_phase=5.3,
    rim_z=4200.0,
    bench_height_m=14.0,
    benches=7,
    bench_step_m=28.0,
    ramp_grade=0.085,
    ramp_start_deg=0.0,
    ramp_clockwise=False,
    shovels=(
        ShovelPlace(_shovel("PA", 1, "waste", 4500.0), 2, -40.0),
        ShovelPlace(_shovel("PA", 2, "ore", 4000.0), 5, 235.0),
        ShovelPlace(_shovel("PA", 3, "ore", 4500.0), 7, 300.0, one_lane=True),
    ),
    crusher_at=(35.0, 720.0),
    dump_at=(112.0, 760.0),
    park_at=(72.0, 920.0),
    stockpile_at=(15.0, 860.0),
    ramp_limit_kmh=30.0,
)

SALAR_GRANDE = PitDesign(
    key="E",
    name="Salar Grande",
    slug="salar-grande",
    centre=(-68.90, -21.00),
    utm_srid=32719,
    half_axes_m=(560.0, 360.0),
    axis_deg=-40.0,
    wobble_phase=0.7,
    rim_z=3900.0,
    bench_height_m=13.0,
    benches=6,
    bench_step_m=27.0,
    ramp_grade=0.095,
    ramp_start_deg=200.0,
    ramp_clockwise=True,
    shovels=(
        ShovelPlace(_shovel("SG", 1, "waste", 4000.0), 2, 240.0),
        ShovelPlace(_shovel("SG", 2, "ore", 3500.0), 4, -35.0),
        ShovelPlace(_shovel("SG", 3, "ore", 4500.0), 6, -100.0, one_lane=True),
    ),
    crusher_at=(125.0, 720.0),
    dump_at=(200.0, 790.0),
    park_at=(160.0, 900.0),
    stockpile_at=(105.0, 840.0),
    ramp_limit_kmh=25.0,
)

DESIGNS = {pit.key: pit for pit in (QUEBRADA_AZUL, LOMA_VERDE, PAMPA_ALTA, SALAR_GRANDE)}
SITES = ("A", "B", "C", "D")  # the sites training and selection may read
# The sealed test site: its map is public (a site is a road graph), its data is read by the
# test-site evaluation alone (datasets.load_runs refuses it without the evaluation's key).
SEALED_SITES = ("E",)
ALL_SITES = SITES + SEALED_SITES
VALIDATION_SITE, TEST_SITE = "D", "E"
SITE_NAMES = {"A": demo.SITE_NAME, **{k: p.name for k, p in DESIGNS.items()}}


def site_index(key: str) -> int:
    """A site's index in labels and segment keys (A-E = 0-4)."""
    return ALL_SITES.index(key)


def site_map(key: str) -> dict:
    """The map document of site ``key`` (A-E); a fresh copy each call."""
    if key not in ALL_SITES:
        raise ValueError(f"unknown site {key!r}: the sites are {', '.join(ALL_SITES)}")
    return copy.deepcopy(_site_map(key))


@functools.cache
def _site_map(key: str) -> dict:
    return demo.build_demo_map() if key == "A" else map_document(DESIGNS[key])


@functools.cache
def site_world(key: str) -> World:
    """The simulator's road graph of site ``key`` (read-only: shared between callers)."""
    return World.from_map(_site_map(key))


@dataclass(frozen=True)
class SiteCheck:
    site: str
    ways: int
    loading_units: int
    dumps: int
    ramp_grade_pct: float  # steepest way
    cycles_per_truck: tuple[int, ...]  # completed haul cycles in the check's run


def check_site(key: str, trucks: int = 6, seconds: float = 3600.0, seed: int = 0) -> SiteCheck:
    """Build the world (raises if a key point is unreachable) and run a short shift: a site is
    usable when every truck completes haul cycles."""
    world = site_world(key)
    result = simulate_arrays(world, trucks, hz=1.0, seconds=seconds, seed=seed)
    return SiteCheck(
        site=key,
        ways=len(world.way_ids),
        loading_units=len(world.loading_units),
        dumps=len(world.dumps),
        ramp_grade_pct=float(np.abs(world.way_grade_pct).max()),
        cycles_per_truck=tuple(int(c) for c in result.states["cycles"][-1]),
    )
