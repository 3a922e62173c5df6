"""Routes as flat sample arrays: everything the engine's hot path looks up by a truck's distance
along its route (position, grade, heading, WayId, speed cap, traffic-permission zone) is one
gather at ``start[route] + floor(d / DS)``.

A route is fixed once made (a truck's distance along it keeps its meaning); zone changes only
recompute the caps, and new legs are planned against the new zones.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fleet.simulator.world import World, Zone

DS = 2.0  # m between route samples: well under a truck's length (~10 m) and any zone's size
# Speed caps of the soft policies, as a share of the mapped operating speed (drive to the
# conditions: slippery or rough road).
LOW_TRACTION_SHARE = 0.6
ROUGH_ROAD_SHARE = 0.7
STOP_SHORT_M = 10.0  # m: trucks stand this far short of a zone they may not enter (~ a truck)


@dataclass(frozen=True)
class _Route:
    edges: tuple[int, ...]
    start_node: int
    dest_node: int


@dataclass(frozen=True)
class TrafficPermissionEntry:
    zone: int  # index into RouteTable.zones
    entry_d: float  # m along the route
    exit_d: float
    way_id: int  # the way the route enters the zone by


class RouteTable:
    """Every route any truck has been given, compiled into flat numpy arrays."""

    def __init__(
        self, world: World, *, plan_decel: float, spot_distance: float, spot_speed: float
    ) -> None:
        self.world = world
        self.plan_decel = plan_decel  # m/s^2 the caps are approached with
        self.spot_distance = spot_distance  # m of slow approach at the end of every route
        self.spot_speed = spot_speed  # m/s
        self.zones: tuple[Zone, ...] = ()
        self._routes: list[_Route] = []
        self._cache: dict[tuple[int, int, int], int] = {}
        self._blocked_cache: dict[tuple[int, int], frozenset[int]] = {}
        self._edge_zones: list[np.ndarray] = []  # per zone: the directed edges it touches
        self._dirty = True
        empty_f, empty_i = np.zeros(0), np.zeros(0, dtype=np.int64)
        # per route
        self.start, self.count, self.length = empty_i, empty_i, empty_f
        self.dest_node = self.start_node = empty_i
        # per sample (see _sample); caps and the braking profile after _apply_zones
        self.d = self.x = self.y = self.z = self.grade = self.heading = self.speed = empty_f
        self.s_edge = self.cap = self.wsuf = empty_f
        self.way_id = self.edge = self.route_of = self.tp_zone = empty_i
        self.blocked = np.zeros(0, dtype=bool)
        self.tp_entries: list[TrafficPermissionEntry] = []
        self.tp_first = self.tp_count = empty_i
        self.tp_entry_d = self.tp_exit_d = np.array([np.inf])

    # --- planning ---------------------------------------------------------------------------

    def route(self, src: int, dst: int) -> int:
        """The route id from node ``src`` to node ``dst`` under the current zones."""
        key = (-1, src, dst)
        if key not in self._cache:
            self._cache[key] = self._add(self._plan(src, dst), src, dst)
        return self._cache[key]

    def reroute(self, edge: int, dst: int) -> int:
        """A route that starts at the beginning of directed ``edge`` (where a truck already is)
        and continues to ``dst``; the truck keeps its distance along that edge."""
        key = (edge, -1, dst)
        if key not in self._cache:
            world = self.world
            onward = self._plan(int(world.edge_to[edge]), dst)
            self._cache[key] = self._add((edge, *onward), int(world.edge_from[edge]), dst)
        return self._cache[key]

    def set_zones(self, zones: Sequence[Zone]) -> None:
        """Replace the zones the routes respect. Existing routes keep their path (their caps
        change); routes planned from now on avoid the new exclusion zones."""
        self.zones = tuple(zones)
        self._cache.clear()
        self._blocked_cache.clear()
        self._edge_zones = [self._edges_touching(zone) for zone in self.zones]
        self._dirty = True

    def _plan(self, src: int, dst: int) -> tuple[int, ...]:
        blocked = self._blocked(src, dst)
        world = self.world
        if not blocked and (src, dst) in world.paths:
            return world.paths[(src, dst)]
        path = world.shortest_path(src, dst, blocked)
        if path is None:  # no way round: drive the usual road and wait at the zone's edge
            path = world.shortest_path(src, dst)
        if path is None:
            raise ValueError(f"no road from node {world.node_ids[src]} to {world.node_ids[dst]}")
        return path

    def _blocked(self, src: int, dst: int) -> frozenset[int]:
        """Edges a route from ``src`` to ``dst`` must avoid: exclusion zones, and
        controlled-access zones it neither starts nor ends in (entry is what is controlled;
        a truck loaded inside leaves freely)."""
        if (src, dst) not in self._blocked_cache:
            ends = self.world.node_xyz[[src, dst], :2]
            blocked: set[int] = set()
            for zone, edges in zip(self.zones, self._edge_zones, strict=True):
                closed = "exclusion" in zone.policies or (
                    "controlledAccess" in zone.policies
                    and not zone.contains(ends[:, 0], ends[:, 1]).any()
                )
                if closed:
                    blocked.update(edges.tolist())
            self._blocked_cache[(src, dst)] = frozenset(blocked)
        return self._blocked_cache[(src, dst)]

    def _edges_touching(self, zone: Zone) -> np.ndarray:
        world = self.world
        lengths = world.edge_length
        counts = np.maximum(np.ceil(lengths / DS).astype(np.int64), 1) + 1
        edges = np.repeat(np.arange(len(lengths)), counts)
        s = np.minimum(
            (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)) * DS,
            lengths[edges],
        )
        xyz, _, _ = world.locate(edges, s)
        return np.unique(edges[zone.contains(xyz[:, 0], xyz[:, 1])])

    def _add(self, edges: tuple[int, ...], start: int, dest: int) -> int:
        self._routes.append(_Route(tuple(int(e) for e in edges), start, dest))
        self._dirty = True
        return len(self._routes) - 1

    # --- compiled arrays ----------------------------------------------------------------------

    def compile(self) -> None:
        """Rebuild the flat arrays after routes or zones changed (rare; not on the hot path)."""
        if not self._dirty:
            return
        parts = [self._sample(r) for r in self._routes]
        counts = np.asarray([len(p["d"]) for p in parts], dtype=np.int64)
        self.start = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        self.count = counts  # samples per route, including one trailing copy of the last
        self.length = np.asarray([p["d"][-1] for p in parts])
        self.dest_node = np.asarray([r.dest_node for r in self._routes], dtype=np.int64)
        self.start_node = np.asarray([r.start_node for r in self._routes], dtype=np.int64)
        for name in ("d", "x", "y", "z", "grade", "heading", "way_id", "edge", "s_edge", "speed"):
            setattr(self, name, np.concatenate([p[name] for p in parts]))
        self.route_of = np.repeat(np.arange(len(parts)), counts)
        self._apply_zones()
        self._dirty = False

    def _sample(self, route: _Route) -> dict[str, np.ndarray]:
        world = self.world
        if not route.edges:  # already there: one point at the node
            x, y, z = world.node_xyz[route.dest_node]
            one = np.zeros(2)
            return {
                "d": one.copy(), "x": one + x, "y": one + y, "z": one + z, "grade": one.copy(),
                "heading": one.copy(), "way_id": np.full(2, -1), "edge": np.full(2, -1),
                "s_edge": one.copy(), "speed": one.copy(),
            }  # fmt: skip
        edges = np.asarray(route.edges)
        lengths = world.edge_length[edges]
        joints = np.concatenate(([0.0], np.cumsum(lengths)))
        total = joints[-1]
        d = np.minimum(np.arange(int(np.ceil(total / DS)) + 1) * DS, total)
        d = np.append(d, total)  # the trailing copy lets every lookup read sample k + 1
        leg = np.clip(np.searchsorted(joints, d, side="right") - 1, 0, len(edges) - 1)
        s = d - joints[leg]
        xyz, grade, heading = world.locate(edges[leg], s)
        way = world.edge_way[edges[leg]]
        return {
            "d": d, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "grade": grade,
            "heading": heading, "way_id": world.way_ids[way], "edge": edges[leg], "s_edge": s,
            "speed": world.way_speed_mps[way],
        }  # fmt: skip

    def _apply_zones(self) -> None:
        cap = self.speed.copy()
        near_end = self.d >= self.length[self.route_of] - self.spot_distance
        cap[near_end] = np.minimum(cap[near_end], self.spot_speed)
        blocked = np.zeros(len(cap), dtype=bool)
        tp = np.full(len(cap), -1, dtype=np.int64)
        dest = self.world.node_xyz[self.dest_node]
        origin = self.world.node_xyz[self.start_node]
        for index, zone in enumerate(self.zones):
            inside = zone.contains(self.x, self.y)
            if not inside.any():
                continue
            policies = zone.policies
            if "exclusion" in policies:
                blocked |= inside
            if "controlledAccess" in policies:
                allowed = zone.contains(dest[:, 0], dest[:, 1]) | zone.contains(
                    origin[:, 0], origin[:, 1]
                )
                blocked |= inside & ~allowed[self.route_of]
            for limit in _speed_limits(policies, self.speed):
                cap = np.where(inside, np.minimum(cap, limit), cap)
            if "trafficPermission" in policies:
                tp = np.where(inside & (tp < 0), index, tp)
        blocked = self._short_of(blocked)
        cap[blocked] = 0.0
        self.cap = cap
        self.blocked = blocked
        self.tp_zone = tp
        # Every route ends standing: a zero at its end for the braking profile only (as a cap
        # it would hold a truck a hair short of the end for ever).
        last = self.start + self.count - 1
        ends = cap.copy()
        ends[last] = ends[last - 1] = 0.0
        # A zone's edge lies somewhere between two samples: plan to meet each cap one sample
        # early, so a truck is down to it before it crosses the edge.
        early = np.minimum(ends, np.append(ends[1:], 0.0))
        self.wsuf = self._approach(early)
        self._traffic_permission_entries()

    def _short_of(self, blocked: np.ndarray) -> np.ndarray:
        """Extend closed stretches back by STOP_SHORT_M along each route, so a truck's nose, not
        its GPS antenna, stays out of an exclusion zone."""
        out = blocked.copy()
        for shift in range(1, int(np.ceil(STOP_SHORT_M / DS)) + 1):
            ahead = np.zeros_like(blocked)
            ahead[:-shift] = blocked[shift:] & (self.route_of[shift:] == self.route_of[:-shift])
            out |= ahead
        return out

    def _approach(self, cap: np.ndarray) -> np.ndarray:
        """Suffix minimum of cap^2 + 2 a d within each route: a truck at distance d may go at
        sqrt(wsuf[k + 1] - 2 a d) and still brake (at ``plan_decel``) to every cap ahead.
        Offsetting each route by a constant larger than any value keeps later routes from
        leaking into earlier ones in one vectorised pass."""
        a = self.plan_decel
        span = float(np.max(cap) ** 2 + 2 * a * (np.max(self.length) + DS) + 1.0)
        offset = self.route_of * span
        w = cap**2 + 2 * a * self.d + offset
        return np.minimum.accumulate(w[::-1])[::-1] - offset

    def _traffic_permission_entries(self) -> None:
        entries: list[TrafficPermissionEntry] = []
        first = np.zeros(len(self._routes), dtype=np.int64)
        count = np.zeros(len(self._routes), dtype=np.int64)
        for r in range(len(self._routes)):
            first[r] = len(entries)
            lo, hi = self.start[r], self.start[r] + self.count[r] - 1
            zones = self.tp_zone[lo:hi]
            if (zones < 0).all():
                continue
            cuts = np.concatenate(([0], np.flatnonzero(np.diff(zones)) + 1, [len(zones)]))
            for a, b in itertools.pairwise(cuts.tolist()):
                if zones[a] >= 0:
                    entries.append(
                        TrafficPermissionEntry(
                            int(zones[a]),
                            float(self.d[lo + a]),
                            float(self.d[lo + b - 1]),
                            int(self.way_id[lo + a]),
                        )
                    )
            count[r] = len(entries) - first[r]
        self.tp_entries = entries
        self.tp_first, self.tp_count = first, count
        self.tp_entry_d = np.asarray([e.entry_d for e in entries] + [np.inf])
        self.tp_exit_d = np.asarray([e.exit_d for e in entries] + [np.inf])

    # --- lookups (hot path) --------------------------------------------------------------------

    def sample_index(self, route: np.ndarray, d: np.ndarray) -> np.ndarray:
        """The sample at or just behind distance ``d`` of each route (never the trailing copy)."""
        k = np.minimum((d / DS).astype(np.int64), self.count[route] - 2)
        return self.start[route] + k

    def edge_start_d(self, route: int, d: float) -> float:
        """Distance along ``route`` at which the edge holding ``d`` begins."""
        k = int(self.sample_index(np.array([route]), np.array([d]))[0])
        return float(self.d[k] - self.s_edge[k])


def _speed_limits(policies: Mapping[str, Any], speed: np.ndarray) -> list[np.ndarray | float]:
    """Caps (m/s) a zone's policies put on the samples inside it; ``speed`` is the mapped
    operating speed those percentages refer to."""
    limits: list[np.ndarray | float] = []
    limit = policies.get("speedLimit")
    if isinstance(limit, dict):
        value = float(limit.get("value", 0.0))
        limits.append(value if limit.get("type") == "absolute" else speed * value / 100.0)
    if "lowTraction" in policies:
        limits.append(speed * LOW_TRACTION_SHARE)
    if "roughRoad" in policies:
        limits.append(speed * ROUGH_ROAD_SHARE)
    return limits
