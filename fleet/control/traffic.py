"""The traffic-permission arbiter: who may enter which one-lane section (a policy zone with the
``trafficPermission`` policy) now. Pure: plain data in, decisions out; the database, the outbox
and the clock are ``fleet.control.traffic_services``'s business.

The rules, in the order they are applied (docs/control-traffic.md):

1. **Unused grants expire.** A grant whose truck has not entered the section within
   ``grant_unused_s`` is taken back, so the section frees. A waiting request that its truck has
   not renewed within ``stale_s`` is dropped (the truck went elsewhere).
2. **Never two conflicting grants.** A section admits at most ``capacity`` trucks (default 1),
   and several only when all entered by the same way (one direction). A truck that asks from
   inside (no WayId) conflicts with everyone.
3. **First come, first served**, except that at the same point (same section, same entry way) a
   loaded truck goes before an empty one: it takes the place in the queue of the earliest empty
   truck waiting there.
4. **Bounded waiting.** A request that has waited ``max_wait_s``, or seen ``max_overtakes``
   grants to others in its section, is urgent: it is served next, and while only occupancy keeps
   it out nobody else is granted that section (the section is held for it).
5. **No deadlock.** A truck from outside a ring of N sections (a cycle of adjacent sections,
   where leaving one means entering the next) is not let in when N - 1 trucks are already in
   it: the ring never fills, so some truck in it always has a free section ahead. Trucks already
   in the ring move on freely. Two trucks facing each other at the two ends of one section are
   rule 2: one goes, then the other.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

PENDING, GRANTED = "pending", "granted"

# What a decision does to a permission.
GRANT, EXPIRE_GRANT, EXPIRE_REQUEST = "grant", "expire_grant", "expire_request"

# The rule behind each decision, as recorded in the audit trail ("rule:<name>").
RULE_FIFO = "fifo"
RULE_LOADED_FIRST = "loaded-first"
RULE_MAX_WAIT = "max-wait"
RULE_MAX_OVERTAKES = "max-overtakes"
RULE_UNUSED = "grant-unused"
RULE_STALE = "request-stale"


@dataclass(frozen=True)
class Rules:
    max_wait_s: float = 120.0
    max_overtakes: int = 3
    grant_unused_s: float = 60.0
    stale_s: float = 75.0


@dataclass(frozen=True)
class Section:
    """A one-lane section: a trafficPermission zone and how many trucks it admits at once."""

    zone: Hashable
    capacity: int = 1
    name: str = ""


@dataclass(frozen=True)
class Permission:
    """A truck's open permission for a section: waiting (pending) or granted."""

    key: Hashable  # the caller's id of the permission
    truck: Hashable
    zone: Hashable
    way: Hashable  # its direction (the entrance it asks at); None: unknown, or from inside
    status: str  # PENDING or GRANTED
    requested_at: datetime
    loaded: bool = False
    last_asked_at: datetime | None = None  # the latest renewal of the request
    granted_at: datetime | None = None
    entered: bool = False  # a granted truck seen inside the section
    overtakes: int = 0  # grants to others in its section while it waited


@dataclass(frozen=True)
class Decision:
    key: Hashable
    action: str  # GRANT, EXPIRE_GRANT or EXPIRE_REQUEST
    rule: str
    reason: str


@dataclass
class Outcome:
    decisions: list[Decision] = field(default_factory=list)
    # Waiting requests: key -> (overtakes now, why it still waits).
    waiting: dict[Hashable, tuple[int, str]] = field(default_factory=dict)

    def granted(self) -> list[Hashable]:
        return [d.key for d in self.decisions if d.action == GRANT]


