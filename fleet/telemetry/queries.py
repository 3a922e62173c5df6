"""Read side of the history for operators: tracks, spatial queries at a time, paged history.
Raw SQL where PostGIS does the work (line building, simplification in metres, containment)."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.contrib.gis.geos import GEOSGeometry
from django.db import connection
from django.db.models import Q

from fleet.telemetry.latest import health_summary
from fleet.telemetry.models import EVENT_TIME_ORDER, TIME_ORDER, Event, Position

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
    SELECT location, {time_column} AS at, {tie} AS tie FROM {table}
    WHERE equipment_id = %(truck)s AND {time_column} >= %(start)s AND {time_column} < %(end)s
), line AS (
    SELECT ST_MakeLine(location ORDER BY at, tie) AS geom, count(*) AS n, min(at) AS first,
        max(at) AS last
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
    # Positions that share a Timestamp follow each other in HeaderId order, then arrival.
    table, column, tie = (
        ("telemetry_position_minute", "minute", "0")
        if options.from_rollups
        else ("telemetry_position", "sent_at", "(sequence, received_at)")
    )
    sql = _TRACK_SQL.format(table=table, time_column=column, tie=tie)
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
ORDER BY equipment_id, sent_at DESC, sequence DESC, received_at DESC
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


# --- paged history -----------------------------------------------------------------------------
# A page ends at a row's place in time order (models.TIME_ORDER, EVENT_TIME_ORDER), which is its
# whole identity for one truck: a page boundary between rows of the same millisecond loses none
# and repeats none. Clients get it as an opaque token (``next``), never as parts to assemble.

_DATETIME_FIELDS = {"sent_at", "received_at"}
_INT_FIELDS = {"sequence", "body_digest"}


def cursor_token(row: Position | Event, fields: tuple[str, ...]) -> str:
    values = [getattr(row, name) for name in fields]
    encoded = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(orjson.dumps(encoded)).decode().rstrip("=")


def read_cursor(token: str, fields: tuple[str, ...]) -> tuple[Any, ...]:
    """The values a ``cursor_token`` holds; ``QueryError`` for anything else."""
    try:
        encoded = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(encoded, list) or len(encoded) != len(fields):
            raise ValueError
        return tuple(
            _cursor_value(name, value) for name, value in zip(fields, encoded, strict=True)
        )
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise QueryError("not a cursor this endpoint gave: use the `next` link as it is") from None


def _cursor_value(name: str, value: Any) -> Any:
    if name in _DATETIME_FIELDS:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError
        return parsed
    if name in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError
        return value
    if not isinstance(value, str):
        raise ValueError
    return value


def after_in_order(fields: tuple[str, ...], values: tuple[Any, ...]) -> Q:
    """Rows strictly after ``values`` in the lexicographic order of ``fields``."""
    condition, equal = Q(), {}
    for name, value in zip(fields, values, strict=True):
        condition |= Q(**equal, **{f"{name}__gt": value})
        equal[name] = value
    return condition


def _page(
    rows: Any, fields: tuple[str, ...], cursor: str | None, limit: int
) -> tuple[list, str | None]:
    limit = max(1, min(limit, MAX_PAGE))
    if cursor is not None:
        rows = rows.filter(after_in_order(fields, read_cursor(cursor, fields)))
    page = list(rows.order_by(*fields)[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return page, cursor_token(page[-1], fields) if more else None


def positions_page(
    equipment_id: uuid.UUID, start: datetime, end: datetime, cursor: str | None, limit: int
) -> tuple[list[Position], str | None]:
    """Raw positions in time order, a page at a time, and the cursor of the next page."""
    rows = Position.objects.filter(equipment_id=equipment_id, sent_at__gte=start, sent_at__lt=end)
    return _page(rows, TIME_ORDER, cursor, limit)


def events_page(
    equipment_id: uuid.UUID,
    start: datetime,
    end: datetime,
    cursor: str | None,
    limit: int,
    message_name: str | None = None,
) -> tuple[list[Event], str | None]:
    """Other truck messages in time order, a page at a time, and the cursor of the next page."""
    rows = Event.objects.filter(equipment_id=equipment_id, sent_at__gte=start, sent_at__lt=end)
    if message_name:
        rows = rows.filter(message_name=message_name)
    return _page(rows, EVENT_TIME_ORDER, cursor, limit)


# --- a truck's recent series (the machine detail's charts) --------------------------------------

MAX_SERIES_RANGE = timedelta(hours=1)
MAX_SERIES_POINTS = 3600

# Mean speed per step. Late (back-filled) positions count: this is history, not the live picture.
_SPEED_SERIES_SQL = """
SELECT date_bin(%(step)s, sent_at, %(start)s) AS bucket, avg(speed_kmh)
FROM telemetry_position
WHERE equipment_id = %(truck)s AND sent_at >= %(start)s AND sent_at < %(end)s
GROUP BY bucket ORDER BY bucket
"""
# The newest health reading of each step (a truck sends one a second).
_HEALTH_SERIES_SQL = """
SELECT DISTINCT ON (bucket) date_bin(%(step)s, sent_at, %(start)s) AS bucket, sent_at, body
FROM telemetry_event
WHERE equipment_id = %(truck)s AND message_name = 'BasicMachineHealthV2'
    AND sent_at >= %(start)s AND sent_at < %(end)s
