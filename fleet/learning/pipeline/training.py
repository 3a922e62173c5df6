"""Train every domain network end to end, evaluate it against the baselines, save it.

One call, ``train_models``, is what ``manage.py train_models`` and ``manage.py bench models``
run:

1. the data (``build_datasets``: simulated, seeded, cached);
2. **L0**: the patch backbone pretrained by masked-patch reconstruction on sites A + B;
3. **L1**: L0 adapted to site C from its small budget (``adapt_train``);
4. **L2** heads on L1, trained on A + B + C's training windows: faults (multi-label, with the
   truck's own recent history as context), ETA (quantiles, with route features), trajectory
   (1, 3, 5 s, on the constant-turn prior), payload;
5. the fault decision rule, chosen on the validation split;
6. the figures on the held-out site D against the baselines run on the same windows, and
   ``l1_gain``: the same heads on site C's budget, on L1 and on L0;
7. checkpoints (safetensors + manifest with the figures and the lineage), ONNX graphs with
   their parity, batch-1 CPU latency, plots.

The registry (ORM) is not touched here: ``fleet.learning.runs.register_run`` does that (the
Django side), so a benchmark can train
into a scratch directory without adding versions.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fleet.learning.features import (
    ETA_FEATURES,
    HEADS,
    L0_NAME,
    L1_NAME,
    NETWORKS,
    TRAJECTORY_FEATURES,
    SegmentMeanETA,
    eta_features,
    trajectory_features,
)
from fleet.learning.pipeline import baselines, context, evaluation
from fleet.learning.pipeline.datasets import (
    FAULT_CLASSES,
    INPUT_CHANNELS,
    Datasets,
    WindowSet,
    build_datasets,
)
from fleet.learning.pipeline.detection import DecisionRule, choose_rule, detections
from models import (
    BackboneConfig,
    EtaHeadConfig,
    FaultHeadConfig,
    HeadConfig,
    PatchBackbone,
    PayloadHeadConfig,
    TrainedHead,
    TrajectoryHeadConfig,
    adapt,
    export_checkpoint_onnx,
    fit_head,
    load_runtime,
    pretrain,
    save_backbone,
    save_head,
)
from models.heads import EtaHead, head_inputs

log = logging.getLogger(__name__)

NAMES = NETWORKS  # registry names, lineage order
# Where each set's per-segment ETA history comes from: the same site's training windows (for
# the held-out site, its past: ``heldout_history``).
ETA_HISTORY = {
    "pretrain_train": "pretrain_train",
    "pretrain_val": "pretrain_train",
    "adapt_train": "adapt_train",
    "adapt_test": "adapt_train",
    "heldout": "heldout_history",
    "heldout_test": "heldout_history",
}
# A fault's first minute is indistinguishable from normal running at these intensities: such
# windows are left out of the fault head's training (not of any evaluation).
FAULT_SETTLE_S = 60.0


@dataclass(frozen=True)
class TrainConfig:
    """The default sizes: about 100 s on 2 CPU cores with the data cached (docs/models.md)."""

    # 4 patches of 16 s per channel, d_model 32: ~28k parameters. Measured on 2 cores, it
    # trains at ~1 ms per window and infers at ~0.2 ms; the default PatchTST size (8 patches,
    # d_model 64) costs 3.4 ms per window and gets fewer epochs into the same budget.
    patch_len: int = 16
    d_model: int = 32
    d_ff: int = 64
    n_layers: int = 2
    pretrain_seconds: float = 30.0
    pretrain_epochs: int = 20
    adapt_seconds: float = 8.0
    adapt_epochs: int = 10
    head_epochs: int = 100
    head_patience: int = 15
    head_seconds: float = 12.0  # per head
    seed: int = 0
    device: str = "cpu"
    latency_runs: int = 200

    def backbone_config(self) -> BackboneConfig:
        return BackboneConfig(
            n_channels=len(INPUT_CHANNELS),
            window=64,
            patch_len=self.patch_len,
            stride=self.patch_len,
            d_model=self.d_model,
            d_ff=self.d_ff,
            n_layers=self.n_layers,
            channel_names=INPUT_CHANNELS,
        )


@dataclass
class TrainingRun:
    """What a training run made and measured."""

    root: Path
    version: str
    manifests: dict[str, Path] = field(default_factory=dict)  # name -> manifest.json
    figures: dict[str, float] = field(default_factory=dict)  # the bench's keys
    details: dict[str, Any] = field(default_factory=dict)  # per task, baselines, rule...
    timings: dict[str, float] = field(default_factory=dict)
    histories: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    data_hash: str = ""


# --- inputs per task ------------------------------------------------------------------------------


@dataclass
class TaskData:
    """Windows, targets and features of one task on one window set (rows with a target)."""

    rows: np.ndarray
    windows: np.ndarray
    targets: np.ndarray
    features: np.ndarray | None

    def val(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return self.windows, self.targets, self.features


def eta_history(data: Datasets, name: str) -> SegmentMeanETA:
    """The per-segment ETA table that set ``name`` may know (ETA_HISTORY)."""
    history = data[ETA_HISTORY[name]]
    labels = history.labels
    return SegmentMeanETA.fit(labels["segment"], labels["stop"], labels["eta_s"])


def task_data(
    task: str, data: Datasets, name: str, windows: np.ndarray, *, training: bool
) -> TaskData:
    """Rows of set ``name`` where ``task`` has a target, with its inputs. ``training`` leaves
    out the fault windows of a fault's first minute (see FAULT_SETTLE_S)."""
    ws = data[name]
    labels = ws.labels
    features: np.ndarray | None
    if task == "fault":
        ok = np.ones(len(ws), dtype=bool)
        if training:
            ok = ~(labels["fault_elapsed_s"] < FAULT_SETTLE_S)  # NaN (no fault) passes
        targets, features = labels["fault_active"], context.window_context(ws)
    elif task == "eta":
        features = eta_features(ws.labels, eta_history(data, name))
        ok = np.isfinite(labels["eta_s"]) & np.isfinite(features).all(axis=1)
        targets = labels["eta_s"]
    elif task == "trajectory":
        ok = np.isfinite(labels["traj"]).all(axis=(1, 2))
        targets, features = labels["traj"], trajectory_features(windows)
    elif task == "payload":
        ok = np.isfinite(labels["payload_t"])
        targets, features = labels["payload_t"], None
    else:
        raise ValueError(f"unknown task {task!r}; known: {HEADS}")
    rows = np.flatnonzero(ok)
    return TaskData(
        rows,
        windows[rows],
        targets[rows],
        None if features is None else features[rows].astype(np.float32),
    )


