"""Collision risk between machines, as pure geometry (numpy, no Django): where each machine
will be over the next seconds, which pairs can come close at all (a uniform grid over their
swept paths, not every pair), the exact time and distance of closest approach for those, and
which ISO 21815-2 intervention each machine of a risky pair gets.

Frames and units: local metres (x east, y north), seconds from the assessment instant. Every
path is sampled on one common time grid ``t_k = k * dt`` (k = 0..K-1); between two samples a
machine moves in a straight line at constant speed, so the relative motion of a pair on each
interval is linear and its minimum distance has a closed form. The closest approach over the
horizon is the smallest of those interval minima: exact for the sampled paths.

The services that read positions and predictions and send the commands are in
``fleet.control.collision_services``; docs/control-collision.md explains the rules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

# WGS84 radii for the local frame (the same constants as the map's own local frame).
_A = 6_378_137.0
_E2 = (1 / 298.257223563) * (2 - 1 / 298.257223563)


class Intervention(StrEnum):
    """The ISO 21815-2 intervention classes, weakest first."""

    SLOW_DOWN = "slow_down"
    STOP = "stop"
    PREVENT_MOTION = "prevent_motion"


STRENGTH = {Intervention.SLOW_DOWN: 1, Intervention.STOP: 2, Intervention.PREVENT_MOTION: 2}


@dataclass(frozen=True)
class Thresholds:
    """When a pair is a risk, and how strongly to intervene (settings ``COLLISION_*``)."""

    safety_distance_m: float = 50.0  # a predicted approach closer than this is a risk
    critical_distance_m: float = 20.0  # an approach this close is a stop, however far ahead
    stop_ttca_s: float = 4.0  # a closing approach sooner than this is a stop
    moving_mps: float = 0.5  # slower than this a machine is standing (prevent motion)
    opening_mps: float = 0.5  # a pair separating faster than this, closest now, is no risk


# --- frames and roads -------------------------------------------------------------------------


class Frame:
    """Longitude / latitude <-> local metres around (lon0, lat0): a tangent plane with the
    WGS84 radii at lat0 (under a metre of error over a pit a few km across)."""

    def __init__(self, lon0: float, lat0: float) -> None:
        self.lon0, self.lat0 = lon0, lat0
        phi = math.radians(lat0)
        w = 1 - _E2 * math.sin(phi) ** 2
        self.m_per_deg_lat = math.radians(1) * _A * (1 - _E2) / w**1.5
        self.m_per_deg_lon = math.radians(1) * _A / math.sqrt(w) * math.cos(phi)

    def to_local(self, lon: object, lat: object) -> np.ndarray:
        """(..., 2) metres east and north."""
        x = (np.asarray(lon, dtype=float) - self.lon0) * self.m_per_deg_lon
        y = (np.asarray(lat, dtype=float) - self.lat0) * self.m_per_deg_lat
        return np.stack([x, y], axis=-1)

    def to_lonlat(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xy = np.asarray(xy, dtype=float)
        lon = self.lon0 + xy[..., 0] / self.m_per_deg_lon
        lat = self.lat0 + xy[..., 1] / self.m_per_deg_lat
        return lon, lat


@dataclass(frozen=True)
class Road:
    """One way's centre line in local metres, with the distance along it at each vertex."""

    way_id: int
    xy: np.ndarray  # (V, 2)
    s: np.ndarray  # (V,) cumulative length, s[0] = 0
    one_lane: bool = False
    nodes: tuple[int, int] = (-1, -2)  # start and end node (distinct unknowns share nothing)

    @classmethod
    def of(
        cls, way_id: int, xy: np.ndarray, one_lane: bool = False, nodes: tuple[int, int] = (-1, -2)
    ) -> Road:
        xy = np.asarray(xy, dtype=float)
        steps = np.hypot(*np.diff(xy, axis=0).T)
        return cls(way_id, xy, np.concatenate([[0.0], np.cumsum(steps)]), one_lane, nodes)

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def project(self, point: np.ndarray) -> tuple[float, np.ndarray, float]:
        """Distance along the road of its point nearest ``point``, the road's unit direction
        (start -> end) there, and how far ``point`` is off the road (m)."""
        a, b = self.xy[:-1], self.xy[1:]
        ab = b - a
        run = np.maximum((ab**2).sum(axis=1), 1e-12)
        t = np.clip(((point - a) * ab).sum(axis=1) / run, 0.0, 1.0)
        near = a + ab * t[:, None]
        off = np.hypot(near[:, 0] - point[0], near[:, 1] - point[1])
        i = int(np.argmin(off))
        s = float(self.s[i] + t[i] * (self.s[i + 1] - self.s[i]))
        return s, ab[i] / math.sqrt(run[i]), float(off[i])

    def at(self, s: np.ndarray) -> np.ndarray:
        """Points at distances ``s`` along the road; beyond either end the road goes on
        straight along its end segment (the next way is not known without a route)."""
        s = np.asarray(s, dtype=float)
        x = np.interp(s, self.s, self.xy[:, 0])
        y = np.interp(s, self.s, self.xy[:, 1])
        out = np.stack([x, y], axis=-1)
        for beyond, (p, q) in ((s > self.length, (-2, -1)), (s < 0, (1, 0))):
            if beyond.any():
                d = self.xy[q] - self.xy[p]
                d = d / max(float(np.hypot(*d)), 1e-9)
                extra = np.where(s > self.length, s - self.length, -s)[beyond]
                out[beyond] = self.xy[q] + extra[:, None] * d
        return out


