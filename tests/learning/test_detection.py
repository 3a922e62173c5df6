"""The fault decision rule: runs of confident decisions per truck become alarms."""

from __future__ import annotations

import numpy as np

from fleet.learning.pipeline.detection import DecisionRule, choose_rule, detections, run_lengths
from fleet.learning.pipeline.evaluation import FaultEvent

CLASSES = ("normal", "overheating", "tyre_leak")


def test_run_lengths_count_positive_decisions_in_a_row_per_truck_in_any_order():
    unit = np.array([1, 1, 1, 1, 2, 2, 2])
    time = np.array([0, 10, 20, 30, 0, 10, 20])
    positive = np.array([1, 1, 0, 1, 1, 1, 1], dtype=bool)
    order = np.random.default_rng(0).permutation(7)
    runs = run_lengths(unit[order], time[order], positive[order])
    np.testing.assert_array_equal(runs[np.argsort(order)], [1, 2, 0, 1, 1, 2, 3])


def _stream(probs_tyre: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(probs_tyre)
    probs = np.zeros((n, 3))
    probs[:, 2] = probs_tyre
    probs[:, 0] = 1 - probs[:, 2]
    return np.zeros(n, dtype=int), np.arange(n) * 10.0, probs


def test_an_alarm_needs_the_configured_number_of_confident_decisions_in_a_row():
    unit, time, probs = _stream([0.95, 0.2, 0.95, 0.95, 0.95])
    alarms = detections(unit, time, probs, CLASSES, DecisionRule(0.9, 2))
    assert [(a.kind, a.start_s) for a in alarms] == [("tyre_leak", 30.0)]
    alarms = detections(unit, time, probs, CLASSES, DecisionRule(0.9, 1))
    assert [a.start_s for a in alarms] == [0.0]  # one episode: the gap is under two minutes


def test_overlapping_faults_each_raise_their_own_alarm():
    unit, time, probs = _stream([0.95] * 4)
    probs[:, 1] = 0.97  # overheating at the same time (multi-label probabilities)
    alarms = detections(unit, time, probs, CLASSES, DecisionRule(0.9, 1))
    assert sorted(a.kind for a in alarms) == ["overheating", "tyre_leak"]


def test_the_rule_is_chosen_for_the_best_event_f1_on_validation():
    unit, time, probs = _stream([0.75] * 10 + [0.0] * 20 + [0.96] * 10)
    events = [FaultEvent(1, 0, "tyre_leak", 300.0, 400.0)]  # the first burst is a false alarm
    rule, score = choose_rule(events, unit, time, probs, CLASSES)
    assert rule.threshold >= 0.75
    assert score.f1 == 1.0