def decide(
    sections: Mapping[Hashable, Section],
    permissions: Iterable[Permission],
    now: datetime,
    rules: Rules = Rules(),
    rings: Sequence[frozenset] = (),
) -> Outcome:
    """What to do now with the open permissions of one site."""
    outcome = Outcome()
    granted, pending = _expire(list(permissions), now, rules, outcome)
    holders: dict[Hashable, list[Permission]] = {}
    for permission in granted:
        holders.setdefault(permission.zone, []).append(permission)
    occupied = _Occupancy(rings, granted)
    skipped: dict[Hashable, list[Permission]] = {}  # per section: passed over, still waiting
    held: dict[Hashable, Permission] = {}  # section -> the urgent request it is held for
    overtakes = {p.key: p.overtakes for p in pending}
    for request, rule in _queue(pending, now, rules):
        section = sections.get(request.zone)
        if section is None:  # not a traffic-permission section (any more): nothing to grant
            outcome.waiting[request.key] = (overtakes[request.key], "not a one-lane section")
            continue
        urgent = rule in (RULE_MAX_WAIT, RULE_MAX_OVERTAKES)
        why = _why_not(request, section, holders.get(request.zone, []), held, occupied)
        if why is None:
            reason = _grant_reason(request, rule, now, overtakes[request.key])
            outcome.decisions.append(Decision(request.key, GRANT, rule, reason))
            holders.setdefault(request.zone, []).append(request)
            occupied.add(request)
            for other in skipped.get(request.zone, []):
                overtakes[other.key] += 1
            continue
        if urgent and why.startswith("occupied") and request.zone not in held:
            held[request.zone] = request
        skipped.setdefault(request.zone, []).append(request)
        outcome.waiting[request.key] = (overtakes[request.key], why)
    for key, (_, why) in list(outcome.waiting.items()):
        outcome.waiting[key] = (overtakes[key], why)
    return outcome


def _expire(
    permissions: list[Permission], now: datetime, rules: Rules, outcome: Outcome
) -> tuple[list[Permission], list[Permission]]:
    """Rule 1; the grants and requests still open."""
    granted, pending = [], []
    unused = timedelta(seconds=rules.grant_unused_s)
    stale = timedelta(seconds=rules.stale_s)
    for p in permissions:
        if p.status == GRANTED:
            if not p.entered and p.granted_at is not None and now - p.granted_at > unused:
                reason = f"grant not used within {rules.grant_unused_s:.0f} s"
                outcome.decisions.append(Decision(p.key, EXPIRE_GRANT, RULE_UNUSED, reason))
            else:
                granted.append(p)
        elif now - (p.last_asked_at or p.requested_at) > stale:
            reason = f"request not renewed within {rules.stale_s:.0f} s"
            outcome.decisions.append(Decision(p.key, EXPIRE_REQUEST, RULE_STALE, reason))
        else:
            pending.append(p)
    return granted, pending


def _queue(pending: list[Permission], now: datetime, rules: Rules) -> list[tuple[Permission, str]]:
    """Rules 3 and 4: the waiting requests in the order they are served, each with the rule
    that puts it there. At each point (section, entry way) the loaded trucks take the earliest
    places of that point's queue; urgent requests come first."""
    by_point: dict[tuple[Hashable, Hashable], list[Permission]] = {}
    for p in pending:
        by_point.setdefault((p.zone, p.way), []).append(p)
    placed: list[tuple[tuple[Any, ...], Permission, str]] = []
    for group in by_point.values():
        slots = sorted(p.requested_at for p in group)
        ranked = sorted(group, key=lambda p: (not p.loaded, p.requested_at, str(p.truck)))
        for slot, p in zip(slots, ranked, strict=True):
            rule = RULE_LOADED_FIRST if slot < p.requested_at else RULE_FIFO
            if now - p.requested_at >= timedelta(seconds=rules.max_wait_s):
                rule = RULE_MAX_WAIT
            elif p.overtakes >= rules.max_overtakes:
                rule = RULE_MAX_OVERTAKES
            urgent = rule in (RULE_MAX_WAIT, RULE_MAX_OVERTAKES)
            placed.append(((not urgent, slot, p.requested_at, str(p.truck)), p, rule))
    placed.sort(key=lambda item: item[0])
    return [(p, rule) for _, p, rule in placed]