ORDER BY bucket, sent_at DESC, sequence DESC
"""


@dataclass(frozen=True)
class SeriesRange:
    start: datetime
    end: datetime
    step: timedelta

    def checked(self) -> SeriesRange:
        if self.end <= self.start:
            raise QueryError("'to' must be after 'from'")
        if self.end - self.start > MAX_SERIES_RANGE:
            raise QueryError(f"a series covers at most {MAX_SERIES_RANGE} (h:mm:ss)")
        if self.step <= timedelta(0) or (self.end - self.start) / self.step > MAX_SERIES_POINTS:
            raise QueryError(f"at most {MAX_SERIES_POINTS} steps: choose a longer step")
        return self


def truck_series(equipment_id: uuid.UUID, span: SeriesRange) -> dict[str, list[dict[str, Any]]]:
    """A truck's speed (mean per step) and charted health readings (the newest per step) over a
    short range: what the machine detail draws before the live feed takes over."""
    span = span.checked()
    args = {"truck": equipment_id, "start": span.start, "end": span.end, "step": span.step}
    with connection.cursor() as cursor:
        cursor.execute(_SPEED_SERIES_SQL, args)
        speed = cursor.fetchall()
        cursor.execute(_HEALTH_SERIES_SQL, args)
        health = cursor.fetchall()
    return {
        "speed": [
            {"at": at, "speedKmh": None if kmh is None else round(float(kmh), 2)}
            for at, kmh in speed
        ],
        "health": [
            health_summary(sent_at, body if isinstance(body, dict) else orjson.loads(body))
            for _, sent_at, body in health
        ],
    }


# --- bulk reads for analyses (benchmarks) ------------------------------------------------------

_FLEET_POSITIONS_SQL = """
SELECT equipment_id, extract(epoch FROM coalesce(measured_at, sent_at)), ST_X(location),
    ST_Y(location), speed_kmh, heading_deg
