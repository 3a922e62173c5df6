"""``manage.py bench collision --trucks N``: what one collision-risk assessment costs
(``fleet.control.collision_services.assess_collision_risk``) with N moving machines.

The scene: the benchmark's own site, a square grid of two-lane haul roads 500 m apart with
250 m of road per truck (a truck every 250 m on average, both directions, a fifth standing);
each truck's newest position and production state written to Redis as ingest writes them, and
a trajectory prediction (the head's output form) for half of them, the others left to the
constant-velocity fallback. Then, ``--seconds`` long (at least 5 runs):

- the whole assessment as beat runs it (Redis read, predictions query, placing, candidate
  search, closest approaches, acting on every risk through the outbox), each run rolled back so
  every run acts on the same fresh risks: ``total_ms_p50`` / ``_p99`` and its stages;
- on the same placed paths: the candidate search and the exact computation apart, and a brute
  force over every pair for comparison (``brute_force_ms``);
- CPU time per truck of one whole assessment (``cpu_us_per_truck``).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from django.db import transaction
from django.utils import timezone

from fleet.control import collision, collision_services
from fleet.learning.models import Prediction
from fleet.mine.mapfile import import_site_map
from fleet.mine.models import Site
from fleet.protocol import wire
from fleet.telemetry.latest import POSITION_FIELD, redis_client, truck_key
from fleet.vehicles.models import Equipment

BENCH_SLUG = "bench-collision"
LON0, LAT0 = -69.05, -22.40
SPACING_M = 500.0
ROAD_PER_TRUCK_M = 400.0
STANDING = 0.2
BRUTE_CHUNK = 20_000  # pairs per step of the brute force
Log = Callable[[str], None]


def _grid_map(side: int) -> dict:
    """``side`` x ``side`` nodes SPACING_M apart, joined by ways along the rows and columns."""
    frame = collision.Frame(LON0, LAT0)

    def lonlat(ix: float, iy: float) -> list[float]:
        lon, lat = frame.to_lonlat(np.array([ix * SPACING_M, iy * SPACING_M]))
        return [round(float(lon), 8), round(float(lat), 8)]

    edge = (side - 1) / 2
    corners = [(-edge - 1, -edge - 1), (edge + 1, -edge - 1), (edge + 1, edge + 1)]
    ring = [lonlat(*c) for c in [*corners, (-edge - 1, edge + 1), corners[0]]]
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"featureType": "siteBoundary"},
        }
    ]
    node_id = {}
    for gx in range(side):
        for gy in range(side):
            node_id[gx, gy] = len(node_id) + 1
            features.append(
                {
                    "type": "Feature",
                    "geometry": {
                        "type": "Point",
                        "coordinates": [*lonlat(gx - edge, gy - edge), 3000.0],
                    },
                    "properties": {"featureType": "roadNode", "nodeId": node_id[gx, gy]},
                }
            )
    way = 0
    for gx in range(side):
        for gy in range(side):
            for nx, ny in ((gx + 1, gy), (gx, gy + 1)):
                if (nx, ny) not in node_id:
                    continue
                way += 1
                a, b = lonlat(gx - edge, gy - edge), lonlat(nx - edge, ny - edge)
                features.append(
                    {
                        "type": "Feature",
                        "geometry": {
                            "type": "LineString",
                            "coordinates": [[*a, 3000.0], [*b, 3000.0]],
                        },
                        "properties": {
                            "featureType": "way",
                            "wayId": way,
                            "startNode": node_id[gx, gy],
                            "endNode": node_id[nx, ny],
                        },
                    }
                )
    return {
        "type": "FeatureCollection",
        "haulmind": {
            "format": 1,
            "site": {"name": "Collision benchmark pit", "slug": BENCH_SLUG, "utmSrid": 32719},
        },
        "features": features,
    }


def _provision(trucks: int) -> tuple[Site, list[Equipment]]:
    ways_needed = trucks * ROAD_PER_TRUCK_M / SPACING_M
    side = max(2, math.ceil((1 + math.sqrt(1 + 2 * ways_needed)) / 2))  # 2 s (s - 1) ways
    import_site_map(_grid_map(side))
    site = Site.objects.get(slug=BENCH_SLUG)
    Equipment.objects.filter(site=site).update(status=Equipment.Status.RETIRED)
    machines = []
    for number in range(1, trucks + 1):
        truck, _ = Equipment.objects.update_or_create(
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"haulmind:bench-collision:{number}"),
            defaults={
                "site": site,
                "name": f"CT-{number:04d}",
                "kind": Equipment.Kind.HAUL_TRUCK,
                "payload_capacity_t": 90,
                "autonomous": True,
                "status": Equipment.Status.ACTIVE,
            },
        )
        machines.append(truck)
    return site, machines


def _scene(site: Site, machines: list[Equipment], seed: int) -> None:
    """Every truck's latest position and state in Redis, a prediction for half of them."""
    rng = np.random.default_rng(seed)
    frame, roads = collision_services.site_roads(site)
    way_ids = sorted(roads)
    now = timezone.now()
    stamp = str(int(now.timestamp() * 1000))
    Prediction.objects.filter(equipment__site=site).delete()
    predictions = []
    with redis_client().pipeline(transaction=False) as pipe:
        for machine in machines:
            road = roads[way_ids[rng.integers(len(way_ids))]]
            s = rng.uniform(0, road.length)
            sign = 1 if rng.random() < 0.5 else -1
            speed = 0.0 if rng.random() < STANDING else rng.uniform(5, 15)
            point, ahead = road.at(np.array([s, s + sign]))
            heading = math.degrees(math.atan2(*(ahead - point))) % 360
            lon, lat = frame.to_lonlat(point)
            fix = {
                "equipmentId": str(machine.id),
                "lon": float(lon),
                "lat": float(lat),
                "heading": round(heading),
                "speedKmh": speed * 3.6,
                "at": wire.format_timestamp(now),
            }
            state = {
                "WayId": road.way_id,
                "AutonomyMode": "Autonomous",
                "ProductionState": "Hauling",
            }
            key = truck_key(machine.id)
            pipe.delete(key)
            pipe.hset(
                key,
                mapping={
                    POSITION_FIELD: orjson.dumps(fix),
                    f"{POSITION_FIELD}@": stamp,
                    collision_services.PRODUCTION_STATE: orjson.dumps(state),
                    f"{collision_services.PRODUCTION_STATE}@": stamp,
                },
            )
            if rng.random() < 0.5:
                ahead_xy = road.at(s + sign * speed * np.array([1.0, 3.0, 5.0]))
                lons, lats = frame.to_lonlat(ahead_xy)
                predictions.append(
                    Prediction(
                        equipment=machine,
                        model_name="trajectory",
                        model_id="trajectory@bench",
                        window_end=now,
                        outputs={
                            "horizons_s": [1, 3, 5],
                            "positions": [
                                [float(a), float(b)] for a, b in zip(lons, lats, strict=True)
                            ],
                        },
                    )
                )
        pipe.execute()
    Prediction.objects.bulk_create(predictions)


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


