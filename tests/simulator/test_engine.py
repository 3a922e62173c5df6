"""The fleet engine offline: haul cycles, physics, zones, faults and their labels."""

from __future__ import annotations

import numpy as np
import pytest

from fleet.simulator.engine import (
    CHANNELS,
    DUMPING,
    HAULING,
    LOADING,
    PH_TO_DUMP,
    PH_TO_LOAD,
    SPREAD_GAP,
    STATES,
    STOPPED,
    Engine,
    simulate_arrays,
)
from fleet.simulator.routes import DS, STOP_SHORT_M
from fleet.simulator.world import World
from tests.simulator.maps import RAMP_WAY, pit_map, zone

HALF_HOUR = 1800.0


@pytest.fixture(scope="module")
def pit() -> World:
    return World.from_map(pit_map())


@pytest.fixture(scope="module")
def shift(pit):
    """20 trucks for half an hour at 2 Hz, no faults: the run most tests read."""
    return simulate_arrays(pit, 20, hz=2, seconds=HALF_HOUR, seed=11)


def run_until(engine: Engine, condition, limit_s: float = 900.0) -> None:
    while not condition():
        engine.step()
        assert engine.t < limit_s, "condition not reached"


def test_the_same_seed_gives_the_same_run(pit):
    first = simulate_arrays(pit, 4, hz=5, seconds=120, seed=5, fault_rate=200.0)
    again = simulate_arrays(pit, 4, hz=5, seconds=120, seed=5, fault_rate=200.0)
    other = simulate_arrays(pit, 4, hz=5, seconds=120, seed=6, fault_rate=200.0)
    for name in CHANNELS:
        assert np.array_equal(first.telemetry[name], again.telemetry[name], equal_nan=True), name
    assert [label.to_dict() for label in first.labels] == [
        label.to_dict() for label in again.labels
    ]
    assert first.labels  # 200 faults per truck-hour: some in two minutes
    assert not np.array_equal(first.telemetry["coolant_temp_c"], other.telemetry["coolant_temp_c"])


def test_trucks_complete_full_haul_cycles(shift):
    telemetry, labels, states = shift
    assert telemetry["speed_kmh"].shape == (3600, 20) and labels == []
    assert states["cycles"][-1].sum() >= 20 and (states["cycles"][-1] >= 1).all()
    seen = {STATES[s] for s in np.unique(states["production_state"])}
    assert seen >= {"Parked", "Driving", "Queued", "Spotting", "Loading", "Hauling", "Dumping"}


def test_loaded_trucks_climb_the_ramp_slower_than_empty_ones_drive_the_flat(shift):
    telemetry, _, states = shift
    kmh = states["speed_mps"] * 3.6
    loaded_up = (telemetry["way_id"] == RAMP_WAY) & (states["production_state"] == HAULING)
    empty_flat = np.isin(telemetry["way_id"], [102, 103]) & (states["payload_t"] < 1) & (kmh > 1)
    climb = np.median(kmh[loaded_up])
    assert 9.0 <= climb <= 12.0  # a 90 t truck's rimpull limit up 10 % (+2.5 % rolling)
    assert 40.0 <= np.percentile(kmh[empty_flat], 95) <= 50.0


def test_payload_is_near_capacity_after_loading(shift):
    telemetry, _, states = shift
    ps = states["production_state"]
    done = (ps[:-1] == LOADING) & (ps[1:] == HAULING)
    true = states["payload_t"][1:][done]
    reported = telemetry["payload_t"][1:][done]
    assert len(true) >= 20
    assert ((true >= 0.95 * 90 - 1) & (true <= 1.05 * 90 + 1)).all()
    assert np.abs(reported - true).max() < 4.0  # strut noise and the meter's calibration error
    tipped = (ps[:-1] == DUMPING) & (ps[1:] != DUMPING)
    assert (states["payload_t"][1:][tipped] < 0.5).all()


