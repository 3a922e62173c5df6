"""Dispatch services: read the mine and the fleet, call the optimiser (fleet.control.dispatch),
send the assignments through the outbox, and keep the record (docs/control-dispatch.md).

- ``record_production_states``: the trucks' HaulTruckProductionStateV2 reports, as ingest
  admits them. A truck that dumps is free: it is assigned its next loading unit as it starts
  tipping, so that the assignment is in place when it finishes.
- ``replan``: a new flow plan (a loading unit went down or came back, an operator asked, or
  the last plan is older than DISPATCH_REPLAN_S), then every empty truck still on its way to a
  loading unit is looked at again: one heading to a unit that is down, or out of the plan, is
  moved; another only when the move saves DISPATCH_SWITCH_S.
- ``assign_by_hand`` / ``release_truck``: an operator's assignment holds until the truck's next
  dump (the dispatcher counts that truck where it goes and plans around it) unless released.
- ``set_unit_availability``: a loading unit down or back (with an optional dig rate), audited.

Travel times: the ETA head's latest prediction for a truck on its way to its loading unit
(``Prediction`` "eta", p50, when younger than DISPATCH_ETA_MAX_AGE_S), else the road graph
(ways at their operating speed, scipy's Dijkstra), built once per road-network revision.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from fleet.control import dispatch
from fleet.control.models import (
    Assignment,
    DispatchPlan,
    DispatchTruck,
    LoadingUnitStatus,
    SiteDispatch,
)
from fleet.control.services import ASSIGNMENT_KEY, issue_command, lock_open_commands
from fleet.live.broadcast import broadcast_on_commit
from fleet.mine.models import DumpPoint, LoadingUnit, RoadNetwork, RoadNode, Site, Way
from fleet.protocol import wire
from fleet.vehicles.models import Equipment

log = logging.getLogger(__name__)

MESSAGE = "HaulTruckAssignmentRequestV2"
PRODUCTION_STATE = "HaulTruckProductionStateV2"
DISPATCHER = "dispatcher"
AT_UNIT = frozenset({"Queued", "Spotting", "Loading"})
SPOT_S, DUMP_S = 30.0, 60.0  # positioning under a shovel; raising, tipping, lowering the body
M_PER_DEG = 111_320.0  # metres per degree of latitude (nearest-node search only)


# --- the road graph of a site, per road-network revision --------------------------------------


@dataclass(frozen=True)
class SiteGraph:
    graph: dispatch.RoadGraph
    way_ends: dict[int, tuple[int, int, float]]  # WayId -> (start node, end node, seconds)
    node_ways: dict[int, list[int]]  # node -> WayIds touching it
    unit_node: dict[int, int]  # LoadingUnit pk -> nearest road node
    dump_node: dict[int, int]  # DumpPoint pk -> nearest road node


_lock = threading.Lock()
_graphs: dict[uuid.UUID, tuple[Any, SiteGraph]] = {}


def site_graph(site: Site) -> SiteGraph | None:
    """The site's road graph (active revision) with its loading units and dumps snapped to
    their nearest road node; None without an active road network."""
    network = (
        RoadNetwork.objects.filter(site=site, status=RoadNetwork.Status.ACTIVE)
        .values_list("pk", "revision")
        .first()
    )
    if network is None:
        return None
    units = list(LoadingUnit.objects.filter(site=site).values_list("pk", "location"))
    dumps = list(DumpPoint.objects.filter(site=site).values_list("pk", "location"))
    key = (network, tuple((pk, p.coords) for pk, p in units + dumps))
    with _lock:
        cached = _graphs.get(site.pk)
    if cached is not None and cached[0] == key:
        return cached[1]
    built = _build_graph(network[0], units, dumps)
    with _lock:
        _graphs[site.pk] = (key, built)
    return built


def _build_graph(network_pk: int, units: list, dumps: list) -> SiteGraph:
    nodes = list(RoadNode.objects.filter(network_id=network_pk).values_list("node_id", "location"))
    ways = list(
        Way.objects.filter(network_id=network_pk).values_list(
            "way_id", "start_node__node_id", "end_node__node_id", "length_m", "operating_speed_kmh"
        )
    )
    site_speed = (
        Site.objects.filter(road_networks=network_pk).values_list("default_speed_kmh", flat=True)
    ).first() or 40.0
    seconds = [length / max((speed or site_speed) / 3.6, 0.5) for _, _, _, length, speed in ways]
    graph = dispatch.RoadGraph(
        [n for n, _ in nodes], [w[1] for w in ways], [w[2] for w in ways], seconds
    )
    node_ways: dict[int, list[int]] = {}
    for way_id, start, end, _, _ in ways:
        node_ways.setdefault(start, []).append(way_id)
        node_ways.setdefault(end, []).append(way_id)
    ids = np.asarray([n for n, _ in nodes])
    lon = np.asarray([p.x for _, p in nodes])
    lat = np.asarray([p.y for _, p in nodes])
    coslat = math.cos(math.radians(float(lat.mean()))) if len(lat) else 1.0

    def nearest(point: Any) -> int:
        d2 = ((lon - point.x) * coslat) ** 2 + (lat - point.y) ** 2
        return int(ids[int(np.argmin(d2))])

    return SiteGraph(
        graph=graph,
        way_ends={w[0]: (w[1], w[2], t) for w, t in zip(ways, seconds, strict=True)},
        node_ways=node_ways,
        unit_node={pk: nearest(p) for pk, p in units},
        dump_node={pk: nearest(p) for pk, p in dumps},
    )


def clear_caches() -> None:
    with _lock:
        _graphs.clear()


# --- the problem as the optimiser sees it -------------------------------------------------------


@dataclass
class SiteProblem:
    """A site's dispatch problem and the rows behind its indices."""

    site: Site
    graph: SiteGraph
    units: list[LoadingUnit]
    dumps: list[DumpPoint]
    problem: dispatch.Problem

    def unit_index(self, unit_id: int | None) -> int | None:
        for i, unit in enumerate(self.units):
            if unit.pk == unit_id:
                return i
        return None

    def travel_from_way(self, way_id: int | None) -> np.ndarray:
        """Seconds from somewhere on way ``way_id`` to each loading unit (from the nearer of
        its ends plus half the way; inf where unknown)."""
        ends = self.graph.way_ends.get(way_id) if way_id is not None else None
        if ends is None:
            return np.full(len(self.units), np.inf)
        start, end, seconds = ends
        targets = [self.graph.unit_node[u.pk] for u in self.units]
        times = self.graph.graph.times([start, end], targets)
        empty = settings.DISPATCH_RETURN_TIME_PCT / 100.0
        return (times.min(axis=0) + seconds / 2.0) * empty

    def dump_at(self, way_id: int | None) -> int | None:
        """The dump whose road node is an end of this way (where a truck that just tipped is)."""
        ends = self.graph.way_ends.get(way_id) if way_id is not None else None
        if ends is None:
            return None
        for i, dump in enumerate(self.dumps):
            if self.graph.dump_node[dump.pk] in ends[:2]:
                return i
        return None