def head_config(task: str) -> HeadConfig:
    if task == "fault":
        names = context.feature_names()
        # The reconstruction error costs three more backbone passes per window and the
        # history features carry what it would add for slow drifts: level and spread only.
        return FaultHeadConfig(
            n_features=len(names),
            feature_names=names,
            multi_label=True,
            use_recon_error=False,
            anomaly_components=("level", "spread"),
        )
    if task == "eta":
        # No window statistics for ETA and trajectory: absolute levels such as elevation are
        # a site's, and a head leaning on them does not carry to a new mine (measured: the
        # held-out ETA error fell by a third without them).
        return EtaHeadConfig(
            n_features=len(ETA_FEATURES), feature_names=ETA_FEATURES, use_stats=False
        )
    if task == "trajectory":
        return TrajectoryHeadConfig(
            n_features=len(TRAJECTORY_FEATURES),
            feature_names=TRAJECTORY_FEATURES,
            use_stats=False,
        )
    return PayloadHeadConfig()


def _joined(parts: list[TaskData]) -> TaskData:
    feats = [p.features for p in parts]
    return TaskData(
        np.concatenate([p.rows for p in parts]),
        np.concatenate([p.windows for p in parts]),
        np.concatenate([p.targets for p in parts]),
        None if feats[0] is None else np.concatenate(feats),  # type: ignore[arg-type]
    )


