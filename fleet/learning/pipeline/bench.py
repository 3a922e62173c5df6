"""``manage.py bench models``: the quality figures of the domain networks on the held-out site
against the baselines run in the same command, and the training time (docs/benchmarks.md).

Trains from scratch into a scratch directory (the registry is not touched), with the data
cache as it is (``data_s`` says what reading or simulating the data cost)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleet.learning.pipeline.training import TrainConfig, train_models


def run(options: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    plots = options.get("plots_dir")
    with tempfile.TemporaryDirectory(prefix="haulmind-bench-models-") as scratch:
        result = train_models(
            TrainConfig(seed=options.get("seed") or 0),
            root=Path(scratch),
            plots_dir=Path(plots) if plots else None,
            progress=False,
            say=log,
        )
    return {
        **result.figures,
        "data_s": result.timings["data_s"],
        "timings": result.timings,
        "details": result.details,
    }
