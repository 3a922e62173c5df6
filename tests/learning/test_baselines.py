"""The baselines: what the truck's controller and a dispatcher's tables already do."""

from __future__ import annotations

import numpy as np
import pytest

from fleet.learning.pipeline import baselines as bl
from fleet.learning.pipeline.evaluation import coverage, mae, score_faults
from fleet.learning.pipeline.sites import site_world
from fleet.simulator import faults
from fleet.simulator import physics as ph
from fleet.simulator.engine import Engine


def test_an_alarm_latches_with_hysteresis():
    coolant = np.array([100, 104.9, 105, 104, 103, 102.5, 102, 104, 105, 90])
    state = bl.latched_alarm(coolant, ph.COOLANT_ALARM_C, 1, ph.HYSTERESIS["coolant"])
    assert state.tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 1, 0]
    tyre = np.array([620, 601, 600, 610, 614.9, 615, 599])
    state = bl.latched_alarm(tyre, ph.TYRE_LOW_KPA, -1, ph.HYSTERESIS["tyre"])
    assert state.tolist() == [0, 0, 1, 1, 1, 0, 1]


def test_a_brake_alarm_is_an_episode_of_brake_fade_from_when_it_is_raised():
    time_s = np.arange(1.0, 11.0)
    cool = np.full((1, 10), 90.0)
    readings = {c: cool for c, *_ in bl.OEM_ALARMS if c.startswith("coolant")}
    readings |= {c: np.full((1, 10), 700.0) for c, *_ in bl.OEM_ALARMS if "tyre" in c}
    readings["brake_temp_front_c"] = np.full((1, 10), 60.0)
    readings["brake_temp_rear_c"] = np.array([[60, 90, 129, 131, 133, 128, 126, 124, 131, 60.0]])
    alarms = bl.oem_alarms([7], time_s, readings)
    assert [(d.unit, d.kind, d.start_s) for d in alarms] == [
        (7, "brake_fade", 4.0),
        (7, "brake_fade", 9.0),
    ]


def _shift_with_faults(seconds: int) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """Two trucks on the held-out site; at 300 s truck 0 starts overheating and truck 1's tyre
    2.1 starts leaking, both at the top of the simulator's ranges."""
    engine = Engine(site_world("D"), 2, hz=1.0, seed=3, permission_timeout_s=0.0)
    channels = [c for c, *_ in bl.OEM_ALARMS]
    rows: dict[str, list[np.ndarray]] = {c: [] for c in channels}
    onsets = {}
    for tick in range(seconds):
        if tick == 300:
            rate = faults.OVERHEAT_RATE_C_PER_MIN[1]
            onsets["overheating"] = engine.start_fault(0, "overheating", intensity=rate)
            rate = faults.LEAK_RATE_KPA_PER_MIN[1]
            onsets["tyre_leak"] = engine.start_fault(1, "tyre_leak", tyre="2.1", intensity=rate)
        engine.step()
        for c in channels:
            rows[c].append(engine.readings[c].copy())
    time_s = np.arange(1.0, seconds + 1.0)
    return time_s, {c: np.asarray(v).T for c, v in rows.items()}, onsets


def test_threshold_alarms_fire_after_the_onset_of_overheating_and_a_tyre_leak():
    time_s, readings, onsets = _shift_with_faults(2700)
    alarms = bl.oem_alarms([0, 1], time_s, readings)
    assert {(d.unit, d.kind) for d in alarms} == {(0, "overheating"), (1, "tyre_leak")}
    for d in alarms:
        assert d.start_s > onsets[d.kind].onset_s
    # Overheating at 2 deg C/min crosses 105 deg C within minutes; the leak takes far longer.
    first = {d.kind: d.start_s - onsets[d.kind].onset_s for d in alarms}
    assert first["overheating"] < 900 < first["tyre_leak"]


def test_the_replayed_alarms_are_the_ones_the_trucks_raised(small_data):
    # The simulator repairs a degradation exactly REPAIR_AFTER_ALARM_S after its truck's own
    # alarm: the replay must find an alarm of that kind, on that truck, at that second.
    checked = 0
    for run in small_data.runs.values():
        ev = run.events
        readings = {c: run.channel(c) for c, *_ in bl.OEM_ALARMS}
        alarms = {
            (d.unit, d.kind, d.start_s)
            for d in bl.oem_alarms(range(run.trucks), run.time_s, readings)
        }
        for truck, code, onset, end in zip(
            ev["truck"], ev["kind"], ev["onset_s"], ev["end_s"], strict=True
        ):
            kind = faults.KINDS[code]
            repaired = end < min(onset + faults.REPAIR_LATEST_S, run.time_s[-1])
            if kind in ("overheating", "tyre_leak", "brake_fade") and repaired:
                assert (int(truck), kind, end - faults.REPAIR_AFTER_ALARM_S) in alarms
                checked += 1
    assert checked >= 1


def test_the_threshold_baseline_raises_no_alarm_outside_a_fault(small_data):
    ws = small_data["val_site"]
    score = score_faults(ws.fault_events(), bl.window_set_alarms(ws))
    assert score.fp == 0
    assert score.delay_s > 0 or np.isnan(score.delay_s)


def test_the_segment_mean_falls_back_from_segment_and_stop_to_stop_to_all():
    segment = np.array([1, 1, 1, 2, 2, 3])
    stop = np.array([0, 0, 0, 0, 0, 1])
    eta = np.array([10.0, 20.0, 30.0, 100.0, 200.0, 50.0])
    model = bl.SegmentMeanETA.fit(segment, stop, eta, min_count=3)
    p = model.predict(np.array([1, 2, 9, 9]), np.array([0, 0, 1, 5]))
    assert p[0, 1] == pytest.approx(20.0)  # its own segment
    assert p[1, 1] == pytest.approx(72.0)  # too few on segment 2: all trips to stop 0
    assert p[2, 1] == pytest.approx(50.0)  # stop 1
    assert p[3, 1] == pytest.approx(eta.mean())  # nothing known: everything
    assert p[0, 0] <= p[0, 1] <= p[0, 2]


def test_the_segment_mean_learns_a_site_from_its_own_history(small_data):
    history, test = small_data["val_site_history"].labels, small_data["val_site_test"].labels
    model = bl.SegmentMeanETA.fit(history["segment"], history["stop"], history["eta_s"])
    p = model.predict(test["segment"], test["stop"])
    ok = np.isfinite(test["eta_s"])
    # Far better than one mean for every trip, and its P10-P90 holds most trips.
    assert mae(test["eta_s"], p[:, 1]) < 0.7 * mae(
        test["eta_s"], np.full(ok.shape, model.overall[1])
    )
    assert coverage(test["eta_s"], p[:, 0], p[:, 2]) > 0.5


def test_constant_velocity_goes_straight_ahead():
    cv = bl.constant_velocity(np.array([0.0, 10.0]))
    assert cv.shape == (2, 3, 2)
    assert cv[1, :, 0].tolist() == [10.0, 30.0, 50.0] and not cv[..., 1].any()
    assert not cv[0].any()