def unit_states(site: Site) -> dict[int, LoadingUnitStatus]:
    """Each loading unit's latest reported status (units never reported are absent)."""
    latest = LoadingUnitStatus.objects.filter(loading_unit=OuterRef("loading_unit")).order_by(
        "-at", "-id"
    )
    rows = LoadingUnitStatus.objects.filter(
        loading_unit__site=site, pk=Subquery(latest.values("pk")[:1])
    )
    return {row.loading_unit_id: row for row in rows}


def site_problem(site: Site, graph: SiteGraph | None = None) -> SiteProblem | None:
    graph = graph or site_graph(site)
    if graph is None:
        return None
    units = list(LoadingUnit.objects.filter(site=site, active=True).order_by("name"))
    dumps = list(DumpPoint.objects.filter(site=site, active=True).order_by("name"))
    statuses = unit_states(site)
    trucks = Equipment.objects.filter(
        site=site,
        kind=Equipment.Kind.HAUL_TRUCK,
        autonomous=True,
        status=Equipment.Status.ACTIVE,
    ).values_list("payload_capacity_t", flat=True)
    payloads = [p for p in trucks if p]
    u_nodes = [graph.unit_node[u.pk] for u in units]
    d_nodes = [graph.dump_node[d.pk] for d in dumps]
    problem = dispatch.Problem(
        units=[_unit(u, statuses.get(u.pk)) for u in units],
        dumps=[dispatch.Dump(d.pk, d.name, d.accepts, d.capacity_tph) for d in dumps],
        haul_s=graph.graph.times(u_nodes, d_nodes) * settings.DISPATCH_HAUL_TIME_PCT / 100.0,
        return_s=graph.graph.times(d_nodes, u_nodes) * settings.DISPATCH_RETURN_TIME_PCT / 100.0,
        trucks=len(trucks),
        payload_t=float(np.mean(payloads)) if payloads else 90.0,
        spot_s=SPOT_S,
        dump_s=DUMP_S,
        truck_efficiency=settings.DISPATCH_TRUCK_EFFICIENCY_PCT / 100.0,
        utilisation=settings.DISPATCH_UTILISATION_PCT / 100.0,
    )
    return SiteProblem(site, graph, units, dumps, problem)


