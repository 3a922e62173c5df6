"""PNG plots of a training run: the loss curves and a site's evaluation against the
baselines (what a reviewer would rather look at than read)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only: no display on a server
import matplotlib.pyplot as plt
import numpy as np

from fleet.learning.pipeline.datasets import HORIZONS_S

if TYPE_CHECKING:
    from fleet.learning.pipeline.training import TrainingRun

MODEL, BASELINE = "#1f77b4", "#999999"


def draw_all(run: TrainingRun, predictions: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    return [
        losses(run, directory / "training-loss.png"),
        site_evaluation(
            run,
            predictions,
            directory / "validation-evaluation.png",
            "Validation site D (weaker faults) against the baselines, version " + run.version,
        ),
    ]


def losses(run: TrainingRun, path: Path) -> Path:
    names = list(run.histories)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        rows = run.histories[name]
        epochs = [r["epoch"] + 1 for r in rows]
        ax.plot(epochs, [r["train_loss"] for r in rows], marker=".", label="train")
        ax.plot(epochs, [r["val_loss"] for r in rows], marker=".", label="validation")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Training losses, version {run.version}", fontsize=11)
    return _save(fig, path)


def site_evaluation(run: Any, predictions: dict[str, Any], path: Path, title: str) -> Path:
    """Six panels of one site's figures; ``run`` is anything with the ``figures`` and
    ``details`` of a TrainingRun (the test-site evaluation passes its own)."""
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    _fault_recall(axes[0][0], run)
    _fault_delays(axes[0][1], predictions["fault"])
    _eta_errors(axes[0][2], run, predictions["eta"])
    _trajectory(axes[1][0], run, predictions["trajectory"])
    _payload(axes[1][1], run, predictions["payload"])
    _l1_gain(axes[1][2], run)
    fig.suptitle(title, fontsize=12)
    return _save(fig, path)


def learning_curve(curves: dict[str, list[tuple[float, float]]], path: Path, title: str) -> Path:
    """Fault event F1 against labelled data (hours of one truck), one line per backbone."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, points in curves.items():
        xs, ys = zip(*sorted(points), strict=True)
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xscale("log")
    # Ticks at the budgets measured, as plain numbers (a log axis labels its minor ticks in
    # overlapping powers of ten).
    budgets = sorted({x for points in curves.values() for x, _ in points})
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(budgets, [f"{x:g}" for x in budgets])
    ax.set_xlabel("labelled truck-hours of fault-head training data")
    ax.set_ylabel("event F1")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _bars(ax: Any, labels: list[str], model: list[float], base: list[float], names: tuple) -> None:
    x = np.arange(len(labels))
    ax.bar(x - 0.2, model, 0.4, color=MODEL, label=names[0])
    ax.bar(x + 0.2, base, 0.4, color=BASELINE, label=names[1])
    ax.set_xticks(x, labels, fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _fault_recall(ax: Any, run: TrainingRun) -> None:
    kinds = run.details["fault"]["by_kind"]
    labels = [k.replace("_", " ") for k in kinds]
    model = [v["model"] / max(v["events"], 1) for v in kinds.values()]
    oem = [v["oem"] / max(v["events"], 1) for v in kinds.values()]
    _bars(ax, labels, model, oem, ("model", "OEM threshold alarms"))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of faults detected")
    f = run.figures
    ax.set_title(
        f"Faults: event F1 {f['fault_f1']:.2f} vs {f['fault_f1_baseline']:.2f}", fontsize=10
    )


def _fault_delays(ax: Any, fault: tuple) -> None:
    ws, _, model, oem = fault
    onsets = {e.event: e.onset_s for e in ws.fault_events()}
    bins = np.linspace(0, 7200, 25)
    for score, color, name in ((model, MODEL, "model"), (oem, BASELINE, "OEM alarms")):
        delays = [(t - onsets[e]) / 60.0 for e, t in score.detected_at.items()]
        ax.hist(np.clip(delays, 0, 120), bins=bins / 60.0, alpha=0.7, color=color, label=name)
    ax.set_xlabel("delay from onset to detection (min, clipped at 120)")
    ax.set_ylabel("faults")
    ax.set_title("Detection delay", fontsize=10)
    ax.legend(fontsize=8)


def _eta_errors(ax: Any, run: TrainingRun, eta: tuple) -> None:
    truth, pred, base = eta
    bins = np.linspace(0, 200, 41)
    ax.hist(np.abs(pred[:, 1] - truth), bins=bins, alpha=0.7, color=MODEL, label="model P50")
    ax.hist(np.abs(base[:, 1] - truth), bins=bins, alpha=0.6, color=BASELINE, label="segment mean")
    ax.set_xlabel("absolute error of the time to the next stop (s)")
    ax.set_ylabel("windows")
    f = run.figures
    ax.set_title(
        f"ETA: gain {f['eta_gain']:.2f}, P10-P90 coverage {f['eta_coverage']:.2f}", fontsize=10
    )
    ax.legend(fontsize=8)


def _trajectory(ax: Any, run: TrainingRun, traj: tuple) -> None:
    truth, pred, base = traj
    model = np.linalg.norm(pred - truth, axis=-1).mean(axis=0)
    cv = np.linalg.norm(base - truth, axis=-1).mean(axis=0)
    _bars(ax, [f"{h} s" for h in HORIZONS_S], list(model), list(cv), ("model", "constant velocity"))
    ax.set_ylabel("mean displacement error (m)")
    ax.set_title(f"Trajectory: ADE ratio {run.figures['traj_ade_ratio']:.2f}", fontsize=10)


def _payload(ax: Any, run: TrainingRun, payload: tuple) -> None:
    truth, pred, meter = payload
    ax.scatter(truth, pred, s=3, alpha=0.3, color=MODEL, label="model")
    ax.scatter(truth, meter, s=3, alpha=0.3, color=BASELINE, label="payload meter")
    top = float(np.nanmax(truth)) * 1.05
    ax.plot([0, top], [0, top], color="black", linewidth=0.8)
    ax.set_xlabel("true payload (t)")
    ax.set_ylabel("estimate (t)")
    base = run.details["payload"]["baseline"]["mae_pct"]
    ax.set_title(
        f"Payload: MAE {run.figures['payload_mae_pct']:.2f} % vs meter {base:.2f} %", fontsize=10
    )
    ax.legend(fontsize=8, markerscale=4)


def _l1_gain(ax: Any, run: TrainingRun) -> None:
    errors = run.details["l1_gain"]
    tasks = list(errors["L0"])
    l1 = [errors["L1"][t] / errors["L0"][t] if errors["L0"][t] else 1.0 for t in tasks]
    ax.bar(tasks, l1, color=MODEL)
    ax.axhline(1.0, color=BASELINE, linestyle="--", label="L0 (= 1)")
    ax.set_ylabel("site C error, L1 relative to L0")
    ax.set_title(f"L1 adaptation: l1_gain {run.figures['l1_gain']:.2f}", fontsize=10)
    ax.legend(fontsize=8)


__all__ = ["draw_all"]


def pool_steps(figures: dict[str, Any], path: Path) -> Path:
    """``bench pool``: each deployment's p99 against the offered load, exclusive and pooled,
    with the SLOs as lines: where each run leaves its SLOs is the figure."""
    heads = sorted(
        {
            h
            for mode in ("exclusive", "pooled")
            for s in figures[f"{mode}_steps"]
            for h in s["p99_ms"]
        }
    )
    fig, axes = plt.subplots(1, len(heads), figsize=(3.2 * len(heads), 3.2), squeeze=False)
    for ax, head in zip(axes[0], heads, strict=True):
        for mode, colour in (("exclusive", BASELINE), ("pooled", MODEL)):
            steps = figures[f"{mode}_steps"]
            ax.plot(
                [s["load_per_s"] for s in steps],
                [s["p99_ms"].get(head) or np.nan for s in steps],
                marker="o",
                color=colour,
                label=mode,
            )
        slo = figures["slo_ms"] if head == "trajectory" else 500
        ax.axhline(slo, color="#d62728", linestyle="--", linewidth=1, label=f"SLO {slo} ms")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(head, fontsize=10)
        ax.set_xlabel("offered load (requests/s)")
    axes[0][0].set_ylabel("p99 latency (ms)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(
        f"bench pool: exclusive {figures['exclusive_per_s']}/s, pooled {figures['pooled_per_s']}/s"
        f" (gain {figures['gain']})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
