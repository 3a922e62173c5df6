"""The training pipeline end to end on the small data (tiny budgets: it checks what is made,
saved and registered, not how good it is; `manage.py bench models` measures that)."""

from __future__ import annotations

import json
import math
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from fleet.learning.features import INPUT_CHANNELS, trajectory_features
from fleet.learning.models import ModelAlias, ModelVersion
from fleet.learning.pipeline.training import (
    NAMES,
    TrainConfig,
    TrainingRun,
    train_models,
)
from fleet.learning.runs import champions_exist, next_version, register_run
from models import load_runtime, verify

TINY = TrainConfig(
    pretrain_seconds=3.0,
    pretrain_epochs=2,
    adapt_seconds=1.0,
    adapt_epochs=1,
    head_epochs=3,
    head_seconds=2.0,
    latency_runs=20,
)
FIGURES = (
    "fault_f1",
    "fault_f1_baseline",
    "fault_delay_s",
    "fault_lead_s",
    "l1_gain",
    "eta_gain",
    "eta_coverage",
    "traj_ade_ratio",
    "payload_mae_pct",
    "train_s",
    "p95_ms",
)


@pytest.fixture(scope="module")
def trained(small_data, tmp_path_factory) -> TrainingRun:
    root = tmp_path_factory.mktemp("checkpoints")
    return train_models(
        TINY, root=root, datasets=small_data, progress=False, plots_dir=root / "plots"
    )


def test_a_run_reports_every_figure_of_the_benchmark(trained):
    assert set(FIGURES) <= set(trained.figures)
    for key in ("fault_f1", "fault_f1_baseline", "eta_coverage"):
        assert 0.0 <= trained.figures[key] <= 1.0
    for key in ("traj_ade_ratio", "payload_mae_pct", "train_s", "p95_ms"):
        assert math.isfinite(trained.figures[key]) and trained.figures[key] > 0
    assert set(trained.details["l1_gain"]["L0"]) == {"fault", "eta", "trajectory", "payload"}


def test_every_network_is_saved_verified_and_exported_with_its_lineage(trained):
    manifests = {name: verify(trained.manifests[name])[0] for name in NAMES}
    assert manifests["telemetry-l0"]["level"] == "L0"
    assert manifests["mining-l1"]["lineage"] == ["telemetry-l0@1"]
    for head in ("fault", "eta", "trajectory", "payload"):
        manifest = manifests[head]
        assert manifest["lineage"] == ["telemetry-l0@1", "mining-l1@1"]
        assert manifest["artifacts"]["onnx"]["parity_max_abs_diff"] <= 1e-4
        assert "heldout_" in " ".join(manifest["metrics"])
    assert set(manifests["fault"]["extra"]["decision"]) == {"threshold", "consecutive"}


def test_the_same_version_runs_on_torch_and_onnxruntime_alike(trained, small_data):
    windows = small_data["heldout"].windows(slice(0, 5))
    torch_out = load_runtime(trained.manifests["payload"], engine="torch").run({"window": windows})
    onnx_out = load_runtime(trained.manifests["payload"], engine="onnx").run({"window": windows})
    np.testing.assert_allclose(torch_out["payload_t"], onnx_out["payload_t"], rtol=1e-4)


def test_the_loss_curves_and_the_evaluation_are_drawn(trained):
    assert [p.name for p in trained.plots] == ["training-loss.png", "heldout-evaluation.png"]
    for path in trained.plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000


@pytest.mark.django_db
def test_a_first_run_becomes_champion_and_the_next_version_follows(trained):
    assert not champions_exist()
    lines = register_run(trained)
    assert len(lines) == len(NAMES)
    assert champions_exist()
    champions = ModelAlias.objects.filter(alias="champion")
    assert {a.name for a in champions} == set(NAMES)
    l1 = ModelVersion.objects.get(name="mining-l1")
    assert ModelVersion.objects.get(name="fault").parent == l1
    assert next_version(trained.root) == "2"


@pytest.mark.django_db
def test_a_run_registered_as_challenger_leaves_the_champion_alias_alone(trained):
    register_run(trained, promote=False)
    assert not ModelAlias.objects.filter(alias="champion").exists()
    assert ModelAlias.objects.filter(alias="challenger").count() == len(NAMES)


@pytest.mark.django_db
def test_train_models_if_missing_trains_nothing_when_every_network_has_a_champion(trained):
    register_run(trained)
    out = StringIO()
    call_command("train_models", "--if-missing", stdout=out)
    assert "nothing to train" in out.getvalue()


def test_trajectory_features_read_a_left_turn_as_a_positive_yaw_rate():
    window = np.zeros((1, len(INPUT_CHANNELS), 64), dtype=np.float32)
    window[0, INPUT_CHANNELS.index("speed_kmh")] = 36.0
    # The compass heading falls 2 degrees a second: turning left (anticlockwise).
    window[0, INPUT_CHANNELS.index("heading_rel_deg")] = 2.0 * np.arange(63, -1, -1)
    speed, yaw_rate, accel, _ = trajectory_features(window)[0]
    assert speed == pytest.approx(10.0)
    assert yaw_rate == pytest.approx(np.radians(2.0), rel=1e-5)
    assert accel == pytest.approx(0.0)


def test_the_bench_prints_one_json_object_with_the_figures(monkeypatch, small_data):
    import fleet.learning.pipeline.bench as bench

    monkeypatch.setattr(bench, "TrainConfig", lambda seed=0: TINY)
    real = bench.train_models
    monkeypatch.setattr(
        bench, "train_models", lambda config, **kw: real(config, datasets=small_data, **kw)
    )
    out = StringIO()
    call_command("bench", "models", "--json", stdout=out, stderr=StringIO())
    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    assert figures["benchmark"] == "models"
    assert set(FIGURES) <= set(figures)
