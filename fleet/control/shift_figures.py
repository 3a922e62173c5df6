"""The safety and production figures of a shift (``manage.py bench shift``), computed afterwards
from what was stored: plain data in, figures out (numpy; no database, no clock). Each function
states what it counts; docs/benchmarks.md (``## shift``) gives the definitions with the figures.

- ``permission_conflicts``: pairs of overlapping granted intervals on one traffic-permission
  section that the section's rule forbids (more holders than its capacity, or two holders that
  asked at different entrances, i.e. in different directions, or one of unknown direction).
- ``exclusion_entries``: a truck outside an active exclusion zone, past its grace (below), and
  then inside it while the zone is still active. A truck inside at activation, or one that could
  not stop short once it knew of the zone, is *caught*, not an entry: the FMS stops it where it
  is (compliance's exclusion alert and stop). Its grace ends ``stop_allowance(speed)`` after it
  acknowledged the zone (its speed then, braking at service deceleration, plus a second).
- ``separation``: at sampled instants, the distance between every pair of eligible trucks (moving,
  on a haul road, outside loading, queueing and dumping areas) whose ways can bring them together
  (``in_conflict``: following on one way, head-on on a one-lane way, merging or crossing at a
  node, following through it; not oncoming on two lanes, not on ways sharing no node, not two
  trucks driving away from their common node on different ways); a truck following another is
  as far from it as the road between them (``path_distance``: switchback legs, or a bend
  through a junction, are nearer in the plane), other pairs as the crow flies; a KD-tree finds
  the pairs within ``radius_m``, not every pair.
- ``tonnes_dumped``: each time a truck's production state becomes Dumping, the last payload it
  reported before.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from fleet.control.collision import Lanes, Road

SERVICE_DECEL_MPS2 = 1.0  # service braking an AHS commands (the simulator's A_BRAKE)
REACTION_S = 1.0  # from the truck's acknowledgement to its brakes acting


# --- traffic permissions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One truck's granted interval on a section (epoch seconds); ``gate`` is the entrance it
    asked at (its direction), None when unknown."""

    zone: Hashable
    truck: Hashable
    gate: int | None
    start: float
    end: float


def grant_intervals(
    events: Iterable[tuple[Hashable, Hashable, Hashable, int | None, float, str]], end: float
) -> list[Grant]:
    """Granted intervals from permissions' status trails: rows of (permission, zone, truck,
    gate, at, status) in time order per permission. An interval opens at 'granted' and closes at
    the next other status; one still open closes at ``end``."""
    open_at: dict[Hashable, tuple[Hashable, Hashable, int | None, float]] = {}
    grants = []
    for permission, zone, truck, gate, at, status in events:
        if status == "granted":
            open_at.setdefault(permission, (zone, truck, gate, at))
        elif permission in open_at:
            zone_, truck_, gate_, start = open_at.pop(permission)
            grants.append(Grant(zone_, truck_, gate_, start, at))
    grants += [Grant(z, t, g, s, end) for z, t, g, s in open_at.values()]
    return grants


def permission_conflicts(
    grants: Sequence[Grant], capacity: Mapping[Hashable, int] | None = None
) -> list[tuple[Grant, Grant]]:
    """Pairs (earlier holder, later grant) that overlap on one section against its rule: the
    later one started while the section already had ``capacity`` other holders (default 1), or
    while a holder that asked at another entrance (or at an unknown one) held it. A truck
    holding twice is one truck, not a conflict."""
    capacity = capacity or {}
    by_zone: dict[Hashable, list[Grant]] = defaultdict(list)
    for grant in grants:
        by_zone[grant.zone].append(grant)
    found = []
    for zone, zone_grants in by_zone.items():
        holders: list[Grant] = []
        for grant in sorted(zone_grants, key=lambda g: (g.start, g.end)):
            holders = [h for h in holders if h.end > grant.start and h.truck != grant.truck]
            full = len(holders) >= capacity.get(zone, 1)
            for holder in holders:
                other_way = grant.gate is None or holder.gate is None or holder.gate != grant.gate
                if full or other_way:
                    found.append((holder, grant))
            holders.append(grant)
    return found


# --- exclusion zones ------------------------------------------------------------------------------


