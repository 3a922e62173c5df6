"""Live route inputs: the planned route to a truck's next stop, the site's per-segment table
(the ETA head) and the road ahead (the trajectory head).

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
   to_dump is 1 for a dump. The road ahead (``features.route_ahead``, the trajectory head's)
   reads the route's first ``features.STOP_CAP_M`` sampled every ``SAMPLE_M``, in the frame of
   the last fix's heading: where training reads the path the truck drove to its next stop.
3. **Per-segment table**: ``SegmentMeanETA.fit`` on the site's last ``HISTORY_S`` of production
   states, resampled to 1 Hz, with ``features.next_stops`` (the training labels' own
   function), a sample every ``SAMPLE_S`` (the training stride), each stop told apart by
   ``features.nearest_destination`` of the position where the truck arrived. Cached per site
   for ``TABLE_TTL_S``.

The history's reads are ``fleet.telemetry.queries`` (``production_of``,
``site_production_states``, ``fixes_near``): the SQL on telemetry tables lives there.

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

from fleet.learning.features import (
    MOVING_STATES,
    STATES,
    STOP_CAP_M,
    STRIDE_S,
    SegmentMeanETA,
    eta_features,
    nearest_destination,
    next_stops,
    no_route_ahead,
    route_ahead,
    segment_keys,
)
from fleet.mine.roads import World, world_for_site
from fleet.telemetry import queries

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
    """One truck's planned route: ``route`` as features.ROUTE_FEATURES (None without a payload
    reading), the per-segment table's keys, which destination (loading units, then dumps) the
    stop is, and the road ahead (features.AHEAD_FEATURES)."""

    route: np.ndarray | None  # [6] float64
    segment: int
    stop: int
    dest: int
    ahead: np.ndarray  # [len(AHEAD_FEATURES)] float32


@dataclass(frozen=True)
class Planned:
    """What the planned route gives a truck's heads: the ETA head's features, or why not
    (``outcome``), and the trajectory head's road ahead (no route: ``no_route_ahead``)."""

    outcome: str
    eta: np.ndarray | None  # [len(ETA_FEATURES)] float32
    ahead: np.ndarray  # [len(AHEAD_FEATURES)] float32


# --- the road graph, per road-network revision -------------------------------------------------

_lock = threading.Lock()
_worlds: dict[uuid.UUID, tuple[Any, World | None]] = {}
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
    try:
        world: World | None = world_for_site(Site.objects.get(pk=site_id))
    except ValueError:  # no road graph to plan on (no loading unit or dump): kept as none
        world = None
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


def route_samples(
    world: World, pieces: list[tuple[int, float]], limit_m: float = np.inf
) -> np.ndarray:
    """[M, 3] (x, y, elevation) along a planned route every ``SAMPLE_M`` from its start, its
    first ``limit_m`` only (the whole route by default; each edge's end is a sample)."""
    edges, s = [], []
    left = limit_m
    for edge, start in pieces:
        end = min(_edge_len(world, edge), start + left)
        n = max(int(np.ceil((end - start) / SAMPLE_M)), 1)
        edges.append(np.full(n + 1, edge))
        s.append(np.linspace(start, end, n + 1))
        left -= end - start
        if left <= 0:
            break
    xyz, _, _ = world.locate(np.concatenate(edges), np.concatenate(s))
    return np.asarray(xyz, dtype=np.float64)


def route_features(world: World, pieces: list[tuple[int, float]]) -> np.ndarray:
    """[4]: distance left, rise, climb, descent (m) along a planned route."""
    xyz = route_samples(world, pieces)
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
    world: World, truck: TruckState, lon: float, lat: float, heading_deg: float
) -> tuple[str, Route | None]:
    """(outcome, route) of one truck at its last fix (lon, lat, heading): ``planned`` with the
    route, ``no_payload`` with the route but no payload reading for the ETA head, else
    ``no_stop`` (not on its way to a stop, or no earlier stop tells which) or ``no_plan`` (no
    way to plan from, or no road to the stop) without one."""
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
    ahead = route_ahead(route_samples(world, pieces, STOP_CAP_M), heading_deg)
    segment, stop = segment_keys(LIVE_SITE, np.array([truck.way_id]), np.array([dest]))
    keys = {"segment": int(segment[0]), "stop": int(stop[0]), "dest": dest, "ahead": ahead}
    if truck.payload_t is None:
        return "no_payload", Route(None, **keys)
    route = np.concatenate([route_features(world, pieces), [truck.payload_t, float(to_dump)]])
    return "planned", Route(route, **keys)


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
    states, stops, payloads = queries.production_of(params)
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
    rows = queries.site_production_states(params)
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
    fixes = queries.fixes_near(params)
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


def route_inputs(
    trucks: Mapping[uuid.UUID, tuple[uuid.UUID, float, float, float]], until: datetime
) -> dict[uuid.UUID, Planned]:
    """Per truck (EquipmentId -> (site id, lon, lat, heading) of its last fix): what its planned
    route gives the heads (``Planned``). ETA outcomes: ``planned``, ``no_stop``, ``no_plan``,
    ``no_payload``, ``no_history`` (the site's table has nothing yet), ``no_map``."""

    worlds = {site: site_world(site) for site in {t[0] for t in trucks.values()}}
    out = {
        truck: Planned("no_map", None, no_route_ahead())
        for truck, (site, *_) in trucks.items()
        if worlds[site] is None
    }
    states = truck_states([truck for truck in trucks if truck not in out], until)
    tables: dict[uuid.UUID, SegmentMeanETA] = {}
    for truck, (site, lon, lat, heading) in trucks.items():
        world = worlds[site]
        if world is None:
            continue
        outcome, route = truck_route(world, states[truck], lon, lat, heading)
        ahead = no_route_ahead() if route is None else route.ahead
        if route is None or route.route is None:
            out[truck] = Planned(outcome, None, ahead)
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
            out[truck] = Planned("no_history", None, ahead)
            continue
        out[truck] = Planned("planned", features, ahead)
    return out
