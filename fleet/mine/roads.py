"""A site's road graph: its map document's road network as numpy arrays, in local metres.

``World.from_map(doc)`` is a pure function of the map document (docs/map-format.md), so the
simulator's engine and the offline data generator need no Django; ``world_for_site(site)`` is
the one Django-side entry point. Live serving plans the ETA head's routes on it
(``fleet.learning.routes``, once per road-network revision), the simulator drives on it
(``fleet.simulator.world`` re-exports it): production code plans routes without importing the
simulator.

Frames: the map is WGS84 longitude / latitude; the simulator works in a local tangent plane
(x east, y north, metres) around the mean road node, using the WGS84 meridional and
prime-vertical radii at that latitude. Over a pit a few km across the plane differs from the
ellipsoid by well under a metre (the quadratic term d^2 / 2R), and converting back with the same
constants is exact, so simulated positions lie on the mapped roads.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from fleet.learning.features import LocalFrame

if TYPE_CHECKING:
    from fleet.mine.models import Site

KMH = 1 / 3.6  # km/h -> m/s


@dataclass(frozen=True)
class Destination:
    """A loading unit, dump point or the park, snapped to its nearest road node."""

    name: str
    kind: str  # loading_unit | crusher | waste_dump | stockpile | park
    node: int  # index into World.node_ids
    material: str | None  # loading unit: what it loads; dump: what it accepts; park: None
    rate_tph: float  # loading unit: loading rate; dump: capacity; park: 0
    equipment_id: str | None = None  # the shovel's EquipmentId, when the map names one
    slots: int = 1  # trucks served at once (one under a shovel, one at a crusher's hopper)


@dataclass(frozen=True)
class Zone:
    """An active policy zone (ISO 23725 Feature) with its exterior ring in local metres."""

    zone_id: str
    name: str
    ring: np.ndarray = field(repr=False)  # (K, 2) x, y metres, closed
    policies: Mapping[str, Any] = field(default_factory=dict)

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return points_in_ring(x, y, self.ring)


def points_in_ring(x: np.ndarray, y: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Even-odd rule for many points against one polygon ring, vectorised over the points."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    inside = np.zeros(x.shape, dtype=bool)
    x0, y0 = ring[:-1, 0], ring[:-1, 1]
    x1, y1 = ring[1:, 0], ring[1:, 1]
    for ax, ay, bx, by in zip(x0, y0, x1, y1, strict=True):
        if ay == by:
            continue
        crosses = (ay > y) != (by > y)
        at_x = ax + (y - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (x < at_x)
    return inside


_DUMP_MATERIAL = {"crusher": "ore", "stockpile": "ore", "waste_dump": "waste"}
# A crusher hopper takes one truck at a time; a stockpile or waste dump has a wide tip head.
_DUMP_SLOTS = {"crusher": 1, "stockpile": 2, "waste_dump": 2}


@dataclass(frozen=True, eq=False)
class World:
    """The road graph. Ways are undirected on the map; edge ``2w`` drives way ``w`` from its
    start node to its end node, edge ``2w + 1`` the other way."""

    slug: str
    frame: LocalFrame
    default_speed_mps: float
    node_ids: np.ndarray  # (V,) map nodeIds
    node_xyz: np.ndarray  # (V, 3) m
    way_ids: np.ndarray  # (W,) ISO 23725 WayIds
    way_speed_mps: np.ndarray  # (W,) mapped operating speed
    way_one_lane: np.ndarray  # (W,) bool
    way_length_m: np.ndarray  # (W,)
    way_grade_pct: np.ndarray  # (W,) net grade start -> end, % (positive uphill)
    edge_from: np.ndarray  # (E,) node index
    edge_to: np.ndarray  # (E,) node index
    vert_start: np.ndarray  # (E,) first vertex of the edge's polyline in vert_*
    vert_count: np.ndarray  # (E,)
    vert_xyz: np.ndarray  # (sum, 3) polyline vertices, m
    vert_s: np.ndarray  # (sum,) distance along the edge at each vertex, m
    loading_units: tuple[Destination, ...]
    dumps: tuple[Destination, ...]
    park: Destination
    zones: tuple[Zone, ...]  # active at export time
    paths: dict[tuple[int, int], tuple[int, ...]] = field(repr=False)  # key node -> key node

    @property
    def edge_way(self) -> np.ndarray:
        return np.arange(2 * len(self.way_ids)) // 2

    @property
    def edge_length(self) -> np.ndarray:
        return np.repeat(self.way_length_m, 2)

    @cached_property
    def _out_edges(self) -> list[list[int]]:
        return _adjacency(self.edge_from, len(self.node_ids))

    @property
    def edge_time_s(self) -> np.ndarray:
        """Travel time at the mapped operating speed: the cost shortest paths minimise."""
        return np.repeat(self.way_length_m / self.way_speed_mps, 2)

    @property
    def key_nodes(self) -> list[int]:
        nodes = [self.park.node]
        nodes += [d.node for d in self.loading_units] + [d.node for d in self.dumps]
        return list(dict.fromkeys(nodes))

    @classmethod
    def from_map(cls, doc: Mapping[str, Any]) -> World:
        """Build the world from a map document (the export_site_map form)."""
        return _build(doc)

    def zone(self, feature: Mapping[str, Any]) -> Zone:
        """A policy-zone Feature (map or wire form) in this world's frame."""
        return zone_from_feature(feature, self.frame)

    def locate(self, edges: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points at distance ``s`` (m) along directed ``edges``: (xyz (n, 3), grade as a
        fraction rise/run of the polyline segment there, compass heading in degrees)."""
        edges = np.asarray(edges, dtype=np.int64)
        s = np.asarray(s, dtype=float)
        first = self.vert_start[edges]
        last_segment = first + np.maximum(self.vert_count[edges] - 2, 0)
        # Offsetting each edge's vertex distances into one increasing line makes a single
        # searchsorted find the segment of every point at once.
        base = np.repeat(self._edge_offset, self.vert_count)
        line = base + self.vert_s
        seg = np.searchsorted(line, self._edge_offset[edges] + s, side="right") - 1
        seg = np.clip(seg, first, last_segment)
        a, b = self.vert_xyz[seg], self.vert_xyz[np.minimum(seg + 1, len(self.vert_s) - 1)]
        run = np.maximum(
            self.vert_s[np.minimum(seg + 1, len(self.vert_s) - 1)] - self.vert_s[seg], 1e-9
        )
        t = np.clip((s - self.vert_s[seg]) / run, 0.0, 1.0)[:, None]
        xyz = a + (b - a) * t
        dx, dy = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
        flat = np.hypot(dx, dy)
        grade = np.where(flat > 0.5, (b[:, 2] - a[:, 2]) / np.maximum(flat, 1e-9), 0.0)
        heading = np.degrees(np.arctan2(dx, dy)) % 360.0
        return xyz, grade, heading

    @cached_property
    def _edge_offset(self) -> np.ndarray:
        # 1 m gap between edges keeps an edge's end apart from the next edge's start.
        lengths = self.vert_s[self.vert_start + self.vert_count - 1]
        return np.concatenate(([0.0], np.cumsum(lengths + 1.0)[:-1]))

    # --- shortest paths ---------------------------------------------------------------------

    def shortest_path(
        self, src: int, dst: int, blocked: Iterable[int] = ()
    ) -> tuple[int, ...] | None:
        """Directed edges of the fastest path from node ``src`` to ``dst`` avoiding ``blocked``
        edges; () when src == dst, None when unreachable."""
        _, pred = self.dijkstra(src, frozenset(blocked))
        return _walk_back(pred, self.edge_from, src, dst)

    def dijkstra(
        self, src: int, blocked: frozenset[int] = frozenset()
    ) -> tuple[np.ndarray, np.ndarray]:
        """Travel times (s) from ``src`` to every node and the edge each is reached by."""
        cost = self.edge_time_s
        out = self._out_edges
        dist = np.full(len(self.node_ids), np.inf)
        pred = np.full(len(self.node_ids), -1, dtype=np.int64)
        dist[src] = 0.0
        heap = [(0.0, src)]
        while heap:
            here, node = heapq.heappop(heap)
            if here > dist[node]:
                continue
            for edge in out[node]:
                if edge in blocked:
                    continue
                there = here + cost[edge]
                nxt = self.edge_to[edge]
                if there < dist[nxt]:
                    dist[nxt], pred[nxt] = there, edge
                    heapq.heappush(heap, (there, int(nxt)))
        return dist, pred


def _adjacency(edge_from: np.ndarray, nodes: int) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in range(nodes)]
    for edge, node in enumerate(edge_from.tolist()):
        out[node].append(edge)
    return out


def _walk_back(
    pred: np.ndarray, edge_from: np.ndarray, src: int, dst: int
) -> tuple[int, ...] | None:
    if src == dst:
        return ()
    if pred[dst] < 0:
        return None
    edges = []
    node = dst
    while node != src:
        edge = int(pred[node])
        edges.append(edge)
        node = int(edge_from[edge])
    return tuple(reversed(edges))


# --- building from the map document ----------------------------------------------------------


def _features(doc: Mapping[str, Any]) -> dict[str, list[dict]]:
    by_type: dict[str, list[dict]] = {}
    for feature in doc.get("features") or []:
        kind = feature.get("featureType") or (feature.get("properties") or {}).get("featureType")
        by_type.setdefault(str(kind), []).append(feature)
    return by_type


def zone_from_feature(feature: Mapping[str, Any], frame: LocalFrame) -> Zone:
    ring = np.asarray([point[:2] for point in feature["geometry"]["coordinates"][0]], dtype=float)
    x, y = frame.to_local(ring[:, 0], ring[:, 1])
    props = feature.get("properties") or {}
    zone_id = str(feature.get("id") or props.get("id"))
    return Zone(
        zone_id, props.get("name") or "", np.column_stack([x, y]), props.get("policies") or {}
    )


def _build(doc: Mapping[str, Any]) -> World:
    meta = (doc.get("haulmind") or {}).get("site") or {}
    by_type = _features(doc)
    nodes = sorted(
        (f["properties"]["nodeId"], f["geometry"]["coordinates"])
        for f in by_type.get("roadNode", [])
    )
    ways = sorted(by_type.get("way", []), key=lambda f: f["properties"]["wayId"])
    if not nodes or not ways:
        raise ValueError("the map has no road network (roadNode and way features)")
    lonlat = np.asarray([c[:2] for _, c in nodes], dtype=float)
    frame = LocalFrame(float(lonlat[:, 0].mean()), float(lonlat[:, 1].mean()))
    node_ids = np.asarray([n for n, _ in nodes], dtype=np.int64)
    index = {int(n): i for i, n in enumerate(node_ids)}
    nx, ny = frame.to_local(lonlat[:, 0], lonlat[:, 1])
    nz = np.asarray([c[2] if len(c) > 2 else 0.0 for _, c in nodes], dtype=float)
    node_xyz = np.column_stack([nx, ny, nz])
    default_kmh = float(meta.get("defaultSpeedKmh") or 40.0)
    roads = _roads(ways, index, node_xyz, frame, default_kmh)
    loading, dumps, park = _destinations(by_type, frame, node_xyz)
    zones = tuple(
        zone_from_feature(f, frame)
        for f in by_type.get("policyZone", [])
        if f.get("status", "active") == "active"
    )
    world = World(
        slug=str(meta.get("slug") or ""),
        frame=frame,
        default_speed_mps=default_kmh * KMH,
        node_ids=node_ids,
        node_xyz=node_xyz,
        loading_units=loading,
        dumps=dumps,
        park=park,
        zones=zones,
        paths={},
        **roads,
    )
    _precompute_paths(world)
    return world


def _roads(
    ways: list[dict],
    index: dict[int, int],
    node_xyz: np.ndarray,
    frame: LocalFrame,
    default_kmh: float,
) -> dict[str, np.ndarray]:
    polylines: list[np.ndarray] = []
    ids, speeds, one_lane, starts, ends = [], [], [], [], []
    for feature in ways:
        props = feature["properties"]
        start, end = index[int(props["startNode"])], index[int(props["endNode"])]
        polylines.append(
            _polyline(feature["geometry"]["coordinates"], frame, node_xyz[start], node_xyz[end])
        )
        ids.append(int(props["wayId"]))
        speeds.append(float(props.get("operatingSpeedKmh") or default_kmh) * KMH)
        one_lane.append(bool(props.get("oneLane", False)))
        starts.append(start)
        ends.append(end)
    vertices, distances, first, counts = [], [], [], []
    offset = 0
    lengths, grades = [], []
    for line in polylines:
        for directed in (line, line[::-1]):
            s = np.concatenate(([0.0], np.cumsum(np.hypot(*np.diff(directed[:, :2], axis=0).T))))
            vertices.append(directed)
            distances.append(s)
            first.append(offset)
            counts.append(len(directed))
            offset += len(directed)
        length = float(distances[-1][-1])
        lengths.append(length)
        grades.append((line[-1, 2] - line[0, 2]) / length * 100.0 if length > 0 else 0.0)
    edge_from = np.asarray(
        [n for pair in zip(starts, ends, strict=True) for n in pair], dtype=np.int64
    )
    edge_to = np.asarray(
        [n for pair in zip(ends, starts, strict=True) for n in pair], dtype=np.int64
    )
    return {
        "way_ids": np.asarray(ids, dtype=np.int64),
        "way_speed_mps": np.asarray(speeds),
        "way_one_lane": np.asarray(one_lane, dtype=bool),
        "way_length_m": np.asarray(lengths),
        "way_grade_pct": np.asarray(grades),
        "edge_from": edge_from,
        "edge_to": edge_to,
        "vert_start": np.asarray(first, dtype=np.int64),
        "vert_count": np.asarray(counts, dtype=np.int64),
        "vert_xyz": np.concatenate(vertices),
        "vert_s": np.concatenate(distances),
    }


def _polyline(
    coords: Sequence[Sequence[float]], frame: LocalFrame, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """A way's vertices in local metres; a missing elevation is interpolated between its nodes."""
    pts = np.asarray([c[:2] for c in coords], dtype=float)
    x, y = frame.to_local(pts[:, 0], pts[:, 1])
    run = np.concatenate(([0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))))
    share = run / run[-1] if run[-1] > 0 else np.zeros_like(run)
    z = np.asarray(
        [c[2] if len(c) > 2 and c[2] is not None else np.nan for c in coords], dtype=float
    )
    z = np.where(np.isnan(z), a[2] + (b[2] - a[2]) * share, z)
    return np.column_stack([x, y, z])