def _unit(unit: LoadingUnit, status: LoadingUnitStatus | None) -> dispatch.Unit:
    rate = unit.loading_rate_tph
    if status is not None and status.dig_rate_tph is not None:
        rate = status.dig_rate_tph
    available = status is None or status.available
    return dispatch.Unit(unit.pk, unit.name, unit.material, rate, available)


def _inputs(sp: SiteProblem) -> dict[str, Any]:
    return {
        "trucks": sp.problem.trucks,
        "payloadT": round(sp.problem.payload_t, 1),
        "units": [
            {"id": u.key, "name": u.name, "digRateTph": u.dig_rate_tph, "available": u.available}
            for u in sp.problem.units
        ],
        "dumps": [
            {"id": d.key, "name": d.name, "capacityTph": d.capacity_tph} for d in sp.problem.dumps
        ],
    }


# --- plans ---------------------------------------------------------------------------------------


def enabled(site: Site | uuid.UUID) -> bool:
    site_id = site.pk if isinstance(site, Site) else site
    return SiteDispatch.objects.filter(site_id=site_id, enabled=True).exists()


@transaction.atomic
def set_enabled(site: Site, on: bool) -> SiteDispatch:
    """Switch the dispatcher on or off for a site; switching it on plans at once."""
    row, _ = SiteDispatch.objects.update_or_create(site=site, defaults={"enabled": on})
    if on:
        replan(site, trigger="first", reason="dispatch switched on")
    return row


def make_plan(sp: SiteProblem, *, trigger: str, reason: str) -> tuple[DispatchPlan, dispatch.Plan]:
    """Solve the flow plan and record it."""
    plan = dispatch.solve_flows(sp.problem)
    row = DispatchPlan.objects.create(
        site=sp.site,
        trigger=trigger[:20],
        reason=reason[:300],
        status=plan.status,
        tph=round(plan.tph, 1),
        trucks=sp.problem.trucks,
        solve_ms=round(plan.solve_ms, 3),
        plan=plan.to_json(sp.problem),
        inputs=_inputs(sp),
    )
    log.info("dispatch plan %s for %s: %.0f t/h (%s)", row.pk, sp.site.slug, plan.tph, reason)
    broadcast_on_commit(
        sp.site.pk,
        "dispatch.planned",
        {"plan": row.pk, "tph": row.tph, "trigger": trigger, "reason": reason},
    )
    return row, plan


