"""Small, hand-checkable map data for tests (the demo mine is bigger and generated)."""

from __future__ import annotations

import functools
import uuid

# A 1 km square in the Atacama (UTM zone 19 south, EPSG 32719), around (-68.90, -22.30).
LON0, LAT0 = -68.90, -22.30
D = 0.005  # ~ 515 m of longitude, ~ 555 m of latitude here


def square(cx: float, cy: float, half: float) -> list[list[float]]:
    return [
        [cx - half, cy - half],
        [cx + half, cy - half],
        [cx + half, cy + half],
        [cx - half, cy + half],
        [cx - half, cy - half],
    ]


def zone_feature(
    name: str,
    policies: dict,
    *,
    cx: float = LON0,
    cy: float = LAT0,
    half: float = 0.0005,
    zone_id: str | None = None,
) -> dict:
    return {
        "type": "Feature",
        "id": zone_id or str(uuid.uuid4()),
        "featureType": "policyZone",
        "status": "active",
        "geometry": {"type": "Polygon", "coordinates": [square(cx, cy, half)]},
        "properties": {"name": name, "policies": policies},
    }


def small_site_map(*, slug: str = "testpit", zones: list[dict] | None = None) -> dict:
    """Three nodes, two ways (one of them one-lane, climbing 20 m), a shovel, a crusher, a park."""
    nodes = [
        (1, LON0 - D / 2, LAT0, 2900.0),
        (2, LON0, LAT0, 2900.0),
        (3, LON0 + D / 2, LAT0 + D / 2, 2920.0),
    ]
    features: list[dict] = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [square(LON0, LAT0, D)]},
            "properties": {"featureType": "siteBoundary"},
        },
    ]
    for node_id, x, y, z in nodes:
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [x, y, z]},
                "properties": {"featureType": "roadNode", "nodeId": node_id},
            }
        )
    features += [
        {
            "type": "Feature",
            "geometry": {
                "type": "LineString",
                "coordinates": [[LON0 - D / 2, LAT0, 2900.0], [LON0, LAT0, 2900.0]],
            },
            "properties": {
                "featureType": "way",
                "wayId": 10,
                "name": "Rim road",
                "startNode": 1,
                "endNode": 2,
                "operatingSpeedKmh": 50,
            },
        },
        {
            "type": "Feature",
            "geometry": {
                "type": "LineString",
                "coordinates": [
                    [LON0, LAT0, 2900.0],
                    [LON0 + D / 4, LAT0 + D / 4, 2910.0],
                    [LON0 + D / 2, LAT0 + D / 2, 2920.0],
                ],
            },
            "properties": {
                "featureType": "way",
                "wayId": 11,
                "name": "Ramp",
                "startNode": 2,
                "endNode": 3,
                "oneLane": True,
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [LON0 + D / 2, LAT0 + D / 2, 2920.0]},
            "properties": {
                "featureType": "loadingUnit",
                "name": "SH-01",
                "loadingRateTph": 6000,
                "material": "ore",
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [LON0 - D / 2, LAT0, 2900.0]},
            "properties": {
                "featureType": "dumpPoint",
                "name": "Crusher",
                "kind": "crusher",
                "capacityTph": 8000,
            },
        },
        {
            "type": "Feature",
            "geometry": {
                "type": "Polygon",
                "coordinates": [square(LON0 - D / 2, LAT0 - D / 2, 0.0005)],
            },
            "properties": {"featureType": "area", "name": "Park", "kind": "park"},
        },
    ]
    features += (
        zones
        if zones is not None
        else [
            zone_feature(
                "Ramp 30 km/h",
                {"speedLimit": {"type": "absolute", "value": 8.3}},
                cx=LON0 + D / 4,
                cy=LAT0 + D / 4,
            )
        ]
    )
    return {
        "type": "FeatureCollection",
        "haulmind": {
            "format": 1,
            "site": {
                "name": f"Test pit {slug}",
                "slug": slug,
                "utmSrid": 32719,
                "defaultSpeedKmh": 40,
            },
            "roadNetwork": {"note": "test"},
        },
        "features": features,
    }


def haul_truck(site, name: str = "HT-001", *, autonomous: bool = True):
    from fleet.vehicles.models import Equipment

    return Equipment.objects.create(
        site=site,
        kind=Equipment.Kind.HAUL_TRUCK,
        name=name,
        manufacturer="Haulmind test",
        model="AT-90",
        payload_capacity_t=90,
        autonomous=autonomous,
    )


def position_body(*, lon: float = LON0, lat: float = LAT0, speed: float = 32.5) -> dict:
    return {
        "Heading": 90,
        "Latitude": lat,
        "Longitude": lon,
        "Elevation": 2900.0,
        "LatitudeAccuracy": 0.4,
        "LongitudeAccuracy": 0.5,
        "ElevationAccuracy": 0.8,
        "HeadingAccuracy": 1.5,
        "Speed": speed,
    }


def truck_message(
    equipment_id,
    name: str = "MachinePositionV1",
    body: dict | None = None,
    *,
    at=None,
    sequence: int | None = None,
    **position,
) -> bytes:
    """One truck -> FMS envelope, encoded (and checked) by the project's own encoder."""
    from datetime import UTC, datetime

    from fleet.protocol import wire

    if body is None:
        body = position_body(**position)
    return wire.encode(
        name, body, equipment_id=equipment_id, timestamp=at or datetime.now(UTC), sequence=sequence
    )


# Every test user's password (the browser tests type it into the login page).
PASSWORD = "correct horse battery staple"


@functools.cache
def password_hash() -> str:
    """PASSWORD hashed once, by the project's own first hasher (PBKDF2): hashing it again for
    each test user cost 0.3-0.5 s on this project's CI machine, a few minutes of the suite."""
    from django.contrib.auth.hashers import make_password

    return make_password(PASSWORD)


def user_with_password(username: str, *, superuser: bool = False, **fields):
    """A user who logs in with PASSWORD, stored as ``create_user`` (or ``create_superuser``)
    would store them, without hashing the password again."""
    from django.contrib.auth.models import User

    if superuser:
        fields.update(is_staff=True, is_superuser=True)
    return User.objects.create(username=username, password=password_hash(), **fields)
