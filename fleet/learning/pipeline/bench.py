"""``manage.py bench models``: the quality figures of the domain networks on the sealed test site
E against the baselines run in the same command, and the training time (docs/benchmarks.md).

Trains from scratch into a scratch directory (the registry is not touched), with the data
cache as it is (``data_s`` says what reading or simulating the data cost). Every choice is
made inside training on the validation site D; this is the one reader of site E
(``testsite``), and each read is logged in docs/models.md ("Test-site log")."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleet.learning.pipeline import testsite
from fleet.learning.pipeline.training import (
    TrainConfig,
    measure_fewshot,
    train_features_only,
    train_models,
    validation_backbone_gain,
)


def run(options: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    plots = options.get("plots_dir")
    plots_dir = Path(plots) if plots else None
    with tempfile.TemporaryDirectory(prefix="haulmind-bench-models-") as scratch:
        result = train_models(
            TrainConfig(seed=options.get("seed") or 0),
            root=Path(scratch),
            plots_dir=plots_dir,
            progress=False,
            say=log,
        )
    started = time.perf_counter()
    log("backbone_gain: the fault and trajectory heads on the hand-made features alone")
    features_only = train_features_only(result)
    # The same figure on the validation site D, where architectures are compared.
    validation_gain, _ = validation_backbone_gain(result, features_only)
    result.figures |= validation_gain
    log("fewshot: the fault head at site C from one shift of labels, on L1 and from scratch")
    fewshot = measure_fewshot(result)
    extra_s = round(time.perf_counter() - started, 1)
    log("the sealed test site E")
    test = testsite.evaluate(result, features_only, plots_dir=plots_dir)
    if plots_dir is not None:
        from fleet.learning.pipeline import plots as drawing

        curves = {k: [tuple(p) for p in v] for k, v in fewshot["details"]["curves"].items()}
        drawing.learning_curve(
            curves,  # type: ignore[arg-type]
            plots_dir / "learning-curve.png",
            "Fault head at a new site (C): event F1 against labelled data",
        )
    figures = {
        **test["figures"],
        "l1_gain": result.figures["l1_gain"],
        **fewshot["figures"],
        "train_s": result.figures["train_s"],
        "pipeline_s": result.figures["pipeline_s"],
        "p95_ms": result.figures["p95_ms"],
    }
    log_path = options.get("test_log") or testsite.run_log_path()
    log("logged: " + testsite.log_read(figures, Path(log_path)))
    return {
        **figures,
        "data_s": result.timings["data_s"],
        "measure_s": extra_s,
        "timings": result.timings,
        "validation": result.figures,
        "details": {**test["details"], "fewshot": fewshot["details"], "validation": result.details},
    }