def plan_from_row(row: DispatchPlan, sp: SiteProblem) -> dispatch.Plan:
    """The stored plan's rates on this problem's indices (routes to units or dumps no longer
    in the problem are dropped)."""
    units = {u.key: i for i, u in enumerate(sp.problem.units)}
    dumps = {d.key: i for i, d in enumerate(sp.problem.dumps)}
    loaded = np.zeros((len(units), len(dumps)))
    empty = np.zeros((len(dumps), len(units)))
    for route in row.plan.get("routes", []):
        u, d = units.get(int(route["unit"])), dumps.get(int(route["dump"]))
        if u is not None and d is not None:
            loaded[u, d] = route["trucksPerHour"]
    for route in row.plan.get("returns", []):
        u, d = units.get(int(route["unit"])), dumps.get(int(route["dump"]))
        if u is not None and d is not None:
            empty[d, u] = route["trucksPerHour"]
    return dispatch.Plan(
        status=row.status,
        message="",
        loaded=loaded,
        empty=empty,
        payload_t=sp.problem.payload_t,
        truck_hours=row.plan.get("truckHours", 0.0),
        trucks_available=row.plan.get("trucksAvailable", 0.0),
        solve_ms=row.solve_ms,
        binding=tuple(row.plan.get("binding", ())),
    )


def current_plan(sp: SiteProblem) -> tuple[DispatchPlan, dispatch.Plan]:
    """The plan in force: the latest, unless it is older than DISPATCH_REPLAN_S or was made
    for other loading units (then a new one is solved)."""
    row = DispatchPlan.objects.filter(site=sp.site).order_by("-at", "-id").first()
    fresh = timezone.now() - timedelta(seconds=settings.DISPATCH_REPLAN_S)
    if row is not None and row.at >= fresh and row.inputs.get("units") == _inputs(sp)["units"]:
        return row, plan_from_row(row, sp)
    return make_plan(sp, trigger="periodic", reason="the plan in force was out of date")


# --- the lower stage --------------------------------------------------------------------------


def _dispatcher(
    sp: SiteProblem, plan: dispatch.Plan, now: datetime, exclude: Iterable[uuid.UUID] = ()
) -> dispatch.Dispatcher:
    """The lower stage with every truck already committed to a unit counted at its expected
    arrival (those in ``exclude`` are the ones about to be decided)."""
    d = dispatch.Dispatcher(
        plan,
        sp.problem,
        now=now.timestamp(),
        idle_credit=settings.DISPATCH_IDLE_CREDIT_PCT / 100.0,
    )
    d.commit_arrivals(list(_committed(sp, now, set(exclude))))
    return d


def _committed(sp: SiteProblem, now: datetime, exclude: set) -> Iterable[tuple[int, float]]:
    rows = (
        DispatchTruck.objects.filter(equipment__site=sp.site, empty=True, assignment__isnull=False)
        .exclude(equipment_id__in=exclude)
        .select_related("assignment")
    )
    etas = latest_etas(sp.site, now)
    for row in rows:
        unit = sp.unit_index(row.assignment.loading_unit_id)
        if unit is None:
            continue
        yield unit, _arrival(sp, row, unit, now, etas)


def _arrival(
    sp: SiteProblem, row: DispatchTruck, unit: int, now: datetime, etas: dict[uuid.UUID, float]
) -> float:
    """When a committed truck is expected at its unit: now if it is there, else its ETA
    prediction, else the road graph from where it is."""
    t = now.timestamp()
    if row.arrived or row.production_state in AT_UNIT:
        return t
    if row.equipment_id in etas:
        return max(t, etas[row.equipment_id])
    travel = sp.travel_from_way(row.way_id)[unit]
    if math.isfinite(travel):
        return t + travel
    expected = row.assignment.expected_arrival if row.assignment else None
    return max(t, expected.timestamp()) if expected else t


def latest_etas(site: Site, now: datetime) -> dict[uuid.UUID, float]:
    """Expected arrival (epoch s) of each truck the ETA head answered for recently: the end of
    its window plus the predicted median time to its next stop."""
    from fleet.learning.models import Prediction

    since = now - timedelta(seconds=settings.DISPATCH_ETA_MAX_AGE_S)
    rows = (
        Prediction.objects.filter(equipment__site=site, model_name="eta", window_end__gte=since)
        .order_by("equipment_id", "-window_end")
        .distinct("equipment_id")
        .values_list("equipment_id", "window_end", "outputs")
    )
    return {
        truck: end.timestamp() + float(outputs["p50_s"])
        for truck, end, outputs in rows
        if isinstance(outputs, dict) and "p50_s" in outputs
    }


