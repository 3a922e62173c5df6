"""The mine map as one GeoJSON FeatureCollection: export, and import with validation.

Format (docs/map-format.md): a FeatureCollection with a ``haulmind`` member naming the site, and
one Feature per map object; ``properties.featureType`` says which. Coordinates are WGS84
``[lon, lat, elevation_m]``. Policy zones are in the ISO 23725 Feature form (``id`` = ZoneId,
``properties`` = ``{name, policies}``) with ``featureType`` and ``status`` as foreign members, so
the same Feature can be sent to a truck unchanged.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.contrib.gis.geos import GEOSException, GEOSGeometry, LineString, Point, Polygon
from django.core.exceptions import ValidationError
from django.db import transaction

from fleet.mine import services
from fleet.mine.models import (
    Area,
    DumpPoint,
    LoadingUnit,
    PolicyZone,
    RoadNetwork,
    RoadNode,
    Site,
    Way,
)

FORMAT_VERSION = 1


# --- export ------------------------------------------------------------------------------------


def _xyz(point: Point, elevation: float) -> list[float]:
    return [point.x, point.y, elevation]


def _feature(geometry: dict, properties: dict, feature_id: Any = None) -> dict:
    feature: dict[str, Any] = {"type": "Feature", "geometry": geometry, "properties": properties}
    if feature_id is not None:
        feature["id"] = feature_id
    return feature


def _geojson(geometry: GEOSGeometry) -> dict:
    return json.loads(geometry.geojson)


def export_site_map(site: Site, network: RoadNetwork | None = None) -> dict:
    """The site's map: the given road-network revision (default: the active one), the zones that
    are not deleted, destinations and areas."""
    network = network or site.active_network
    features = [
        _feature(_geojson(site.boundary), {"featureType": "siteBoundary", "name": site.name})
    ]
    if network is not None:
        for node in network.nodes.all():
            features.append(
                _feature(
                    {"type": "Point", "coordinates": _xyz(node.location, node.elevation_m)},
                    {"featureType": "roadNode", "nodeId": node.node_id},
                    node.node_id,
                )
            )
        for way in network.ways.select_related("start_node", "end_node"):
            coords = [
                [x, y, z] for (x, y), z in zip(way.geometry.coords, way.elevations_m, strict=True)
            ]
            features.append(
                _feature(
                    {"type": "LineString", "coordinates": coords},
                    {
                        "featureType": "way",
                        "wayId": way.way_id,
                        "name": way.name,
                        "startNode": way.start_node.node_id,
                        "endNode": way.end_node.node_id,
                        "operatingSpeedKmh": way.operating_speed_kmh,
                        "oneLane": way.one_lane,
                        "lengthM": round(way.length_m, 1),
                        "gradePct": round(way.grade_pct, 2),
                    },
                    way.way_id,
                )
            )
    for zone in site.zones.exclude(status=PolicyZone.Status.DELETED):
        feature = zone.to_feature()
        feature["featureType"] = "policyZone"
        feature["status"] = zone.status
        features.append(feature)
    for unit in site.loading_units.all():
        features.append(
            _feature(
                {"type": "Point", "coordinates": _xyz(unit.location, unit.elevation_m)},
                {
                    "featureType": "loadingUnit",
                    "name": unit.name,
                    "loadingRateTph": unit.loading_rate_tph,
                    "material": unit.material,
                    "equipmentId": str(unit.equipment_id) if unit.equipment_id else None,
                },
            )
        )
    for dump in site.dump_points.all():
        features.append(
            _feature(
                {"type": "Point", "coordinates": _xyz(dump.location, dump.elevation_m)},
                {
                    "featureType": "dumpPoint",
                    "name": dump.name,
                    "kind": dump.kind,
                    "capacityTph": dump.capacity_tph,
                },
            )
        )
    for area in site.areas.all():
        features.append(
            _feature(
                _geojson(area.geometry),
                {"featureType": "area", "name": area.name, "kind": area.kind},
            )
        )
    return {
        "type": "FeatureCollection",
        "haulmind": {
            "format": FORMAT_VERSION,
            "site": {
                "name": site.name,
                "slug": site.slug,
                "utmSrid": site.utm_srid,
                "defaultSpeedKmh": site.default_speed_kmh,
            },
            "roadNetwork": {"revision": network.revision, "note": network.note}
            if network
            else None,
        },
        "features": features,
    }


# --- import ------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    site: Site
    created_site: bool = False
    network: RoadNetwork | None = None
    created_network: bool = False
    zones_created: int = 0
    zones_unchanged: int = 0
    destinations: int = 0
    areas: int = 0
    warnings: list[str] = field(default_factory=list)


class MapFileError(ValidationError):
    """The map file is refused; ``messages`` name the feature and the reason."""


def _geometry(raw: Any, expected: type, where: str) -> tuple[GEOSGeometry, list[float]]:
    """A 2D WGS84 geometry and the elevations of its vertices (the third coordinate)."""
    if not isinstance(raw, dict) or raw.get("type") != expected.__name__:
        raise ValidationError(f"{where}: geometry must be a GeoJSON {expected.__name__}")
    try:
        geometry = GEOSGeometry(json.dumps(raw), srid=4326)
    except (GEOSException, ValueError, TypeError) as exc:
        raise ValidationError(f"{where}: geometry is not readable ({exc})") from None
    elevations = [c[2] if len(c) > 2 else None for c in _vertices(raw)]
    if geometry.hasz:
        geometry = _drop_z(geometry)
    return geometry, elevations


def _vertices(raw: dict) -> list[list[float]]:
    coords = raw["coordinates"]
    if raw["type"] == "Point":
        return [coords]
    if raw["type"] == "LineString":
        return coords
    return coords[0]  # Polygon: its exterior ring


def _drop_z(geometry: GEOSGeometry) -> GEOSGeometry:
    if isinstance(geometry, Point):
        return Point(geometry.x, geometry.y, srid=4326)
    if isinstance(geometry, LineString):
        return LineString([c[:2] for c in geometry.coords], srid=4326)
    return Polygon(*[[c[:2] for c in ring] for ring in geometry.coords], srid=4326)


def _elevation(elevations: list[float | None], where: str) -> float:
    if not elevations or elevations[0] is None:
        raise ValidationError(f"{where}: a point needs its elevation as the third coordinate")
    return float(elevations[0])


@transaction.atomic
def import_site_map(
    collection: Any, *, user: User | None = None, activate: bool = True
) -> ImportReport:
    """Create or update a site from a map file. Roads become a new revision only when they
    differ from the active one; zones new to the site are created Pending (then activated when
    ``activate``); destinations and areas are matched by name. All or nothing."""
    if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection":
        raise MapFileError("a map file is a GeoJSON FeatureCollection")
    meta = collection.get("haulmind") or {}
    if meta.get("format") != FORMAT_VERSION:
        raise MapFileError(f"haulmind.format must be {FORMAT_VERSION}")
    features = collection.get("features")
    if not isinstance(features, list):
        raise MapFileError("features must be a list")
    by_type: dict[str, list[tuple[int, dict]]] = {}
    for index, feature in enumerate(features):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise MapFileError(f"features[{index}] is not a GeoJSON Feature")
        kind = feature.get("featureType") or (feature.get("properties") or {}).get("featureType")
        by_type.setdefault(kind, []).append((index, feature))
    unknown = set(by_type) - {
        "siteBoundary",
        "roadNode",
        "way",
        "policyZone",
        "loadingUnit",
        "dumpPoint",
        "area",
    }
    if unknown:
        raise MapFileError(f"unknown featureType: {', '.join(sorted(map(str, unknown)))}")

    errors: list[str] = []
    report = _import_site(meta.get("site") or {}, by_type.get("siteBoundary", []))
    steps = (
        lambda: _import_roads(report, meta.get("roadNetwork") or {}, by_type),
        lambda: _import_destinations(report, by_type),
        lambda: _import_zones(report, by_type.get("policyZone", []), user, activate),
    )
    for step in steps:
        try:
            step()
        except ValidationError as exc:
            errors.extend(exc.messages)
    if errors:
        raise MapFileError(errors)
    return report


def _import_site(meta: dict, boundaries: list[tuple[int, dict]]) -> ImportReport:
    if len(boundaries) != 1:
        raise MapFileError("a map file has exactly one siteBoundary feature")
    index, feature = boundaries[0]
    boundary, _ = _geometry(feature["geometry"], Polygon, f"features[{index}] (siteBoundary)")
    fields = {
        "name": meta.get("name"),
        "utm_srid": meta.get("utmSrid"),
        "boundary": boundary,
        "default_speed_kmh": meta.get("defaultSpeedKmh", 40.0),
    }
    site = Site.objects.filter(slug=meta.get("slug")).first()
    created = site is None
    site = site or Site(slug=meta.get("slug"))
    for name, value in fields.items():
        setattr(site, name, value)
    try:
        site.full_clean()
    except ValidationError as exc:
        raise MapFileError([f"haulmind.site: {m}" for m in exc.messages]) from None
    site.save()
    return ImportReport(site=site, created_site=created)


def _road_signature(nodes: dict[int, tuple], ways: list[tuple]) -> tuple:
    return (tuple(sorted(nodes.items())), tuple(sorted(ways)))


def _network_signature(network: RoadNetwork) -> tuple:
    nodes = {
        n.node_id: (round(n.location.x, 7), round(n.location.y, 7), round(n.elevation_m, 2))
        for n in network.nodes.all()
    }
    ways = [
        (
            w.way_id,
            w.name,
            w.start_node.node_id,
            w.end_node.node_id,
            tuple(
                (round(x, 7), round(y, 7), round(z, 2))
                for (x, y), z in zip(w.geometry.coords, w.elevations_m, strict=True)
            ),
            w.operating_speed_kmh,
            w.one_lane,
        )
        for w in network.ways.select_related("start_node", "end_node")
    ]
    return _road_signature(nodes, ways)


def _import_roads(report: ImportReport, meta: dict, by_type: dict) -> None:
    nodes: dict[int, tuple] = {}
    for index, feature in by_type.get("roadNode", []):
        where = f"features[{index}] (roadNode)"
        point, elevations = _geometry(feature["geometry"], Point, where)
        node_id = (feature.get("properties") or {}).get("nodeId")
        if not isinstance(node_id, int) or node_id < 0 or node_id in nodes:
            raise ValidationError(f"{where}: nodeId must be a unique non-negative integer")
        nodes[node_id] = (
            round(point.x, 7),
            round(point.y, 7),
            round(_elevation(elevations, where), 2),
        )
    ways: list[tuple] = []
    seen: set[int] = set()
    for index, feature in by_type.get("way", []):
        where = f"features[{index}] (way)"
        props = feature.get("properties") or {}
        line, elevations = _geometry(feature["geometry"], LineString, where)
        if any(z is None for z in elevations):
            raise ValidationError(
                f"{where}: every vertex needs its elevation as the third coordinate"
            )
        way_id = props.get("wayId")
        if not isinstance(way_id, int) or way_id < 0 or way_id in seen:
            raise ValidationError(f"{where}: wayId must be a unique non-negative integer")
        seen.add(way_id)
        start, end = props.get("startNode"), props.get("endNode")
        if start not in nodes or end not in nodes:
            raise ValidationError(f"{where}: startNode and endNode must name roadNode features")
        ways.append(
            (
                way_id,
                props.get("name") or "",
                start,
                end,
                tuple(
                    (round(x, 7), round(y, 7), round(z, 2))
                    for (x, y), z in zip(line.coords, elevations, strict=True)
                ),
                props.get("operatingSpeedKmh"),
                bool(props.get("oneLane", False)),
            )
        )
    if not ways:
        return
    site = report.site
    active = site.active_network
    if active is not None and _network_signature(active) == _road_signature(nodes, ways):
        report.network = active
        return
    latest = site.road_networks.order_by("-revision").first()
    network = RoadNetwork.objects.create(
        site=site, revision=(latest.revision + 1) if latest else 1, note=meta.get("note", "")[:200]
    )
    node_rows = {
        node_id: RoadNode.objects.create(
            network=network, node_id=node_id, location=Point(x, y, srid=4326), elevation_m=z
        )
        for node_id, (x, y, z) in nodes.items()
    }
    for way_id, name, start, end, coords, speed, one_lane in ways:
        way = Way(
            network=network,
            way_id=way_id,
            name=name,
            geometry=LineString([c[:2] for c in coords], srid=4326),
            elevations_m=[c[2] for c in coords],
            start_node=node_rows[start],
            end_node=node_rows[end],
            operating_speed_kmh=speed,
            one_lane=one_lane,
        )
        way.full_clean(exclude=["network", "start_node", "end_node"])
        way.save()
    report.network = services.activate_road_network(network)
    report.created_network = True


def _import_destinations(report: ImportReport, by_type: dict) -> None:
    site = report.site
    for index, feature in by_type.get("loadingUnit", []):
        where = f"features[{index}] (loadingUnit)"
        props = feature.get("properties") or {}
        point, elevations = _geometry(feature["geometry"], Point, where)
        _save_named(
            LoadingUnit,
            site,
            props.get("name"),
            where,
            location=point,
            elevation_m=_elevation(elevations, where),
            loading_rate_tph=props.get("loadingRateTph"),
            material=props.get("material"),
            equipment_id=props.get("equipmentId"),
        )
        report.destinations += 1
    for index, feature in by_type.get("dumpPoint", []):
        where = f"features[{index}] (dumpPoint)"
        props = feature.get("properties") or {}
        point, elevations = _geometry(feature["geometry"], Point, where)
        _save_named(
            DumpPoint,
            site,
            props.get("name"),
            where,
            location=point,
            elevation_m=_elevation(elevations, where),
            kind=props.get("kind"),
            capacity_tph=props.get("capacityTph"),
        )
        report.destinations += 1
    for index, feature in by_type.get("area", []):
        where = f"features[{index}] (area)"
        props = feature.get("properties") or {}
        polygon, _ = _geometry(feature["geometry"], Polygon, where)
        _save_named(Area, site, props.get("name"), where, geometry=polygon, kind=props.get("kind"))
        report.areas += 1


def _save_named(model: type, site: Site, name: Any, where: str, **values: Any) -> None:
    instance = model.objects.filter(site=site, name=name).first() or model(site=site, name=name)
    for key, value in values.items():
        setattr(instance, key, value)
    try:
        instance.full_clean()
    except ValidationError as exc:
        raise ValidationError([f"{where} {name!r}: {m}" for m in exc.messages]) from None
    instance.save()


def _import_zones(
    report: ImportReport, zones: list[tuple[int, dict]], user: User | None, activate: bool
) -> None:
    errors: list[str] = []
    for index, feature in zones:
        where = f"features[{index}] (policyZone)"
        props = feature.get("properties") or {}
        try:
            zone_id = uuid.UUID(str(feature.get("id")))
        except ValueError:
            errors.append(f"{where}: id must be the ZoneId UUID")
            continue
        if PolicyZone.objects.filter(pk=zone_id).exists():
            report.zones_unchanged += 1  # zones are never edited in place
            continue
        try:
            polygon, _ = _geometry(feature["geometry"], Polygon, where)
            zone = services.create_zone(
                zone_id=zone_id,
                site=report.site,
                name=props.get("name") or "",
                geometry=polygon,
                policies=props.get("policies"),
                created_by=user,
            )
        except ValidationError as exc:
            errors.extend(f"{where} {props.get('name')!r}: {m}" for m in exc.messages)
            continue
        if activate and feature.get("status", "active") == PolicyZone.Status.ACTIVE:
            services.activate_zone(zone)
        report.zones_created += 1
    if errors:
        raise ValidationError(errors)
