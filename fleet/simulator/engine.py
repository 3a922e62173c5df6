"""The fleet engine: N haul trucks as numpy arrays, stepped at dt = 1 / hz. No Django, no MQTT.

Each step is whole-fleet numpy: route lookups, the speed controller and longitudinal physics,
thermal lags, sensors with noise and faults. Python loops touch only the few trucks whose haul
cycle changes state in that tick (arrivals, loads done, claims of a shovel), and commands.

``simulate_arrays`` runs the engine offline, much faster than real time, for ML training data.
Numbers: fleet/simulator/physics.py and faults.py; explained in docs/simulator.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np

# The channel schema and the state codes are the protocol's and the models' (the feature
# module), not the simulator's: the simulated truck reports what the schema names.
from fleet.learning.features import (
    DRIVING,
    DUMPING,
    HAULING,
    LOADING,
    PARKED,
    QUEUED,
    SENSED_CHANNELS,
    SPOTTING,
    STATES,
    STOPPED,
    TYRES,
)
from fleet.simulator import physics as ph
from fleet.simulator.faults import FADE_HEAT_GAIN, OVERHEAT_MAX_C, FaultLabel, FaultState
from fleet.simulator.routes import DS, RouteTable
from fleet.simulator.world import World, Zone

# Phases of the haul cycle (what the truck is doing, apart from what it reports).
PH_PARKED, PH_TO_LOAD, PH_LOADING, PH_TO_DUMP, PH_DUMPING, PH_TO_PARK = range(6)
_PHASE_STATE = np.array([PARKED, DRIVING, LOADING, HAULING, DUMPING, DRIVING], dtype=np.int8)

POSITION_CHANNELS = (
    "x_m",
    "y_m",
    "latitude",
    "longitude",
    "elevation_m",
    "heading_deg",
    "speed_kmh",
)
CHANNELS = (
    *POSITION_CHANNELS,
    *SENSED_CHANNELS,
    "payload_t",
    "machine_hours_h",
    "engine_hours_h",
    "way_id",
)
ARRIVE_EPS = 0.5  # m from a route's end counts as there
CLAIM_WINDOW = 20.0  # m before the spotting approach where a truck asks for the shovel / tip
MOVING_MPS = 0.5  # slower than this a truck is standing: nobody yields to it at a crossing
TP_LOOKAHEAD = 80.0  # m before a traffic-permission zone where the truck asks to enter
TP_MARGIN = 5.0  # m: where it stops short of the zone while it waits
TP_RETRY_S = 30.0  # s after a rejection before it asks again
# A fleet started mid-shift (``spread``): at least this far apart on a directed edge (past the
# following gap, so nobody starts inside it), placed in steps of SPREAD_STEP back along the cycle.
SPREAD_GAP = 80.0  # m
FOLLOW_LOOKAHEAD = 200.0  # m before a node where the truck ahead beyond it is followed: more than
# the following gap plus braking from the top speed at A_PLAN (60 + 107 m)
SPREAD_STEP = 10.0  # m


@dataclass(frozen=True)
class TruckSpec:
    equipment_id: str
    name: str
    capacity_t: float = 90.0


@dataclass(frozen=True)
class Event:
    """Something the link must tell the FMS about (a TrafficPermissionRequestV1, an alarm)."""

    kind: str  # permission_request | permission_released | standstill | diagnostic | fault_*
    truck: int
    data: dict[str, Any] = field(default_factory=dict)


class Engine:
    """State of the whole fleet, stepped with :meth:`step`."""

    def __init__(
        self,
        world: World,
        trucks: int | Sequence[TruckSpec],
        *,
        hz: float = 10.0,
        seed: int = 0,
        fault_rate: float = 0.0,
        permission_timeout_s: float | None = None,
        start_time: datetime | None = None,
        spread: bool = False,
    ) -> None:
        self.world = world
        self.rng = np.random.default_rng(seed)
        self.trucks = _specs(trucks, self.rng)
        self.n = n = len(self.trucks)
        self.hz = float(hz)
        self.dt = 1.0 / self.hz  # s
        self.per_second = max(1, round(self.hz))  # ticks between once-a-second checks
        self.t = 0.0  # s since the start
        self.tick = 0
        self.start_time = start_time or datetime.now(UTC)
        self.permission_timeout_s = permission_timeout_s  # None: wait for the FMS's answer
        self.events: list[Event] = []
        self.routes = RouteTable(
            world, plan_decel=ph.A_PLAN, spot_distance=ph.SPOT_DISTANCE, spot_speed=ph.SPOT_SPEED
        )
        self.zones: dict[str, Zone] = {zone.zone_id: zone for zone in world.zones}
        self.routes.set_zones(list(self.zones.values()))
        self._services()
        self._truck_arrays(n)
        self.faults = FaultState(
            [t.equipment_id for t in self.trucks], fault_rate, SENSED_CHANNELS, TYRES
        )
        self._initial_legs()
        if spread:
            self._spread_over_cycles()
        self._sense(self.routes.sample_index(self.route, self.d))

    # --- set-up ------------------------------------------------------------------------------

    def _services(self) -> None:
        world = self.world
        points = [*world.loading_units, *world.dumps]
        self.n_lu = len(world.loading_units)
        self.svc_node = np.asarray([p.node for p in points], dtype=np.int64)
        self.svc_slots = np.asarray([p.slots for p in points], dtype=np.int64)
        self.svc_busy = np.zeros(len(points), dtype=np.int64)
        self.svc_rate = np.asarray([p.rate_tph / 3600.0 for p in points])  # t/s for loading units
        self.lu_dump = [
            self._nearest_dump(unit.node, unit.material) for unit in world.loading_units
        ]

    def _nearest_dump(self, node: int, material: str | None) -> int:
        world = self.world
        times = world.edge_time_s
        candidates = [i for i, d in enumerate(world.dumps) if d.material == material]
        candidates = candidates or list(range(len(world.dumps)))
        return min(
            candidates, key=lambda i: times[list(world.paths[(node, world.dumps[i].node)])].sum()
        )

    def _truck_arrays(self, n: int) -> None:
        cap = np.asarray([t.capacity_t for t in self.trucks])
        self.capacity = cap  # t
        self.mass_empty = cap * ph.EMPTY_MASS_PER_T  # t
        self.power_w = cap * ph.ENGINE_KW_PER_T * 1000.0
        self.retard_w = cap * ph.RETARD_KW_PER_T * 1000.0
        self.tank_l = cap * ph.TANK_L_PER_T
        self.strut_area = cap * ph.STRUT_AREA_M2_PER_T  # m^2
        self.phase = np.full(n, PH_PARKED, dtype=np.int8)
        self.state = np.full(n, PARKED, dtype=np.int8)
        self.route = np.zeros(n, dtype=np.int64)
        self.d = np.zeros(n)  # m along the route
        self.v = np.zeros(n)  # m/s
        self.payload = np.zeros(n)  # t, true
        self.payload_goal = np.zeros(n)
        self.tip_payload = np.zeros(n)  # t in the body when tipping began
        self.svc = np.full(n, -1, dtype=np.int64)  # service point of this leg
        self.claimed = np.zeros(n, dtype=bool)
        self.timer = np.zeros(n)  # s left parked / tipping
        self.lu = np.arange(n) % max(self.n_lu, 1)  # assigned loading unit
        self.dump_override = np.full(n, -1, dtype=np.int64)
        self.park_hold = np.zeros(n, dtype=bool)  # a Park assignment: stay parked
        self.refuel = np.zeros(n, dtype=bool)
        self.assignment_id: list[str | None] = [None] * n
        self.stop_ids: list[set[str]] = [set() for _ in range(n)]
        self.stopped = np.zeros(n, dtype=bool)
        self.hold = np.zeros(n, dtype=bool)  # permission revoked inside its zone
        self._standstill_pending: set[int] = set()
        self.cycles = np.zeros(n, dtype=np.int64)
        self.tp_ptr = np.zeros(n, dtype=np.int64)
        self.tp_end = np.zeros(n, dtype=np.int64)
        self.tp_requested = np.zeros(n, dtype=bool)
        self.tp_granted = np.zeros(n, dtype=bool)
        self.tp_asked_at = np.zeros(n)
        self.tp_first_ask = np.full(n, np.inf)
        self._physical_state(n)

    def _physical_state(self, n: int) -> None:
        rng = self.rng
        self.fuel_l = self.tank_l * rng.uniform(0.6, 1.0, n)
        self.coolant = np.full(n, ph.COOLANT_IDLE_C)  # deg C, warm at the start of the shift
        self.brake = np.full((2, n), ph.AMBIENT_C + ph.BRAKE_OIL_WARM_C)
        self.tyre_temp = np.full((len(TYRES), n), ph.AMBIENT_C + ph.TYRE_WARM_C)
        nominal = ph.TYRE_COLD_KPA + ph.TYRE_COLD_SPREAD_KPA * rng.standard_normal((len(TYRES), n))
        self.tyre_nominal = nominal
        self.tyre_cold = nominal.copy()  # kPa, gauge at TYRE_REF_C: falls with a leak
        self.machine_h = rng.uniform(5_000, 20_000, n)
        self.engine_h = self.machine_h * rng.uniform(0.85, 0.95, n)
        self.gps_sigma = rng.uniform(*ph.GPS_SIGMA_M, n)
        self.meter_bias = ph.PAYLOAD_METER_BIAS_T * rng.standard_normal(n)
        self.meter = np.zeros(n)  # t, the payload meter's filtered value
        self.heading = np.zeros(n)
        self.engine_kw = np.zeros(n)
        self.brake_kw = np.zeros(n)
        self.diag_bits = np.zeros(n, dtype=np.int64)

    def _initial_legs(self) -> None:
        spacing = min(ph.DEPART_SPACING_S, 600.0 / max(self.n, 1))
        park = self.world.park.node
        for i in range(self.n):
            self._leg(i, PH_PARKED, self.routes.route(park, park), svc=-1)
            self.timer[i] = i * spacing

    def _spread_over_cycles(self) -> None:
        """Start mid-shift instead of at the park: each loading unit's trucks evenly spaced
        (random offset) round its cycle, hauling loaded to its dump or returning empty,
        standing. None starts inside a traffic-permission zone or its approach, on a service
        approach, or nearer than SPREAD_GAP to another truck on the same directed edge; a
        truck that finds no such place stays parked and leaves at its usual time."""
        rt, n_lu = self.routes, self.n_lu
        if n_lu == 0:
            return
        dump_node = [int(self.svc_node[n_lu + self.lu_dump[u]]) for u in range(n_lu)]
        loops = [
            (rt.route(int(self.svc_node[u]), dump_node[u]), rt.route(dump_node[u], int(self.svc_node[u])))
            for u in range(n_lu)
        ]  # fmt: skip
        rt.compile()
        taken: dict[int, list[float]] = {}  # directed edge -> distances along it in use
        for u in range(n_lu):
            mine = np.flatnonzero(self.lu == u)
            if not len(mine):
                continue
            haul, back = loops[u]
            lengths = (float(rt.length[haul]), float(rt.length[back]))
            loop = sum(lengths)
            offset = self.rng.uniform(0.0, 1.0)
            for j, i in enumerate(mine.tolist()):
                at = (j + offset) * loop / len(mine)
                for tries in range(int(loop // SPREAD_STEP)):
                    p = (at - tries * SPREAD_STEP) % loop
                    leg, d = (0, p) if p < lengths[0] else (1, p - lengths[0])
                    route = loops[u][leg]
                    if self._free_spot(route, d, lengths[leg], taken):
                        self._place(i, u, leg, route, d)
                        break

    def _free_spot(
        self, route: int, d: float, length: float, taken: dict[int, list[float]]
    ) -> bool:
        rt = self.routes
        if d < SPREAD_GAP or d > length - ph.QUEUE_ZONE:
            return False  # clear of the service points at both ends and their queues
        lo = int(rt.sample_index(np.array([route]), np.array([d]))[0])
        hi = int(rt.sample_index(np.array([route]), np.array([d + TP_LOOKAHEAD]))[0])
        if (rt.tp_zone[lo : hi + 1] >= 0).any() or rt.blocked[lo : hi + 1].any():
            return False
        edge = int(rt.edge[lo])
        s = float(rt.s_edge[lo] + (d - rt.d[lo]))
        if not SPREAD_GAP <= s <= self.world.edge_length[edge] - SPREAD_GAP:
            return False  # nobody starts at a node, where others' ways meet
        if any(abs(s - other) < SPREAD_GAP for other in taken.get(edge, ())):
            return False
        taken.setdefault(edge, []).append(s)
        return True

    def _place(self, i: int, unit: int, leg: int, route: int, d: float) -> None:
        if leg == 0:  # loaded, on the way to the unit's dump
            svc = self.n_lu + self.lu_dump[unit]
            self._leg(i, PH_TO_DUMP, route, svc)
            self.payload[i] = self.capacity[i] * self.rng.uniform(*ph.PAYLOAD_FILL)
            self.meter[i] = self.payload[i]
        else:
            self._leg(i, PH_TO_LOAD, route, unit)
        self.d[i] = d
        self.timer[i] = 0.0
        self._permission_pointer(i)

    # --- commands (from the link) --------------------------------------------------------------

    def all_stop(self, truck: int, stop_id: str, apply: bool) -> bool:
        """Apply or remove one stop (fleet-wide or targeted); True if the truck's stop state
        changed. The truck resumes what it was doing when the last stop is removed."""
        ids = self.stop_ids[truck]
        was = bool(ids)
        if apply:
            ids.add(stop_id)
            self._standstill_pending.add(truck)
        else:
            ids.discard(stop_id)
        self.stopped[truck] = bool(ids)
        self._report_state()
        return was != bool(ids)

    def assign(
        self, truck: int, task: str, target: int | None, assignment_id: str | None
    ) -> str | None:
        """An FMS assignment (HaulTruckAssignmentRequestV2); ``target`` is a loading-unit
        index (Load) or a dump index (Offload). It applies at once where the truck is heading
        there (it turns at the end of the way it is on), else from its next leg. Returns None
        when accepted, else the reason for refusing it."""
        handler = {"Load": self._assign_load, "Offload": self._assign_dump}.get(task)
        if handler is not None:
            refused = handler(truck, target)
        elif task in ("Park", "Fuel"):
            refused = self._assign_park(truck, task == "Fuel")
        else:
            refused = f"{task} is not simulated"
        if refused is None:
            self.assignment_id[truck] = assignment_id
        return refused

    def _assign_load(self, i: int, unit: int | None) -> str | None:
        if unit is None or not 0 <= unit < self.n_lu:
            return "unknown loading unit"
        self.lu[i], self.park_hold[i] = unit, False
        phase = self.phase[i]
        if phase == PH_PARKED and not self.refuel[i]:
            self.timer[i] = min(self.timer[i], 0.0)
        elif (phase == PH_TO_LOAD and self.svc[i] != unit) or (
            phase == PH_TO_PARK and not self.refuel[i]
        ):
            self._release(i)
            self._reroute(i, PH_TO_LOAD, unit, int(self.svc_node[unit]))
        return None

    def _assign_dump(self, i: int, dump: int | None) -> str | None:
        if dump is None or not 0 <= dump < len(self.world.dumps):
            return "unknown dump"
        self.dump_override[i] = dump
        svc = self.n_lu + dump
        if self.phase[i] == PH_TO_DUMP and self.svc[i] != svc:
            self._release(i)
            self._reroute(i, PH_TO_DUMP, svc, int(self.svc_node[svc]))
        return None

    def _assign_park(self, i: int, fuel: bool) -> str | None:
        self.park_hold[i] = not fuel
        self.refuel[i] = fuel
        if self.phase[i] == PH_TO_LOAD:
            self._release(i)
            self._reroute(i, PH_TO_PARK, -1, self.world.park.node)
        elif self.phase[i] == PH_PARKED and fuel:
            self.timer[i] = max(self.timer[i], ph.REFUEL_S)
        return None

    def set_zones(self, zones: Sequence[Zone]) -> bool:
        """Replace the active zones (SyncActiveZonesRequestV1); True if they changed."""
        wanted = {zone.zone_id: zone for zone in zones}
        if wanted.keys() == self.zones.keys():
            return False
        self.zones = wanted
        self._zones_changed()
        return True

    def activate_zone(self, zone: Zone) -> bool:
        if zone.zone_id in self.zones:
            return False
        self.zones[zone.zone_id] = zone
        self._zones_changed()
        return True

    def deactivate_zone(self, zone_id: str) -> bool:
        if self.zones.pop(zone_id, None) is None:
            return False
        self._zones_changed()
        return True

    def permission(self, truck: int, zone_id: str, status: str) -> None:
        """A TrafficPermissionUpdateV1 for this truck."""
        entry = self._next_permission_zone(truck)
        if entry is None or self.routes.zones[entry.zone].zone_id != zone_id:
            return
        inside = entry.entry_d <= self.d[truck] <= entry.exit_d
        if status == "Granted":
            self.tp_granted[truck] = True
            self.hold[truck] = False
        elif status == "Revoked":
            self.tp_granted[truck] = False
            self.hold[truck] = inside  # best-effort stop where it is
        elif status == "Rejected":
            self.tp_granted[truck] = False  # it waits, and asks again after TP_RETRY_S

    def start_fault(self, truck: int, kind: str, **choice: Any) -> FaultLabel | None:
        """Inject one fault now (tests, scripted scenarios)."""
        return self.faults.start(truck, kind, self.t, self.rng, **choice)

    # --- the step -------------------------------------------------------------------------------

    def step(self) -> None:
        """Advance the fleet by dt."""
        self.routes.compile()
        self.t += self.dt
        self.tick += 1
        for label in self.faults.onsets(self.t, self.dt, self.rng):
            self.events.append(Event("fault_onset", label.truck, {"label": label}))
        k = self._move()
        self._traffic_permissions()
        self._serve()
        k = self.routes.sample_index(self.route, self.d)
        self._heat_and_wear()
        self._sense(k)
        self._report_state()
        if self.tick % self.per_second == 0:
            self._diagnose()
            self._end_faults()
        if self._standstill_pending:
            self._standstill()

    def _move(self) -> np.ndarray:
        rt, dt = self.routes, self.dt
        route, d, v = self.route, self.d, self.v
        k = rt.sample_index(route, d)
        length = rt.length[route]
        driving = self._driving()
        mass = (self.mass_empty + self.payload) * 1000.0  # kg
        grade = rt.grade[k]
        sin = grade / np.sqrt(1.0 + grade * grade)
        resist = mass * ph.G * (sin + ph.ROLLING_RESISTANCE)  # N, negative when gravity pulls
        target = self._target_speed(k, length, resist)
        target = np.where(driving, target, 0.0)
        trac_max = np.minimum(
            ph.RIMPULL_COEFF * mass * ph.G,
            ph.DRIVE_EFFICIENCY * self.power_w / np.maximum(v, 0.5),
        )
        up = np.minimum(ph.A_ACCEL, (trac_max - resist) / mass)
        down = np.where(self.stopped | self.hold, ph.A_STOP, ph.A_BRAKE)
        wanted = np.minimum(np.maximum((target - v) / dt, -down), up)
        force = mass * wanted + resist
        traction = np.clip(force, 0.0, trac_max)
        braking = np.maximum(-force, 0.0) * (1.0 - self.faults.fade)
        accel = (traction - braking - resist) / mass
        halted = (target <= 0.0) & (v <= 0.05)  # standing on the parking brake
        accel = np.where(halted, 0.0, accel)
        v_new = np.where(halted, 0.0, np.maximum(v + accel * dt, 0.0))
        mean_v = 0.5 * (v + v_new)
        self.d = np.minimum(d + mean_v * dt, length)
        self.v = v_new
        on = self._engine_on()
        wheel_kw = np.where(halted, 0.0, traction) * mean_v / 1000.0
        self.engine_kw = np.where(
            on, wheel_kw / ph.DRIVE_EFFICIENCY + self.capacity * ph.AUX_KW_PER_T, 0.0
        )
        self.brake_kw = np.where(halted, 0.0, braking) * mean_v / 1000.0
        return k

    def _target_speed(self, k: np.ndarray, length: np.ndarray, resist: np.ndarray) -> np.ndarray:
        """The speed the AHS aims for: mapped and zone caps (approached at A_PLAN), stops ahead,
        the truck ahead, the top speed and the retarding limit downhill."""
        rt, a = self.routes, ph.A_PLAN
        # Look one tick ahead (the distance this tick covers at the current speed), so a cap
        # is met on entering it, not a tick later.
        ahead = np.minimum(self.d + self.v * self.dt, length)
        k_ahead = rt.sample_index(self.route, ahead)
        allowed2 = rt.wsuf[k_ahead + 1] - 2.0 * a * ahead
        stop = self._stop_points(length)
        allowed2 = np.minimum(allowed2, 2.0 * a * np.maximum(stop - ahead, 0.0))
        allowed2 = np.minimum(allowed2, self._following(k))
        target = np.sqrt(np.maximum(allowed2, 0.0))
        target = np.minimum(target, np.minimum(rt.cap[k], rt.cap[k_ahead + 1]))
        pull = np.maximum(-resist, 1.0)  # N of gravity beyond rolling resistance, downhill
        retard = np.where(resist < 0.0, self.retard_w / pull, np.inf)
        return np.minimum(np.minimum(target, ph.V_MAX), retard)

    def _stop_points(self, length: np.ndarray) -> np.ndarray:
        """Distance along the route where each truck must stand: short of a busy shovel or tip
        head it has no claim on, or of a traffic-permission zone it has no grant for."""
        to_service = (self.phase == PH_TO_LOAD) | (self.phase == PH_TO_DUMP)
        stop = np.where(to_service & ~self.claimed, length - ph.SPOT_DISTANCE, np.inf)
        has = self.tp_ptr < self.tp_end
        entry = self.routes.tp_entry_d[np.where(has, self.tp_ptr, -1)]
        waiting = has & ~self.tp_granted & (self.d <= entry)
        return np.where(waiting, np.minimum(stop, entry - TP_MARGIN), stop)

    def _following(self, k: np.ndarray) -> np.ndarray:
        """Squared speed allowed behind the truck ahead: its speed plus what braking at A_PLAN
        covers in the gap beyond FOLLOW_GAP (less, down to a stop, while the gap is shorter, so
        a gap that closed opens again), and closing on it no faster than FOLLOW_CLOSE_S allows. The truck ahead is the next one on the same directed
        edge; and at each node of its route within FOLLOW_LOOKAHEAD, the rearmost truck on the
        edge it takes there, a truck nearer the node on another edge that merges into that same
        edge (the nearer one goes first: a zip merge), and one nearer the node on another edge
        that crosses it there, if that one is going through. Trucks loading, tipping or parked
        stand beside the road and are not followed."""
        rt = self.routes
        edge = rt.edge[k]
        s = rt.s_edge[k] + (self.d - rt.d[k])
        on_road = (
            (edge >= 0)
            & (self.phase != PH_PARKED)
            & (self.phase != PH_LOADING)
            & (self.phase != PH_DUMPING)
        )
        idx = np.flatnonzero(on_road)
        out = np.full(self.n, np.inf)
        if len(idx) < 2:
            return out
        v = self.v

        def follow(behind: np.ndarray, ahead: np.ndarray, gap: np.ndarray) -> None:
            allowed = v[ahead] ** 2 + 2.0 * ph.A_PLAN * (gap - ph.FOLLOW_GAP)
            closing = v[ahead] + np.maximum(gap - ph.FOLLOW_MIN, 0.0) / ph.FOLLOW_CLOSE_S
            allowed = np.minimum(allowed, closing**2)
            np.minimum.at(out, behind, allowed)

        order = idx[np.lexsort((s[idx], edge[idx]))]
        behind, ahead = order[:-1], order[1:]
        same = edge[behind] == edge[ahead]
        follow(behind[same], ahead[same], s[ahead[same]] - s[behind[same]])
        # Across the nodes ahead: the end of this edge, and of the next one if it is short.
        edges, first = np.unique(edge[order], return_index=True)
        rear = order[first]  # the rearmost truck on each edge that has trucks
        stops = self._stop_points(rt.length[self.route])
        free = ~(self.stopped | self.hold)
        truck, dist, into, onto = [], [], [], []
        here, ahead_m, lane = idx, self.world.edge_length[edge[idx]] - s[idx], edge[idx]
        for _hop in range(2):
            near = ahead_m < FOLLOW_LOOKAHEAD
            here, ahead_m, lane = here[near], ahead_m[near], lane[near]
            length = rt.length[self.route[here]]
            beyond = self.d[here] + ahead_m + DS + 0.5  # the first sample past the node
            nxt = rt.edge[rt.sample_index(self.route[here], np.minimum(beyond, length))]
            through = (beyond < length) & (nxt >= 0) & (nxt != lane)
            here, ahead_m, lane, nxt = here[through], ahead_m[through], lane[through], nxt[through]
            truck.append(here), dist.append(ahead_m), into.append(lane), onto.append(nxt)
            here, ahead_m, lane = here, ahead_m + self.world.edge_length[nxt], nxt
        cand, left = np.concatenate(truck), np.concatenate(dist)
        into, nxt = np.concatenate(into), np.concatenate(onto)
        if not len(cand):
            return out
        at = np.minimum(np.searchsorted(edges, nxt), len(edges) - 1)
        occupied = edges[at] == nxt
        follow(cand[occupied], rear[at[occupied]], left[occupied] + s[rear[at[occupied]]])
        o = np.lexsort((left, nxt))
        b, a = o[1:], o[:-1]
        merging = (nxt[b] == nxt[a]) & (into[b] != into[a])
        follow(cand[b[merging]], cand[a[merging]], left[b[merging]] - left[a[merging]])
        # Crossing: at a node, whatever their next edges, the truck nearer it goes first, if it
        # is going through (one that must stand short of the node, for a grant, a shovel or a
        # stop, holds nobody else up).
        node = self.world.edge_to[into]
        going = free[cand] & (stops[cand] > self.d[cand] + left)
        o = np.lexsort((left, node))
        b, a = o[1:], o[:-1]
        # Only a truck that is moving is yielded to: one held up itself (behind another, at a
        # crossing of its own) is no reason to stand, and yielding to it closed rings of
        # waiting trucks (A yields to B, which waits behind C, ... which yields to A): every
        # truck of the model-training pits stood within 15 minutes.
        crossing = (
            (node[b] == node[a])
            & (into[b] != into[a])
            & going[a]
            & (v[cand[a]] > MOVING_MPS)
            & (cand[b] != cand[a])
        )
        follow(cand[b[crossing]], cand[a[crossing]], left[b[crossing]] - left[a[crossing]])
        return out

    def _traffic_permissions(self) -> None:
        """Ask for entry ahead of a trafficPermission zone (again every TP_RETRY_S while
        waiting), take a grant by default after ``permission_timeout_s`` when set, and
        release the zone on leaving it."""
        rt, d = self.routes, self.d
        has = (self.tp_ptr < self.tp_end) & self._moving_phase()
        if not has.any():
            return
        ptr = np.where(has, self.tp_ptr, -1)
        entry, exit_ = rt.tp_entry_d[ptr], rt.tp_exit_d[ptr]
        waiting = has & self.tp_requested & ~self.tp_granted
        self.tp_requested &= ~(waiting & (self.t - self.tp_asked_at >= TP_RETRY_S))
        ask = has & ~self.tp_requested & ~self.tp_granted & (d >= entry - TP_LOOKAHEAD)
        for i in np.flatnonzero(ask).tolist():
            e = rt.tp_entries[self.tp_ptr[i]]
            way = e.way_id if d[i] < e.entry_d else None
            zone = rt.zones[e.zone].zone_id
            self.events.append(Event("permission_request", i, {"zone_id": zone, "way_id": way}))
            if not np.isfinite(self.tp_first_ask[i]):
                self.tp_first_ask[i] = self.t
            self.tp_requested[i], self.tp_asked_at[i] = True, self.t
        if self.permission_timeout_s is not None:
            late = self.t - self.tp_first_ask >= self.permission_timeout_s
            self.tp_granted |= has & self.tp_requested & late
        left = has & (d > exit_)
        for i in np.flatnonzero(left).tolist():
            e = rt.tp_entries[self.tp_ptr[i]]
            if self.tp_granted[i]:
                zone = rt.zones[e.zone].zone_id
                self.events.append(
                    Event("permission_released", i, {"zone_id": zone, "way_id": e.way_id})
                )
            self.tp_ptr[i] += 1
            self._permission_flags(i)

    def _serve(self) -> None:
        """Claims of shovels and tip heads, arrivals, loading, tipping, parking."""
        length = self.routes.length[self.route]
        to_service = (self.phase == PH_TO_LOAD) | (self.phase == PH_TO_DUMP)
        self._claim(to_service, length)
        moving = to_service | (self.phase == PH_TO_PARK)
        arrived = (
            moving & (self.d >= length - ARRIVE_EPS) & (self.claimed | (self.phase == PH_TO_PARK))
        )
        for i in np.flatnonzero(arrived).tolist():
            self._arrive(i)
        working = ~self.stopped
        loading = working & (self.phase == PH_LOADING)
        self.payload = np.where(
            loading, self.payload + self.svc_rate[np.maximum(self.svc, 0)] * self.dt, self.payload
        )
        for i in np.flatnonzero(loading & (self.payload >= self.payload_goal)).tolist():
            self._loaded(i)
        tipping = working & (self.phase == PH_DUMPING)
        self.timer = np.where(
            tipping | (working & (self.phase == PH_PARKED)), self.timer - self.dt, self.timer
        )
        share = np.clip((self.timer - ph.TIP_LOWER_S) / ph.TIP_S, 0.0, 1.0)
        self.payload = np.where(tipping, self.tip_payload * share, self.payload)
        for i in np.flatnonzero(tipping & (self.timer <= 0.0)).tolist():
            self._tipped(i)
        parked = working & (self.phase == PH_PARKED)
        refuelling = parked & self.refuel
        self.fuel_l = np.where(
            refuelling,
            np.minimum(self.fuel_l + self.tank_l / ph.REFUEL_S * self.dt, self.tank_l),
            self.fuel_l,
        )
        for i in np.flatnonzero(parked & (self.timer <= 0.0) & ~self.park_hold).tolist():
            self._depart(i)

    def _claim(self, to_service: np.ndarray, length: np.ndarray) -> None:
        """Trucks close to a shovel or tip head with a free slot take it, nearest first."""
        free = self.svc_busy < self.svc_slots
        near = (
            to_service
            & ~self.claimed
            & ~self.stopped
            & (length - self.d <= ph.SPOT_DISTANCE + CLAIM_WINDOW)
        )
        near &= free[np.maximum(self.svc, 0)]
        if not near.any():
            return
        idx = np.flatnonzero(near)
        for i in idx[np.argsort(length[idx] - self.d[idx], kind="stable")].tolist():
            s = self.svc[i]
            if self.svc_busy[s] < self.svc_slots[s]:
                self.svc_busy[s] += 1
                self.claimed[i] = True

    # --- haul cycle transitions (a few trucks per tick) ---------------------------------------------

    def _arrive(self, i: int) -> None:
        self.d[i] = self.routes.length[self.route[i]]
        self.v[i] = 0.0
        if self.phase[i] == PH_TO_LOAD:
            self.phase[i] = PH_LOADING
            self.payload_goal[i] = self.capacity[i] * self.rng.uniform(*ph.PAYLOAD_FILL)
        elif self.phase[i] == PH_TO_DUMP:
            self.phase[i] = PH_DUMPING
            self.timer[i] = ph.TIP_RAISE_S + ph.TIP_S + ph.TIP_LOWER_S
            self.tip_payload[i] = self.payload[i]
        else:
            self.phase[i] = PH_PARKED
            self.timer[i] = ph.REFUEL_S if self.refuel[i] else 0.0

    def _loaded(self, i: int) -> None:
        self._release(i)
        dump = (
            int(self.dump_override[i]) if self.dump_override[i] >= 0 else self.lu_dump[self.lu[i]]
        )
        svc = self.n_lu + dump
        self._leg(i, PH_TO_DUMP, self.routes.route(self._here(i), int(self.svc_node[svc])), svc)

    def _tipped(self, i: int) -> None:
        self._release(i)
        self.payload[i] = 0.0
        self.cycles[i] += 1
        if self.fuel_l[i] < ph.REFUEL_BELOW * self.tank_l[i]:
            self.refuel[i] = True
        if self.refuel[i] or self.park_hold[i]:
            self._leg(i, PH_TO_PARK, self.routes.route(self._here(i), self.world.park.node), -1)
        else:
            self._leg(
                i, PH_TO_LOAD, self.routes.route(self._here(i), self._lu_node(i)), int(self.lu[i])
            )

    def _depart(self, i: int) -> None:
        self.refuel[i] = False
        self._leg(
            i, PH_TO_LOAD, self.routes.route(self._here(i), self._lu_node(i)), int(self.lu[i])
        )

    def _leg(self, i: int, phase: int, route: int, svc: int) -> None:
        held = self._held_permission(i)
        self.routes.compile()
        self.phase[i], self.route[i], self.svc[i] = phase, route, svc
        self.d[i] = 0.0
        self.claimed[i] = False
        self._permission_pointer(i)
        self._carry_permission(i, held)

    def _reroute(self, i: int, phase: int, svc: int, node: int) -> None:
        """Change destination mid-leg: the new route starts at the edge the truck is on."""
        rt = self.routes
        k = int(rt.sample_index(self.route[i : i + 1], self.d[i : i + 1])[0])
        edge = int(rt.edge[k])
        if edge < 0:
            self._leg(i, phase, rt.route(self._here(i), node), svc)
            return
        along = float(rt.s_edge[k] + (self.d[i] - rt.d[k]))
        held = self._held_permission(i)
        route = rt.reroute(edge, node)
        rt.compile()
        self.phase[i], self.route[i], self.svc[i] = phase, route, svc
        self.d[i] = along
        self._permission_pointer(i)
        self._carry_permission(i, held)

    def _release(self, i: int) -> None:
        if self.claimed[i] and self.svc[i] >= 0:
            self.svc_busy[self.svc[i]] -= 1
        self.claimed[i] = False

    def _here(self, i: int) -> int:
        """The node at the end of the truck's current route (where it stands between legs)."""
        return int(self.routes.dest_node[self.route[i]])

    def _lu_node(self, i: int) -> int:
        return int(self.svc_node[self.lu[i]])

    def _permission_pointer(self, i: int) -> None:
        rt = self.routes
        first, count = int(rt.tp_first[self.route[i]]), int(rt.tp_count[self.route[i]])
        ptr = first
        while ptr < first + count and rt.tp_entries[ptr].exit_d < self.d[i]:
            ptr += 1
        self.tp_ptr[i], self.tp_end[i] = ptr, first + count
        self._permission_flags(i)

    def _permission_flags(self, i: int) -> None:
        self.tp_requested[i] = self.tp_granted[i] = self.hold[i] = False
        self.tp_first_ask[i] = np.inf

    def _held_permission(self, i: int) -> tuple[str, int] | None:
        """(ZoneId, WayId) of the permission zone the truck stands in with a grant."""
        entry = self._next_permission_zone(i)
        if entry is None or not self.tp_granted[i] or self.d[i] < entry.entry_d:
            return None
        return self.routes.zones[entry.zone].zone_id, entry.way_id

    def _carry_permission(self, i: int, held: tuple[str, int] | None) -> None:
        """A new route that starts inside the zone the truck holds keeps the grant (it is
        released on leaving); otherwise the old zone is released now."""
        if held is None:
            return
        entry = self._next_permission_zone(i)
        inside = entry is not None and entry.entry_d <= self.d[i]
        if inside and self.routes.zones[entry.zone].zone_id == held[0]:
            self.tp_requested[i] = self.tp_granted[i] = True
            return
        data = {"zone_id": held[0], "way_id": held[1]}
        self.events.append(Event("permission_released", i, data))

    def _next_permission_zone(self, i: int) -> Any:
        if self.tp_ptr[i] >= self.tp_end[i]:
            return None
        return self.routes.tp_entries[self.tp_ptr[i]]

    def _zones_changed(self) -> None:
        """New zones: recompute caps, and send trucks whose road ahead is now closed round
        it where the map allows (otherwise they stop at its edge)."""
        rt = self.routes
        before = [self._permission_zone_id(i) for i in range(self.n)]
        rt.set_zones(list(self.zones.values()))
        rt.compile()
        for i in range(self.n):  # the entries were renumbered: find each truck's next one
            flags = (self.tp_requested[i], self.tp_granted[i], self.hold[i], self.tp_first_ask[i])
            self._permission_pointer(i)
            if before[i] is not None and self._permission_zone_id(i) == before[i]:
                self.tp_requested[i], self.tp_granted[i], self.hold[i], self.tp_first_ask[i] = flags
        moving = np.flatnonzero(self._moving_phase())
        here = rt.sample_index(self.route[moving], self.d[moving])
        ends = rt.start[self.route[moving]] + rt.count[self.route[moving]]
        closed = [
            i for i, k, end in zip(moving, here, ends, strict=True) if rt.blocked[k:end].any()
        ]
        # Plan every new route first and compile once: compiling per truck cost seconds a zone
        # with 300 trucks (the whole route table, every time), and the trucks' link stalled.
        planned = []
        for i in closed:
            k = int(rt.sample_index(self.route[i : i + 1], self.d[i : i + 1])[0])
            edge = int(rt.edge[k])
            if edge < 0:
                planned.append((i, None, 0.0, None))
                continue
            along = float(rt.s_edge[k] + (self.d[i] - rt.d[k]))
            planned.append((i, rt.reroute(edge, self._here(i)), along, self._held_permission(i)))
        rt.compile()
        for i, route, along, held in planned:
            if route is None:
                self._leg(
                    i, int(self.phase[i]), rt.route(self._here(i), self._here(i)), int(self.svc[i])
                )
                continue
            self.route[i], self.d[i] = route, along
            self._permission_pointer(i)
            self._carry_permission(i, held)

    def _permission_zone_id(self, i: int) -> str | None:
        entry = self._next_permission_zone(i)
        return None if entry is None else self.routes.zones[entry.zone].zone_id

    # --- masks ----------------------------------------------------------------------------------

    def _moving_phase(self) -> np.ndarray:
        p = self.phase
        return (p == PH_TO_LOAD) | (p == PH_TO_DUMP) | (p == PH_TO_PARK)

    def _driving(self) -> np.ndarray:
        return self._moving_phase() & ~self.stopped & ~self.hold

    def _engine_on(self) -> np.ndarray:
        return self.phase != PH_PARKED

    # --- heat, wear, fuel -----------------------------------------------------------------------

    def _heat_and_wear(self) -> None:
        dt, on, faults = self.dt, self._engine_on(), self.faults
        load = np.clip(self.engine_kw * 1000.0 / self.power_w, 0.0, 1.0)
        normal = np.where(on, ph.COOLANT_IDLE_C + ph.COOLANT_LOAD_C * load, ph.AMBIENT_C)
        tau = np.where(on, ph.COOLANT_TAU_S, ph.COOLANT_TAU_OFF_S)
        self.coolant += (normal - self.coolant) * dt / tau
        faults.overheat = np.minimum(faults.overheat + faults.overheat_rate * dt, OVERHEAT_MAX_C)
        base = ph.AMBIENT_C + np.where(on, ph.BRAKE_OIL_WARM_C, 0.0)
        heat = self.brake_kw * (1.0 + FADE_HEAT_GAIN * faults.fade)
        for axle, per_kw in enumerate(ph.BRAKE_C_PER_KW):
            self.brake[axle] += (base + per_kw * heat - self.brake[axle]) * dt / ph.BRAKE_TAU_S
        tyre_load = self._tyre_loads() / (self.capacity * ph.TYRE_RATED_LOAD_PER_T)
        warm = ph.AMBIENT_C + ph.TYRE_WARM_C + ph.TYRE_HEAT_C * tyre_load * (self.v / 10.0)
        self.tyre_temp += (warm - self.tyre_temp) * dt / ph.TYRE_TAU_S
        self.tyre_cold = np.maximum(self.tyre_cold - faults.leak_rate * dt, 0.0)
        self.fuel_l = np.maximum(
            self.fuel_l - ph.FUEL_L_PER_KWH * self.engine_kw * dt / 3600.0, 0.0
        )
        self.machine_h += dt / 3600.0
        self.engine_h += np.where(on, dt / 3600.0, 0.0)

    def _front_share(self) -> np.ndarray:
        full = np.clip(self.payload / self.capacity, 0.0, 1.1)
        return ph.FRONT_SHARE_EMPTY + (ph.FRONT_SHARE_LOADED - ph.FRONT_SHARE_EMPTY) * full

    def _tyre_loads(self) -> np.ndarray:
        """t on each tyre: the front axle's share on two tyres, the rest on four."""
        mass, share = self.mass_empty + self.payload, self._front_share()
        front = mass * share / 2.0
        rear = mass * (1.0 - share) / 4.0
        return np.stack([front, front, rear, rear, rear, rear])

    # --- sensors ----------------------------------------------------------------------------------

    def _sense(self, k: np.ndarray) -> None:
        """What the trucks' sensors read now (noise, stuck sensors, GPS dropouts applied)."""
        rt, n = self.routes, self.n
        noise = self.rng.standard_normal((25, n), dtype=np.float32)  # one row per noisy channel
        kn = k + 1
        span = np.maximum(rt.d[kn] - rt.d[k], 1e-9)
        frac = np.clip((self.d - rt.d[k]) / span, 0.0, 1.0)
        self.x = rt.x[k] + frac * (rt.x[kn] - rt.x[k])
        self.y = rt.y[k] + frac * (rt.y[kn] - rt.y[k])
        self.z = rt.z[k] + frac * (rt.z[kn] - rt.z[k])
        moving = self.v > 0.5
        self.heading = np.where(moving, rt.heading[k], self.heading)
        self.way_id = rt.way_id[k]
        self.speed_cap = np.minimum(rt.cap[k], rt.cap[kn])
        sensed = self._sensed_block(noise)
        readings = {name: sensed[row] for row, name in enumerate(SENSED_CHANNELS)}
        readings.update(self._position_readings(noise))
        readings["payload_t"] = self._payload_meter(sensed[-4:])
        readings["machine_hours_h"] = self.machine_h.copy()  # the counters grow in place
        readings["engine_hours_h"] = self.engine_h.copy()
        readings["way_id"] = self.way_id.astype(float)
        self.readings = readings

    def _position_readings(self, noise: np.ndarray) -> dict[str, np.ndarray]:
        sigma = self.gps_sigma
        x = self.x + sigma * noise[0]
        y = self.y + sigma * noise[1]
        z = self.z + sigma * ph.GPS_VERTICAL_FACTOR * noise[2]
        lon, lat = self.world.frame.to_lonlat(x, y)
        heading = (self.heading + ph.HEADING_SIGMA_DEG * noise[3]) % 360.0
        speed = np.maximum(self.v * 3.6 + ph.SPEED_SIGMA_KMH * noise[4], 0.0)
        readings = {
            "x_m": x,
            "y_m": y,
            "latitude": lat,
            "longitude": lon,
            "elevation_m": z,
            "heading_deg": heading,
            "speed_kmh": speed,
        }
        self.gps_ok = self.t >= self.faults.gps_until
        if not self.gps_ok.all():
            for name in POSITION_CHANNELS:
                readings[name] = np.where(self.gps_ok, readings[name], np.nan)
        return readings

    def _sensed_block(self, noise: np.ndarray) -> np.ndarray:
        faults = self.faults
        pressure = (self.tyre_cold + ph.ATM_KPA) * (self.tyre_temp + ph.KELVIN) / (
            ph.TYRE_REF_C + ph.KELVIN
        ) - ph.ATM_KPA
        road = ph.STRUT_SIGMA_STILL + ph.STRUT_SIGMA_ROAD * np.minimum(self.v / 8.0, 1.0)
        block = np.concatenate(
            [
                (self.coolant + faults.overheat + ph.COOLANT_SIGMA_C * noise[5])[None],
                self.brake + ph.BRAKE_SIGMA_C * noise[6:8],
                pressure + ph.TYRE_PRESSURE_SIGMA_KPA * noise[8:14],
                self.tyre_temp + ph.TYRE_TEMP_SIGMA_C * noise[14:20],
                np.clip(
                    self.fuel_l / self.tank_l * 100.0 + ph.FUEL_SIGMA_PCT * noise[20], 0.0, 100.0
                )[None],
                self._strut_pressures() * (1.0 + road * noise[21:25]),
            ]
        )
        if faults.any_stuck:
            fresh = faults.stuck & np.isnan(faults.stuck_value)
            faults.stuck_value = np.where(fresh, block, faults.stuck_value)
            block = np.where(faults.stuck, faults.stuck_value, block)
        return block

    def _strut_pressures(self) -> np.ndarray:
        """kPa in the four struts: the sprung mass over each axle on its two struts."""
        mass = self.mass_empty + self.payload
        front_axle = mass * self._front_share() - self.mass_empty * ph.UNSPRUNG_FRONT
        rear_axle = mass * (1.0 - self._front_share()) - self.mass_empty * ph.UNSPRUNG_REAR
        to_kpa = ph.G / self.strut_area  # t on a strut -> kPa (1000 kg * g / A / 1000)
        front, rear = front_axle / 2.0 * to_kpa, rear_axle / 2.0 * to_kpa
        return np.stack([front, front, rear, rear])

    def _payload_meter(self, struts: np.ndarray) -> np.ndarray:
        """Payload from the strut pressures, as an on-board meter gives it: filtered while the
        truck stands, held while it moves (road bounce makes moving readings useless)."""
        sprung_empty = self.mass_empty * (1.0 - ph.UNSPRUNG_FRONT - ph.UNSPRUNG_REAR)
        raw = struts.sum(axis=0) * self.strut_area / ph.G - sprung_empty + self.meter_bias
        still = self.v < 1.0
        gain = min(self.dt / ph.PAYLOAD_METER_TAU_S, 1.0)
        self.meter = np.where(still, self.meter + (raw - self.meter) * gain, self.meter)
        return np.maximum(self.meter, 0.0)

    # --- reports ------------------------------------------------------------------------------------

    def _report_state(self) -> None:
        left = self.routes.length[self.route] - self.d
        state = _PHASE_STATE[self.phase]
        to_service = (self.phase == PH_TO_LOAD) | (self.phase == PH_TO_DUMP)
        state = np.where(
            to_service & ~self.claimed & (left <= ph.QUEUE_ZONE) & (self.v < 0.5), QUEUED, state
        )
        state = np.where(
            (self.phase == PH_TO_LOAD) & self.claimed & (left <= ph.SPOT_DISTANCE), SPOTTING, state
        )
        state = np.where(self._waiting_for_permission(), QUEUED, state)
        self.state = np.where(self.stopped | self.hold, STOPPED, state).astype(np.int8)

    def _waiting_for_permission(self) -> np.ndarray:
        """Standing short of a traffic-permission zone it has asked for and not been granted:
        queued, as a real AHS reports it (the FMS's collision rules leave a queued truck be)."""
        has = (self.tp_ptr < self.tp_end) & self._moving_phase()
        entry = self.routes.tp_entry_d[np.where(has, self.tp_ptr, -1)]
        return (
            has
            & self.tp_requested
            & ~self.tp_granted
            & (self.d <= entry)
            & (entry - self.d <= TP_MARGIN + ph.QUEUE_ZONE)
            & (self.v < 0.5)
        )

    def _standstill(self) -> None:
        for i in list(self._standstill_pending):
            if not self.stopped[i]:
                self._standstill_pending.discard(i)
            elif self.v[i] <= 0.0:
                self._standstill_pending.discard(i)
                self.events.append(Event("standstill", i))

    def _diagnose(self) -> None:
        """OEM alarms on the sensed values (with hysteresis); an Event when a truck's set of
        active alarms changes."""
        r, bits = self.readings, self.diag_bits
        checks = [("coolant_temp_c", ph.COOLANT_ALARM_C, 1, "coolant")]
        checks += [(f"brake_temp_{a}_c", ph.BRAKE_ALARM_C, 1, "brake") for a in ("front", "rear")]
        checks += [(f"tyre_pressure_kpa_{t}", ph.TYRE_LOW_KPA, -1, "tyre") for t in TYRES]
        new = np.zeros(self.n, dtype=np.int64)
        for bit, (name, limit, sign, group) in enumerate(checks):
            was = (bits >> bit) & 1 == 1
            value = sign * r[name]
            on = np.where(was, value > sign * limit - ph.HYSTERESIS[group], value >= sign * limit)
            new |= on.astype(np.int64) << bit
        self.diag_bits = new
        for i in np.flatnonzero(new != bits).tolist():
            self._alarm_changed(i, int(bits[i]), int(new[i]), checks)

    def _alarm_changed(self, i: int, old: int, new: int, checks: list) -> None:
        raised = new & ~old
        for bit, (name, _, _, group) in enumerate(checks):
            if raised >> bit & 1:
                kind = {"coolant": "overheating", "brake": "brake_fade", "tyre": "tyre_leak"}[group]
                tyre = name.rsplit("_", 1)[1] if group == "tyre" else None
                self.faults.alarmed(i, kind, self.t, tyre)
        self.events.append(Event("diagnostic", i, {"faults": self.diagnostic_faults(i)}))

    def diagnostic_faults(self, i: int) -> list[dict[str, Any]]:
        """The truck's active alarms in MachineDiagnosticV2 wire form. ComponentId / FaultCode
        follow SAE J1939 SPN / FMI where one exists (110 coolant temperature, 241 tyre
        pressure; FMI 16 high, 18 low); brake oil temperature uses a proprietary SPN."""
        bits, out = int(self.diag_bits[i]), []
        names = [
            "coolant_temp_c",
            "brake_temp_front_c",
            "brake_temp_rear_c",
            *(f"tyre_pressure_kpa_{t}" for t in TYRES),
        ]
        for bit, name in enumerate(names):
            if bits >> bit & 1:
                out.append(_diagnostic(name, float(self.readings[name][i])))
        return out

    def _end_faults(self) -> None:
        for label in self.faults.due(self.t):
            if label.kind == "tyre_leak":
                row = TYRES.index(label.tyre)
                self.tyre_cold[row, label.truck] = self.tyre_nominal[row, label.truck]
            self.events.append(Event("fault_end", label.truck, {"label": label}))

    # --- views for the link and the offline API -----------------------------------------------------

    def drain_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def histogram(self) -> dict[str, int]:
        counts = np.bincount(self.state, minlength=len(STATES))
        return {STATES[i]: int(c) for i, c in enumerate(counts) if c}