def _reason(
    sp: SiteProblem, plan: dispatch.Plan, row: DispatchPlan, choice: dispatch.Choice
) -> str:
    unit = sp.problem.units[choice.unit]
    rate = plan.unit_rate[choice.unit]
    behind = choice.behind_s
    need = (
        f"{behind / 60:.1f} min behind its planned {rate:.1f} trucks/h"
        if behind > 0
        else f"needs its next truck in {-behind / 60:.1f} min after this one arrives"
        if behind < 0
        else f"on its planned {rate:.1f} trucks/h"
    )
    return (
        f"{unit.name} is the neediest loading unit: {need}; "
        f"arrives in {choice.travel_s / 60:.1f} min (plan {row.pk}, {row.trigger})"
    )


def _body(sp: SiteProblem, unit: LoadingUnit, dump: DumpPoint | None, load_id: uuid.UUID) -> list:
    """[Offload at the plan's dump, then Load at the unit]: the Load comes last, so its
    AssignmentId is the one the truck reports."""
    requests = []
    if dump is not None:
        way = _destination_way(sp, sp.graph.dump_node[dump.pk])
        if way is not None:
            requests.append(wire.AssignmentRequest(uuid.uuid4(), "Offload", way).to_wire())
    way = _destination_way(sp, sp.graph.unit_node[unit.pk]) or 0
    requests.append(
        wire.AssignmentRequest(
            load_id, "Load", way, destination_equipment_id=unit.equipment_id
        ).to_wire()
    )
    return [{k: str(v) if isinstance(v, uuid.UUID) else v for k, v in r.items()} for r in requests]


def _destination_way(sp: SiteProblem, node: int) -> int | None:
    """A way ending at ``node``; one whose other end is no other destination if there is one
    (a truck that only has the WayId finds its place by the way's ends)."""
    ways = sp.graph.node_ways.get(node, [])
    key_nodes = set(sp.graph.unit_node.values()) | set(sp.graph.dump_node.values())
    for way in ways:
        start, end, _ = sp.graph.way_ends[way]
        if ({start, end} - {node}).isdisjoint(key_nodes):
            return way
    return ways[0] if ways else None


def send_assignment(
    sp: SiteProblem,
    truck: Equipment,
    unit: LoadingUnit,
    *,
    reason: str,
    plan_row: DispatchPlan | None,
    dump: DumpPoint | None = None,
    manual: bool = False,
    actor: User | None = None,
    expected_arrival: datetime | None = None,
) -> Assignment:
    """Record the assignment, issue it through the outbox, and remember it per truck."""
    load_id = uuid.uuid4()
    command = issue_command(
        truck,
        MESSAGE,
        _body(sp, unit, dump, load_id),
        reason=reason,
        actor=actor,
        supersede_key=ASSIGNMENT_KEY,
    )
    assignment = Assignment.objects.create(
        equipment=truck,
        assignment_id=load_id,
        loading_unit=unit,
        dump=dump,
        plan=plan_row,
        manual=manual,
        reason=reason[:300],
        actor=actor.get_username() if actor else DISPATCHER,
        command=command,
        expected_arrival=expected_arrival,
    )
    state, _ = DispatchTruck.objects.get_or_create(equipment=truck)
    state.assignment = assignment
    state.manual_hold = manual
    state.arrived = False
    state.save(update_fields=["assignment", "manual_hold", "arrived"])
    _desired(truck, command.body)
    broadcast_on_commit(
        truck.site_id,
        "dispatch.assigned",
        {
            "equipmentId": str(truck.pk),
            "assignmentId": str(load_id),
            "loadingUnit": unit.name,
            "manual": manual,
            "reason": reason,
        },
    )
    return assignment


