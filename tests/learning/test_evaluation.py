"""The metric definitions, pinned by cases small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fleet.learning.pipeline.evaluation import (
    GRACE_S,
    Detection,
    FaultEvent,
    ade,
    ade_ratio,
    alarm_episodes,
    coverage,
    eta_gain,
    fde,
    l1_gain,
    lead_times,
    median_lead_s,
    payload_mae_pct,
    score_faults,
)

LEAK = FaultEvent(event=1, unit=5, kind="tyre_leak", onset_s=1000.0, end_s=3000.0)
HOT = FaultEvent(event=2, unit=6, kind="overheating", onset_s=500.0, end_s=900.0)


def test_a_detection_inside_the_event_is_a_true_positive_with_its_delay():
    score = score_faults([LEAK], [Detection(5, "tyre_leak", 1060.0)])
    assert (score.tp, score.fp, score.fn) == (1, 0, 0)
    assert score.f1 == 1.0 and score.delay_s == 60.0


def test_a_detection_before_the_onset_is_a_false_positive_not_an_early_hit():
    score = score_faults([LEAK], [Detection(5, "tyre_leak", 999.0)])
    assert (score.tp, score.fp, score.fn) == (0, 1, 1)
    assert score.f1 == 0.0 and math.isnan(score.delay_s)


def test_two_detections_in_one_event_count_once_and_the_first_sets_the_delay():
    score = score_faults(
        [LEAK], [Detection(5, "tyre_leak", 2000.0), Detection(5, "tyre_leak", 1500.0)]
    )
    assert (score.tp, score.fp) == (1, 0)
    assert score.delay_s == 500.0


def test_the_grace_period_after_the_end_still_counts_and_beyond_it_is_false():
    inside = Detection(6, "overheating", HOT.end_s + GRACE_S)
    beyond = Detection(6, "overheating", HOT.end_s + GRACE_S + 1)
    assert score_faults([HOT], [inside]).tp == 1
    score = score_faults([HOT], [beyond])
    assert (score.tp, score.fp, score.fn) == (0, 1, 1)


def test_a_detection_on_another_truck_or_of_another_kind_is_false():
    wrong_truck = Detection(6, "tyre_leak", 1100.0)
    wrong_kind = Detection(5, "overheating", 1100.0)
    score = score_faults([LEAK], [wrong_truck, wrong_kind])
    assert (score.tp, score.fp, score.fn) == (0, 2, 1)
    # A detector that names no kind can be scored without it.
    assert score_faults([LEAK], [wrong_kind], match_kind=False).tp == 1


def test_precision_recall_and_f1_over_several_events():
    events = [LEAK, HOT]
    detections = [
        Detection(5, "tyre_leak", 1200.0),  # TP
        Detection(6, "tyre_leak", 50.0),  # FP
        Detection(9, "overheating", 50.0),  # FP
    ]
    score = score_faults(events, detections)
    assert (score.tp, score.fp, score.fn) == (1, 2, 1)
    assert score.precision == pytest.approx(1 / 3) and score.recall == pytest.approx(1 / 2)
    assert score.f1 == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert score.false_alarms == detections[1:]


def test_overlapping_events_of_one_kind_are_matched_earliest_first():
    first = FaultEvent(1, 5, "tyre_leak", 100.0, 1000.0)
    second = FaultEvent(2, 5, "tyre_leak", 900.0, 2000.0)
    score = score_faults([first, second], [Detection(5, "tyre_leak", 950.0)])
    assert score.detected_at == {1: 950.0}


def test_positive_decisions_close_together_are_one_alarm_episode():
    unit = np.array([5, 5, 5, 5, 5, 6])
    time_s = np.array([100.0, 110.0, 200.0, 400.0, 120.0, 100.0])
    kind = np.array(["tyre_leak", "tyre_leak", "tyre_leak", "tyre_leak", "normal", ""])
    episodes = alarm_episodes(unit, time_s, kind, merge_gap_s=120.0)
    assert [(d.unit, d.kind, d.start_s) for d in episodes] == [
        (5, "tyre_leak", 100.0),  # 100, 110, 200: gaps under 120 s
        (5, "tyre_leak", 400.0),  # 200 s after the last one: a new alarm
    ]


def test_an_alarm_that_started_before_the_onset_does_not_detect_the_fault():
    decisions = alarm_episodes(
        np.array([5, 5, 5]), np.array([990.0, 1000.0, 1010.0]), np.array(["tyre_leak"] * 3)
    )
    score = score_faults([LEAK], decisions)
    assert (score.tp, score.fp, score.fn) == (0, 1, 1)


def test_the_lead_is_how_much_earlier_the_model_detects_the_same_fault():
    other = FaultEvent(3, 7, "tyre_leak", 0.0, 5000.0)
    model = score_faults(
        [LEAK, HOT, other],
        [Detection(5, "tyre_leak", 1100.0), Detection(6, "overheating", 700.0)],
    )
    alarms = score_faults(
        [LEAK, HOT, other],
        [
            Detection(5, "tyre_leak", 2900.0),
            Detection(6, "overheating", 650.0),
            Detection(7, "tyre_leak", 100.0),
        ],
    )
    assert sorted(lead_times(model, alarms).tolist()) == [-50.0, 1800.0]
    assert median_lead_s(model, alarms) == pytest.approx(875.0)


def test_eta_gain_compares_mean_absolute_errors_of_the_p50():
    y = np.array([100.0, 200.0, 300.0, np.nan])
    model = np.array([110.0, 190.0, 300.0, 0.0])  # MAE 20/3
    base = np.array([80.0, 220.0, 320.0, 0.0])  # MAE 20
    assert eta_gain(y, model, base) == pytest.approx(1 - (20 / 3) / 20)


def test_coverage_is_the_share_inside_p10_to_p90_inclusive():
    y = np.array([1.0, 5.0, 10.0, 11.0])
    assert coverage(y, np.full(4, 1.0), np.full(4, 10.0)) == 0.75


def test_ade_averages_over_horizons_and_fde_takes_the_last():
    true = np.zeros((2, 3, 2))
    pred = np.zeros((2, 3, 2))
    pred[0, :, 0] = [3.0, 0.0, 0.0]
    pred[1, 2] = [3.0, 4.0]  # 5 m off at the last horizon
    assert ade(pred, true) == pytest.approx((3 + 5) / 6)
    assert fde(pred, true) == pytest.approx(5 / 2)
    assert ade_ratio(pred, true, 2 * pred) == pytest.approx(0.5)
    true[1] = np.nan  # an undefined target is left out
    assert ade(pred, true) == pytest.approx(1.0)


def test_payload_error_is_a_share_of_the_rated_payload():
    assert payload_mae_pct(np.array([88.2, 91.8]), np.array([90.0, 90.0]), 90.0) == pytest.approx(
        2.0
    )


def test_l1_gain_is_the_mean_relative_error_reduction_over_tasks():
    gain = l1_gain({"eta": 8.0, "payload": 1.0}, {"eta": 10.0, "payload": 1.0, "traj": 3.0})
    assert gain == pytest.approx(0.1)
    with pytest.raises(ValueError):
        l1_gain({"eta": 1.0}, {"traj": 1.0})