def _why_not(
    request: Permission,
    section: Section,
    holders: list[Permission],
    held: Mapping[Hashable, Permission],
    occupied: _Occupancy,
) -> str | None:
    """Rules 2, 4 and 5: None if ``request`` may be granted now, else why not."""
    clash = conflict(section, holders, request)
    if clash is not None:
        return clash
    keeper = held.get(request.zone)
    if keeper is not None and keeper.key != request.key:
        return f"held for {keeper.truck}, who has waited longest"
    ring = occupied.would_fill(request)
    if ring is not None:
        return f"held back: it would fill a ring of {len(ring)} one-lane sections"
    return None


def conflict(section: Section, holders: Iterable[Permission], request: Permission) -> str | None:
    """Rule 2 alone: why granting ``request`` beside the grants ``holders`` would conflict
    (None if it would not). A grant by hand is checked against this too."""
    others = [h for h in holders if h.truck != request.truck]
    if not others:
        return None
    if len(others) >= section.capacity:
        return f"occupied by {_names(others)}"
    if request.way is None or any(h.way != request.way for h in others):
        return f"occupied by {_names(others)} in the other direction"
    return None


def _grant_reason(request: Permission, rule: str, now: datetime, overtakes: int) -> str:
    waited = (now - request.requested_at).total_seconds()
    if rule == RULE_MAX_WAIT:
        return f"served after waiting {waited:.0f} s (the longest wait allowed)"
    if rule == RULE_MAX_OVERTAKES:
        return f"served after {overtakes} grants to others (the most allowed)"
    if rule == RULE_LOADED_FIRST:
        return f"loaded: goes before the empty trucks waiting at the same point (waited {waited:.0f} s)"
    return f"free, first in line (waited {waited:.0f} s)"


def _names(permissions: Iterable[Permission]) -> str:
    return ", ".join(sorted(str(p.truck) for p in permissions))


class _Occupancy:
    """Which trucks are in each ring (hold a grant on one of its sections)."""

    def __init__(self, rings: Sequence[frozenset], granted: Iterable[Permission]) -> None:
        self.rings = [ring for ring in rings if len(ring) >= 2]
        self.trucks: list[set[Hashable]] = [set() for _ in self.rings]
        for permission in granted:
            self.add(permission)

    def add(self, permission: Permission) -> None:
        for ring, trucks in zip(self.rings, self.trucks, strict=True):
            if permission.zone in ring:
                trucks.add(permission.truck)

    def would_fill(self, request: Permission) -> frozenset | None:
        """The ring this grant would fill: one the truck is not in yet, holding N - 1 trucks."""
        for ring, trucks in zip(self.rings, self.trucks, strict=True):
            if (
                request.zone in ring
                and request.truck not in trucks
                and len(trucks) >= len(ring) - 1
            ):
                return ring
        return None


def rings_of(adjacent: Iterable[tuple[Hashable, Hashable]], longest: int = 12) -> list[frozenset]:
    """The rings of sections: simple cycles of three or more sections in the (undirected) graph
    of adjacent sections, each once, up to ``longest`` sections."""
    graph: dict[Hashable, set[Hashable]] = {}
    for a, b in adjacent:
        if a != b:
            graph.setdefault(a, set()).add(b)
            graph.setdefault(b, set()).add(a)
    order = {node: i for i, node in enumerate(sorted(graph, key=str))}
    found: set[frozenset] = set()

    def walk(start: Hashable, path: list[Hashable]) -> None:
        for nxt in graph[path[-1]]:
            if nxt == start and len(path) >= 3:
                found.add(frozenset(path))
            elif order[nxt] > order[start] and nxt not in path and len(path) < longest:
                walk(start, [*path, nxt])

    for node in graph:
        walk(node, [node])
    return sorted(found, key=lambda ring: (len(ring), sorted(map(str, ring))))


def adjacent_pairs(
    zones: Mapping[Hashable, Any], within_m: float, distance: Any
) -> list[tuple[Hashable, Hashable]]:
    """Pairs of sections closer than ``within_m`` (``distance(a, b)`` in metres): a truck
    leaving one enters the other before it could stop between them."""
    return [
        (a, b)
        for a, b in itertools.combinations(zones, 2)
        if distance(zones[a], zones[b]) <= within_m
    ]