def _desired(truck: Equipment, body: Any) -> None:
    """The assignment is part of the truck's desired state (re-sent when it reconnects)."""
    from fleet.control.models import TruckState

    TruckState.objects.update_or_create(equipment=truck, defaults={"assignment": body})


@transaction.atomic
def assign_truck(truck: Equipment, *, why: str = "is tipping its load") -> Assignment | None:
    """The lower stage for one free truck: its next loading unit, sent. None when the truck is
    held by an operator's assignment, the site is not dispatched, or no unit is open."""
    state, _ = DispatchTruck.objects.select_for_update().get_or_create(equipment=truck)
    if state.manual_hold or not enabled(truck.site_id):
        return None
    sp = site_problem(truck.site)
    if sp is None:
        return None
    row, plan = current_plan(sp)
    now = timezone.now()
    chooser = _dispatcher(sp, plan, now, exclude=[truck.pk])
    choice = chooser.choose(sp.travel_from_way(state.way_id), from_dump=sp.dump_at(state.way_id))
    if choice is None:
        log.warning("no loading unit is open for %s (plan %s)", truck.name, row.pk)
        return None
    return _send_choice(sp, plan, row, truck, choice, f"{truck.name} {why}")


def _send_choice(
    sp: SiteProblem,
    plan: dispatch.Plan,
    row: DispatchPlan,
    truck: Equipment,
    choice: dispatch.Choice,
    why: str,
) -> Assignment:
    arrival = datetime.fromtimestamp(choice.arrival_s, tz=timezone.get_current_timezone())
    return send_assignment(
        sp,
        truck,
        sp.units[choice.unit],
        reason=f"{why}: {_reason(sp, plan, row, choice)}",
        plan_row=row,
        dump=sp.dumps[choice.dump] if choice.dump is not None else None,
        expected_arrival=arrival,
    )


@dataclass(frozen=True)
class Replan:
    plan: DispatchPlan
    moved: list[Assignment]
    solve_ms: float  # the optimiser's part: the flow plan and every truck's choice


@transaction.atomic
def replan(site: Site, *, trigger: str, reason: str, force_move: Sequence[int] = ()) -> Replan:
    """A new flow plan, then every empty truck on its way to a loading unit reconsidered (see
    the module's docstring). ``force_move``: loading units whose trucks must all move."""
    sp = site_problem(site)
    if sp is None:
        raise ValueError(f"{site.name} has no active road network to dispatch on")
    row, plan = make_plan(sp, trigger=trigger, reason=reason)
    started = time.perf_counter()
    now = timezone.now()
    movable = list(
        DispatchTruck.objects.select_for_update(of=("self",))
        .filter(
            equipment__site=site,
            equipment__status=Equipment.Status.ACTIVE,
            empty=True,
            manual_hold=False,
            arrived=False,
        )
        .exclude(production_state__in=AT_UNIT)
        .select_related("equipment", "assignment")
        .order_by("pk")  # truck order, as record_production_states locks them
    )
    chooser = _dispatcher(sp, plan, now, exclude=[t.pk for t in movable])
    decisions = reconsider(sp, chooser, movable, force_move=set(force_move))
    solve_ms = plan.solve_ms + (time.perf_counter() - started) * 1e3
    # Chosen in order of need, sent in lock order: the open commands by serial, then each
    # truck's rows (TruckState, DispatchTruck) by truck, as the ingest process takes them.
    lock_open_commands([truck.equipment_id for truck, _ in decisions], ASSIGNMENT_KEY)
    moved = [
        _send_choice(sp, plan, row, truck.equipment, choice, f"re-plan ({reason})")
        for truck, choice in sorted(decisions, key=lambda d: d[0].pk)
    ]
    return Replan(row, moved, solve_ms)


