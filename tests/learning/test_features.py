"""The feature module: one input code for training and live serving, free of PyTorch."""

from __future__ import annotations

import subprocess
import sys
import uuid

import numpy as np

from fleet.learning import features, serving
from fleet.learning.pipeline import context, training
from fleet.simulator import engine, link, world


def test_serving_and_training_build_identical_inputs_from_the_same_series(small_data):
    ws = small_data["heldout"]
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