def test_speed_limit_zones_are_respected():
    limits = [
        zone(
            "rim 18 km/h", {"speedLimit": {"type": "absolute", "value": 5.0}}, (100, -80, 200, 20)
        ),
        zone(
            "ramp at half speed",
            {"speedLimit": {"type": "percent", "value": 50}},
            (250, -700, 350, -500),
        ),
    ]
    world = World.from_map(pit_map(limits))
    _, _, states = simulate_arrays(world, 8, hz=2, seconds=600, seed=2)
    for limited, cap in zip(world.zones, (5.0, 40 / 3.6 * 0.5), strict=True):
        inside = limited.contains(states["x_m"].ravel(), states["y_m"].ravel()).reshape(
            states["x_m"].shape
        )
        assert inside.sum() > 100  # trucks did drive through
        assert states["speed_mps"][inside].max() <= cap + 1e-3


def test_trucks_never_enter_an_exclusion_zone():
    closed = zone("tip head closed", {"exclusion": {}}, (250, 150, 350, 250))  # the waste dump road
    world = World.from_map(pit_map([closed]))
    _, _, states = simulate_arrays(world, 6, hz=2, seconds=1000, seed=4)
    inside = world.zones[0].contains(states["x_m"].ravel(), states["y_m"].ravel())
    assert not inside.any()
    # The waste trucks (odd) drive up the dump road to the zone and stand short of its edge,
    # which is 250 m north of the rim junction.
    reached = (states["y_m"][:, 1::2] - world.node_xyz[1, 1]).max()
    assert 250.0 - STOP_SHORT_M - 2 * DS <= reached < 250.0 - STOP_SHORT_M + 1.0


def test_only_trucks_bound_inside_enter_a_controlled_access_zone_and_they_leave_it():
    shovel_area = zone(
        "SH-ORE area", {"controlledAccess": {"ownerId": "sh-ore"}}, (620, -1360, 780, -1240)
    )
    world = World.from_map(pit_map([shovel_area]))
    _, _, states = simulate_arrays(world, 4, hz=2, seconds=1200, seed=5)
    assert (states["cycles"][-1][0::2] >= 1).all()  # ore trucks load inside and get out
    inside = world.zones[0].contains(states["x_m"].ravel(), states["y_m"].ravel())
    assert not inside.reshape(states["x_m"].shape)[:, 1::2].any()  # waste trucks keep out


def test_a_tyre_leak_lowers_that_tyre_at_its_rate_and_is_labelled_not_reported(pit):
    engine = Engine(pit, 2, hz=2, seed=8)

    def difference_over_a_minute() -> float:
        """Tyre 2.1 minus its twin 2.2 (same load and heat), averaged: readings are noisy."""
        seen = []
        for _ in range(120):
            engine.step()
            seen.append(
                engine.readings["tyre_pressure_kpa_2.1"][0]
                - engine.readings["tyre_pressure_kpa_2.2"][0]
            )
        return float(np.mean(seen))

    run_until(engine, lambda: engine.t >= 60)
    label = engine.start_fault(0, "tyre_leak", tyre="2.1", intensity=3.0)  # kPa/min
    before = difference_over_a_minute()
    run_until(engine, lambda: engine.t >= 60 + 600)
    after = difference_over_a_minute()
    drop_per_min = (before - after) / 10.0
    # 3 kPa/min of cold pressure reads a little higher hot (gas law at the tyre's temperature)
    assert 2.95 <= drop_per_min <= 3.4
    assert set(engine.readings) == set(CHANNELS)  # effects only: no fault channel
    assert engine.faults.labels == [label]
    assert label.to_dict() | {"onset_s": 0} == {
        "equipment_id": engine.trucks[0].equipment_id,
        "kind": "tyre_leak",
        "channel": "tyre_pressure_kpa_2.1",
        "tyre": "2.1",
        "onset_s": 0,
        "end_s": None,
        "intensity": 3.0,
        "unit": "kPa/min",
    }