def _nearest_node(node_xyz: np.ndarray, x: float, y: float) -> int:
    return int(np.argmin(np.hypot(node_xyz[:, 0] - x, node_xyz[:, 1] - y)))


def _point(feature: dict, frame: LocalFrame) -> tuple[float, float]:
    coords = feature["geometry"]["coordinates"]
    x, y = frame.to_local(coords[0], coords[1])
    return float(x), float(y)


def _destinations(
    by_type: dict[str, list[dict]], frame: LocalFrame, node_xyz: np.ndarray
) -> tuple[tuple[Destination, ...], tuple[Destination, ...], Destination]:
    loading = []
    for f in sorted(by_type.get("loadingUnit", []), key=lambda f: f["properties"]["name"]):
        props = f["properties"]
        loading.append(
            Destination(
                name=props["name"],
                kind="loading_unit",
                node=_nearest_node(node_xyz, *_point(f, frame)),
                material=props.get("material") or "ore",
                rate_tph=float(props.get("loadingRateTph") or 3000.0),
                equipment_id=(props.get("equipmentId") or None),
            )
        )
    dumps = []
    for f in sorted(by_type.get("dumpPoint", []), key=lambda f: f["properties"]["name"]):
        props = f["properties"]
        kind = props.get("kind") or "crusher"
        dumps.append(
            Destination(
                name=props["name"],
                kind=kind,
                node=_nearest_node(node_xyz, *_point(f, frame)),
                material=_DUMP_MATERIAL.get(kind, "ore"),
                rate_tph=float(props.get("capacityTph") or 0.0),
                slots=_DUMP_SLOTS.get(kind, 1),
            )
        )
    if not loading or not dumps:
        raise ValueError("the map needs at least one loading unit and one dump point")
    return tuple(loading), tuple(dumps), _park(by_type, frame, node_xyz, dumps[0])