@dataclass
class Runs:
    """Timings of repeated assessments."""

    total_ms: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(
        default_factory=lambda: {"place_ms": [], "assess_ms": [], "act_ms": []}
    )
    report: collision_services.Report = field(default_factory=collision_services.Report)

    def time(self, site: Site) -> None:
        started, started_cpu = time.perf_counter(), time.process_time()
        self.report = collision_services.assess_collision_risk(site)
        self.total_ms.append((time.perf_counter() - started) * 1000)
        self.cpu_s.append(time.process_time() - started_cpu)
        for stage, values in self.stages.items():
            values.append(getattr(self.report, stage))

    def figures(self, prefix: str, trucks: int) -> dict[str, float]:
        return {
            f"{prefix}total_ms_p50": _percentile(self.total_ms, 50),
            f"{prefix}total_ms_p99": _percentile(self.total_ms, 99),
            **{f"{prefix}{k}_p50": _percentile(v, 50) for k, v in self.stages.items()},
            f"{prefix}cpu_us_per_truck": round(float(np.median(self.cpu_s)) / trucks * 1e6, 1),
        }


def run(options: dict, log: Log) -> dict:
    trucks = int(options["trucks"])
    log(f"provisioning {trucks} trucks on the benchmark's grid of haul roads")
    site, machines = _provision(trucks)
    collision_services._roads.clear()
    seed = int(options.get("seed") or 0)
    half = float(options["seconds"]) / 2
    # Steady state, as beat meets it every second: the risks already open, refreshed.
    steady = Runs()
    with transaction.atomic():
        _scene(site, machines, seed)
        collision_services.assess_collision_risk(site)  # opens the risks (untimed)
        deadline = time.monotonic() + half
        while len(steady.total_ms) < 5 or time.monotonic() < deadline:
            _scene(site, machines, seed)  # the same scene, its fixes fresh again
            steady.time(site)
        transaction.set_rollback(True)
    # First sighting: every risk new, every intervention sent (each run rolled back).
    first = Runs()
    deadline = time.monotonic() + half
    while len(first.total_ms) < 5 or time.monotonic() < deadline:
        with transaction.atomic():
            _scene(site, machines, seed)
            first.time(site)
            transaction.set_rollback(True)
    _scene(site, machines, seed)
    placed = collision_services.place_machines(site)
    grid_ms, exact_ms, brute_ms = _parts(placed, collision_services.thresholds())
    pairs_all = len(placed.machines) * (len(placed.machines) - 1) // 2
    report = first.report
    return {
        "trucks": trucks,
        "placed": report.machines,
        "from_predictions": report.machines - report.fallback,
        "candidates": report.candidates,
        "pairs_all": pairs_all,
        "exact_share": round(report.candidates / max(pairs_all, 1), 5),
        "risks": report.risks,
        "commands_first_sighting": report.commands,
        "commands_steady": steady.report.commands,
        "runs": len(steady.total_ms) + len(first.total_ms),
        **steady.figures("", trucks),
        **first.figures("first_sighting_", trucks),
        "candidate_search_ms": grid_ms,
        "exact_ms": exact_ms,
        "brute_force_ms": brute_ms,
    }


def _parts(
    placed: collision_services.Placed, limits: collision.Thresholds
) -> tuple[float, float, float]:
    """The candidate search and the exact computation apart, and a brute force, each the
    median of 5 runs on the same placed paths."""
    paths, dt = placed.paths, placed.dt_s

    def timed(work: Callable[[], Any]) -> float:
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            work()
            runs.append((time.perf_counter() - started) * 1000)
        return round(float(np.median(runs)), 2)

    i, j = collision.candidate_pairs(paths, limits.safety_distance_m)
    grid_ms = timed(lambda: collision.candidate_pairs(paths, limits.safety_distance_m))
    exact_ms = timed(lambda: collision.closest_approaches(paths, i, j, dt))
    ai, aj = np.triu_indices(len(paths), k=1)

    def brute_force() -> None:
        for start in range(0, len(ai), BRUTE_CHUNK):  # in chunks: bounded memory
            chunk = slice(start, start + BRUTE_CHUNK)
            collision.closest_approaches(paths, ai[chunk], aj[chunk], dt)

    return grid_ms, exact_ms, timed(brute_force)