def time_grid(horizon_s: float, dt_s: float) -> np.ndarray:
    """The common sample times 0, dt, ..., horizon."""
    return np.arange(round(horizon_s / dt_s) + 1) * dt_s


def along_road(
    road: Road,
    position: np.ndarray,
    heading_deg: float,
    speed_mps: float,
    times: np.ndarray,
    *,
    projected: tuple[float, np.ndarray, float] | None = None,
) -> tuple[np.ndarray, int]:
    """Constant-speed extrapolation along ``road`` from the road point nearest ``position``
    (``projected``: ``road.project(position)`` if already known), in the road direction
    nearest the compass ``heading_deg``. ``times`` may start before 0 (a fix older than the
    assessment). Returns (positions (K, 2), direction +1 / -1)."""
    s0, tangent, _ = projected or road.project(np.asarray(position, dtype=float))
    h = math.radians(heading_deg)
    direction = 1 if tangent @ np.array([math.sin(h), math.cos(h)]) >= 0 else -1
    return road.at(s0 + direction * speed_mps * np.asarray(times, dtype=float)), direction


def straight(
    position: np.ndarray, heading_deg: float, speed_mps: float, times: np.ndarray
) -> np.ndarray:
    """Constant velocity along the compass heading (off the mapped roads)."""
    h = math.radians(heading_deg)
    velocity = speed_mps * np.array([math.sin(h), math.cos(h)])
    return np.asarray(position, dtype=float) + np.asarray(times, dtype=float)[:, None] * velocity