# --- the pipeline ---------------------------------------------------------------------------------


class _Clock:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings, self.start = timings, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self.start, 2)
        self.start = now


def train_models(
    config: TrainConfig | None = None,
    *,
    root: Path,
    version: str = "1",
    progress: bool = True,
    plots_dir: Path | None = None,
    datasets: Datasets | None = None,
    say: Callable[[str], None] = log.info,
) -> TrainingRun:
    """Train, evaluate and save every network under ``root`` as ``<name>/<version>``."""
    c = config or TrainConfig()
    torch.manual_seed(c.seed)
    run = TrainingRun(Path(root), version)
    started = time.perf_counter()
    clock = _Clock(run.timings)

    data = datasets or build_datasets(progress=progress)
    run.data_hash = data.data_hash
    windows = {name: data[name].windows() for name in _SETS_WITH_WINDOWS}
    clock.lap("data_s")

    l0 = PatchBackbone(c.backbone_config())
    say(f"L0: masked-patch pretraining on sites A + B ({len(windows['pretrain_train'])} windows)")
    pre = pretrain(
        l0,
        windows["pretrain_train"],
        val_windows=windows["pretrain_val"],
        epochs=c.pretrain_epochs,
        max_seconds=c.pretrain_seconds,
        device=c.device,
        seed=c.seed,
        progress=progress,
        desc="L0 pretrain",
    )
    run.histories["L0 pretrain"] = pre.history
    save_backbone(
        l0,
        root,
        name=L0_NAME,
        version=version,
        metrics={"val_loss": pre.best_val_loss},
        data_hash=data["pretrain_train"].data_hash,
    )
    clock.lap("pretrain_s")

    say(f"L1: adapting to site C ({len(windows['adapt_train'])} windows)")
    adapted = adapt(
        l0,
        windows["adapt_train"],
        epochs=c.adapt_epochs,
        max_seconds=c.adapt_seconds,
        device=c.device,
        seed=c.seed,
        progress=progress,
    )
    l1 = adapted.backbone
    run.histories["L1 adapt"] = adapted.history
    save_backbone(
        l1,
        root,
        name=L1_NAME,
        version=version,
        metrics={"val_loss": adapted.best_val_loss},
        data_hash=data["adapt_train"].data_hash,
    )
    clock.lap("adapt_s")

    heads = _train_heads(l1, data, windows, c, progress, say)
    for task, trained in heads.items():
        run.histories[f"{task} head"] = trained.history
    clock.lap("heads_s")

    rule, val_score = _fault_rule(heads["fault"], data, windows)
    run.details["fault_rule"] = rule.as_dict()
    run.details["fault_val"] = _fault_summary(val_score)
    say(f"fault decision rule on the validation split: {rule} (event F1 {val_score.f1:.2f})")
    predictions = _evaluate(heads, rule, data, windows, run)
    clock.lap("evaluate_s")

    say("l1_gain: the same heads on site C's budget, on L0 and on L1")
    _measure_l1_gain(l0, l1, rule, data, windows, c, run)
    clock.lap("l1_gain_s")

    run.manifests = {name: Path(root) / name / version / "manifest.json" for name in NAMES}
    for task, trained in heads.items():
        save_head(
            trained,
            root,
            name=task,
            version=version,
            metrics={**trained.metrics, **run.details[task]["heldout"]},
            extra={"decision": rule.as_dict()} if task == "fault" else {},
        )
        export_checkpoint_onnx(run.manifests[task])
    clock.lap("save_s")
    run.figures["train_s"] = round(time.perf_counter() - started, 1)

    _measure_latency(run, data, windows, c)
    clock.lap("latency_s")
    if plots_dir is not None:
        from fleet.learning.pipeline import plots

        run.plots = plots.draw_all(run, predictions, plots_dir)
        clock.lap("plots_s")
    return run