def reconsider(
    sp: SiteProblem,
    chooser: dispatch.Dispatcher,
    trucks: list[DispatchTruck],
    *,
    force_move: set[int] = frozenset(),  # type: ignore[assignment]
) -> list[tuple[DispatchTruck, dispatch.Choice]]:
    """The trucks to move and where: those going to a closed unit (or none) first, then the
    rest nearest first; a truck stays where it goes unless moving saves DISPATCH_SWITCH_S."""
    travel = {t.pk: sp.travel_from_way(t.way_id) for t in trucks}
    current = {
        t.pk: sp.unit_index(t.assignment.loading_unit_id) if t.assignment else None for t in trucks
    }

    def must_move(t: DispatchTruck) -> bool:
        unit = current[t.pk]
        return (
            unit is None
            or not chooser.open[unit]
            or (t.assignment is not None and t.assignment.loading_unit_id in force_move)
        )

    order = sorted(
        trucks, key=lambda t: (not must_move(t), float(np.nanmin(travel[t.pk], initial=np.inf)))
    )
    moves = []
    for truck in order:
        unit = current[truck.pk]
        best = chooser.choose(travel[truck.pk], commit=False)
        if best is None:
            continue
        if not must_move(truck) and (
            best.unit == unit
            or chooser.cost_of(unit, travel[truck.pk]) - best.cost_s < settings.DISPATCH_SWITCH_S
        ):
            chooser.commit_arrivals([(unit, chooser.now + float(travel[truck.pk][unit]))])
            continue
        chooser.commit_arrivals([(best.unit, best.arrival_s)])
        moves.append((truck, best))
    return moves


# --- the trucks' reports ----------------------------------------------------------------------


def record_production_states(envelopes: Iterable[wire.Envelope]) -> list[Assignment]:
    """Track each truck's production state; a truck that starts dumping (or drives empty with
    no assignment, e.g. out of the park) is assigned its next loading unit, so that it has it
    when it finishes dumping. Sites not dispatched are only tracked."""
    reports = sorted(
        (e for e in envelopes if PRODUCTION_STATE in e.bodies and e.equipment_id is not None),
        key=lambda e: e.timestamp,
    )
    if not reports:
        return []
    free: dict[uuid.UUID, str] = {}
    with transaction.atomic():
        ids = {e.equipment_id for e in reports}
        known = set(
            Equipment.objects.filter(pk__in=ids, autonomous=True).values_list("pk", flat=True)
        )
        existing = set(DispatchTruck.objects.filter(pk__in=known).values_list("pk", flat=True))
        DispatchTruck.objects.bulk_create(
            DispatchTruck(equipment_id=i) for i in known if i not in existing
        )
        states = {  # in key order, as TruckState's: replicas lock overlapping sets
            s.pk: s
            for s in DispatchTruck.objects.select_for_update().filter(pk__in=known).order_by("pk")
        }
        for envelope in reports:
            state = states.get(envelope.equipment_id)
            if state is None or (state.state_at and envelope.timestamp < state.state_at):
                continue
            why = _apply_state(state, envelope.bodies[PRODUCTION_STATE], envelope.timestamp)
            if why:
                free[state.pk] = why
        DispatchTruck.objects.bulk_update(
            states.values(),
            [
                "production_state",
                "state_at",
                "way_id",
                "reported_assignment_id",
                "empty",
                "arrived",
                "manual_hold",
            ],
        )
    if not free:
        return []
    trucks = Equipment.objects.filter(pk__in=free).select_related("site")
    made = []
    for truck in trucks:
        if not enabled(truck.site_id):
            continue
        try:
            assignment = assign_truck(truck, why=free[truck.pk])
        except Exception:  # one truck's failed decision must not lose the batch's others
            log.exception("could not dispatch %s", truck.name)
            continue
        if assignment is not None:
            made.append(assignment)
    return made