def test_a_stuck_sensor_reads_constant_while_the_truth_moves(pit):
    engine = Engine(pit, 1, hz=2, seed=9)
    run_until(engine, lambda: engine.t >= 30)
    engine.start_fault(0, "stuck_sensor", channel="coolant_temp_c", duration=600.0)
    readings, truth = [], []
    for _ in range(1000):
        engine.step()
        readings.append(engine.readings["coolant_temp_c"][0])
        truth.append(engine.coolant[0])
    assert len(set(readings)) == 1 and np.ptp(truth) > 1.0
    run_until(engine, lambda: engine.t >= 30 + 601)
    assert engine.faults.labels[0].end_s == pytest.approx(30 + 600, abs=0.3)
    later = [engine.step() or engine.readings["coolant_temp_c"][0] for _ in range(10)]
    assert len(set(later)) > 1  # the sensor recovered


def test_a_gps_dropout_leaves_no_positions_for_its_duration(pit):
    engine = Engine(pit, 2, hz=5, seed=10)
    engine.start_fault(1, "gps_dropout", duration=20.0)
    run_until(engine, lambda: engine.t >= 19.5)
    assert np.isnan(engine.readings["latitude"][1]) and not engine.gps_ok[1]
    assert not np.isnan(engine.readings["latitude"][0])
    run_until(engine, lambda: engine.t >= 21)
    assert engine.gps_ok[1] and engine.faults.labels[0].end_s == pytest.approx(20.0, abs=0.3)


def test_overheating_creeps_above_the_normal_and_raises_an_alarm(pit):
    engine = Engine(pit, 1, hz=2, seed=12)
    engine.start_fault(0, "overheating", intensity=2.0)  # degC/min
    alarms = []
    while engine.t < 600:
        engine.step()
        alarms += [
            (engine.t, e.data["faults"]) for e in engine.drain_events() if e.kind == "diagnostic"
        ]
    excess = engine.readings["coolant_temp_c"][0] - engine.coolant[0]
    assert excess == pytest.approx(20.0, abs=1.5)  # 10 min at 2 degC/min, plus sensor noise
    raised_at, faults = next(alarm for alarm in alarms if alarm[1])
    assert faults[0]["ComponentId"] == 110 and faults[0]["FaultCode"] == 16
    assert faults[0]["FaultData"]["Value"] >= 105.0
    assert engine.faults.labels[0].repair_at_s == pytest.approx(raised_at + 1800)


def test_brake_fade_lengthens_the_stop(pit):
    def stopping_distance(fade: float | None) -> float:
        engine = Engine(pit, 1, hz=10, seed=13)
        run_until(engine, lambda: engine.v[0] > 12.0)  # empty on the rim road
        if fade:
            engine.start_fault(0, "brake_fade", intensity=fade)
        start = engine.d[0]
        engine.all_stop(0, "stop", apply=True)
        run_until(engine, lambda: engine.v[0] == 0.0, limit_s=engine.t + 60)
        return engine.d[0] - start

    assert stopping_distance(0.3) > 1.3 * stopping_distance(None)


def test_an_all_stop_halts_the_truck_and_removing_it_resumes(pit):
    engine = Engine(pit, 1, hz=5, seed=14)
    run_until(engine, lambda: engine.v[0] > 5.0)
    assert engine.all_stop(0, "a", apply=True)
    assert engine.state[0] == STOPPED
    run_until(engine, lambda: engine.v[0] == 0.0, limit_s=engine.t + 10)
    assert [e.kind for e in engine.drain_events()][-1] == "standstill"
    assert not engine.all_stop(0, "b", apply=True)  # still stopped by both
    engine.all_stop(0, "a", apply=False)
    assert engine.state[0] == STOPPED
    engine.all_stop(0, "b", apply=False)
    run_until(engine, lambda: engine.v[0] > 1.0, limit_s=engine.t + 10)
    assert engine.phase[0] == PH_TO_LOAD and engine.state[0] != STOPPED


def test_a_traffic_permission_zone_is_entered_only_when_granted(pit):
    ramp = zone("ramp one lane", {"trafficPermission": {}}, (250, -1000, 350, -200))
    world = World.from_map(pit_map([ramp]))
    engine = Engine(world, 1, hz=2, seed=15)  # no self-grant: waits for the FMS
    events = []
    for _ in range(300 * 2):
        engine.step()
        events += engine.drain_events()
    asked = [e for e in events if e.kind == "permission_request"]
    assert asked and asked[0].data == {"zone_id": world.zones[0].zone_id, "way_id": RAMP_WAY}
    assert engine.v[0] == 0.0 and not world.zones[0].contains(engine.x, engine.y)[0]
    engine.permission(0, world.zones[0].zone_id, "Granted")
    for _ in range(400 * 2):
        engine.step()
        events += engine.drain_events()
    assert world.zones[0].zone_id in [
        e.data.get("zone_id") for e in events if e.kind == "permission_released"
    ]


