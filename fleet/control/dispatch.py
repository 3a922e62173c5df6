"""The dispatch optimiser: which loading unit each haul truck goes to next. Pure numpy and
scipy (no Django): ``fleet.control.dispatching`` reads the mine and calls it, the dispatch
benchmark drives the simulator with it.

Two stages, as DISPATCH-style systems do it (White & Olson 1986; White, Olson & Vohnout 1993;
docs/control-dispatch.md):

1. **Upper stage, the flow plan** (:func:`solve_flows`): a linear programme over the site's
   routes. Variables: loaded trips per hour on every route loading unit -> dump that takes the
   unit's material, and empty trips per hour on every route dump -> loading unit. Maximise
   tonnes per hour (less a small charge per truck-hour, so that of two plans moving the same
   tonnes the one needing fewer trucks wins) under: each unit's dig rate, each dump's capacity,
   the truck-hours the fleet has, and conservation (every truck that arrives somewhere leaves
   it). Solved with HiGHS (``scipy.optimize.linprog(method="highs")``).
2. **Lower stage, the assignment** (:class:`Dispatcher`): each time a truck is free (it
   finished dumping, or its unit went down), it goes to the loading unit that needs it most.
   Each unit has a *need time*: when it should receive its next truck, given the trucks already
   on their way to it (their expected arrivals, loading one after the other) and its planned
   rate (the plan's headway between trucks after the last one expected). The truck would arrive
   at ``now + travel``; its cost at a unit is the moment its loading could start, less
   ``idle_credit`` times the time the unit would have stood waiting for it. The cheapest unit
   among those the plan sends empty trucks to from where the truck is wins: a unit further
   behind its planned flow (an earlier need time) is preferred, a farther one costs its travel.

All times are seconds; rates are trucks per hour (``loaded``, ``empty``) or tonnes per hour.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import linprog
from scipy.sparse.csgraph import dijkstra

# The charge per truck-hour in the objective, as a fraction of one load: small enough never to
# trade tonnes for trucks, large enough to pick the shorter of two routes moving the same tonnes.
TRUCK_HOUR_CHARGE = 1e-3
EPS_RATE = 1e-6  # trucks/h below this are no flow (the solver's round-off)


@dataclass(frozen=True)
class Unit:
    """A loading unit as the optimiser sees it now."""

    key: Any  # the caller's id for it
    name: str
    material: str
    dig_rate_tph: float
    available: bool = True


@dataclass(frozen=True)
class Dump:
    key: Any
    name: str
    accepts: str  # the material it takes
    capacity_tph: float
    available: bool = True
    tip_positions: int | None = None  # trucks tipping at once, where it limits the capacity


@dataclass(frozen=True)
class Problem:
    """One site's dispatch problem. ``haul_s[u, d]`` is the loaded travel time from unit ``u``
    to dump ``d`` and ``return_s[d, u]`` the empty one back (inf where there is no road)."""

    units: Sequence[Unit]
    dumps: Sequence[Dump]
    haul_s: np.ndarray  # (U, D)
    return_s: np.ndarray  # (D, U)
    trucks: int  # trucks available to dispatch
    payload_t: float  # mean load
    spot_s: float = 30.0  # positioning under the shovel, per load
    dump_s: float = 60.0  # tipping, per load
    truck_efficiency: float = 0.9  # share of a truck-hour that is useful work (queues, delays)
    # Plan loading units and dumps below their full rate: trucks arrive at random, and a unit
    # planned at 100 % builds queues that the linear model does not see.
    utilisation: float = 1.0

    def dump_capacity_tph(self) -> np.ndarray:
        """What each dump takes per hour: its rated capacity, and no more than its tip
        positions can turn trucks round (one load per ``dump_s`` plus positioning each)."""
        turns = 3600.0 / max(self.dump_s + self.spot_s, 1e-9) * self.payload_t
        return np.asarray(
            [
                0.0
                if not d.available
                else d.capacity_tph
                if d.tip_positions is None
                else min(d.capacity_tph, d.tip_positions * turns)
                for d in self.dumps
            ]
        )

    def load_s(self) -> np.ndarray:
        """Seconds a unit takes per truck (positioning and loading); inf when it digs nothing."""
        rates = np.asarray([u.dig_rate_tph if u.available else 0.0 for u in self.units])
        with np.errstate(divide="ignore"):
            return self.spot_s + np.where(rates > 0, self.payload_t / rates * 3600.0, np.inf)


@dataclass(frozen=True)
class Plan:
    """The upper stage's answer: trips per hour on each route, and what limits them."""

    status: str  # optimal | infeasible | failed (the solver's message in ``message``)
    message: str
    loaded: np.ndarray  # (U, D) loaded trips per hour
    empty: np.ndarray  # (D, U) empty trips per hour
    payload_t: float
    truck_hours: float  # truck-hours per hour the plan uses (trucks busy, before efficiency)
    trucks_available: float  # the fleet's useful truck-hours per hour
    solve_ms: float
    binding: tuple[str, ...] = ()  # which constraints hold the plan back (names, for people)

    @property
    def unit_rate(self) -> np.ndarray:
        """Trucks per hour each loading unit should load."""
        return self.loaded.sum(axis=1)

    @property
    def unit_tph(self) -> np.ndarray:
        return self.unit_rate * self.payload_t

    @property
    def tph(self) -> float:
        return float(self.loaded.sum() * self.payload_t)

    def headway_s(self) -> np.ndarray:
        """Planned seconds between trucks at each unit (inf where the plan sends none)."""
        rate = self.unit_rate
        with np.errstate(divide="ignore"):
            return np.where(rate > EPS_RATE, 3600.0 / np.maximum(rate, EPS_RATE), np.inf)

    def unit_truck_hours(self, problem: Problem) -> np.ndarray:
        """Truck-hours per hour each unit's flow needs: its loads (positioning, loading, haul,
        tipping) and the empty trips that bring its trucks back. The fixed allocation splits the
        fleet in these proportions."""
        load = problem.load_s()
        loaded = self.loaded * np.where(
            self.loaded > 0, load[:, None] + problem.haul_s + problem.dump_s, 0.0
        )
        empty = self.empty * np.where(self.empty > 0, problem.return_s, 0.0)
        return (loaded.sum(axis=1) + empty.sum(axis=0)) / 3600.0

    def to_json(self, problem: Problem) -> dict[str, Any]:
        """The plan as people and the audit read it: tonnes per hour per route."""
        routes = [
            {
                "unit": str(problem.units[u].key),
                "unitName": problem.units[u].name,
                "dump": str(problem.dumps[d].key),
                "dumpName": problem.dumps[d].name,
                "tph": round(float(self.loaded[u, d] * self.payload_t), 1),
                "trucksPerHour": round(float(self.loaded[u, d]), 3),
            }
            for u, d in zip(*np.nonzero(self.loaded > EPS_RATE), strict=True)
        ]
        returns = [
            {
                "dump": str(problem.dumps[d].key),
                "unit": str(problem.units[u].key),
                "trucksPerHour": round(float(self.empty[d, u]), 3),
            }
            for d, u in zip(*np.nonzero(self.empty > EPS_RATE), strict=True)
        ]
        return {
            "status": self.status,
            "tph": round(self.tph, 1),
            "truckHours": round(self.truck_hours, 2),
            "trucksAvailable": round(self.trucks_available, 2),
            "binding": list(self.binding),
            "routes": routes,
            "returns": returns,
        }