FROM telemetry_position
WHERE equipment_id = ANY(%(trucks)s) AND sent_at >= %(start)s AND sent_at < %(end)s
ORDER BY equipment_id, sent_at, sequence
"""


def fleet_positions(
    trucks: list[uuid.UUID], start: datetime, end: datetime
) -> list[tuple[uuid.UUID, float, float, float, float, int]]:
    """Every stored position of ``trucks`` sent in [start, end), per truck in time order:
    (truck, measured at (epoch s; the envelope's time where the body has none), longitude,
    latitude, speed km/h, heading). Hundreds of thousands of rows: plain tuples, no ORM
    instances."""
    with connection.cursor() as cursor:
        cursor.execute(_FLEET_POSITIONS_SQL, {"trucks": trucks, "start": start, "end": end})
        return [(row[0], float(row[1]), *row[2:]) for row in cursor.fetchall()]


def fleet_events(
    trucks: list[uuid.UUID], names: list[str], start: datetime, end: datetime
) -> list[tuple[uuid.UUID, datetime, str, Any]]:
    """The stored ``names`` messages of ``trucks`` sent in [start, end), per truck in time
    order: (truck, sent at, message name, body)."""
    return list(
        Event.objects.filter(
            equipment_id__in=trucks, message_name__in=names, sent_at__gte=start, sent_at__lt=end
        )
        .order_by("equipment_id", "sent_at", "sequence")
        .values_list("equipment_id", "sent_at", "message_name", "body")
    )


# --- replay ------------------------------------------------------------------------------------

_REPLAY_RECORDED_SQL = """
SELECT (extract(epoch FROM sent_at) * 1000)::bigint, equipment_id, ST_X(location),
    ST_Y(location), heading_deg, speed_kmh
FROM telemetry_position
WHERE equipment_id = ANY(%(trucks)s) AND sent_at >= %(start)s AND sent_at < %(end)s AND NOT late
ORDER BY sent_at, sequence
"""
_REPLAY_MINUTE_SQL = """
SELECT (extract(epoch FROM minute) * 1000)::bigint, equipment_id, ST_X(location),
    ST_Y(location), NULL, mean_speed_kmh
FROM telemetry_position_minute
WHERE equipment_id = ANY(%(trucks)s) AND minute >= %(start)s AND minute < %(end)s
ORDER BY minute
"""
RECORDED, MINUTE = "recorded", "minute"


def replay_positions(
    trucks: list[uuid.UUID], start: datetime, end: datetime, resolution: str
) -> list[tuple[int, uuid.UUID, float, float, int | None, float]]:
    """The fleet's positions in [start, end) in time order, for playing it back: as recorded
    (late back-fills left out: the live picture never had them) or one per truck and minute
    from the roll-ups (its last position, mean speed). Rows: (epoch ms, truck, longitude,
    latitude, heading or None, speed km/h)."""
    sql = _REPLAY_RECORDED_SQL if resolution == RECORDED else _REPLAY_MINUTE_SQL
    with connection.cursor() as cursor:
        cursor.execute(sql, {"trucks": trucks, "start": start, "end": end})
        return cursor.fetchall()


_ARRIVAL_LAG_SQL = """
SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY lag), max(lag)
FROM (
    SELECT extract(epoch FROM received_at - sent_at) AS lag FROM telemetry_position
    WHERE equipment_id = ANY(%(trucks)s) AND sent_at >= %(start)s AND sent_at < %(end)s
) AS lags
"""


def arrival_lag(trucks: list[uuid.UUID], start: datetime, end: datetime) -> dict[str, float | None]:
    """Seconds from a position's envelope Timestamp to its arrival at ingest (p50, p99, max)
    for ``trucks``' positions sent in [start, end): how far behind the live rules were."""
    with connection.cursor() as cursor:
        cursor.execute(_ARRIVAL_LAG_SQL, {"trucks": trucks, "start": start, "end": end})
        quantiles, top = cursor.fetchone()
    if top is None:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(float(quantiles[0]), 2),
        "p99": round(float(quantiles[1]), 2),
        "max": round(float(top), 2),
    }


# --- live serving: the history a truck's rolling buffer lacks ----------------------------------
#
# Live serving keeps each truck's recent telemetry in memory (fleet.learning.recent) and reads
# the history only to fill a gap: a truck first seen after a restart, a reconnect, messages that
# another ingest replica received. Each truck is read from its own start (``since``), in one
# query for all of them.

_RECENT_POSITIONS_SQL = """
SELECT DISTINCT ON (p.equipment_id, second) p.equipment_id, second, lon, lat, heading_deg,
    speed_kmh, elevation_m, sent_ms, sequence
FROM (
    SELECT p.equipment_id, p.sent_at, p.sequence, p.received_at,
        floor(extract(epoch FROM p.sent_at))::bigint AS second,
        floor(extract(epoch FROM p.sent_at) * 1000)::bigint AS sent_ms,
        ST_X(p.location) AS lon, ST_Y(p.location) AS lat, p.heading_deg, p.speed_kmh,
        p.elevation_m
    FROM unnest(%(trucks)s::uuid[], %(since)s::timestamptz[]) AS w(equipment_id, since)
    JOIN telemetry_position p ON p.equipment_id = w.equipment_id AND p.sent_at >= w.since
        AND p.sent_at >= %(earliest)s
) p
ORDER BY p.equipment_id, second, sent_at DESC, sequence DESC, received_at DESC
"""

