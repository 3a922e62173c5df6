"""The fault head's context features (``fleet.learning.features.series_context``: a truck's own
recent history beside its window) for the windows of a simulated run or a window set."""

from __future__ import annotations

import numpy as np

from fleet.learning.features import LAGS_S, context_names, series_context
from fleet.learning.pipeline.datasets import SiteRun, WindowSet

feature_names = context_names


def run_context(
    run: SiteRun, truck: np.ndarray, end: np.ndarray, lags_s: tuple[int, ...] = LAGS_S
) -> np.ndarray:
    """[n, F] context features for windows of ``run`` ending at rows ``end`` of ``truck``."""
    return series_context(run.series, truck, end, run.spec.hz, lags_s)


def window_context(ws: WindowSet, lags_s: tuple[int, ...] = LAGS_S) -> np.ndarray:
    """[len(ws), F] context features of every window in a set (``context_names`` order)."""
    out = np.empty((len(ws), len(context_names(lags_s))), dtype=np.float32)
    for r, run in enumerate(ws.runs):
        mine = np.flatnonzero(ws.run == r)
        if len(mine):
            out[mine] = run_context(run, ws.truck[mine], ws.end[mine], lags_s)
    return out
