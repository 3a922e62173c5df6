"""A truck's own recent history as features beside a window (the fault head's context).

A 64 s window cannot show a slow degradation: coolant creeping 0.5 deg C a minute moves 0.5 deg C
in it, under 0.3 deg C of sensor noise, and a tyre losing 1 kPa a minute moves 1 kPa under 2 kPa
of noise. What shows it is the truck against its own past: the level now against the level some
minutes ago. The FMS holds that past (the history store), so these features are what it can
compute for every decision; the simulator's runs give the same here.

For every sensed channel and every lag: mean of the last ``NOW_S`` seconds minus the mean of
``NOW_S`` seconds ``lag`` earlier (drift). For tyre pressures also that drift against the median
drift of the truck's tyres (heat, load and altitude move all tyres together, a leak moves one).
Beside them, the change of elevation over each lag and the mean speed over the longest (a
climb heats the engine and the brakes without any fault).
"""

from __future__ import annotations

import numpy as np

from fleet.learning.datasets import RAW_CHANNELS, SiteRun, WindowSet
from fleet.simulator.engine import SENSED_CHANNELS

NOW_S = 60  # seconds averaged for "now" and for each past reference
LAGS_S = (300, 900)  # how far back the references are
TYRE_PRESSURES = tuple(c for c in SENSED_CHANNELS if c.startswith("tyre_pressure"))


def feature_names(lags_s: tuple[int, ...] = LAGS_S) -> tuple[str, ...]:
    names: list[str] = []
    for lag in lags_s:
        names += [f"{c}_drift_{lag}s" for c in SENSED_CHANNELS]
        names += [f"{c}_vs_tyres_{lag}s" for c in TYRE_PRESSURES]
        names.append(f"elevation_m_change_{lag}s")
    names.append(f"speed_kmh_mean_{max(lags_s)}s")
    return tuple(names)


def _means(series: np.ndarray, truck: np.ndarray, end: np.ndarray, span: int) -> np.ndarray:
    """[n, C]: mean of rows (end - span, end] per window, from a cumulative sum (the first
    rows of a run average what exists)."""
    csum = np.concatenate(
        [np.zeros((*series.shape[:2], 1)), np.cumsum(series, axis=2, dtype=np.float64)], axis=2
    )
    hi = end + 1
    lo = np.maximum(hi - span, 0)
    count = np.maximum(hi - lo, 1)[:, None]
    return (csum[truck, :, hi] - csum[truck, :, lo]) / count


def run_context(
    run: SiteRun, truck: np.ndarray, end: np.ndarray, lags_s: tuple[int, ...] = LAGS_S
) -> np.ndarray:
    """[n, F] context features for windows of ``run`` ending at rows ``end`` of ``truck``."""
    return series_context(run.series, truck, end, run.spec.hz, lags_s)


def series_context(
    series: np.ndarray,
    truck: np.ndarray,
    end: np.ndarray,
    hz: float,
    lags_s: tuple[int, ...] = LAGS_S,
) -> np.ndarray:
    """[n, F] context features from a ``[K, len(RAW_CHANNELS), T]`` series sampled at ``hz``
    (a run's, or live history resampled by ``fleet.learning.serving``)."""
    now_rows = max(round(NOW_S * hz), 1)
    sensed = [RAW_CHANNELS.index(c) for c in SENSED_CHANNELS]
    tyres = [SENSED_CHANNELS.index(c) for c in TYRE_PRESSURES]
    elevation, speed = RAW_CHANNELS.index("elevation_m"), RAW_CHANNELS.index("speed_kmh")
    series = series[:, [*sensed, elevation, speed]]
    now = _means(series, truck, end, now_rows)
    columns: list[np.ndarray] = []
    for lag in lags_s:
        past_end = np.maximum(end - round(lag * hz), 0)
        drift = now - _means(series, truck, past_end, now_rows)
        tyre = drift[:, tyres]
        columns += [drift[:, : len(sensed)], tyre - np.median(tyre, axis=1, keepdims=True)]
        columns.append(drift[:, len(sensed) : len(sensed) + 1])
    longest = max(round(max(lags_s) * hz), 1)
    columns.append(_means(series[:, -1:], truck, end, longest))
    return np.concatenate(columns, axis=1).astype(np.float32)


def window_context(ws: WindowSet, lags_s: tuple[int, ...] = LAGS_S) -> np.ndarray:
    """[len(ws), F] context features of every window in a set (``feature_names`` order)."""
    out = np.empty((len(ws), len(feature_names(lags_s))), dtype=np.float32)
    for r, run in enumerate(ws.runs):
        mine = np.flatnonzero(ws.run == r)
        if len(mine):
            out[mine] = run_context(run, ws.truck[mine], ws.end[mine], lags_s)
    return out
