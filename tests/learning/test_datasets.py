"""The models' data: reproducible, labelled as the simulator injected it, split without leaks."""

from __future__ import annotations

import numpy as np
import pytest

from fleet.learning.pipeline.datasets import (
    FAULT_CLASSES,
    HELD_OUT_INTENSITIES,
    HORIZONS_S,
    INPUT_CHANNELS,
    STOP_STATES,
    TRAINING_INTENSITIES,
    UNSEAL,
    RunSpec,
    SealedSiteError,
    SiteRun,
    fault_intensities,
    load_runs,
    simulate_run,
    site_sets,
    split_trucks,
)
from fleet.learning.pipeline.training import set_task_data
from fleet.simulator import faults
from tests.learning.conftest import SMALL

TINY = RunSpec("C", 4, 0.15, seed=5, fault_rate=4.0)


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data():
    first, again = simulate_run(TINY), simulate_run(TINY)
    assert first.data_hash == again.data_hash
    assert np.array_equal(first.series, again.series)
    other = simulate_run(RunSpec("C", 4, 0.15, seed=6, fault_rate=4.0))
    assert other.data_hash != first.data_hash


def test_a_cached_run_reads_back_unchanged_without_simulating_again(tmp_path):
    (run,) = load_runs([TINY], directory=tmp_path, workers=1, progress=False)
    (path,) = tmp_path.glob("run-C-*.npz")
    written = path.stat().st_mtime_ns
    (again,) = load_runs([TINY], directory=tmp_path, workers=1, progress=False)
    assert path.stat().st_mtime_ns == written
    assert again.data_hash == run.data_hash and again.spec == run.spec
    assert np.array_equal(again.series, run.series)
    assert all(np.array_equal(again.events[k], run.events[k]) for k in run.events)
    assert isinstance(SiteRun.load(path), SiteRun)


def test_the_held_out_shift_draws_weaker_faults_and_the_simulator_is_left_as_it_was(small_data):
    def within(run, table):
        for kind, (lo, hi) in table.items():
            code = faults.KINDS.index(kind)
            got = run.events["intensity"][run.events["kind"] == code]
            assert ((got >= lo) & (got <= hi)).all(), (kind, got)

    within(small_data.runs["D"], HELD_OUT_INTENSITIES)
    within(small_data.runs["A"], TRAINING_INTENSITIES)
    with fault_intensities((("overheating", 0.1, 0.2),)):
        assert faults.OVERHEAT_RATE_C_PER_MIN == (0.1, 0.2)
    assert TRAINING_INTENSITIES["overheating"] == faults.OVERHEAT_RATE_C_PER_MIN


def test_a_truck_is_in_one_split_only_and_training_ends_before_the_time_cut(small_data):
    sets = small_data.sets
    groups = {name: set(sets[name].unit.tolist()) for name in sets}
    pre = ("pretrain_train", "pretrain_val", "pretrain_test")
    for i, a in enumerate(pre):
        for b in pre[i + 1 :]:
            assert not groups[a] & groups[b], (a, b)
    assert not groups["adapt_train"] & groups["adapt_test"]
    for name in pre:
        assert {r.spec.site for r in sets[name].runs} == {"A", "B"}
    train, test = sets["pretrain_train"], sets["pretrain_test"]
    cut = int(small_data.runs["A"].rows * SMALL.time_cut)
    assert train.end.max() < cut
    assert (test.end - test.length + 1).min() >= cut
    held, history, later = sets["val_site"], sets["val_site_history"], sets["val_site_test"]
    assert [r.spec.site for r in held.runs] == ["D"]
    cut = int(held.runs[0].rows * SMALL.time_cut)
    assert history.end.max() < cut <= (later.end - later.length + 1).min()
    assert held.end.min() == held.length - 1 and held.end.max() >= later.end.max()


def test_segment_keys_stay_apart_between_sites(small_data):
    labels = small_data["pretrain_train"].labels
    for site in np.unique(labels["site"]):
        mine, others = labels["site"] == site, labels["site"] != site
        assert not set(labels["segment"][mine]) & set(labels["segment"][others])
        stops = labels["stop"][mine]
        assert not set(stops[stops >= 0]) & set(labels["stop"][others])


def test_the_adaptation_budget_is_small_and_early(small_data):
    budget = small_data["adapt_train"]
    assert len(np.unique(budget.truck)) == SMALL.adapt_trucks
    assert budget.labels["t_end_s"].max() <= SMALL.adapt_hours * 3600


def test_trucks_split_into_disjoint_groups_in_proportion():
    train, val, test = split_trucks(20, (0.7, 0.15, 0.15), seed=1)
    assert (len(train), len(val), len(test)) == (14, 3, 3)
    assert len(set(train) | set(val) | set(test)) == 20
    with pytest.raises(ValueError):
        split_trucks(2, (0.7, 0.15, 0.15), seed=1)