def _park(
    by_type: dict[str, list[dict]], frame: LocalFrame, node_xyz: np.ndarray, fallback: Destination
) -> Destination:
    """The park-up: the road node nearest the first park area's centre (else the first dump)."""
    areas = [
        f for f in by_type.get("area", []) if (f.get("properties") or {}).get("kind") == "park"
    ]
    if not areas:
        return Destination("park", "park", fallback.node, None, 0.0, slots=1_000_000)
    ring = np.asarray([c[:2] for c in areas[0]["geometry"]["coordinates"][0][:-1]], dtype=float)
    x, y = frame.to_local(ring[:, 0].mean(), ring[:, 1].mean())
    name = areas[0]["properties"].get("name") or "park"
    return Destination(
        name, "park", _nearest_node(node_xyz, float(x), float(y)), None, 0.0, slots=1_000_000
    )


def _precompute_paths(world: World) -> None:
    """Fastest paths between every pair of key nodes (park, loading units, dumps), ignoring
    zones; the engine re-plans around exclusion zones when they are active."""
    keys = world.key_nodes
    for src in keys:
        _, pred = world.dijkstra(src)
        for dst in keys:
            path = _walk_back(pred, world.edge_from, src, dst)
            if path is None:
                a, b = world.node_ids[src], world.node_ids[dst]
                raise ValueError(
                    f"no road from node {a} to node {b}: the key points are not connected"
                )
            world.paths[(src, dst)] = path


def world_for_site(site: Site) -> World:
    """The world of a site's active road network and its active zones (Django side)."""
    from fleet.mine.mapfile import export_site_map

    return World.from_map(export_site_map(site))