def _apply_state(state: DispatchTruck, body: wire.HaulTruckProductionStateV2, at: datetime) -> str:
    """Update the tracked state; returns why the truck is free now ('' when it is not)."""
    before, now = state.production_state, body.production_state
    state.production_state, state.state_at = now, at
    state.way_id = body.way_id if body.way_id is not None else state.way_id
    state.reported_assignment_id = body.assignment_id
    if now in AT_UNIT:
        state.arrived = True
    if now == "Hauling":
        state.empty, state.arrived = False, False
    if now == "Dumping" and before != "Dumping":
        # Its next loading unit is decided while it tips, so that the assignment is there when
        # it drives off (no turning on the road); an operator's assignment has run its course.
        state.empty, state.arrived, state.manual_hold = True, False, False
        return "is tipping its load"
    if state.assignment_id is None and now == "Driving" and state.empty:
        return "has no assignment"
    return ""


# --- operators -----------------------------------------------------------------------------------


@transaction.atomic
def assign_by_hand(truck: Equipment, unit: LoadingUnit, *, reason: str, actor: User) -> Assignment:
    """An operator sends a truck to a loading unit; it holds until the truck's next dump."""
    if unit.site_id != truck.site_id:
        raise ValueError(f"{unit.name} is not on {truck.name}'s site")
    sp = site_problem(truck.site)
    if sp is None:
        raise ValueError(f"{truck.site.name} has no active road network")
    row = DispatchPlan.objects.filter(site=truck.site).order_by("-at", "-id").first()
    return send_assignment(
        sp,
        truck,
        unit,
        reason=f"by hand ({actor.get_username()}): {reason}",
        plan_row=row,
        manual=True,
        actor=actor,
    )


@transaction.atomic
def release_truck(truck: Equipment, *, reason: str, actor: User) -> Assignment | None:
    """Hand a truck held by an operator back to the dispatcher, which assigns it at once when
    it is empty and not yet at its loading unit."""
    state = DispatchTruck.objects.select_for_update().filter(equipment=truck).first()
    if state is None or not state.manual_hold:
        raise ValueError(f"{truck.name} is not held by an operator's assignment")
    state.manual_hold = False
    state.save(update_fields=["manual_hold"])
    log.info("%s released %s to the dispatcher: %s", actor.get_username(), truck.name, reason)
    if state.empty and not state.arrived and state.production_state not in AT_UNIT:
        return assign_truck(truck, why=f"released by {actor.get_username()} ({reason})")
    return None


@transaction.atomic
def set_unit_availability(
    unit: LoadingUnit,
    *,
    available: bool,
    reason: str,
    actor: User | None = None,
    rule: str = "",
    dig_rate_tph: float | None = None,
) -> tuple[LoadingUnitStatus, Replan | None]:
    """A loading unit down or back (or digging at another rate): recorded, then, where the
    site is dispatched, a re-plan that moves the trucks heading to a unit that went down."""
    who = actor.get_username() if actor is not None else f"rule:{rule or 'unknown'}"
    status = LoadingUnitStatus.objects.create(
        loading_unit=unit,
        available=available,
        dig_rate_tph=dig_rate_tph,
        reason=reason[:300],
        actor=who,
    )
    broadcast_on_commit(
        unit.site_id,
        "dispatch.unit",
        {"loadingUnit": unit.name, "available": available, "reason": reason, "actor": who},
    )
    if not enabled(unit.site_id):
        return status, None
    what = "down" if not available else "back" if dig_rate_tph is None else "rate changed"
    result = replan(
        unit.site,
        trigger="unit-down" if not available else "unit-up",
        reason=f"{unit.name} {what}: {reason}",
        force_move=[unit.pk] if not available else [],
    )
    return status, result


def replan_due_sites() -> list[DispatchPlan]:
    """The periodic re-plan: every dispatched site whose plan is older than
    DISPATCH_REPLAN_S."""
    due = timezone.now() - timedelta(seconds=settings.DISPATCH_REPLAN_S)
    plans = []
    for sd in SiteDispatch.objects.filter(enabled=True).select_related("site"):
        last = DispatchPlan.objects.filter(site=sd.site).order_by("-at").values("at").first()
        if last is None or last["at"] < due:
            plans.append(replan(sd.site, trigger="periodic", reason="periodic re-plan").plan)
    return plans
