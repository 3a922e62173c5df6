"""The training pipeline end to end on the small data (tiny budgets: it checks what is made,
saved and registered, not how good it is; `manage.py bench models` measures that)."""

from __future__ import annotations

import dataclasses
import json
import math
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from fleet.learning.features import (
    FADE_FEATURES,
    INPUT_CHANNELS,
    TRAJECTORY_FEATURES,
    trajectory_features,
)
from fleet.learning.models import ModelAlias, ModelVersion
from fleet.learning.pipeline import context
from fleet.learning.pipeline.training import (
    FEATURES_ONLY_COMMIT,
    NAMES,
    TRAINING_LAPS,
    TrainConfig,
    TrainingRun,
    features_only_config,
    head_config,
    train_models,
)
from fleet.learning.runs import champions_exist, next_version, register_run, stale_champions
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


# Session-scoped: pytest-django runs this module's database tests apart from the others, and a
# module-scoped run was trained twice.
@pytest.fixture(scope="session")
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
    # train_s is training (data, L0, L1, heads, the rule, saving); scoring on D and the
    # l1_gain side runs are in the whole pipeline's time only.
    laps = trained.timings
    assert trained.figures["train_s"] == round(sum(laps[lap] for lap in TRAINING_LAPS), 1)
    assert trained.figures["pipeline_s"] >= trained.figures["train_s"] + laps["evaluate_s"]


def test_every_network_is_saved_verified_and_exported_with_its_lineage(trained):
    manifests = {name: verify(trained.manifests[name])[0] for name in NAMES}
    assert manifests["telemetry-l0"]["level"] == "L0"
    assert manifests["mining-l1"]["lineage"] == ["telemetry-l0@1"]
    for head in ("fault", "eta", "trajectory", "payload"):
        manifest = manifests[head]
        assert manifest["lineage"] == ["telemetry-l0@1", "mining-l1@1"]
        assert manifest["artifacts"]["onnx"]["parity_max_abs_diff"] <= 1e-4
        assert "site_" in " ".join(manifest["metrics"])
    assert set(manifests["fault"]["extra"]["decision"]) == {
        "threshold",
        "consecutive",
        "thresholds",
    }


def test_the_same_version_runs_on_torch_and_onnxruntime_alike(trained, small_data):
    windows = small_data["val_site"].windows(slice(0, 5))
    torch_out = load_runtime(trained.manifests["payload"], engine="torch").run({"window": windows})
    onnx_out = load_runtime(trained.manifests["payload"], engine="onnx").run({"window": windows})
    # Within the export's own parity bound (the manifest's parity_max_abs_diff <= 1e-4): float32
    # sums in another order differ by some 1e-5 absolute, which no relative bound alone allows
    # for an output near zero (seen: -0.42030 against -0.42037).
    np.testing.assert_allclose(torch_out["payload_t"], onnx_out["payload_t"], rtol=1e-4, atol=1e-4)


def test_the_loss_curves_and_the_evaluation_are_drawn(trained):
    assert [p.name for p in trained.plots] == ["training-loss.png", "validation-evaluation.png"]
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


@pytest.mark.django_db
def test_a_champion_that_reads_other_features_than_todays_is_stale(trained):
    """A fault head trained before a feature was added cannot read today's rows."""
    register_run(trained)
    today = {head: head_config(head).feature_names for head in ("fault", "eta", "trajectory")}
    assert stale_champions(today) == []
    with_a_new_feature = {**today, "fault": (*today["fault"], "a_feature_added_since")}
    assert stale_champions(with_a_new_feature) == ["fault"]


def test_trajectory_features_read_a_left_turn_as_a_positive_yaw_rate():
    window = np.zeros((1, len(INPUT_CHANNELS), 64), dtype=np.float32)
    window[0, INPUT_CHANNELS.index("speed_kmh")] = 36.0
    # The compass heading falls 2 degrees a second: turning left (anticlockwise).
    window[0, INPUT_CHANNELS.index("heading_rel_deg")] = 2.0 * np.arange(63, -1, -1)
    speed, yaw_rate, accel, _ = trajectory_features(window)[0]
    assert speed == pytest.approx(10.0)
    assert yaw_rate == pytest.approx(np.radians(2.0), rel=1e-5)
    assert accel == pytest.approx(0.0)


BENCH_KEYS = (
    *FIGURES,
    "false_alarms_per_truck_hour",
    "fault_recall_overheating",
    "fault_recall_tyre_leak",
    "fault_recall_brake_fade",
    "fault_recall_stuck_sensor",
    "fault_delay_s_abrupt",
    "backbone_gain_fault",
    "backbone_gain_traj",
    "fewshot_ratio",
    "fewshot_f1",
    "fewshot_ratio_scratch",
    "payload_mae_pct_meter",
)


def test_the_bench_scores_the_sealed_site_and_logs_the_read(monkeypatch, small_data, tmp_path):
    import fleet.learning.pipeline.bench as bench
    from fleet.learning.pipeline import testsite

    monkeypatch.setattr(bench, "TrainConfig", lambda seed=0: TINY)
    real = bench.train_models
    monkeypatch.setattr(
        bench, "train_models", lambda config, **kw: real(config, datasets=small_data, **kw)
    )
    small_e = dataclasses.replace(testsite.TEST_RUN, trucks=4, hours=1.0, seed=5, fault_rate=2.0)
    monkeypatch.setattr(testsite, "TEST_RUN", small_e)
    log = tmp_path / "models.md"
    log.write_text("# Models\n\n### Test-site log\n\n- an earlier read\n\n## Next section\n")
    out = StringIO()
    call_command(
        "bench",
        "models",
        "--json",
        "--test-log",
        str(log),
        "--plots-dir",
        str(tmp_path),
        stdout=out,
        stderr=StringIO(),
    )
    figures = json.loads(out.getvalue().strip().splitlines()[-1])
    assert figures["benchmark"] == "models"
    assert set(BENCH_KEYS) <= set(figures)
    assert figures["details"]["test_run"]["site"] == "E"
    assert figures["details"]["features_only"]["commit"] == FEATURES_ONLY_COMMIT
    # The validation figures (site D) travel beside the test site's, never instead of them.
    assert set(FIGURES) - {"l1_gain"} <= set(figures["validation"])
    text = log.read_text()
    section = text.split("### Test-site log")[1].split("## Next section")[0]
    lines = [row for row in section.splitlines() if row.startswith("- ")]
    assert lines[0] == "- an earlier read" and "fault_f1 " in lines[1] and len(lines) == 2
    assert (tmp_path / "learning-curve.png").exists() and (
        tmp_path / "test-evaluation.png"
    ).exists()


def test_the_features_only_reference_is_frozen():
    # backbone_gain's reference reads the hand-made features as they stood at
    # FEATURES_ONLY_COMMIT: changing them changes the benchmark, so this fails first.
    # Later features are appended after them, so the frozen ones are the leading columns.
    names = context.feature_names()
    assert len(names) == 55 + len(FADE_FEATURES) and names[55:] == FADE_FEATURES
    assert names[0] == "coolant_temp_c_drift_300s" and names[54] == "speed_kmh_mean_900s"
    assert TRAJECTORY_FEATURES[:4] == ("speed_mps", "yaw_rate_rps", "accel_mps2", "speed_prev_mps")
    config = features_only_config("fault")
    assert not config.use_embedding and config.n_features == 55
    assert config.feature_names == names[:55]
    assert features_only_config("trajectory").n_features == 4