_DIAGNOSTIC_CODES = {
    "coolant_temp_c": (110, 16, "EngineCoolantTemp"),
    "brake_temp_front_c": (520192, 16, "BrakeTempFront"),
    "brake_temp_rear_c": (520192, 16, "BrakeTempRear"),
}


def _diagnostic(name: str, value: float) -> dict[str, Any]:
    if name.startswith("tyre_pressure_kpa_"):
        tyre = name.rsplit("_", 1)[1]
        return {
            "ComponentId": 241,
            "FaultCode": 18,
            "FaultData": {"TirePosition": tyre, "Value": round(value, 1)},
        }
    component, code, sensor = _DIAGNOSTIC_CODES[name]
    return {
        "ComponentId": component,
        "FaultCode": code,
        "FaultData": {"SensorId": sensor, "Value": round(value, 1)},
    }


def _specs(trucks: int | Sequence[TruckSpec], rng: np.random.Generator) -> list[TruckSpec]:
    if isinstance(trucks, int):
        return [
            TruckSpec(
                str(uuid.UUID(int=int(rng.integers(2**62)) << 64 | i, version=4)),
                f"SIM-{i + 1:03d}",
            )
            for i in range(trucks)
        ]
    return list(trucks)


# --- offline API -----------------------------------------------------------------------------------


