"""The models issue's quality figures as plain functions of arrays and lists, so the same code
scores any network and any baseline. Definitions (docs/models.md, pinned by
tests/learning/test_evaluation.py):

Faults, event level, no point adjustment
    A detector's positive decisions become *alarm episodes*: per truck and fault kind, positive
    decisions less than ``merge_gap_s`` apart are one episode, which starts at its first
    decision. An episode that starts inside [onset, end + grace] of a not yet detected fault
    event of the same truck (and kind) is a true positive for that event, at its start time;
    another episode inside an event already detected is neither TP nor FP; every other episode
    (before the onset, after end + grace, on another truck or of another kind) is a false
    positive. Events no episode detects are false negatives. F1 = 2PR / (P + R).
    Delay: episode start - onset, per detected event; the figure is the median.
    Lead: per event detected by both the model and the threshold alarms, the alarm's detection
    time - the model's; the figure is the median.
ETA
    Gain: 1 - MAE(model P50) / MAE(per-segment mean). Coverage: share of true values inside
    [P10, P90] (inclusive).
Trajectory
    ADE: mean Euclidean error over windows and horizons (1, 3, 5 s); the ratio is the model's
    ADE over the constant-velocity baseline's.
Payload
    MAE as % of the truck's rated payload.
L1 gain
    Mean over tasks of 1 - error(L1) / error(L0).
Windows whose target is NaN (undefined) are left out of every figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# After a fault's end, detections still count for it this long: its effects fade with the
# thermal lags (coolant 180 s, brake oil 240 s), and a window of 64 s still sees the fault.
GRACE_S = 300.0
# Positive decisions closer than this are one alarm episode: a detector deciding every 10 s
# that stays on is one alarm, and one that flickers within two minutes is not several.
MERGE_GAP_S = 120.0
NEGATIVE = ("", "normal")  # decision kinds that mean "no fault"


@dataclass(frozen=True)
class FaultEvent:
    """One injected fault: ``unit`` is the truck's identity in the evaluated stream."""

    event: int
    unit: int
    kind: str
    onset_s: float
    end_s: float


@dataclass(frozen=True)
class Detection:
    """One alarm episode: where and when it started, and which fault it names."""

    unit: int
    kind: str
    start_s: float


@dataclass
class FaultScore:
    f1: float
    precision: float
    recall: float
    tp: int
    fp: int
    fn: int
    delay_s: float  # median over detected events; NaN when none
    detected_at: dict[int, float] = field(default_factory=dict)  # event -> detection time
    false_alarms: list[Detection] = field(default_factory=list)


def alarm_episodes(
    unit: np.ndarray,
    time_s: np.ndarray,
    kind: np.ndarray,
    merge_gap_s: float = MERGE_GAP_S,
) -> list[Detection]:
    """Episodes from per-decision arrays: the truck, the decision time and the fault kind it
    names ("normal" or "" for no fault). Decisions need not be sorted."""
    unit, time_s, kind = np.asarray(unit), np.asarray(time_s, dtype=float), np.asarray(kind)
    positive = ~np.isin(kind, NEGATIVE)
    out: list[Detection] = []
    pairs = zip(unit[positive], kind[positive], strict=True)
    for u, k in sorted({(int(u), str(k)) for u, k in pairs}):
        times = np.sort(time_s[positive & (unit == u) & (kind == k)])
        starts = times[np.concatenate([[True], np.diff(times) > merge_gap_s])]
        out += [Detection(u, k, float(t)) for t in starts]
    return sorted(out, key=lambda d: (d.start_s, d.unit, d.kind))


def score_faults(
    events: Sequence[FaultEvent],
    detections: Sequence[Detection],
    *,
    grace_s: float = GRACE_S,
    match_kind: bool = True,
) -> FaultScore:
    """Event-level precision, recall, F1 and median delay (see the module's definitions).
    ``match_kind=False`` scores a detector that only says "something is wrong"."""
    detected: dict[int, float] = {}
    false_alarms: list[Detection] = []
    by_unit: dict[int, list[FaultEvent]] = {}
    for e in sorted(events, key=lambda e: e.onset_s):
        by_unit.setdefault(e.unit, []).append(e)
    for d in sorted(detections, key=lambda d: d.start_s):
        inside = [
            e
            for e in by_unit.get(d.unit, [])
            if e.onset_s <= d.start_s <= e.end_s + grace_s and (not match_kind or e.kind == d.kind)
        ]
        fresh = [e for e in inside if e.event not in detected]
        if fresh:
            detected[fresh[0].event] = d.start_s
        elif not inside:
            false_alarms.append(d)
    tp, fp = len(detected), len(false_alarms)
    fn = len(events) - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / len(events) if events else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    onsets = {e.event: e.onset_s for e in events}
    delays = [t - onsets[e] for e, t in detected.items()]
    delay = float(np.median(delays)) if delays else float("nan")
    return FaultScore(f1, precision, recall, tp, fp, fn, delay, detected, false_alarms)