def solve_flows(problem: Problem) -> Plan:
    """The upper stage: the flow plan of ``problem`` (see the module's docstring)."""
    started = time.perf_counter()
    units, dumps = problem.units, problem.dumps
    n_u, n_d = len(units), len(dumps)
    load = problem.load_s()
    dig = np.asarray([u.dig_rate_tph if u.available else 0.0 for u in units])
    cap = problem.dump_capacity_tph()
    dig_cap, dump_cap = dig * problem.utilisation, cap * problem.utilisation
    haul, back = np.asarray(problem.haul_s, float), np.asarray(problem.return_s, float)
    takes = np.asarray([[u.material == d.accepts for d in dumps] for u in units], bool).reshape(
        n_u, n_d
    )
    loaded_ok = takes & np.isfinite(haul) & (dig[:, None] > 0) & (cap[None, :] > 0)
    empty_ok = np.isfinite(back) & (cap[:, None] > 0) & (dig[None, :] > 0)
    lu, ld = np.nonzero(loaded_ok)  # loaded routes (unit, dump)
    ed, eu = np.nonzero(empty_ok)  # empty routes (dump, unit)
    fleet = max(problem.trucks, 0) * problem.truck_efficiency
    if len(lu) == 0 or len(ed) == 0 or fleet <= 0:
        return _empty_plan(problem, started, "no route can carry material now", fleet)
    n_x, n_y = len(lu), len(ed)
    x_hours = (load[lu] + haul[lu, ld] + problem.dump_s) / 3600.0  # truck-hours per loaded trip
    y_hours = back[ed, eu] / 3600.0
    p = problem.payload_t
    charge = TRUCK_HOUR_CHARGE * p
    c = np.concatenate([-p + charge * x_hours, charge * y_hours])
    xs, ys = np.arange(n_x), n_x + np.arange(n_y)
    # Inequalities: fleet (1 row), dig rates (U rows), dump capacities (D rows).
    rows = [np.zeros(n_x + n_y, dtype=int), 1 + lu, 1 + n_u + ld]
    cols = [np.arange(n_x + n_y), xs, xs]
    vals = [np.concatenate([x_hours, y_hours]), np.full(n_x, p), np.full(n_x, p)]
    a_ub = sparse.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(1 + n_u + n_d, n_x + n_y),
    )
    b_ub = np.concatenate([[fleet], dig_cap, dump_cap])
    # Conservation: at each unit loaded trips out = empty trips in; at each dump, in = out.
    a_eq = sparse.csr_array(
        (
            np.concatenate([np.ones(n_x), -np.ones(n_y), np.ones(n_x), -np.ones(n_y)]),
            (
                np.concatenate([lu, eu, n_u + ld, n_u + ed]),
                np.concatenate([xs, ys, xs, ys]),
            ),
        ),
        shape=(n_u + n_d, n_x + n_y),
    )
    result = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.zeros(n_u + n_d), method="highs")
    if result.status != 0 or result.x is None:
        return _empty_plan(problem, started, str(result.message), fleet, status="failed")
    z = np.maximum(result.x, 0.0)
    z[z < EPS_RATE] = 0.0
    loaded = np.zeros((n_u, n_d))
    empty = np.zeros((n_d, n_u))
    loaded[lu, ld] = z[:n_x]
    empty[ed, eu] = z[n_x:]
    used = float(z[:n_x] @ x_hours + z[n_x:] @ y_hours)
    slack = np.asarray(result.ineqlin.marginals)  # duals: non-zero where a row binds
    return Plan(
        status="optimal",
        message=str(result.message),
        loaded=loaded,
        empty=empty,
        payload_t=p,
        truck_hours=used,
        trucks_available=fleet,
        solve_ms=(time.perf_counter() - started) * 1e3,
        binding=_binding(slack, units, dumps),
    )


