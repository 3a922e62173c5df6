"""Live ETA inputs: the planned route to a truck's next stop and the site's per-segment table.

The ETA head's features (``features.eta_features``) are the route features of
``features.ROUTE_FEATURES`` and the site's own per-segment history (``SegmentMeanETA``, keyed
by (way, stop)). Training reads both off a simulated run; live, this module derives them from
stored telemetry (docs/models.md, "Live predictions"):

1. **Next stop.** The truck's latest HaulTruckProductionStateV2 must be one of
   ``features.MOVING_STATES`` (else ``no_stop``). If its last Loading / Dumping was Loading it
   is heading to a dump, else to a loading unit; which one: the site's service node nearest
   where it stood at its last stop of that kind (the simulator keeps a truck's loading unit,
   each unit a fixed dump). No such earlier stop within ``HISTORY_S``: ``no_stop``.
2. **Planned route** on the site's road graph (``world_for_site``, cached per road-network
   revision): the edge of the state's WayId, the last fix projected onto it, the direction
   with the shorter route onward; route = the rest of that edge + ``World.shortest_path`` to the
   stop's node. distance_left_m is its length; rise, climb and descent come from the road's
   elevation sampled along it every ``SAMPLE_M``; payload_t is the last HaulTruckPayloadV1;
   to_dump is 1 for a dump.
3. **Per-segment table**: ``SegmentMeanETA.fit`` on the site's last ``HISTORY_S`` of production
   states, resampled to 1 Hz, with ``features.next_stops`` (the training labels' own
   function), a sample every ``SAMPLE_S`` (the training stride), each stop told apart by
   ``features.nearest_destination`` of the position where the truck arrived. Cached per site
   for ``TABLE_TTL_S``.

Keys are ``features.segment_keys`` with site index 0: a live table only ever meets its own
site's keys.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import connection

from fleet.learning.features import (
    MOVING_STATES,
    STATES,
    STRIDE_S,
    SegmentMeanETA,
    eta_features,
    nearest_destination,
    next_stops,
    segment_keys,
)
from fleet.simulator.world import World, world_for_site

PRODUCTION_STATE = "HaulTruckProductionStateV2"
PAYLOAD = "HaulTruckPayloadV1"
HISTORY_S = 3 * 3600  # the per-segment table's history, and how far back a last stop is read
SAMPLE_S = STRIDE_S  # 30 s between the table's samples of one truck
TABLE_TTL_S = 300.0
SAMPLE_M = 2.0  # spacing of the elevation samples along a planned route
STOP_FIX_S = 30  # a stop's position: the fix nearest its first state event within this
LIVE_SITE = 0  # site index of the live keys (segment_keys)
_CODES = {name: code for code, name in enumerate(STATES)}
_MOVING = frozenset(STATES[code] for code in MOVING_STATES)


@dataclass(frozen=True)
class Route:
    """One truck's ETA inputs but the table: ``route`` as features.ROUTE_FEATURES, the table's
    keys, and which destination (loading units, then dumps) the stop is."""

    route: np.ndarray  # [6] float64
    segment: int
    stop: int
    dest: int


# --- the road graph, per road-network revision -------------------------------------------------

_lock = threading.Lock()
_worlds: dict[uuid.UUID, tuple[Any, World]] = {}
_tables: dict[uuid.UUID, tuple[float, Any, SegmentMeanETA]] = {}


def _network_key(site_id: uuid.UUID) -> Any:
    from fleet.mine.models import RoadNetwork

    return (
        RoadNetwork.objects.filter(site_id=site_id, status=RoadNetwork.Status.ACTIVE)
        .values_list("pk", "revision")
        .first()
    )


def site_world(site_id: uuid.UUID) -> World | None:
    """The site's road graph (its active revision), built once per revision; None without
    an active road network."""
    from fleet.mine.models import Site

    key = _network_key(site_id)
    if key is None:
        return None
    with _lock:
        cached = _worlds.get(site_id)
    if cached is not None and cached[0] == key:
        return cached[1]
    world = world_for_site(Site.objects.get(pk=site_id))
    with _lock:
        _worlds[site_id] = (key, world)
    return world


def clear_caches() -> None:
    with _lock:
        _worlds.clear()
        _tables.clear()


# --- 2. the planned route ------------------------------------------------------------------------


def project(world: World, edge: int, x: float, y: float) -> float:
    """Distance (m) along directed ``edge`` of the polyline point nearest (x, y)."""
    first, count = int(world.vert_start[edge]), int(world.vert_count[edge])
    xy = world.vert_xyz[first : first + count, :2]
    s = world.vert_s[first : first + count]
    a, b = xy[:-1], xy[1:]
    ab = b - a
    run = np.maximum((ab**2).sum(axis=1), 1e-12)
    t = np.clip(((np.array([x, y]) - a) * ab).sum(axis=1) / run, 0.0, 1.0)
    near = a + ab * t[:, None]
    i = int(np.argmin(np.hypot(near[:, 0] - x, near[:, 1] - y)))
    return float(s[i] + t[i] * (s[i + 1] - s[i]))


def _edge_len(world: World, edge: int) -> float:
    return float(world.vert_s[world.vert_start[edge] + world.vert_count[edge] - 1])


def plan(world: World, way_id: int, x: float, y: float, node: int) -> list[tuple[int, float]]:
    """The route from (x, y) on way ``way_id`` to ``node``: [(edge, from s)] (each edge then
    to its end), the direction with the shorter route onward; [] when the way is not on the
    map or the node is out of reach."""
    ways = np.flatnonzero(world.way_ids == way_id)
    if not len(ways):
        return []
    best: list[tuple[int, float]] = []
    best_m = np.inf
    for edge in (2 * int(ways[0]), 2 * int(ways[0]) + 1):
        rest = world.shortest_path(int(world.edge_to[edge]), node)
        if rest is None:
            continue
        s = project(world, edge, x, y)
        metres = _edge_len(world, edge) - s + sum(_edge_len(world, e) for e in rest)
        if metres < best_m:
            best_m, best = metres, [(edge, s), *((e, 0.0) for e in rest)]
    return best


def route_features(world: World, pieces: list[tuple[int, float]]) -> np.ndarray:
    """[5]: distance left, rise, climb, descent (m) along a planned route."""
    edges, s = [], []
    for edge, start in pieces:
        end = _edge_len(world, edge)
        n = max(int(np.ceil((end - start) / SAMPLE_M)), 1)
        edges.append(np.full(n + 1, edge))
        s.append(np.linspace(start, end, n + 1))
    xyz, _, _ = world.locate(np.concatenate(edges), np.concatenate(s))
    dz = np.diff(xyz[:, 2])
    distance = sum(_edge_len(world, edge) - start for edge, start in pieces)
    return np.array(
        [distance, xyz[-1, 2] - xyz[0, 2], dz[dz > 0].sum(), -dz[dz < 0].sum()], dtype=np.float64
    )


# --- 1. the next stop ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TruckState:
    """What the stored events say of one truck for its ETA."""

    state: str | None  # latest ProductionState
    way_id: int | None  # its WayId
    last_loading: tuple[datetime, float | None, float | None] | None  # when, lon, lat
    last_dumping: tuple[datetime, float | None, float | None] | None
    payload_t: float | None  # last HaulTruckPayloadV1


def truck_route(
    world: World, truck: TruckState, lon: float, lat: float
) -> tuple[str, Route | None]:
    """(outcome, route) of one truck at its last fix (lon, lat): ``planned`` with the route,
    else ``no_stop`` (not on its way to a stop, or no earlier stop tells which) or
    ``no_plan`` (no way to plan from, or no road to the stop), ``no_payload``."""
    if truck.state not in _MOVING:
        return "no_stop", None
    loading, dumping = truck.last_loading, truck.last_dumping
    if loading is None and dumping is None:
        return "no_stop", None
    to_dump = dumping is None or (loading is not None and loading[0] > dumping[0])
    last = dumping if to_dump else loading
    if last is None or last[1] is None or last[2] is None:
        return "no_stop", None
    at = np.array(world.frame.to_local(last[1], last[2]), dtype=float)
    dest = int(nearest_destination(world, at, "dump" if to_dump else "loading"))
    if truck.way_id is None:
        return "no_plan", None
    x, y = world.frame.to_local(lon, lat)
    dests = (*world.loading_units, *world.dumps)
    pieces = plan(world, truck.way_id, float(x), float(y), dests[dest].node)
    if not pieces:
        return "no_plan", None
    if truck.payload_t is None:
        return "no_payload", None
    route = np.concatenate([route_features(world, pieces), [truck.payload_t, float(to_dump)]])
    segment, stop = segment_keys(LIVE_SITE, np.array([truck.way_id]), np.array([dest]))
    return "planned", Route(route, int(segment[0]), int(stop[0]), dest)


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


def truck_states(trucks: Iterable[uuid.UUID], until: datetime) -> dict[uuid.UUID, TruckState]:
    """Every truck's TruckState from three queries for all of them."""
    params = {
        "trucks": list(trucks),
        "since": until - timedelta(seconds=HISTORY_S),
        "until": until,
        "state": PRODUCTION_STATE,
        "payload": PAYLOAD,
        "fix": timedelta(seconds=STOP_FIX_S),
    }
    with connection.cursor() as cursor:
        cursor.execute(_STATE_SQL, params)
        states = {row[0]: row[1:] for row in cursor.fetchall()}
        cursor.execute(_STOPS_SQL, params)
        stops = {(row[0], row[1]): row[2:] for row in cursor.fetchall()}
        cursor.execute(_PAYLOAD_SQL, params)
        payloads = {row[0]: row[1] for row in cursor.fetchall()}
    out = {}
    for truck in params["trucks"]:
        state, way = states.get(truck, (None, None))
        payload = payloads.get(truck)
        out[truck] = TruckState(
            state=state,
            way_id=None if way is None else int(way),
            last_loading=stops.get((truck, "Loading")),
            last_dumping=stops.get((truck, "Dumping")),
            payload_t=None if payload is None else float(payload),
        )
    return out