def lead_times(model: FaultScore, baseline: FaultScore) -> np.ndarray:
    """Seconds by which the model's detection precedes the baseline's, per event both detect
    (negative where the model was later)."""
    both = sorted(set(model.detected_at) & set(baseline.detected_at))
    return np.asarray([baseline.detected_at[e] - model.detected_at[e] for e in both])


def median_lead_s(model: FaultScore, baseline: FaultScore) -> float:
    leads = lead_times(model, baseline)
    return float(np.median(leads)) if len(leads) else float("nan")


# --- ETA ---------------------------------------------------------------------------------------


def _valid(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The rows where every array is finite (NaN marks an undefined target)."""
    arrays = tuple(np.asarray(a, dtype=float) for a in arrays)
    ok = np.ones(len(arrays[0]), dtype=bool)
    for a in arrays:
        ok &= np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    return tuple(a[ok] for a in arrays)


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y, p = _valid(y_true, y_pred)
    return float(np.mean(np.abs(p - y)))


def relative_gain(error: float, reference: float) -> float:
    """1 - error / reference: 0.2 means 20 % less error than the reference."""
    return 1.0 - error / reference


def eta_gain(y_true: np.ndarray, p50: np.ndarray, baseline_p50: np.ndarray) -> float:
    """Reduction of the P50 forecast's mean absolute error against the baseline's, on the
    windows where both forecasts and the target exist."""
    y, p, b = _valid(y_true, p50, baseline_p50)
    return relative_gain(float(np.mean(np.abs(p - y))), float(np.mean(np.abs(b - y))))


def coverage(y_true: np.ndarray, p10: np.ndarray, p90: np.ndarray) -> float:
    """Share of targets inside [P10, P90]; 0.8 is what calibrated quantiles give."""
    y, lo, hi = _valid(y_true, p10, p90)
    return float(np.mean((y >= lo) & (y <= hi)))


# --- trajectory --------------------------------------------------------------------------------


def ade(pred: np.ndarray, true: np.ndarray) -> float:
    """Average displacement error: mean over windows and horizons of the Euclidean distance
    between predicted and true positions ([N, H, 2], metres)."""
    p, t = _valid(pred, true)
    return float(np.linalg.norm(p - t, axis=-1).mean())


def fde(pred: np.ndarray, true: np.ndarray) -> float:
    """Final displacement error: at the last horizon only."""
    p, t = _valid(pred, true)
    return float(np.linalg.norm(p[:, -1] - t[:, -1], axis=-1).mean())


def ade_ratio(pred: np.ndarray, true: np.ndarray, baseline: np.ndarray) -> float:
    """The model's ADE over the baseline's, on the windows where all three exist."""
    p, t, b = _valid(pred, true, baseline)
    return ade(p, t) / ade(b, t)


# --- payload and adaptation -----------------------------------------------------------------------


def payload_mae_pct(pred_t: np.ndarray, true_t: np.ndarray, capacity_t: np.ndarray) -> float:
    """Mean absolute error as % of each truck's rated payload."""
    p, t, c = _valid(pred_t, true_t, np.broadcast_to(capacity_t, np.shape(true_t)))
    return float(np.mean(np.abs(p - t) / c) * 100.0)


def l1_gain(errors_l1: Mapping[str, float], errors_l0: Mapping[str, float]) -> float:
    """Mean relative error reduction of L1 against L0 over the tasks both were scored on
    (same heads, same data budget; each error lower-is-better)."""
    # A task L0 already solves perfectly (error 0) has no relative gain to measure.
    tasks = sorted(t for t in set(errors_l1) & set(errors_l0) if errors_l0[t] > 0)
    if not tasks:
        raise ValueError("no task scored for both L1 and L0 with an L0 error above zero")
    return float(np.mean([relative_gain(errors_l1[t], errors_l0[t]) for t in tasks]))