class SimulationResult(NamedTuple):
    """``telemetry``: channel -> [T, N] float32 as the trucks' sensors report it (NaN: no
    reading, e.g. a GPS dropout). ``labels``: the injected faults. ``states``: ground truth
    the telemetry does not carry: ``time_s`` [T], ``production_state`` [T, N] int8 (index
    into STATES), ``speed_mps``, ``payload_t``, ``x_m``, ``y_m``, ``speed_limit_mps`` (the cap
    where the truck is) [T, N] float32, ``cycles`` [T, N] int32."""

    telemetry: dict[str, np.ndarray]
    labels: list[FaultLabel]
    states: dict[str, np.ndarray]


_TRUTH = {
    "speed_mps": "v",
    "payload_t": "payload",
    "x_m": "x",
    "y_m": "y",
    "speed_limit_mps": "speed_cap",
}


def simulate_arrays(
    world: World,
    trucks: int | Sequence[TruckSpec],
    hz: float,
    seconds: float,
    seed: int = 0,
    fault_rate: float = 0.0,
    *,
    record_hz: float | None = None,
) -> SimulationResult:
    """Run ``trucks`` for ``seconds`` of simulated time at ``hz`` with no broker, recording
    every channel at ``record_hz`` (default: every tick). With no FMS to answer, traffic
    permissions are granted as soon as they are asked for."""
    engine = Engine(
        world, trucks, hz=hz, seed=seed, fault_rate=fault_rate, permission_timeout_s=0.0
    )
    every = max(1, round(hz / record_hz)) if record_hz else 1
    rows = round(seconds * hz) // every
    n = engine.n
    telemetry = {name: np.empty((rows, n), dtype=np.float32) for name in CHANNELS}
    states: dict[str, np.ndarray] = {
        "time_s": np.empty(rows),
        "production_state": np.empty((rows, n), dtype=np.int8),
        "cycles": np.empty((rows, n), dtype=np.int32),
    }
    states.update({name: np.empty((rows, n), dtype=np.float32) for name in _TRUTH})
    for row in range(rows):
        for _ in range(every):
            engine.step()
        engine.events.clear()
        for name in CHANNELS:
            telemetry[name][row] = engine.readings[name]
        states["time_s"][row] = engine.t
        states["production_state"][row] = engine.state
        states["cycles"][row] = engine.cycles
        for name, attr in _TRUTH.items():
            states[name][row] = getattr(engine, attr)
    return SimulationResult(telemetry, engine.faults.labels, states)
