"""Read side of the history for operators: tracks, spatial queries at a time, paged history.
Raw SQL where PostGIS does the work (line building, simplification in metres, containment)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.contrib.gis.geos import GEOSGeometry
from django.db import connection
from django.db.models import Q

from fleet.telemetry.models import Event, Position

# Beyond this range a track is drawn from the one-minute roll-ups, not from raw positions
# (a day at 10 Hz is 864,000 points per truck; a browser wants a few thousand).
RAW_TRACK_LIMIT = timedelta(hours=6)
MAX_TRACK_RANGE = timedelta(days=7)
MAX_PAGE = 5000


class QueryError(ValueError):
    """A request the history cannot answer as asked (the message says why)."""


@dataclass(frozen=True)
class TrackOptions:
    start: datetime
    end: datetime
    utm_srid: int
    tolerance_m: float | None = None  # None: chosen from the range

    def checked(self) -> TrackOptions:
        if self.end <= self.start:
            raise QueryError("'to' must be after 'from'")
        if self.end - self.start > MAX_TRACK_RANGE:
            raise QueryError(f"a track covers at most {MAX_TRACK_RANGE.days} days")
        if self.tolerance_m is not None and not 0 <= self.tolerance_m <= 500:
            raise QueryError("simplify must be between 0 and 500 metres")
        return self

    @property
    def from_rollups(self) -> bool:
        return self.end - self.start > RAW_TRACK_LIMIT

    @property
    def tolerance(self) -> float:
        if self.tolerance_m is not None:
            return self.tolerance_m
        span = self.end - self.start
        if span <= timedelta(minutes=15):
            return 0.0
        return 2.0 if span <= RAW_TRACK_LIMIT else 10.0


_TRACK_SQL = """
WITH points AS (
    SELECT location, {time_column} AS at FROM {table}
    WHERE equipment_id = %(truck)s AND {time_column} >= %(start)s AND {time_column} < %(end)s
), line AS (
    SELECT ST_MakeLine(location ORDER BY at) AS geom, count(*) AS n, min(at) AS first, max(at) AS last
    FROM points
)
SELECT n, first, last,
    ST_AsGeoJSON(CASE WHEN n > 1 AND %(tolerance)s > 0
        THEN ST_Transform(ST_Simplify(ST_Transform(geom, %(srid)s), %(tolerance)s), 4326)
        ELSE geom END, 7)
FROM line
"""


def track(equipment_id: uuid.UUID, options: TrackOptions) -> dict[str, Any]:
    """A truck's path over a time range as one GeoJSON Feature (LineString)."""
    options = options.checked()
    table, column = (
        ("telemetry_position_minute", "minute")
        if options.from_rollups
        else ("telemetry_position", "sent_at")
    )
    sql = _TRACK_SQL.format(table=table, time_column=column)
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            {
                "truck": equipment_id,
                "start": options.start,
                "end": options.end,
                "tolerance": options.tolerance,
                "srid": options.utm_srid,
            },
        )
        count, first, last, geometry = cursor.fetchone()
    return {
        "type": "Feature",
        "geometry": orjson.loads(geometry) if geometry else None,
        "properties": {
            "equipmentId": str(equipment_id),
            "from": options.start.isoformat(),
            "to": options.end.isoformat(),
            "firstAt": first.isoformat() if first else None,
            "lastAt": last.isoformat() if last else None,
            "samples": count,
            "source": "minute-rollups" if options.from_rollups else "positions",
            "simplifiedToleranceM": options.tolerance,
        },
    }


_IN_AREA_SQL = """
SELECT DISTINCT ON (equipment_id) equipment_id, sent_at, ST_X(location), ST_Y(location),
    speed_kmh, heading_deg, ST_Within(location, ST_GeomFromEWKT(%(area)s)) AS inside
FROM telemetry_position
WHERE sent_at > %(since)s AND sent_at <= %(at)s
ORDER BY equipment_id, sent_at DESC
"""


def trucks_in_area(area: GEOSGeometry, at: datetime, window: timedelta) -> list[dict[str, Any]]:
    """Trucks whose last known position at ``at`` (no older than ``window``) lies in ``area``."""
    if area.geom_type not in ("Polygon", "MultiPolygon") or not area.valid:
        raise QueryError("area must be a valid Polygon or MultiPolygon")
    area.srid = area.srid or 4326
    with connection.cursor() as cursor:
        cursor.execute(_IN_AREA_SQL, {"area": area.ewkt, "since": at - window, "at": at})
        rows = cursor.fetchall()
    return [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {
                "equipmentId": str(truck),
                "at": sent_at.isoformat(),
                "speedKmh": speed,
                "heading": heading,
            },
        }
        for truck, sent_at, lon, lat, speed, heading, inside in rows
        if inside
    ]


def positions_page(
    equipment_id: uuid.UUID, start: datetime, end: datetime, after: datetime | None, limit: int
) -> tuple[list[Position], datetime | None]:
    """Raw positions in time order, a page at a time; the cursor is the last ``sent_at``."""
    limit = max(1, min(limit, MAX_PAGE))
    rows = Position.objects.filter(
        equipment_id=equipment_id, sent_at__gte=after or start, sent_at__lt=end
    )
    if after is not None:
        rows = rows.filter(sent_at__gt=after)
    page = list(rows.order_by("sent_at")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return page, (page[-1].sent_at if more else None)


# An event's place in time order: (sent_at, message name, sequence), its whole key for one truck,
# so a page boundary between two events of the same millisecond loses neither.
EventCursor = tuple[datetime, str, int]


def events_page(
    equipment_id: uuid.UUID,
    start: datetime,
    end: datetime,
    after: EventCursor | None,
    limit: int,
    message_name: str | None = None,
) -> tuple[list[Event], EventCursor | None]:
    limit = max(1, min(limit, MAX_PAGE))
    rows = Event.objects.filter(equipment_id=equipment_id, sent_at__gte=start, sent_at__lt=end)
    if after is not None:
        at, name, sequence = after
        rows = rows.filter(
            Q(sent_at__gt=at)
            | Q(sent_at=at, message_name__gt=name)
            | Q(sent_at=at, message_name=name, sequence__gt=sequence)
        )
    if message_name:
        rows = rows.filter(message_name=message_name)
    page = list(rows.order_by("sent_at", "message_name", "sequence")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    last = page[-1] if more else None
    return page, (last.sent_at, last.message_name, last.sequence) if last else None