def _binding(marginals: np.ndarray, units: Sequence[Unit], dumps: Sequence[Dump]) -> tuple:
    names = ["the fleet's truck-hours"]
    names += [f"{u.name}'s dig rate" for u in units]
    names += [f"{d.name}'s capacity" for d in dumps]
    return tuple(name for name, m in zip(names, marginals, strict=True) if abs(m) > 1e-9)


def _empty_plan(
    problem: Problem, started: float, message: str, fleet: float, status: str = "infeasible"
) -> Plan:
    n_u, n_d = len(problem.units), len(problem.dumps)
    return Plan(
        status=status,
        message=message,
        loaded=np.zeros((n_u, n_d)),
        empty=np.zeros((n_d, n_u)),
        payload_t=problem.payload_t,
        truck_hours=0.0,
        trucks_available=fleet,
        solve_ms=(time.perf_counter() - started) * 1e3,
    )


# --- the road graph -----------------------------------------------------------------------------


class RoadGraph:
    """Travel times on a road network: ways are driven both ways at their operating speed.
    ``nodes`` are the caller's node ids; times come from scipy's Dijkstra."""

    def __init__(
        self,
        nodes: Sequence[int],
        starts: Sequence[int],
        ends: Sequence[int],
        seconds: Sequence[float],
    ) -> None:
        self.index = {int(n): i for i, n in enumerate(nodes)}
        a = np.asarray([self.index[int(n)] for n in starts], dtype=np.int64)
        b = np.asarray([self.index[int(n)] for n in ends], dtype=np.int64)
        t = np.maximum(np.asarray(seconds, dtype=float), 1e-3)  # 0 would read as "no edge"
        n = len(self.index)
        self.matrix = sparse.csr_array(
            (np.concatenate([t, t]), (np.concatenate([a, b]), np.concatenate([b, a]))),
            shape=(n, n),
        )

    def times(self, sources: Sequence[int], targets: Sequence[int]) -> np.ndarray:
        """(len(sources), len(targets)) seconds between node ids (inf: no road)."""
        if not len(sources) or not len(targets):
            return np.zeros((len(sources), len(targets)))
        src = np.asarray([self.index[int(s)] for s in sources])
        unique, inverse = np.unique(src, return_inverse=True)
        dist = dijkstra(self.matrix, directed=True, indices=unique)
        cols = np.asarray([self.index[int(t)] for t in targets])
        return np.atleast_2d(dist)[inverse][:, cols]


# --- the lower stage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """Where one truck goes, and why (the numbers an operator reads in the reason)."""

    unit: int
    arrival_s: float  # expected arrival (absolute time)
    start_s: float  # expected start of loading
    need_s: float  # when the unit needed its next truck
    travel_s: float
    cost_s: float
    dump: int | None  # where its load goes next (the plan's route from that unit)

    @property
    def behind_s(self) -> float:
        """How late the truck is for the unit's need (> 0: the unit waits for it)."""
        return self.arrival_s - self.need_s