_SETS_WITH_WINDOWS = (
    "pretrain_train",
    "pretrain_val",
    "adapt_train",
    "adapt_test",
    "heldout",
    "heldout_test",
)


def _train_heads(
    backbone: PatchBackbone,
    data: Datasets,
    windows: dict[str, np.ndarray],
    c: TrainConfig,
    progress: bool,
    say: Callable[[str], None],
) -> dict[str, TrainedHead]:
    """Each head on A + B + C's training windows, validated on A + B's validation trucks."""
    out: dict[str, TrainedHead] = {}
    for task in HEADS:
        train = _joined(
            [
                task_data(task, data, name, windows[name], training=True)
                for name in ("pretrain_train", "adapt_train")
            ]
        )
        val = task_data(task, data, "pretrain_val", windows["pretrain_val"], training=True)
        say(f"L2 {task} head ({len(train.rows)} windows)")
        out[task] = _fit(backbone, task, train, val, c, progress)
        if task == "eta":
            scale = _calibrate_eta(out[task], val)
            say(f"ETA P10-P90 offsets scaled by {scale:.2f} to cover 80 % of the validation trucks")
    return out


def _calibrate_eta(trained: TrainedHead, val: TaskData) -> float:
    device = trained.device
    with torch.no_grad():
        inputs = head_inputs(
            trained.backbone.eval(),
            torch.as_tensor(val.windows, device=device),
            torch.as_tensor(val.features, device=device),
            with_recon_error=False,
        )
    head = trained.head.eval()
    assert isinstance(head, EtaHead)  # noqa: S101 (a programming error, not input)
    return head.calibrate(inputs, torch.as_tensor(val.targets, device=device))


def _fit(
    backbone: PatchBackbone,
    task: str,
    train: TaskData,
    val: TaskData | None,
    c: TrainConfig,
    progress: bool,
) -> TrainedHead:
    """One head; without ``val`` a random fifth of ``train`` validates."""
    return fit_head(
        backbone,
        task,
        train.windows,
        train.targets,
        train.features,
        config=head_config(task),
        val=None if val is None else val.val(),
        epochs=c.head_epochs,
        patience=c.head_patience,
        max_seconds=c.head_seconds,
        device=c.device,
        seed=c.seed,
        progress=progress,
    )


def _fault_probs(trained: TrainedHead, ws: WindowSet, windows: np.ndarray) -> np.ndarray:
    return trained.predict(windows, context.window_context(ws))["probs"]


def _fault_rule(
    trained: TrainedHead, data: Datasets, windows: dict[str, np.ndarray]
) -> tuple[DecisionRule, evaluation.FaultScore]:
    ws = data["pretrain_val"]
    probs = _fault_probs(trained, ws, windows["pretrain_val"])
    return choose_rule(ws.fault_events(), ws.unit, ws.labels["t_end_s"], probs, FAULT_CLASSES)


def _fault_summary(score: evaluation.FaultScore) -> dict[str, float]:
    return {
        "f1": round(score.f1, 4),
        "precision": round(score.precision, 4),
        "recall": round(score.recall, 4),
        "tp": score.tp,
        "fp": score.fp,
        "fn": score.fn,
        "delay_s": round(score.delay_s, 1) if np.isfinite(score.delay_s) else None,
    }


def _fault_scores(
    trained: TrainedHead, rule: DecisionRule, ws: WindowSet, windows: np.ndarray
) -> tuple[evaluation.FaultScore, evaluation.FaultScore, np.ndarray]:
    probs = _fault_probs(trained, ws, windows)
    found = detections(ws.unit, ws.labels["t_end_s"], probs, FAULT_CLASSES, rule)
    events = ws.fault_events()
    model = evaluation.score_faults(events, found)
    oem = evaluation.score_faults(events, baselines.window_set_alarms(ws))
    return model, oem, probs


