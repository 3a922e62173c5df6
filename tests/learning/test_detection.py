"""The fault decision rule: runs of confident decisions per truck become alarms."""

from __future__ import annotations

import numpy as np

from fleet.learning.pipeline.detection import DecisionRule, choose_rule, detections, run_lengths
from fleet.learning.pipeline.evaluation import FaultEvent, score_faults

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
    assert rule.thresholds == {}  # no kind's own threshold does better than the one


def test_a_rule_round_trips_through_its_manifest_form_and_old_manifests_still_load():
    rule = DecisionRule(0.9, 2, {"brake_fade": 0.7})
    assert rule.as_dict() == {"threshold": 0.9, "consecutive": 2, "thresholds": {"brake_fade": 0.7}}
    assert DecisionRule(**rule.as_dict()) == rule
    assert hash(DecisionRule(**rule.as_dict())) == hash(rule)
    assert rule.threshold_for("brake_fade") == 0.7 and rule.threshold_for("overheating") == 0.9
    old = DecisionRule(**{"threshold": 0.85, "consecutive": 3})  # a manifest from before
    assert old.thresholds == {} and old.threshold_for("brake_fade") == 0.85


def test_each_kind_raises_alarms_at_its_own_threshold():
    unit, time, probs = _stream([0.95] * 4)
    probs[:, 1] = 0.95  # overheating as likely as the tyre leak
    rule = DecisionRule(0.9, 1, {"tyre_leak": 0.97})
    assert [a.kind for a in detections(unit, time, probs, CLASSES, rule)] == ["overheating"]


KINDS = ("normal", "overheating", "brake_fade")


def _two_trucks() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[FaultEvent]]:
    """Truck 0 has a brake fade the head is only 0.78 sure of; truck 1 an overheating it is 0.97
    sure of, and later a burst of overheating noise at 0.9: no one threshold finds the fade
    without the false alarm, a threshold per kind does."""
    n = 200  # decisions per truck, every 10 s
    time = np.tile(np.arange(n) * 10.0, 2)
    unit = np.repeat([0, 1], n)
    probs = np.zeros((2 * n, 3))
    t = time[:n]
    fault = (t >= 500) & (t < 700)
    probs[:n, 2] = np.where(fault, 0.78, 0.01)
    probs[n:, 1] = np.where(fault, 0.97, np.where((t >= 1500) & (t < 1600), 0.9, 0.01))
    probs[:, 0] = 1 - probs[:, 1:].max(axis=1)
    events = [
        FaultEvent(0, 0, "brake_fade", 500.0, 800.0),
        FaultEvent(1, 1, "overheating", 500.0, 800.0),
    ]
    return unit, time, probs, events


def test_a_kind_whose_scores_need_another_cut_gets_its_own_threshold():
    unit, time, probs, events = _two_trucks()
    one = score_faults(events, detections(unit, time, probs, KINDS, DecisionRule(0.5, 1)))
    assert (one.tp, one.fp) == (2, 1)  # the one threshold that finds the fade: a false alarm

    rule, score = choose_rule(events, unit, time, probs, KINDS)

    assert (rule.threshold, rule.consecutive) == (0.5, 1)  # the one threshold's grid, as before
    assert rule.thresholds == {"overheating": 0.9}  # the noise (0.9) is not above 0.9
    assert (score.f1, score.tp, score.fp) == (1.0, 2, 0)
    # The score returned is the rule's own, as detections raise its alarms.
    again = score_faults(events, detections(unit, time, probs, KINDS, rule))
    assert (again.f1, again.fp, again.delay_s) == (score.f1, score.fp, score.delay_s)
    # Deterministic.
    assert choose_rule(events, unit, time, probs, KINDS)[0] == rule