@dataclass
class Dispatcher:
    """The lower stage for one site at one moment. Build it with the plan and the trucks
    already committed to units (their expected arrivals), then :meth:`choose` for each truck
    that is free, in turn; each choice is committed before the next."""

    plan: Plan
    problem: Problem
    now: float
    idle_credit: float = 0.5
    busy_until: np.ndarray = field(init=False)
    last_arrival: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.problem.units)
        self.load = self.problem.load_s()
        self.headway = self.plan.headway_s()
        self.busy_until = np.full(n, self.now)
        self.last_arrival = np.full(n, -np.inf)
        rate = self.plan.unit_rate
        self.open = (rate > EPS_RATE) & np.asarray([u.available for u in self.problem.units])

    def commit_arrivals(self, arrivals: Sequence[tuple[int, float]]) -> None:
        """Trucks already on their way to (or waiting at) a unit: (unit, expected arrival).
        They are loaded in the order they arrive."""
        for unit, at in sorted(arrivals, key=lambda a: a[1]):
            self._commit(unit, at)

    def _commit(self, unit: int, at: float) -> None:
        if not math.isfinite(self.load[unit]):
            return
        self.busy_until[unit] = max(self.busy_until[unit], at) + self.load[unit]
        self.last_arrival[unit] = max(self.last_arrival[unit], at)

    def need_s(self) -> np.ndarray:
        """When each unit needs its next truck: once the trucks committed to it are loaded, and
        not before its planned headway after the last of them arrives."""
        known = np.isfinite(self.last_arrival) & np.isfinite(self.headway)
        paced = np.where(known, np.where(known, self.last_arrival, 0.0) + self.headway, -np.inf)
        return np.maximum(self.busy_until, paced)

    def candidates(self, from_dump: int | None) -> np.ndarray:
        """Units this truck may go to: open ones the plan sends empty trucks to from its dump
        (all open ones when it is elsewhere, or when the plan sends none from there)."""
        mask = self.open.copy()
        if from_dump is not None:
            planned = mask & (self.plan.empty[from_dump] > EPS_RATE)
            if planned.any():
                mask = planned
        return mask

    def choose(
        self, travel_s: np.ndarray, *, from_dump: int | None = None, commit: bool = True
    ) -> Choice | None:
        """The unit for a truck now ``travel_s`` (per unit) away. None if no unit is open."""
        mask = self.candidates(from_dump) & np.isfinite(travel_s)
        if not mask.any():
            return None
        costs, arrival, start, need = self._costs(travel_s)
        costs = np.where(mask, costs, np.inf)
        unit = int(np.argmin(costs))
        if commit:
            self._commit(unit, float(arrival[unit]))
        return Choice(
            unit=unit,
            arrival_s=float(arrival[unit]),
            start_s=float(start[unit]),
            need_s=float(need[unit]),
            travel_s=float(travel_s[unit]),
            cost_s=float(costs[unit]),
            dump=self.dump_for(unit),
        )

    def cost_of(self, unit: int, travel_s: np.ndarray) -> float:
        """What sending the truck to ``unit`` costs (to compare with the best choice)."""
        if not self.open[unit] or not math.isfinite(travel_s[unit]):
            return math.inf
        return float(self._costs(travel_s)[0][unit])

    def _costs(self, travel_s: np.ndarray) -> tuple[np.ndarray, ...]:
        arrival = self.now + np.asarray(travel_s, dtype=float)
        need = self.need_s()
        start = np.maximum(arrival, need)
        # Loading could start at ``start``; the time the unit stands waiting for this truck
        # (from its need time to the arrival) counts in its favour: it is further behind.
        waiting = np.maximum(arrival - need, 0.0)
        return start - self.idle_credit * waiting, arrival, start, need

    def dump_for(self, unit: int) -> int | None:
        """The dump the plan sends this unit's loads to (its largest route)."""
        row = self.plan.loaded[unit]
        return int(np.argmax(row)) if row.max() > EPS_RATE else None


def fixed_allocation(plan: Plan, problem: Problem, trucks: int) -> np.ndarray:
    """Trucks per unit in proportion to the truck-hours the plan's flows need (largest
    remainders): the static plan DISPATCH is measured against."""
    need = plan.unit_truck_hours(problem)
    if need.sum() <= 0:
        return np.zeros(len(problem.units), dtype=int)
    share = need / need.sum() * trucks
    counts = np.floor(share).astype(int)
    for unit in np.argsort(-(share - counts))[: trucks - counts.sum()]:
        counts[unit] += 1
    return counts