def _evaluate(
    heads: dict[str, TrainedHead],
    rule: DecisionRule,
    data: Datasets,
    windows: dict[str, np.ndarray],
    run: TrainingRun,
) -> dict[str, Any]:
    """The held-out figures (site D) and their baselines, into ``run``; returns predictions
    for the plots."""
    held = data["heldout"]
    model, oem, probs = _fault_scores(heads["fault"], rule, held, windows["heldout"])
    leads = evaluation.lead_times(model, oem)
    run.figures |= {
        "fault_f1": round(model.f1, 3),
        "fault_f1_baseline": round(oem.f1, 3),
        "fault_delay_s": _round(model.delay_s),
        "fault_delay_s_baseline": _round(oem.delay_s),
        "fault_lead_s": _round(float(np.median(leads)) if len(leads) else float("nan")),
    }
    run.details["fault"] = {
        "heldout": {f"heldout_{k}": v for k, v in _fault_summary(model).items()},
        "baseline": _fault_summary(oem),
        "by_kind": _by_kind(held.fault_events(), model, oem),
    }
    predictions: dict[str, Any] = {"fault": (held, probs, model, oem)}

    test, twin = data["heldout_test"], windows["heldout_test"]
    eta = task_data("eta", data, "heldout_test", twin, training=False)
    eta_pred = heads["eta"].predict(eta.windows, eta.features)["eta_s"]
    table = eta_history(data, "heldout_test")
    eta_base = table.predict(test.labels["segment"][eta.rows], test.labels["stop"][eta.rows])
    run.figures |= {
        "eta_gain": round(evaluation.eta_gain(eta.targets, eta_pred[:, 1], eta_base[:, 1]), 3),
        "eta_coverage": round(evaluation.coverage(eta.targets, eta_pred[:, 0], eta_pred[:, 2]), 3),
    }
    run.details["eta"] = {
        "heldout": {
            "heldout_mae_p50_s": round(evaluation.mae(eta.targets, eta_pred[:, 1]), 2),
            "heldout_coverage": run.figures["eta_coverage"],
        },
        "baseline": {
            "mae_p50_s": round(evaluation.mae(eta.targets, eta_base[:, 1]), 2),
            "coverage": round(evaluation.coverage(eta.targets, eta_base[:, 0], eta_base[:, 2]), 3),
        },
    }
    predictions["eta"] = (eta.targets, eta_pred, eta_base)

    traj = task_data("trajectory", data, "heldout_test", twin, training=False)
    traj_pred = heads["trajectory"].predict(traj.windows, traj.features)["positions_m"]
    traj_base = baselines.constant_velocity(test.labels["speed_mps"][traj.rows])
    ratio = evaluation.ade_ratio(traj_pred, traj.targets, traj_base)
    run.figures["traj_ade_ratio"] = round(ratio, 3)
    run.details["trajectory"] = {
        "heldout": {
            "heldout_ade_m": round(evaluation.ade(traj_pred, traj.targets), 3),
            "heldout_fde_m": round(evaluation.fde(traj_pred, traj.targets), 3),
        },
        "baseline": {
            "ade_m": round(evaluation.ade(traj_base, traj.targets), 3),
            "fde_m": round(evaluation.fde(traj_base, traj.targets), 3),
        },
    }
    predictions["trajectory"] = (traj.targets, traj_pred, traj_base)

    pay = task_data("payload", data, "heldout_test", twin, training=False)
    pay_pred = heads["payload"].predict(pay.windows)["payload_t"]
    capacity = test.labels["capacity_t"][pay.rows]
    meter = baselines.onboard_payload(test.labels["payload_meter_t"][pay.rows])
    run.figures["payload_mae_pct"] = round(
        evaluation.payload_mae_pct(pay_pred, pay.targets, capacity), 3
    )
    run.details["payload"] = {
        "heldout": {"heldout_mae_pct": run.figures["payload_mae_pct"]},
        "baseline": {"mae_pct": round(evaluation.payload_mae_pct(meter, pay.targets, capacity), 3)},
    }
    predictions["payload"] = (pay.targets, pay_pred, meter)
    return predictions


