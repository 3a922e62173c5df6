"""A small open pit as a map document (docs/map-format.md), built in metres, for engine tests.

The rim (3,000 m) holds the park, the crusher and the waste dump; a straight 1 km ramp at 10 %
goes down to the pit floor (2,900 m) with an ore shovel and a waste shovel. Loaded trucks
climb the ramp, empty ones go down it.
"""

from __future__ import annotations

import math
import uuid

LON0, LAT0 = -68.90, -22.30
_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(LAT0))

NODES = {
    1: (0.0, 0.0, 3000.0),  # park
    2: (300.0, -100.0, 3000.0),  # rim junction, top of the ramp
    3: (900.0, -100.0, 3000.0),  # crusher
    4: (300.0, 500.0, 3000.0),  # waste dump
    5: (300.0, -1100.0, 2900.0),  # pit floor, foot of the ramp
    6: (700.0, -1300.0, 2900.0),  # ore shovel
    7: (-100.0, -1300.0, 2900.0),  # waste shovel
}
# wayId: (start, end, km/h, one lane)
WAYS = {
    101: (1, 2, 50, False),
    102: (2, 3, 50, False),
    103: (2, 4, 50, False),
    104: (2, 5, 40, False),  # the ramp
    105: (5, 6, 30, False),
    106: (5, 7, 30, False),
}
RAMP_WAY = 104


def lonlat(x: float, y: float) -> tuple[float, float]:
    return LON0 + x / _M_PER_DEG_LON, LAT0 + y / _M_PER_DEG_LAT


def _point(x: float, y: float, z: float) -> list[float]:
    return [*lonlat(x, y), z]


def rectangle(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
    return [list(lonlat(x, y)) for x, y in corners]


def zone(name: str, policies: dict, box: tuple[float, float, float, float]) -> dict:
    """A policy zone over the box (x0, y0, x1, y1) in the pit's metres."""
    return {
        "type": "Feature",
        "id": str(uuid.uuid4()),
        "featureType": "policyZone",
        "status": "active",
        "geometry": {"type": "Polygon", "coordinates": [rectangle(*box)]},
        "properties": {"name": name, "policies": policies},
    }


def _way(way_id: int, start: int, end: int, kmh: float, one_lane: bool) -> dict:
    a, b = NODES[start], NODES[end]
    steps = 10  # intermediate vertices, so elevation profiles are read from the geometry
    coords = [
        _point(*(a[i] + (b[i] - a[i]) * j / steps for i in range(3))) for j in range(steps + 1)
    ]
    return {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": coords},
        "properties": {
            "featureType": "way",
            "wayId": way_id,
            "name": f"way {way_id}",
            "startNode": start,
            "endNode": end,
            "operatingSpeedKmh": kmh,
            "oneLane": one_lane,
        },
    }


def _at(node: int) -> dict:
    return {"type": "Point", "coordinates": _point(*NODES[node])}


def pit_map(zones: list[dict] | None = None, *, ore_tph: float = 6000.0) -> dict:
    features: list[dict] = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [rectangle(-500, -1800, 1400, 900)]},
            "properties": {"featureType": "siteBoundary", "name": "Pit"},
        }
    ]
    for node_id in NODES:
        features.append(
            {
                "type": "Feature",
                "geometry": _at(node_id),
                "properties": {"featureType": "roadNode", "nodeId": node_id},
            }
        )
    features += [_way(w, *spec) for w, spec in WAYS.items()]
    features += [
        {
            "type": "Feature",
            "geometry": _at(6),
            "properties": {
                "featureType": "loadingUnit",
                "name": "SH-ORE",
                "loadingRateTph": ore_tph,
                "material": "ore",
                "equipmentId": None,
            },
        },
        {
            "type": "Feature",
            "geometry": _at(7),
            "properties": {
                "featureType": "loadingUnit",
                "name": "SH-WASTE",
                "loadingRateTph": 6000,
                "material": "waste",
                "equipmentId": None,
            },
        },
        {
            "type": "Feature",
            "geometry": _at(3),
            "properties": {
                "featureType": "dumpPoint",
                "name": "Crusher",
                "kind": "crusher",
                "capacityTph": 8000,
            },
        },
        {
            "type": "Feature",
            "geometry": _at(4),
            "properties": {
                "featureType": "dumpPoint",
                "name": "Waste dump",
                "kind": "waste_dump",
                "capacityTph": 12000,
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [rectangle(-60, -40, 60, 40)]},
            "properties": {"featureType": "area", "name": "Park", "kind": "park"},
        },
    ]
    features += zones or []
    return {
        "type": "FeatureCollection",
        "haulmind": {
            "format": 1,
            "site": {"name": "Test pit", "slug": "pit", "utmSrid": 32719, "defaultSpeedKmh": 40},
            "roadNetwork": {"revision": 1, "note": "test"},
        },
        "features": features,
    }