_RECENT_EVENTS_SQL = """
SELECT e.equipment_id, floor(extract(epoch FROM e.sent_at) * 1000)::bigint, e.sequence, e.body
FROM unnest(%(trucks)s::uuid[], %(since)s::timestamptz[]) AS w(equipment_id, since)
JOIN telemetry_event e ON e.equipment_id = w.equipment_id AND e.sent_at >= w.since
    AND e.sent_at >= %(earliest)s
WHERE e.message_name = %(name)s
ORDER BY e.equipment_id, e.sent_at, e.sequence, e.received_at
"""


def _since_params(since: dict[uuid.UUID, datetime]) -> dict[str, Any]:
    trucks = list(since)
    return {
        "trucks": trucks,
        "since": [since[truck] for truck in trucks],
        # A constant bound as well, so the planner prunes the day partitions before it.
        "earliest": min(since.values()),
    }


def recent_positions(since: dict[uuid.UUID, datetime]) -> list[tuple]:
    """Each truck's stored positions sent at or after its own ``since``, the last of each
    second (by sent_at, then HeaderId, then arrival): rows (truck, second, lon, lat,
    heading_deg, speed_kmh, elevation_m, sent_ms, sequence), per truck in time order."""
    if not since:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_RECENT_POSITIONS_SQL, _since_params(since))
        return cursor.fetchall()


def recent_events(since: dict[uuid.UUID, datetime], name: str) -> list[tuple]:
    """Each truck's stored ``name`` messages sent at or after its own ``since``: rows (truck,
    sent_ms, sequence, body), per truck in the order they were sent."""
    if not since:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_RECENT_EVENTS_SQL, {**_since_params(since), "name": name})
        return cursor.fetchall()


# --- live ETA: production states, stops and payloads (fleet.learning.routes) -------------------

_STATE_SQL = """
SELECT DISTINCT ON (equipment_id) equipment_id, body->>'ProductionState', body->>'WayId'
FROM telemetry_event
WHERE equipment_id = ANY(%(trucks)s) AND message_name = %(state)s
    AND sent_at >= %(since)s AND sent_at <= %(until)s
ORDER BY equipment_id, sent_at DESC, sequence DESC, received_at DESC
"""

_STOPS_SQL = """
SELECT s.equipment_id, s.kind, s.sent_at, ST_X(p.location), ST_Y(p.location)
FROM (
    SELECT DISTINCT ON (equipment_id, body->>'ProductionState') equipment_id,
        body->>'ProductionState' AS kind, sent_at
    FROM telemetry_event
    WHERE equipment_id = ANY(%(trucks)s) AND message_name = %(state)s
        AND sent_at >= %(since)s AND sent_at <= %(until)s
        AND body->>'ProductionState' IN ('Loading', 'Dumping')
    ORDER BY equipment_id, body->>'ProductionState', sent_at DESC, sequence DESC, received_at DESC
) s
LEFT JOIN LATERAL (
    SELECT location FROM telemetry_position p
    WHERE p.equipment_id = s.equipment_id
        AND p.sent_at BETWEEN s.sent_at - %(fix)s AND s.sent_at + %(fix)s
    ORDER BY abs(extract(epoch FROM p.sent_at - s.sent_at)), p.sent_at
    LIMIT 1
) p ON true
"""

_PAYLOAD_SQL = """
SELECT DISTINCT ON (equipment_id) equipment_id, body->>'PayloadWeight'
FROM telemetry_event
WHERE equipment_id = ANY(%(trucks)s) AND message_name = %(payload)s
    AND sent_at >= %(since)s AND sent_at <= %(until)s
ORDER BY equipment_id, sent_at DESC, sequence DESC, received_at DESC
"""


def production_of(params: dict[str, Any]) -> tuple[dict, dict, dict]:
    """For ``params["trucks"]`` over [since, until]: their latest production state
    (truck -> (ProductionState, WayId text)), their last Loading and Dumping with the fix
    nearest each within ``fix`` ((truck, kind) -> (sent_at, lon, lat)), and their last payload
    (truck -> PayloadWeight text). ``params``: trucks, since, until, state and payload (the
    message names), fix (a timedelta)."""
    with connection.cursor() as cursor:
        cursor.execute(_STATE_SQL, params)
        states = {row[0]: row[1:] for row in cursor.fetchall()}
        cursor.execute(_STOPS_SQL, params)
        stops = {(row[0], row[1]): row[2:] for row in cursor.fetchall()}
        cursor.execute(_PAYLOAD_SQL, params)
        payloads = {row[0]: row[1] for row in cursor.fetchall()}
    return states, stops, payloads