def test_windows_are_cut_in_the_frame_of_their_last_fix(small_data):
    ws = small_data["pretrain_train"]
    x = ws.windows()
    assert x.shape == (len(ws), len(INPUT_CHANNELS), SMALL.window) and x.dtype == np.float32
    assert np.isfinite(x).all()
    assert np.array_equal(ws.windows(slice(3, 5)), x[3:5])
    fwd, left, turn, speed = (
        x[:, INPUT_CHANNELS.index(name)]
        for name in ("track_fwd_m", "track_left_m", "heading_rel_deg", "speed_kmh")
    )
    assert (
        np.allclose(fwd[:, -1], 0) and np.allclose(left[:, -1], 0) and np.allclose(turn[:, -1], 0)
    )
    # A truck that drove straight for the last 10 s came from behind itself, not from the side.
    straight = (speed[:, -10:].min(axis=1) > 20) & (np.abs(turn[:, -10:]).max(axis=1) < 2)
    straight &= ~ws.labels["gps_gap"]
    assert straight.sum() > 5
    assert (fwd[straight, -10] < -40).all()
    assert (np.abs(left[straight, -10]) < 5).all()


def test_window_labels_name_the_fault_the_simulator_injected(small_data):
    ws = small_data["val_site"]
    run, labels = ws.runs[0], ws.labels
    ev = run.events
    for i in range(len(ws)):
        k, t = ws.truck[i], labels["t_end_s"][i]
        active = [
            FAULT_CLASSES.index(faults.KINDS[c])
            for c, truck, on, end in zip(
                ev["kind"], ev["truck"], ev["onset_s"], ev["end_s"], strict=True
            )
            if truck == k and on <= t <= np.ceil(end) and faults.KINDS[c] in FAULT_CLASSES
        ]
        assert set(np.flatnonzero(labels["fault_active"][i])) == set(active)
        assert (labels["fault_class"][i] == 0) == (not active)
    faulty = labels["fault_class"] > 0
    assert faulty.any() and (~faulty).any()
    assert (labels["fault_elapsed_s"][faulty] >= 0).all()
    assert np.isnan(labels["fault_onset_s"][~faulty]).all()
    assert len(ws.fault_events()) == int((np.isin(ev["kind"], [0, 1, 2, 3])).sum())


def test_the_eta_counts_down_to_the_first_sample_at_a_shovel_or_dump(small_data):
    ws = small_data["pretrain_val"]
    run_of = ws.runs
    eta, route = ws.labels["eta_s"], ws.labels["route"]
    defined = np.flatnonzero(np.isfinite(eta))
    assert len(defined) > 20
    for i in defined:
        run = run_of[ws.run[i]]
        stop = ws.end[i] + round(eta[i] * run.spec.hz)
        states = run.state[ws.truck[i], ws.end[i] : stop + 1]
        assert states[-1] in STOP_STATES and not np.isin(states[:-1], STOP_STATES).any()
    assert (route[defined, 0] >= 0).all()  # distance left
    assert np.isnan(route[~np.isfinite(eta)]).all()
    # Further to go takes longer: distance left explains much of the time left.
    assert np.corrcoef(route[defined, 0], eta[defined])[0, 1] > 0.4


def test_trajectory_targets_lie_ahead_at_the_reported_speed(small_data):
    ws = small_data["pretrain_train"]
    traj, speed = ws.labels["traj"], ws.labels["speed_mps"]
    assert traj.shape == (len(ws), len(HORIZONS_S), 2)
    cruising = np.isfinite(traj[:, 0, 0]) & (speed > 8)
    assert cruising.sum() > 20
    # Within 5 s a truck at speed covers about speed x 5 s, mostly ahead: curves of the ramp
    # and the haul roads (radius ~300 m) put it a few metres to the side.
    covered = np.linalg.norm(traj[cruising, -1], axis=-1) / (speed[cruising] * HORIZONS_S[-1])
    assert np.median(covered) == pytest.approx(1.0, abs=0.05)
    assert np.median(traj[cruising, -1, 0] / np.abs(traj[cruising, -1, 1])) > 5


def test_the_payload_target_is_the_true_load_and_the_meter_is_close(small_data):
    labels = small_data["pretrain_train"].labels
    assert labels["payload_t"].max() > 0.9 * labels["capacity_t"][0]
    assert np.mean(np.abs(labels["payload_meter_t"] - labels["payload_t"])) < 3.0


def test_the_data_hash_follows_the_windows_taken(small_data):
    sets = small_data.sets
    assert sets["pretrain_train"].data_hash != sets["pretrain_val"].data_hash
    assert len(small_data.data_hash) == 64
    assert small_data.data_hash == small_data.data_hash


def test_the_sealed_test_site_is_refused_to_everything_but_its_evaluation(small_data, tmp_path):
    spec = RunSpec("E", 2, 0.1, seed=9)
    with pytest.raises(SealedSiteError, match="sealed test site"):
        load_runs([spec], directory=tmp_path, workers=1, progress=False)
    assert not list(tmp_path.iterdir())  # nothing was simulated either
    assert "E" not in small_data.runs
    assert not any(ws.sealed for ws in small_data.sets.values())
    (run,) = load_runs([spec], directory=tmp_path, workers=1, progress=False, unseal=UNSEAL)
    sealed = site_sets(SMALL, run, "test_site")["test_site"]
    assert sealed.sealed
    with pytest.raises(SealedSiteError):
        set_task_data("fault", sealed, sealed.windows(), training=True)
    scored = set_task_data("fault", sealed, sealed.windows(), training=False)
    assert len(scored.rows) == len(sealed)
