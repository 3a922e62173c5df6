"""From the fault head's per-window probabilities to alarms: the decision rule.

The head says, every decision (a window every 10 s per truck), how likely each fault class is
active. An alarm of a kind is raised when that kind's probability stays above the kind's
threshold for ``consecutive`` decisions of the same truck in a row: one confident window is not
enough, a run of them is. Each kind has its own threshold (``thresholds``, falling back to the
one ``threshold``): the cut that finds brake fades need not suit overheating. All are chosen on
the validation site D (never on the held-out site) and travel with the head in its manifest, so
the control room raises alarms exactly as the figures were measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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


REFINE_PASSES = 2


@dataclass(frozen=True)
class DecisionRule:
    """``threshold`` for every kind but those ``thresholds`` names (per-kind overrides; empty in
    the manifests written before there were any, which still load: ``DecisionRule(**d)``)."""

    threshold: float = 0.9
    consecutive: int = 2
    thresholds: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        overrides = {str(k): float(v) for k, v in sorted((self.thresholds or {}).items())}
        object.__setattr__(self, "thresholds", overrides)

    def __hash__(self) -> int:
        return hash((self.threshold, self.consecutive, tuple(self.thresholds.items())))

    def threshold_for(self, kind: str) -> float:
        return self.thresholds.get(kind, self.threshold)

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "consecutive": self.consecutive,
            "thresholds": dict(self.thresholds),
        }


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


def _kind_detections(
    unit: np.ndarray, time_s: np.ndarray, prob: np.ndarray, kind: str, threshold: float, run: int
) -> list[Detection]:
    """The alarm episodes of one kind: its probability above ``threshold`` ``run`` times in a
    row (episodes are per truck and kind, so the kinds' episodes simply add up)."""
    fired = run_lengths(unit, time_s, prob > threshold) >= run
    return alarm_episodes(unit[fired], time_s[fired], np.full(int(fired.sum()), kind))


def _in_order(found: Sequence[Detection]) -> list[Detection]:
    return sorted(found, key=lambda d: (d.start_s, d.unit, d.kind))


def detections(
    unit: np.ndarray,
    time_s: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    rule: DecisionRule,
    normal_class: str = "normal",
) -> list[Detection]:
    """Alarm episodes raised by ``rule`` from per-decision class probabilities [N, K], each
    kind at its own threshold."""
    found: list[Detection] = []
    for k, name in enumerate(classes):
        if name == normal_class:
            continue
        found += _kind_detections(
            unit, time_s, probs[:, k], name, rule.threshold_for(name), rule.consecutive
        )
    return _in_order(found)


def _delay(score: FaultScore) -> float:
    return score.delay_s if np.isfinite(score.delay_s) else np.inf


def choose_rule(
    events: Sequence[FaultEvent],
    unit: np.ndarray,
    time_s: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    normal_class: str = "normal",
    passes: int = REFINE_PASSES,
) -> tuple[DecisionRule, FaultScore]:
    """The rule with the best event F1 on a validation stream.

    First one threshold for every kind and the run length, over THRESHOLDS x CONSECUTIVE (ties:
    the shorter delay). Then a threshold per kind, by coordinate ascent: kind after kind (in
    ``classes`` order), every threshold of THRESHOLDS with the other kinds' held, the run length
    kept; a kind's threshold changes only when the overall event F1 improves (ties: fewer false
    alarms, then the shorter delay). At most ``passes`` rounds over the kinds, fewer when one
    changes nothing. Deterministic; each kind's episodes at each threshold are computed once."""
    best: tuple[tuple[float, float], DecisionRule, FaultScore] | None = None
    for threshold in THRESHOLDS:
        for consecutive in CONSECUTIVE:
            rule = DecisionRule(threshold, consecutive)
            score = score_faults(events, detections(unit, time_s, probs, classes, rule))
            key = (score.f1, -_delay(score))
            if best is None or key > best[0]:
                best = (key, rule, score)
    if best is None:  # only with empty THRESHOLDS or CONSECUTIVE
        raise ValueError("no decision rule to choose from")
    _, rule, score = best

    kinds = [(k, name) for k, name in enumerate(classes) if name != normal_class]
    cache: dict[tuple[str, float], list[Detection]] = {}

    def episodes(k: int, name: str, threshold: float) -> list[Detection]:
        if (name, threshold) not in cache:
            cache[(name, threshold)] = _kind_detections(
                unit, time_s, probs[:, k], name, threshold, rule.consecutive
            )
        return cache[(name, threshold)]

    def key_of(s: FaultScore) -> tuple[float, int, float]:
        return (s.f1, -s.fp, -_delay(s))

    chosen = {name: rule.threshold for _, name in kinds}
    best_key = key_of(score)
    for _ in range(passes):
        changed = False
        for k, name in kinds:
            others = [
                d for j, other in kinds if other != name for d in episodes(j, other, chosen[other])
            ]
            pick: tuple[tuple[float, int, float], float, FaultScore] | None = None
            for threshold in THRESHOLDS:
                if threshold == chosen[name]:
                    continue
                candidate = score_faults(events, _in_order(others + episodes(k, name, threshold)))
                key = key_of(candidate)
                if key > best_key and (pick is None or key > pick[0]):
                    pick = (key, threshold, candidate)
            if pick is not None:
                best_key, chosen[name], score = pick
                changed = True
        if not changed:
            break
    overrides = {name: t for name, t in chosen.items() if t != rule.threshold}
    return DecisionRule(rule.threshold, rule.consecutive, overrides), score
