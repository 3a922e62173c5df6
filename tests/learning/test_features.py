"""The feature module: one input code for training and live serving, free of PyTorch."""

from __future__ import annotations

import itertools
import subprocess
import sys
import uuid

import numpy as np

from fleet.learning import features, serving
from fleet.learning.pipeline import context, training
from fleet.simulator import engine, link, world


def test_serving_and_training_build_identical_inputs_from_the_same_series(small_data):
    ws = small_data["val_site"]
    rows = np.flatnonzero(ws.end >= features.HISTORY_S)[:: max(len(ws) // 20, 1)]
    assert len(rows) >= 10
    # The training pipeline's path: the set's windows, its context, the trajectory features.
    windows = ws.windows(rows)
    expected_context = context.window_context(ws)[rows]
    expected_traj = training.trajectory_features(windows)
    for i, row in enumerate(rows):
        run = ws.runs[ws.run[row]]
        end = int(ws.end[row])
        # Serving's path: the truck's series up to the decision, as resampled from telemetry.
        series = run.series[ws.truck[row], :, : end + 1]
        live = serving.live_inputs(uuid.uuid4(), uuid.uuid4(), series, end, (0.0, 0.0, 0.0))
        np.testing.assert_array_equal(live.window, windows[i])
        np.testing.assert_array_equal(live.context, expected_context[i])
        np.testing.assert_array_equal(live.trajectory, expected_traj[i])


def test_the_simulator_and_the_pipeline_read_the_schema_from_the_feature_module():
    assert engine.SENSED_CHANNELS is features.SENSED_CHANNELS
    assert engine.TYRES is features.TYRES and engine.STATES is features.STATES
    assert link.HEALTH_EXTRAS is features.HEALTH_EXTRAS
    assert world.LocalFrame is features.LocalFrame
    assert training.trajectory_features is features.trajectory_features
    assert training.eta_features is features.eta_features


def test_building_inputs_loads_neither_pytorch_nor_the_simulator():
    code = (
        "import sys, numpy as np; from fleet.learning import features as f; "
        "s = np.zeros((1, len(f.RAW_CHANNELS), 2000), np.float32); "
        "f.window_inputs(s, np.zeros(1, int), np.array([1999])); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch' "
        "or m.startswith(('fleet.simulator', 'fleet.learning.pipeline'))); "
        "print(bad); sys.exit(bool(bad))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_local_frame_round_trips_lonlat_exactly():
    frame = features.LocalFrame(-68.9, -22.3)
    x, y = frame.to_local([-68.91, -68.89], [-22.31, -22.29])
    assert abs(float(x[0]) + 1030) < 5 and abs(float(y[1]) - 1107) < 5  # ~1 km a 0.01 deg
    lon, lat = frame.to_lonlat(x, y)
    np.testing.assert_allclose(lon, [-68.91, -68.89], atol=1e-12)
    np.testing.assert_allclose(lat, [-22.31, -22.29], atol=1e-12)


def test_a_truck_holding_a_posted_limit_too_fast_on_a_descent_shows_brake_fade():
    # Two trucks on a 8.5 % descent held at a zone's 30 km/h (posted as 8.3 m/s: 29.88 km/h),
    # one at the limit, one 0.3 km/h above it (what a 13 % fade leaves), then a third on
    # the flat at the same excess (no descent: nothing to read).
    t = np.arange(1200)
    rng = np.random.default_rng(0)
    speed = np.stack([29.88 + 0.0 * t, 30.18 + 0.0 * t, 30.18 + 0.0 * t])
    speed = speed + rng.normal(0.0, 0.05, speed.shape)
    metres = np.cumsum(speed / 3.6, axis=1)
    elevation = np.stack([-0.085 * metres[0], -0.085 * metres[1], 0.0 * metres[2]])
    out = features.descent_overspeed(speed, elevation, np.arange(3), np.full(3, 1199), 1.0)
    assert out.shape == (3, len(features.FADE_FEATURES))
    # 30.18 km/h reads against 30 km/h (a way could post that), not 29.88: 0.18 of excess.
    assert abs(out[0, 0]) < 0.05 and 0.15 < out[1, 0] < 0.21
    assert out[0, 1] > 0.8 and out[1, 1] > 0.8
    assert out[2, 0] == 0.0 and out[2, 1] == 0.0
    # The fault head's context carries them last, after the frozen history features.
    names = features.context_names()
    assert names[-len(features.FADE_FEATURES) :] == features.FADE_FEATURES


def _road(points: list[tuple[float, float, float]], step_m: float = 1.0) -> np.ndarray:
    """[M, 3] a polyline through ``points`` sampled every ``step_m``."""
    out = []
    for a, b in itertools.pairwise(points):
        n = max(int(np.hypot(b[0] - a[0], b[1] - a[1]) / step_m), 1)
        out.append(np.linspace(a, b, n, endpoint=False))
    return np.vstack([*out, [points[-1]]])


def test_the_road_ahead_is_read_in_the_trucks_frame_along_the_route():
    # Due north for 30 m, then a right-angle turn west (to the truck's left), climbing 10 %.
    path = _road([(0.0, 0.0, 0.0), (0.0, 30.0, 3.0), (-170.0, 30.0, 20.0)])
    ahead = dict(zip(features.AHEAD_FEATURES, features.route_ahead(path, 0.0), strict=True))
    assert ahead["ahead_20m_fwd_m"] == 20.0 and ahead["ahead_20m_left_m"] == 0.0
    # 45 m along: 30 m ahead and 15 m to the left, a point the truck's motion alone never shows
    assert (
        abs(ahead["ahead_45m_fwd_m"] - 30.0) < 1e-4 and abs(ahead["ahead_45m_left_m"] - 15.0) < 1e-4
    )
    assert abs(ahead["rise_30m_m"] - 3.0) < 1e-4 and abs(ahead["rise_60m_m"] - 6.0) < 0.1
    assert ahead["stop_in_m"] == features.STOP_CAP_M and ahead["route_known"] == 1.0
    # The same road seen by a truck heading east: north is its left.
    turned = features.route_ahead(path, 90.0)
    assert abs(turned[0]) < 1e-4 and abs(turned[1] - 5.0) < 1e-4


def test_a_route_shorter_than_a_distance_ends_at_the_stop():
    # 12 m to the stop, with the truck standing still for a while first (repeated positions).
    path = np.vstack([np.zeros((5, 3)), _road([(0.0, 0.0, 0.0), (12.0, 0.0, 0.0)])])
    ahead = dict(zip(features.AHEAD_FEATURES, features.route_ahead(path, 90.0), strict=True))
    assert ahead["ahead_10m_fwd_m"] == 10.0
    assert ahead["ahead_20m_fwd_m"] == ahead["ahead_60m_fwd_m"] == 12.0  # held at the stop
    assert ahead["stop_in_m"] == 12.0


def test_no_route_is_zeros_with_its_flag_off():
    for unknown in (features.no_route_ahead(), features.route_ahead(np.zeros((0, 3)), 0.0)):
        assert unknown.shape == (len(features.AHEAD_FEATURES),) and not unknown.any()


def test_the_trajectory_head_reads_where_the_route_is_at_its_present_speed():
    # 20 m north, then due east: at 5 m/s the truck is 5 m, 15 m and 25 m along the route.
    path = _road([(0.0, 0.0, 0.0), (0.0, 20.0, 0.0), (100.0, 20.0, 0.0)])
    ahead = features.route_ahead(path, 0.0)
    motion = np.array([[5.0, 0.0, 0.0, 5.0]], dtype=np.float32)
    inputs = features.trajectory_inputs(motion, ahead)
    assert inputs.shape == (1, len(features.TRAJECTORY_INPUTS))
    np.testing.assert_array_equal(inputs[0, :4], motion[0])
    np.testing.assert_array_equal(inputs[0, 4:20], ahead)
    on_route = dict(zip(features.ON_ROUTE_FEATURES, inputs[0, 20:], strict=True))
    assert on_route["on_route_1s_fwd_m"] == 5.0 and on_route["on_route_3s_fwd_m"] == 15.0
    # 25 m along: past the turn, 20 m ahead and 5 m to the right (negative left)
    assert abs(on_route["on_route_5s_fwd_m"] - 20.0) < 1e-4
    assert abs(on_route["on_route_5s_left_m"] + 5.0) < 1e-4
    # No route known: nothing is made up.
    unknown = features.trajectory_inputs(motion, features.no_route_ahead())
    assert not unknown[0, 20:].any()