_HISTORY_SQL = """
SELECT e.equipment_id, floor(extract(epoch FROM e.sent_at))::bigint,
    e.body->>'ProductionState', e.body->>'WayId'
FROM telemetry_event e JOIN vehicles_equipment q ON q.id = e.equipment_id
WHERE q.site_id = %(site)s AND e.message_name = %(state)s
    AND e.sent_at >= %(since)s AND e.sent_at <= %(until)s
ORDER BY e.equipment_id, e.sent_at
"""

_ARRIVALS_SQL = """
SELECT a.equipment_id, a.second, ST_X(p.location), ST_Y(p.location)
FROM unnest(%(trucks)s::uuid[], %(seconds)s::bigint[]) AS a(equipment_id, second)
LEFT JOIN LATERAL (
    SELECT location FROM telemetry_position p
    WHERE p.equipment_id = a.equipment_id
        AND p.sent_at BETWEEN to_timestamp(a.second) - %(fix)s AND to_timestamp(a.second) + %(fix)s
    ORDER BY abs(extract(epoch FROM p.sent_at) - a.second), p.sent_at
    LIMIT 1
) p ON true
"""


def site_production_states(params: dict[str, Any]) -> list[tuple]:
    """A site's (``params["site"]``) production states over [since, until] (message name
    ``state``): rows (truck, second, ProductionState, WayId text), per truck in time order."""
    with connection.cursor() as cursor:
        cursor.execute(_HISTORY_SQL, params)
        return cursor.fetchall()


def fixes_near(params: dict[str, Any]) -> dict[tuple[uuid.UUID, int], tuple]:
    """The fix nearest each (truck, epoch second) of ``params["trucks"]`` /
    ``params["seconds"]`` within ``params["fix"]``: (truck, second) -> (lon, lat), None where
    there is none."""
    with connection.cursor() as cursor:
        cursor.execute(_ARRIVALS_SQL, params)
        return {(row[0], int(row[1])): row[2:] for row in cursor.fetchall()}


# --- scoring and on-site training: payload readings and position fixes (fleet.learning) --------

_PAYLOAD_READINGS_SQL = """
SELECT equipment_id, extract(epoch FROM sent_at), (body->>'PayloadWeight')::float
FROM telemetry_event
WHERE equipment_id = ANY(%(trucks)s) AND message_name = 'HaulTruckPayloadV1'
    AND sent_at >= %(since)s AND sent_at <= %(until)s AND body ? 'PayloadWeight'
ORDER BY equipment_id, sent_at
"""

_POSITION_FIXES_SQL = """
SELECT equipment_id, extract(epoch FROM sent_at), ST_X(location), ST_Y(location)
FROM telemetry_position
WHERE equipment_id = ANY(%(trucks)s) AND sent_at >= %(since)s AND sent_at <= %(until)s
ORDER BY equipment_id, sent_at
"""


def payload_readings(
    trucks: list[uuid.UUID], since: datetime, until: datetime
) -> list[tuple[uuid.UUID, float, float]]:
    """The on-board meter's readings (HaulTruckPayloadV1's PayloadWeight) sent in
    [since, until]: rows (truck, epoch seconds, tonnes), per truck in time order."""
    if not trucks:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_PAYLOAD_READINGS_SQL, {"trucks": trucks, "since": since, "until": until})
        return [(truck, float(at), float(value)) for truck, at, value in cursor.fetchall()]


def position_fixes(
    trucks: list[uuid.UUID], since: datetime, until: datetime
) -> list[tuple[uuid.UUID, float, float, float]]:
    """Every stored position sent in [since, until]: rows (truck, epoch seconds, lon, lat),
    per truck in time order."""
    if not trucks:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_POSITION_FIXES_SQL, {"trucks": trucks, "since": since, "until": until})
        return [
            (truck, float(at), float(lon), float(lat)) for truck, at, lon, lat in cursor.fetchall()
        ]