def inside_polygon(ring: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Points inside a simple polygon (ray casting, vectorised over the points); ``ring`` is
    (V, 2), closed or not."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    inside = np.zeros(x.shape, dtype=bool)
    ax, ay = ring[:, 0], ring[:, 1]
    bx, by = np.roll(ax, -1), np.roll(ay, -1)
    for x0, y0, x1, y1 in zip(ax, ay, bx, by, strict=True):
        if y0 == y1:
            continue
        crosses = (y0 > y) != (y1 > y)
        inside ^= crosses & (x < (x1 - x0) * (y - y0) / (y1 - y0) + x0)
    return inside


def edge_distance(ring: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each point's distance to the polygon's boundary (vectorised over the points)."""
    p = np.stack([np.asarray(x, dtype=float), np.asarray(y, dtype=float)], axis=-1)
    a, b = ring[:-1], ring[1:]
    ab = b - a
    run = np.maximum((ab**2).sum(axis=1), 1e-12)
    t = np.clip(((p[:, None, :] - a[None]) * ab[None]).sum(axis=2) / run[None], 0.0, 1.0)
    near = a[None] + ab[None] * t[:, :, None]
    return np.hypot(*(near - p[:, None, :]).transpose(2, 0, 1)).min(axis=1)


def stop_allowance(speed_mps: float) -> float:
    """Seconds a truck at ``speed_mps`` needs, once told, to stand: reaction plus braking."""
    return REACTION_S + max(speed_mps, 0.0) / SERVICE_DECEL_MPS2


@dataclass(frozen=True)
class ExclusionWindow:
    """An exclusion zone while it was active (epoch seconds), its ring in the tracks' frame, and
    per truck when its grace ends (``grace_until``; a truck not in it: ``default_grace_until``)."""

    zone: Hashable
    ring: np.ndarray
    active_from: float
    active_until: float
    grace_until: Mapping[Hashable, float]
    default_grace_until: float


@dataclass(frozen=True)
class Track:
    """One truck's positions in time order: times (epoch s), x, y (any planar frame, the
    zones' too), speed (m/s), heading (degrees from north)."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    speed: np.ndarray
    heading: np.ndarray | None = None


@dataclass(frozen=True)
class ExclusionFigures:
    entries: list[tuple[Hashable, Hashable, float]]  # (zone, truck, first time inside)
    caught: list[tuple[Hashable, Hashable]]  # (zone, truck): inside within its grace
    positions_inside: int  # stored positions inside a zone while it was active, all trucks


def exclusion_entries(
    windows: Sequence[ExclusionWindow], tracks: Mapping[Hashable, Track], noise_m: float = 0.0
) -> ExclusionFigures:
    """Entries and caught trucks (module docstring): a truck's state at the end of its grace
    is where its last position up to then was (inside: caught; none: outside); after it, each
    step from outside to inside while the zone is active is an entry. A position within
    ``noise_m`` of the zone's edge changes nothing (a truck standing at the edge, its fixes
    scattered by GNSS noise either side, neither enters nor leaves)."""
    entries, caught, inside_count = [], [], 0
    for window in windows:
        lo = window.ring.min(axis=0)
        hi = window.ring.max(axis=0)
        for truck, track in tracks.items():
            active = (track.t >= window.active_from) & (track.t < window.active_until)
            before = track.t < window.active_from
            # The last position before activation tells where the truck was when it came on.
            if before.any():
                active[np.flatnonzero(before)[-1]] = True
            if not active.any():
                continue
            t, x, y = track.t[active], track.x[active], track.y[active]
            box = (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1])
            if not box.any():
                continue
            inside = box & inside_polygon(window.ring, x, y)
            inside_count += int(inside[t >= window.active_from].sum())
            grace = window.grace_until.get(truck, window.default_grace_until)
            in_grace = t <= grace
            if (inside & in_grace).any():
                caught.append((window.zone, truck))
            was = bool(inside[in_grace][-1]) if in_grace.any() else False
            later = ~in_grace
            clear = edge_distance(window.ring, x[later], y[later]) > noise_m
            for at, now, sure in zip(t[later], inside[later], clear, strict=True):
                if not sure:
                    continue
                if now and not was:
                    entries.append((window.zone, truck, float(at)))
                was = bool(now)
    return ExclusionFigures(entries, caught, inside_count)


# --- separation -----------------------------------------------------------------------------------


def project_on_road(road: Road, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For (M, 2) points: distance along ``road`` of the nearest point, the road's unit
    direction there (M, 2), and the distance off it (vectorised ``Road.project``)."""
    a, b = road.xy[:-1], road.xy[1:]
    ab = b - a
    run = np.maximum((ab**2).sum(axis=1), 1e-12)
    rel = points[:, None, :] - a[None, :, :]
    t = np.clip((rel * ab[None]).sum(axis=2) / run[None], 0.0, 1.0)
    near = a[None] + ab[None] * t[:, :, None]
    off = np.hypot(*(near - points[:, None, :]).transpose(2, 0, 1))
    best = np.argmin(off, axis=1)
    rows = np.arange(len(points))
    s = road.s[best] + t[rows, best] * (road.s[best + 1] - road.s[best])
    direction = ab[best] / np.sqrt(run[best])[:, None]
    return s, direction, off[rows, best]


@dataclass(frozen=True)
class Samples:
    """Eligible trucks at sampled instants (arrays of the same length): instant index, truck
    index, position (m, planar), speed (m/s), and where on the road graph (``collision.Lanes``
    fields: way or -1, direction +1 / -1 (towards the way's second node or its first), one-lane,
    distance along the way, the way's nodes), the way it takes after this one, and the way's
    length."""

    instant: np.ndarray
    truck: np.ndarray
    xy: np.ndarray  # (M, 2)
    speed: np.ndarray
    way: np.ndarray
    direction: np.ndarray
    one_lane: np.ndarray
    s: np.ndarray
    nodes: np.ndarray  # (M, 2)
    next_way: np.ndarray  # the way it takes next (-1: not known)
    length: np.ndarray  # its way's length (m)


@dataclass(frozen=True)
class SeparationFigures:
    pairs_sampled: int  # (instant, pair) within radius_m that the road does not keep apart
    min_separation_m: float | None
    below_safety: int  # of those, closer than the safety distance
    pairs_road_apart: int  # within radius_m but kept apart by the road (not counted)
    closest: list[dict[str, Any]]  # the closest few, for the notes


def separation(
    samples: Samples, *, safety_m: float, radius_m: float, keep_closest: int = 5
) -> SeparationFigures:
    """Pairs of eligible trucks at each instant (module docstring)."""
    order = np.argsort(samples.instant, kind="stable")
    instants = samples.instant[order]
    bounds = np.flatnonzero(np.diff(instants)) + 1
    counted, apart, below = 0, 0, 0
    closest: list[tuple[float, int, int, int]] = []
    lanes = Lanes(
        samples.way,
        samples.direction,
        samples.one_lane,
        s=samples.s,
        speed=samples.speed,
        nodes=samples.nodes,
    )
    for group in np.split(order, bounds):
        if len(group) < 2:
            continue
        pairs = cKDTree(samples.xy[group]).query_pairs(radius_m, output_type="ndarray")
        if not len(pairs):
            continue
        i, j = group[pairs[:, 0]], group[pairs[:, 1]]
        keep = in_conflict(samples, lanes, i, j)
        apart += int((~keep).sum())
        i, j = i[keep], j[keep]
        if not len(i):
            continue
        d = np.hypot(*(samples.xy[i] - samples.xy[j]).T)
        # A truck following another is as far from it as the road between them (switchback
        # legs, a bend through a junction: nearer in the plane); others, as the crow flies.
        along = path_distance(samples, i, j)
        d = np.where(np.isnan(along), d, np.maximum(d, along))
        counted += len(d)
        below += int((d < safety_m).sum())
        for k in np.argsort(d)[:keep_closest].tolist():
            closest.append((float(d[k]), int(samples.instant[i[k]]), int(i[k]), int(j[k])))
    closest = sorted(closest)[:keep_closest]
    return SeparationFigures(
        pairs_sampled=counted,
        min_separation_m=round(closest[0][0], 1) if closest else None,
        below_safety=below,
        pairs_road_apart=apart,
        closest=[
            {
                "distance_m": round(d, 1),
                "instant": instant,
                "trucks": [int(samples.truck[a]), int(samples.truck[b])],
                "ways": [int(samples.way[a]), int(samples.way[b])],
                "speeds_mps": [
                    round(float(samples.speed[a]), 1),
                    round(float(samples.speed[b]), 1),
                ],
            }
            for d, instant, a, b in closest
        ],
    )


def in_conflict(samples: Samples, lanes: Lanes, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Pairs whose ways can bring them together: on one way, following (or head-on on a
    one-lane way; oncoming on two lanes pass in their own); on two ways meeting at a node, both
    approaching it (merging or crossing there), or one leaving it by the way the other takes
    next (following through it). Two ways without a node in common, or two trucks both
    leaving their common node, are kept apart by the road."""
    same = samples.way[i] == samples.way[j]
    ni, nj = samples.nodes[i], samples.nodes[j]
    toward_i = np.where(samples.direction[i] > 0, ni[:, 1], ni[:, 0])
    toward_j = np.where(samples.direction[j] > 0, nj[:, 1], nj[:, 0])
    shared_toward_i = (toward_i[:, None] == nj).any(axis=1)
    node = np.where(
        shared_toward_i, toward_i, np.where((ni[:, 0:1] == nj).any(axis=1), ni[:, 0], ni[:, 1])
    )
    meet = (node[:, None] == nj).any(axis=1)
    approach_i, approach_j = toward_i == node, toward_j == node
    next_i, next_j = samples.next_way[i], samples.next_way[j]
    follows_through = (approach_i & ~approach_j & ((next_i == samples.way[j]) | (next_i < 0))) | (
        approach_j & ~approach_i & ((next_j == samples.way[i]) | (next_j < 0))
    )
    other_ways = meet & ((approach_i & approach_j) | follows_through)
    return np.where(same, ~lanes.oncoming(i, j), other_ways)


def _to_node(samples: Samples, k: np.ndarray, node: np.ndarray) -> np.ndarray:
    """Distance along its way from each sample ``k`` to ``node`` (one of the way's ends)."""
    at_start = samples.nodes[k, 0] == node
    return np.where(at_start, samples.s[k], samples.length[k] - samples.s[k])


def path_distance(samples: Samples, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The distance between two trucks along the road where one follows the other: on one
    way, along it; through a node, to the node plus beyond it. NaN for other pairs."""
    same = samples.way[i] == samples.way[j]
    out = np.where(same, np.abs(samples.s[i] - samples.s[j]), np.nan)
    ni, nj = samples.nodes[i], samples.nodes[j]
    toward_i = np.where(samples.direction[i] > 0, ni[:, 1], ni[:, 0])
    toward_j = np.where(samples.direction[j] > 0, nj[:, 1], nj[:, 0])
    i_follows = ~same & (samples.next_way[i] == samples.way[j]) & (toward_j != toward_i)
    j_follows = ~same & (samples.next_way[j] == samples.way[i]) & (toward_i != toward_j)
    through_i = _to_node(samples, i, toward_i) + _to_node(samples, j, toward_i)
    through_j = _to_node(samples, j, toward_j) + _to_node(samples, i, toward_j)
    out = np.where(i_follows, through_i, out)
    return np.where(j_follows, through_j, out)


def resample(t: np.ndarray, values: np.ndarray, at: np.ndarray, max_gap_s: float) -> np.ndarray:
    """``values`` (time order at ``t``) linearly interpolated at ``at``; NaN where the nearest
    fixes either side are more than ``max_gap_s`` apart or ``at`` is outside them."""
    out = np.interp(at, t, values, left=np.nan, right=np.nan)
    k = np.clip(np.searchsorted(t, at), 1, max(len(t) - 1, 1))
    gap = t[k] - t[k - 1] if len(t) > 1 else np.full(len(at), np.inf)
    return np.where(gap <= max_gap_s, out, np.nan)


def step_values(t: np.ndarray, values: Sequence[Any], at: np.ndarray, before: Any) -> list[Any]:
    """The latest of ``values`` (time order at ``t``) at or before each of ``at``."""
    k = np.searchsorted(t, at, side="right") - 1
    return [values[i] if i >= 0 else before for i in k.tolist()]


def next_values(
    t: np.ndarray, values: Sequence[int], at: np.ndarray, unknown: int = -1
) -> np.ndarray:
    """The next of ``values`` (time order at ``t``) that differs from the one in force at
    each of ``at``: where a truck goes after the way it is on."""
    vals = np.asarray(values, dtype=np.int64)
    if not len(vals):
        return np.full(len(at), unknown, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, vals[1:] != vals[:-1]])  # runs of one value
    run_t, run_v = t[starts], vals[starts]
    k = np.searchsorted(run_t, at, side="right")  # the run after the one in force
    return np.where(k < len(run_v), run_v[np.minimum(k, len(run_v) - 1)], unknown)


# --- production ----------------------------------------------------------------------------------


def tonnes_dumped(
    events: Iterable[tuple[Hashable, float, str, Mapping[str, Any]]], start: float, end: float
) -> tuple[float, int]:
    """(tonnes, dumps) of the dumps that began in [start, end): rows of (truck, time, message
    name, body) in time order per truck, HaulTruckProductionStateV2 and HaulTruckPayloadV1."""
    payload: dict[Hashable, float] = {}
    state: dict[Hashable, str] = {}
    tonnes, dumps = 0.0, 0
    for truck, at, name, body in events:
        if name == "HaulTruckPayloadV1":
            weight = body.get("PayloadWeight")
            if weight is not None:
                payload[truck] = float(weight)
        elif name == "HaulTruckProductionStateV2":
            now = body.get("ProductionState")
            if now == "Dumping" and state.get(truck) != "Dumping" and start <= at < end:
                tonnes += payload.get(truck, 0.0)
                dumps += 1
            state[truck] = now
    return tonnes, dumps


def per_hour(amount: float, seconds: float) -> float:
    return amount * 3600.0 / seconds if seconds > 0 else math.nan