def test_an_assignment_sends_the_truck_to_another_loading_unit(pit):
    engine = Engine(pit, 1, hz=5, seed=16)
    assert engine.lu[0] == 0
    run_until(engine, lambda: engine.v[0] > 5.0)
    assert engine.assign(0, "Load", 1, "a1") is None
    assert engine.assign(0, "Load", 7, "a2") == "unknown loading unit"
    run_until(engine, lambda: engine.state[0] == LOADING, limit_s=900)
    assert engine.svc[0] == 1 and engine.assignment_id[0] == "a1"


# --- a fleet started mid-shift, and following --------------------------------------------------


@pytest.fixture(scope="module")
def narrow_pit() -> World:
    from fleet.mine.demo import build_large_map

    return World.from_map(build_large_map(1, 5, name="Narrow", slug="narrow", one_lane_every=3))


def _on_edges(engine: Engine) -> tuple[np.ndarray, np.ndarray]:
    rt = engine.routes
    k = rt.sample_index(engine.route, engine.d)
    return rt.edge[k], rt.s_edge[k] + (engine.d - rt.d[k])


def test_a_fleet_started_mid_shift_is_spread_round_its_cycles(narrow_pit):
    engine = Engine(narrow_pit, 40, hz=2, seed=3, spread=True)
    loaded = (engine.phase == PH_TO_DUMP) & (engine.payload > 80.0)
    empty = (engine.phase == PH_TO_LOAD) & (engine.payload == 0.0)
    assert loaded.sum() >= 10 and empty.sum() >= 10 and (loaded | empty).sum() >= 35
    edge, s = _on_edges(engine)
    placed = np.flatnonzero(loaded | empty)
    for e in np.unique(edge[placed]):
        on = np.sort(s[placed][edge[placed] == e])
        assert (np.diff(on) >= SPREAD_GAP).all()
    k = engine.routes.sample_index(engine.route, engine.d)
    assert (engine.routes.tp_zone[k[placed]] < 0).all()  # none starts in a one-lane section


def test_trucks_keep_the_following_gap_along_a_way_and_through_the_junctions(narrow_pit):
    """Ten minutes of 40 trucks crossing the pit floor's hub, where five bench roads and the
    ramp meet: two moving trucks on one directed edge never come within the FMS's safety
    distance, whichever edges they came from."""
    engine = Engine(narrow_pit, 40, hz=2, seed=3, spread=True, permission_timeout_s=0.0)
    closest = np.inf
    for _ in range(1200):
        engine.step()
        edge, s = _on_edges(engine)
        moving = np.flatnonzero((engine.v > 0.5) & (edge >= 0))
        order = moving[np.lexsort((s[moving], edge[moving]))]
        same = edge[order[1:]] == edge[order[:-1]]
        if same.any():
            closest = min(closest, float(np.min((s[order[1:]] - s[order[:-1]])[same])))
    assert closest >= 50.0


def test_the_model_training_pits_keep_moving_for_their_whole_run():
    """A truck yields at a crossing only to one that is moving: yielding to trucks held up
    themselves closed rings of waiting trucks, and within 15 minutes every truck of the
    training sites stood (the domain models then trained on a parked fleet)."""
    from fleet.learning.pipeline.sites import site_world
    from fleet.simulator.engine import simulate_arrays

    result = simulate_arrays(site_world("A"), 28, hz=1.0, seconds=1500, seed=1)
    speed, cycles = result.telemetry["speed_kmh"], result.states["cycles"]
    assert (speed[-300:] > 3).mean() > 0.3  # over the last five minutes, trucks moving
    assert cycles[-1].sum() > cycles[900].sum() > 0  # and haul cycles still being completed
