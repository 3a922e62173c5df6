"""From the fault head's per-window probabilities to alarms: the decision rule.

The head says, every decision (a window every 10 s per truck), how likely each fault class is
active. An alarm of a kind is raised when that kind's probability stays above ``threshold`` for
``consecutive`` decisions of the same truck in a row: one confident window is not enough, a
run of them is. Both numbers are chosen on the validation split (never on the held-out site)
and travel with the head in its manifest, so the control room raises alarms exactly as the
figures were measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from fleet.learning.pipeline.evaluation import (
    Detection,
    FaultEvent,
    FaultScore,
    alarm_episodes,
    score_faults,
)

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)
CONSECUTIVE = (1, 2, 3)


@dataclass(frozen=True)
class DecisionRule:
    threshold: float = 0.9
    consecutive: int = 2

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def run_lengths(unit: np.ndarray, time_s: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """[N]: how many positive decisions of the same truck in a row end at each decision
    (0 where it is negative); decisions need not be sorted."""
    order = np.lexsort((time_s, unit))
    pos, u = positive[order], unit[order]
    index = np.arange(len(pos))
    first_of_unit = np.concatenate([[True], u[1:] != u[:-1]]) if len(u) else np.zeros(0, bool)
    # The last index at which a run was broken: a negative decision, or just before a truck's
    # first decision.
    marker = np.where(~pos, index, -1)
    marker = np.where(first_of_unit, np.maximum(marker, index - 1), marker)
    last_break = np.maximum.accumulate(marker) if len(marker) else marker
    runs = np.where(pos, index - last_break, 0)
    out = np.empty_like(runs)
    out[order] = runs
    return out


def detections(
    unit: np.ndarray,
    time_s: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    rule: DecisionRule,
    normal_class: str = "normal",
) -> list[Detection]:
    """Alarm episodes raised by ``rule`` from per-decision class probabilities [N, K]."""
    units, times, kinds = [], [], []
    for k, name in enumerate(classes):
        if name == normal_class:
            continue
        fired = run_lengths(unit, time_s, probs[:, k] > rule.threshold) >= rule.consecutive
        units.append(unit[fired])
        times.append(time_s[fired])
        kinds.append(np.full(int(fired.sum()), name))
    if not units:
        return []
    return alarm_episodes(np.concatenate(units), np.concatenate(times), np.concatenate(kinds))


def choose_rule(
    events: Sequence[FaultEvent],
    unit: np.ndarray,
    time_s: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
) -> tuple[DecisionRule, FaultScore]:
    """The rule with the best event F1 on a validation stream (ties: the shorter delay)."""
    best: tuple[tuple[float, float], DecisionRule, FaultScore] | None = None
    for threshold in THRESHOLDS:
        for consecutive in CONSECUTIVE:
            rule = DecisionRule(threshold, consecutive)
            score = score_faults(events, detections(unit, time_s, probs, classes, rule))
            delay = score.delay_s if np.isfinite(score.delay_s) else np.inf
            key = (score.f1, -delay)
            if best is None or key > best[0]:
                best = (key, rule, score)
    if best is None:  # only with empty THRESHOLDS or CONSECUTIVE
        raise ValueError("no decision rule to choose from")
    return best[1], best[2]