def resample(times: Sequence[float], xy: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A path given at ``times`` (increasing) on the common ``grid``: linear between its
    points, constant velocity of its first / last segment before / after them."""
    t = np.asarray(times, dtype=float)
    xy = np.asarray(xy, dtype=float)
    if len(t) == 1:
        return np.repeat(xy[:1], len(grid), axis=0)
    out = np.stack([np.interp(grid, t, xy[:, 0]), np.interp(grid, t, xy[:, 1])], axis=-1)
    for mask, (p, q) in ((grid > t[-1], (-2, -1)), (grid < t[0], (0, 1))):
        if mask.any():
            velocity = (xy[q] - xy[p]) / max(t[q] - t[p], 1e-9)
            out[mask] = xy[q] + (grid[mask] - t[q])[:, None] * velocity
    return out


# --- closest approach ---------------------------------------------------------------------------


def closest_approaches(
    paths: np.ndarray, i: np.ndarray, j: np.ndarray, dt_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Time (s) and distance (m) of closest approach of each pair (i[m], j[m]) of ``paths``
    (n, K, 2) sampled every ``dt_s``: per interval, the relative position r(τ) = r0 + τ·dr
    (τ in [0, 1]) is nearest the origin at τ = clip(-r0·dr / |dr|², 0, 1)."""
    if len(i) == 0:
        return np.zeros(0), np.zeros(0)
    rel = paths[i] - paths[j]  # (m, K, 2)
    if rel.shape[1] == 1:
        return np.zeros(len(i)), np.hypot(rel[:, 0, 0], rel[:, 0, 1])
    r0, dr = rel[:, :-1], np.diff(rel, axis=1)
    run = (dr**2).sum(axis=2)
    tau = np.where(run > 1e-12, np.clip(-(r0 * dr).sum(axis=2) / np.maximum(run, 1e-12), 0, 1), 0)
    near = r0 + tau[..., None] * dr
    dist = np.hypot(near[..., 0], near[..., 1])  # (m, K-1)
    k = np.argmin(dist, axis=1)
    rows = np.arange(len(i))
    return (k + tau[rows, k]) * dt_s, dist[rows, k]


def closest_approach(a: np.ndarray, b: np.ndarray, dt_s: float) -> tuple[float, float]:
    """One pair: (time s, distance m) of closest approach of paths ``a`` and ``b`` (K, 2)."""
    t, d = closest_approaches(np.stack([a, b]), np.array([0]), np.array([1]), dt_s)
    return float(t[0]), float(d[0])


# --- candidates: a uniform grid over the swept paths ----------------------------------------------


def candidate_pairs(paths: np.ndarray, reach_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) whose swept paths' bounding boxes, each grown by ``reach_m`` / 2, overlap:
    every pair that can come closer than ``reach_m`` is among them (two points closer than
    reach lie in boxes grown by half of it that overlap). Boxes are put in the cells of a
    uniform grid they cover; only machines sharing a cell are compared, then by their boxes."""
    n = len(paths)
    if n < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    half = reach_m / 2.0
    lo = paths.min(axis=1) - half  # (n, 2)
    hi = paths.max(axis=1) + half
    # A cell about the size of a typical box: most boxes touch 1 to 4 cells.
    cell = max(float(np.median((hi - lo).max(axis=1))), reach_m, 1.0)
    c_lo = np.floor(lo / cell).astype(np.int64)
    c_hi = np.floor(hi / cell).astype(np.int64)
    spans = c_hi - c_lo + 1
    counts = spans[:, 0] * spans[:, 1]
    owner = np.repeat(np.arange(n), counts)
    # Each box's cells, enumerated without a Python loop over machines.
    start = np.repeat(np.cumsum(counts) - counts, counts)
    local = np.arange(len(owner)) - start
    cx = c_lo[owner, 0] + local % spans[owner, 0]
    cy = c_lo[owner, 1] + local // spans[owner, 0]
    key = (cx - cx.min()) * (int(cy.max() - cy.min()) + 1) + (cy - cy.min())
    order = np.lexsort((owner, key))
    key, owner = key[order], owner[order]
    bounds = np.flatnonzero(np.diff(key)) + 1
    firsts, seconds = [], []
    for members in np.split(owner, bounds):
        if len(members) < 2:
            continue
        a, b = np.triu_indices(len(members), k=1)
        firsts.append(members[a])
        seconds.append(members[b])
    if not firsts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    i, j = np.concatenate(firsts), np.concatenate(seconds)
    unique = np.unique(i * n + j)  # a pair sharing several cells once (members are sorted)
    i, j = unique // n, unique % n
    overlap = np.all((lo[i] <= hi[j]) & (lo[j] <= hi[i]), axis=1)
    return i[overlap], j[overlap]


@dataclass(frozen=True)
class Encounter:
    """A pair of machines predicted to come closer than the safety distance."""

    first: int
    second: int
    t_ca_s: float  # time of closest approach from now
    d_ca_m: float  # distance then
    range_rate_mps: float  # d(distance)/dt now: negative while they close


@dataclass(frozen=True)
class Lanes:
    """Where each machine drives on the road graph (arrays of n): its way (-1 off the roads),
    direction along it (+1 / -1), whether that way is one-lane, the distance along it now (m),
    its speed now (m/s) and the way's two end nodes. Used to rule out pairs the plane
    geometry alone would flag (``separated``)."""

    way: np.ndarray
    direction: np.ndarray
    one_lane: np.ndarray
    s: np.ndarray | None = None
    speed: np.ndarray | None = None
    nodes: np.ndarray | None = None  # (n, 2)

    def oncoming(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Same two-lane way, opposite directions: they pass each other in their own lanes."""
        return (
            (self.way[i] >= 0)
            & (self.way[i] == self.way[j])
            & (self.direction[i] == -self.direction[j])
            & ~self.one_lane[i]
        )

    def separated(
        self, i: np.ndarray, j: np.ndarray, horizon_s: float, reach_m: float
    ) -> np.ndarray:
        """Pairs the road keeps apart over the horizon, however close in the plane (switchback
        legs of one ramp, benches above each other): on the same way, further apart along it
        than closing at their speeds can bring them within ``reach_m``; on two ways that share
        no node, not at all (the limit: a way between them shorter than the horizon's
        travel is not considered)."""
        out = self.oncoming(i, j)
        if self.s is None or self.speed is None or self.nodes is None:
            return out
        both = (self.way[i] >= 0) & (self.way[j] >= 0)
        same = both & (self.way[i] == self.way[j])
        closing = np.where(
            self.direction[i] == self.direction[j],
            np.abs(self.speed[i] - self.speed[j]),
            self.speed[i] + self.speed[j],
        )
        apart = np.abs(self.s[i] - self.s[j]) - closing * horizon_s > reach_m
        shared = (self.nodes[i][:, :, None] == self.nodes[j][:, None, :]).any(axis=(1, 2))
        return out | (same & apart) | (both & ~same & ~shared)


@dataclass(frozen=True)
class Assessment:
    encounters: list[Encounter]
    candidates: int  # pairs given the exact closest-approach computation
    machines: int


def assess(
    paths: np.ndarray,
    dt_s: float,
    thresholds: Thresholds,
    *,
    lanes: Lanes | None = None,
) -> Assessment:
    """The risky pairs among ``paths`` (n, K, 2): closest approach under the safety distance,
    both of them moving along their paths (a pair of moving machines: a machine standing for
    good is left to the other's own perception and the queue rules), and not two machines
    already past each other and opening, nor (given ``lanes``) a pair the road keeps apart
    (``Lanes.separated``)."""
    n = len(paths)
    i, j = candidate_pairs(paths, thresholds.safety_distance_m)
    if lanes is not None and len(i):
        horizon = (paths.shape[1] - 1) * dt_s
        keep = ~lanes.separated(i, j, horizon, thresholds.safety_distance_m)
        i, j = i[keep], j[keep]
    speed = _speeds(paths, dt_s)
    moving = speed > thresholds.moving_mps
    keep = moving[i] & moving[j]
    i, j = i[keep], j[keep]
    t, d = closest_approaches(paths, i, j, dt_s)
    rate = _range_rates(paths, i, j, dt_s)
    risky = (d < thresholds.safety_distance_m) & ~((t <= 1e-9) & (rate > thresholds.opening_mps))
    encounters = [
        Encounter(int(a), int(b), float(tt), float(dd), float(rr))
        for a, b, tt, dd, rr in zip(
            i[risky], j[risky], t[risky], d[risky], rate[risky], strict=True
        )
    ]
    return Assessment(encounters, candidates=len(i), machines=n)


def _speeds(paths: np.ndarray, dt_s: float) -> np.ndarray:
    """Speed now (m/s): the first interval of each path."""
    if paths.shape[1] < 2:
        return np.zeros(len(paths))
    return np.hypot(*(paths[:, 1] - paths[:, 0]).T) / dt_s


def _range_rates(paths: np.ndarray, i: np.ndarray, j: np.ndarray, dt_s: float) -> np.ndarray:
    if len(i) == 0 or paths.shape[1] < 2:
        return np.zeros(len(i))
    now = np.hypot(*(paths[i, 0] - paths[j, 0]).T)
    then = np.hypot(*(paths[i, 1] - paths[j, 1]).T)
    return (then - now) / dt_s


# --- interventions ----------------------------------------------------------------------------


def interventions(
    paths: np.ndarray,
    encounter: Encounter,
    dt_s: float,
    thresholds: Thresholds,
    standing: np.ndarray | None = None,
) -> dict[int, Intervention]:
    """Which machine of a risky pair gets which ISO 21815-2 intervention (``standing``: which
    machines stand now, though their paths move: about to start, or held and placed as if
    released; default none):

    - a standing machine: prevent motion (it must not start into the other's path);
    - stop, for each moving machine driving towards the other (not a leader pulling away
      from its follower), when the approach is closing and sooner than ``stop_ttca_s`` or
      closer than ``critical_distance_m``;
    - otherwise slow down, for the moving machine that gives way: the one driving more
      towards the other (the follower behind a leader, the one heading into a crossing).
    """
    pair = (encounter.first, encounter.second)
    still = [bool(standing[m]) if standing is not None else False for m in pair]
    out: dict[int, Intervention] = {
        m: Intervention.PREVENT_MOTION for m, stands in zip(pair, still, strict=True) if stands
    }
    movers = [m for m, stands in zip(pair, still, strict=True) if not stands]
    if not movers:
        return out
    closing = encounter.range_rate_mps < -thresholds.opening_mps
    urgent = encounter.d_ca_m <= thresholds.critical_distance_m or (
        closing and encounter.t_ca_s <= thresholds.stop_ttca_s
    )
    give_way = max(movers, key=lambda m: towards(paths, m, pair, dt_s))
    if urgent:
        heading_in = [m for m in movers if towards(paths, m, pair, dt_s) > thresholds.opening_mps]
        out.update({m: Intervention.STOP for m in heading_in or [give_way]})
    else:
        out[give_way] = Intervention.SLOW_DOWN
    return out


def towards(paths: np.ndarray, m: int, pair: tuple[int, int], dt_s: float) -> float:
    """How much machine ``m`` drives towards the other one now (speed component, m/s)."""
    other = pair[1] if m == pair[0] else pair[0]
    gap = paths[other, 0] - paths[m, 0]
    velocity = (paths[m, 1] - paths[m, 0]) / dt_s
    return float(velocity @ gap / max(float(np.hypot(*gap)), 1e-9))
