"""``bench batching`` and ``bench pool``: the pooled runtime (``inference.bench``) serving the
champion heads. Fleet's part is only which models and what inputs; the load, the workers, the
scheduler and the measurements are inference's.

Inputs are random windows and features of each head's declared shapes: a forward pass costs the
same whatever the values, and the benches measure serving, not accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from fleet.learning.deployments import champion_deployments
from fleet.learning.services import read_manifest
from inference.bench import run_batching, run_pool
from inference.placement import Deployment

Log = Callable[[str], None]


def champions() -> dict[str, Deployment]:
    deployments = {d.model or d.name: d for d in champion_deployments()}
    if not deployments:
        raise RuntimeError("no champion heads: run `manage.py train_models` first")
    return deployments


def random_inputs(deployment: Deployment, rows: int = 256, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the head's declared shapes (``[None, 25, 64]`` -> ``[rows, 25, 64]``)."""
    _, manifest = read_manifest(deployment.checkpoint)  # a store reference: fetched here
    rng = np.random.default_rng(seed)
    return {
        name: rng.normal(size=(rows, *shape[1:])).astype(np.float32)
        for name, shape in manifest["inputs"].items()
    }


def run_batching_bench(options: dict[str, Any], log: Log) -> dict[str, Any]:
    deployment = champions()[options.get("head") or "fault"]
    return run_batching(
        deployment,
        random_inputs(deployment),
        redis_url=settings.REDIS_URL,
        concurrency=options.get("concurrency") or 64,
        clients=options.get("clients") or 2,
        seconds=options.get("seconds") or 10.0,
        share=options.get("share") or 0.5,
        pack=options.get("pack") or 0,
        log=log,
    )


def run_pool_bench(options: dict[str, Any], log: Log) -> dict[str, Any]:
    heads = champions()
    slices = options.get("slices") or "cpu=0.125,0.125,0.125,0.125"
    share = _slice_share(slices)
    # Each deployment reserves exactly one slice: exclusive means one slice each.
    deployments = [replace(d, compute_share=share) for d in heads.values()]
    log_dir = Path(settings.VAR_DIR) / "bench" / "pool"
    log_dir.mkdir(parents=True, exist_ok=True)
    rates = options.get("burst_rates")
    figures = run_pool(
        deployments,
        {name: random_inputs(d) for name, d in heads.items()},
        redis_url=settings.REDIS_URL,
        slices=slices,
        pack=options.get("pack") or 0,
        log_dir=log_dir,
        log=log,
        **({"burst_rates": [float(r) for r in rates.split(",")]} if rates else {}),
    )
    if options.get("plots_dir"):
        from fleet.learning.pipeline.plots import pool_steps

        directory = Path(options["plots_dir"])
        directory.mkdir(parents=True, exist_ok=True)
        figures["plot"] = str(pool_steps(figures, directory / "bench-pool.png"))
    return figures


def _slice_share(plan: str) -> float:
    """The compute share of the slices in a plan of equal CPU slices (``cpu=0.125,0.125``)."""
    shares = {float(x) for x in plan.partition("=")[2].split(",")} if "," in plan else set()
    if len(shares) != 1:
        raise RuntimeError(
            f"the pool bench needs equal CPU slices, e.g. cpu=0.125,0.125,0.125,0.125; got {plan!r}"
        )
    return shares.pop()