def _round(value: float, digits: int = 1) -> float | None:
    return round(value, digits) if np.isfinite(value) else None


def _by_kind(
    events: list[evaluation.FaultEvent],
    model: evaluation.FaultScore,
    oem: evaluation.FaultScore,
) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for kind in FAULT_CLASSES[1:]:
        mine = [e.event for e in events if e.kind == kind]
        out[kind] = {
            "events": len(mine),
            "model": sum(e in model.detected_at for e in mine),
            "oem": sum(e in oem.detected_at for e in mine),
            "false_alarms": sum(d.kind == kind for d in model.false_alarms),
        }
    return out


def _task_error(
    task: str,
    trained: TrainedHead,
    rule: DecisionRule,
    data: Datasets,
    name: str,
    windows: np.ndarray,
) -> float:
    """Lower-is-better error of one head on set ``name`` (``evaluation.l1_gain``'s tasks)."""
    ws = data[name]
    if task == "fault":
        model, _, _ = _fault_scores(trained, rule, ws, windows)
        return 1.0 - model.f1
    d = task_data(task, data, name, windows, training=False)
    out = trained.predict(d.windows, d.features)
    if task == "eta":
        return evaluation.mae(d.targets, out["eta_s"][:, 1])
    if task == "trajectory":
        return evaluation.ade(out["positions_m"], d.targets)
    capacity = ws.labels["capacity_t"][d.rows]
    return evaluation.payload_mae_pct(out["payload_t"], d.targets, capacity)


def _measure_l1_gain(
    l0: PatchBackbone,
    l1: PatchBackbone,
    rule: DecisionRule,
    data: Datasets,
    windows: dict[str, np.ndarray],
    c: TrainConfig,
    run: TrainingRun,
) -> None:
    """Heads trained on site C's budget alone (``adapt_train``), on each backbone, scored on
    C's test trucks: what starting from L1 instead of L0 is worth to a new mine."""
    budget = dataclasses.replace(c, head_seconds=c.head_seconds / 2)
    errors: dict[str, dict[str, float]] = {"L0": {}, "L1": {}}
    for task in HEADS:
        train = task_data(task, data, "adapt_train", windows["adapt_train"], training=True)
        for level, backbone in (("L0", l0), ("L1", l1)):
            trained = _fit(backbone, task, train, None, budget, progress=False)
            errors[level][task] = _task_error(
                task, trained, rule, data, "adapt_test", windows["adapt_test"]
            )
    run.figures["l1_gain"] = round(evaluation.l1_gain(errors["L1"], errors["L0"]), 3)
    run.details["l1_gain"] = {
        level: {task: round(v, 4) for task, v in e.items()} for level, e in errors.items()
    }


def _measure_latency(
    run: TrainingRun, data: Datasets, windows: dict[str, np.ndarray], c: TrainConfig
) -> None:
    """Batch-1 CPU latency per window of each head through the serving runtime (onnxruntime
    on a CPU), the p95 over ``latency_runs`` windows of the held-out stream."""
    held = data["heldout"]
    sample = np.random.default_rng(c.seed).choice(len(held), c.latency_runs, replace=False)
    per_head: dict[str, float] = {}
    for task in HEADS:
        runtime = load_runtime(run.manifests[task], device="cpu", engine="auto")
        d = task_data(task, data, "heldout", windows["heldout"], training=False)
        rows = sample[sample < len(d.rows)]
        times = []
        for i in rows:
            batch = {"window": d.windows[i : i + 1]}
            if d.features is not None:
                batch["features"] = d.features[i : i + 1]
            t0 = time.perf_counter()
            runtime.run(batch)
            times.append((time.perf_counter() - t0) * 1000.0)
        per_head[task] = round(float(np.percentile(times[5:], 95)), 2)  # first runs warm up
        run.details.setdefault("engine", runtime.engine)
    run.figures["p95_ms"] = max(per_head.values())
    run.details["p95_ms_by_head"] = per_head