# --- 3. the per-segment table ----------------------------------------------------------------


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


def state_series(
    events: list[tuple[int, str, Any]], start: int, end: int
) -> tuple[np.ndarray, np.ndarray]:
    """([T] production-state codes, [T] WayIds) at 1 Hz over seconds [start, end] from one
    truck's (second, state, WayId) changes in time order: the last of each second, held until
    the next; -1 before the first (neither moving nor a stop) and for a missing WayId."""
    n = end - start + 1
    mark = np.full(n, -1, dtype=np.int64)  # per second, the last event in it
    codes = np.full(len(events) + 1, -1, dtype=np.int16)  # the last entry: none yet
    ways = np.full(len(events) + 1, -1, dtype=np.int64)
    for j, (second, name, way_id) in enumerate(events):
        codes[j] = _CODES.get(name, -1)
        ways[j] = -1 if way_id is None else int(way_id)
        if 0 <= int(second) - start < n:
            mark[int(second) - start] = j
    held = np.maximum.accumulate(mark)  # events are in time order
    return codes[held], ways[held]


def sample_rows(start: int, end: int) -> np.ndarray:
    """Rows of [start, end] (seconds) at which the table samples: whole multiples of SAMPLE_S."""
    first = -(-start // SAMPLE_S) * SAMPLE_S
    return np.arange(first, end + 1, SAMPLE_S, dtype=np.int64) - start


def fit_table(world: World, site_id: uuid.UUID, until: datetime) -> SegmentMeanETA:
    """The site's per-segment ETA table from its last HISTORY_S of production states."""
    end = int(until.timestamp())
    start = end - HISTORY_S + 1
    params: dict[str, Any] = {
        "site": site_id,
        "state": PRODUCTION_STATE,
        "since": datetime.fromtimestamp(start, until.tzinfo),
        "until": until,
        "fix": timedelta(seconds=STOP_FIX_S),
    }
    with connection.cursor() as cursor:
        cursor.execute(_HISTORY_SQL, params)
        rows = cursor.fetchall()
    by_truck: dict[uuid.UUID, list[tuple[int, str, Any]]] = {}
    for truck, second, name, way in rows:
        by_truck.setdefault(truck, []).append((second, name, way))
    trucks = list(by_truck)
    if not trucks:
        return SegmentMeanETA.fit(np.zeros(0), np.zeros(0), np.zeros(0))
    series = [state_series(by_truck[t], start, end) for t in trucks]
    state = np.stack([s for s, _ in series])
    way = np.stack([w for _, w in series])
    nxt = next_stops(state)
    picks = sample_rows(start, end)
    k, r = np.nonzero(nxt[:, picks] >= 0)
    r = picks[r]
    arrive = nxt[k, r]
    pairs = sorted({(int(a), int(b)) for a, b in zip(k, arrive, strict=True)})
    params["trucks"] = [trucks[a] for a, _ in pairs]
    params["seconds"] = [start + b for _, b in pairs]
    with connection.cursor() as cursor:
        cursor.execute(_ARRIVALS_SQL, params)
        fixes = {(row[0], int(row[1])): row[2:] for row in cursor.fetchall()}
    dest = np.full(len(k), -1, dtype=np.int64)
    places = {}
    for pair in pairs:
        lon, lat = fixes.get((trucks[pair[0]], start + pair[1]), (None, None))
        if lon is not None:
            xy = np.array(world.frame.to_local(lon, lat), dtype=float)
            places[pair] = int(nearest_destination(world, xy))
    for i, pair in enumerate(zip(k.tolist(), arrive.tolist(), strict=True)):
        dest[i] = places.get(pair, -1)
    segment, stop = segment_keys(LIVE_SITE, way[k, r], dest)
    return SegmentMeanETA.fit(segment, stop, (arrive - r).astype(np.float64))


def site_table(site_id: uuid.UUID, world: World, until: datetime) -> SegmentMeanETA:
    """The site's table, refitted once TABLE_TTL_S old or when the road network changes."""
    key = _network_key(site_id)
    now = time.monotonic()
    with _lock:
        cached = _tables.get(site_id)
    if cached is not None and cached[1] == key and cached[0] > now:
        return cached[2]
    table = fit_table(world, site_id, until)
    with _lock:
        _tables[site_id] = (now + TABLE_TTL_S, key, table)
    return table


# --- all of it for a round's trucks ------------------------------------------------------------


def eta_inputs(
    trucks: Mapping[uuid.UUID, tuple[uuid.UUID, float, float]], until: datetime
) -> dict[uuid.UUID, tuple[str, np.ndarray | None]]:
    """Per truck (EquipmentId -> (site id, lon, lat) of its last fix): (outcome, the ETA
    head's features [9] or None). Outcomes: ``planned``, ``no_stop``, ``no_plan``,
    ``no_payload``, ``no_history`` (the site's table has nothing yet), ``no_map``."""

    states = truck_states(trucks, until)
    worlds: dict[uuid.UUID, World | None] = {}
    tables: dict[uuid.UUID, SegmentMeanETA] = {}
    out: dict[uuid.UUID, tuple[str, np.ndarray | None]] = {}
    for truck, (site, lon, lat) in trucks.items():
        if site not in worlds:
            worlds[site] = site_world(site)
        world = worlds[site]
        if world is None:
            out[truck] = ("no_map", None)
            continue
        outcome, route = truck_route(world, states[truck], lon, lat)
        if route is None:
            out[truck] = (outcome, None)
            continue
        if site not in tables:
            tables[site] = site_table(site, world, until)
        labels = {
            "route": route.route[None],
            "segment": np.array([route.segment]),
            "stop": np.array([route.stop]),
        }
        features = eta_features(labels, tables[site])[0]
        if not np.isfinite(features).all():
            out[truck] = ("no_history", None)
            continue
        out[truck] = ("planned", features)
    return out
