"""Geometry that needs metres: lengths, grades and zone checks in the site's UTM zone."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from django.contrib.gis.geos import GEOSGeometry, LineString, Polygon

if TYPE_CHECKING:
    from fleet.mine.models import Site

# A zone smaller than a haul truck (about 10 m x 7 m) cannot be obeyed; one larger than
# 100 km2 is a digitising mistake, not a mine feature.
MIN_ZONE_AREA_M2 = 50.0
MAX_ZONE_AREA_M2 = 100_000_000.0


def way_profile(
    site: Site, line: LineString, elevations: list[float]
) -> tuple[float, float, float]:
    """Length (m), net grade (%) and steepest segment grade (|%|) of a way."""
    metric = site.to_metric(line)
    coords = metric.coords
    length = 0.0
    steepest = 0.0
    for (x0, y0), (x1, y1), z0, z1 in zip(
        coords, coords[1:], elevations, elevations[1:], strict=False
    ):
        run = math.hypot(x1 - x0, y1 - y0)
        length += run
        if run > 0.5:  # sub-metre vertices make grades meaningless noise
            steepest = max(steepest, abs(z1 - z0) / run * 100.0)
    net = (elevations[-1] - elevations[0]) / length * 100.0 if length > 0 else 0.0
    return length, net, steepest


def zone_geometry_errors(geometry: GEOSGeometry, site: Site | None) -> list[str]:
    """Reasons a polygon cannot be a policy zone; empty when it can."""
    if not isinstance(geometry, Polygon):
        return [f"a zone must be a Polygon, got {geometry.geom_type}"]
    if geometry.num_interior_rings:
        return ["a zone must be a simple polygon without holes"]
    if not geometry.valid:
        return [f"the polygon is not valid: {geometry.valid_reason}"]
    for lon, lat in geometry.exterior_ring.coords:
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            return [f"vertex ({lon}, {lat}) is not a WGS84 longitude/latitude"]
    if site is None:
        return []
    area = site.to_metric(geometry).area
    if area < MIN_ZONE_AREA_M2:
        return [
            f"the zone covers {area:.0f} m², less than a haul truck ({MIN_ZONE_AREA_M2:.0f} m²)"
        ]
    if area > MAX_ZONE_AREA_M2:
        return [f"the zone covers {area / 1e6:.0f} km², more than any mine feature"]
    if site.boundary and not site.boundary.intersects(geometry):
        return [f"the zone lies outside the site {site.name}"]
    return []
