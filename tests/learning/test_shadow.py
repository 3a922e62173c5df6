"""The live figures' labels as they arrive: a version's ETA answers scored against the arrivals
the haul cycles tell, and the admin's promotion refused to anyone without the permission."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleet.learning import shadow
from fleet.learning.features import FAULT_CLASSES
from fleet.telemetry.models import HaulCycle
from tests.factories import haul_truck

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def test_eta_answers_are_scored_against_the_haul_cycles_arrivals(site):
    truck = haul_truck(site)
    # Loading at 8:00 (60 s), hauling 600 s: the dump is reached at 8:11; next loading 8:20.
    HaulCycle.objects.create(
        equipment=truck, started_at=T0, ended_at=T0 + timedelta(minutes=20), load_s=60, haul_s=600
    )
    HaulCycle.objects.create(
        equipment=truck,
        started_at=T0 + timedelta(minutes=20),
        ended_at=T0 + timedelta(minutes=40),
        load_s=60,
        haul_s=600,
    )
    answer = {"p10_s": 250.0, "p50_s": 300.0, "p90_s": 350.0}
    rows = [
        # 8:06 -> the dump at 8:11 (300 s): exact, inside [P10, P90].
        (truck.id, T0 + timedelta(minutes=6), answer, 1.0, 0.5, T0),
        # 8:15 -> the next loading at 8:20 (300 s) too.
        (truck.id, T0 + timedelta(minutes=15), answer, 1.0, 0.5, T0),
        # 8:29 -> the dump at 8:31 (120 s): 180 s off, outside.
        (truck.id, T0 + timedelta(minutes=29), answer, 1.0, 0.5, T0),
        # 8:45: the stop it drives to is no cycle yet (no label yet): not scored.
        (truck.id, T0 + timedelta(minutes=45), answer, 1.0, 0.5, T0),
    ]
    figures = shadow._eta_figures(rows)
    assert figures == {"labelled": 3, "mae_s": 60.0, "coverage": pytest.approx(2 / 3, abs=1e-3)}


# A fault version calibrated with a threshold of its own for brake fade (chosen on site D).
PER_KIND = {"threshold": 0.9, "consecutive": 1, "thresholds": {"brake_fade": 0.6}}
ONE = {"threshold": 0.9, "consecutive": 1}  # a version from before per-kind thresholds


def fault_answer(rule: dict, **probabilities: float) -> dict:
    return {"probabilities": {k: probabilities.get(k, 0.01) for k in FAULT_CLASSES}, "rule": rule}


def test_a_fault_versions_live_figures_use_each_kinds_own_threshold(site):
    truck = haul_truck(site)
    rows = [
        (
            truck.id,
            T0 + timedelta(seconds=10 * i),
            fault_answer(PER_KIND, brake_fade=0.7 if i < 3 else 0.01, overheating=0.8),
            1.0,
            0.5,
            T0 + timedelta(seconds=10 * i + 1),
        )
        for i in reversed(range(6))  # newest first, as read
    ]
    figures = shadow._fault_figures(rows, T0, T0 + timedelta(minutes=1))
    # Brake fade above its own 0.6 in three windows; overheating's 0.8 is under the one 0.9.
    assert figures["positive_rate"] == 0.5
    assert figures["alarms"] == 1
    assert (figures["threshold"], figures["thresholds"]) == (0.9, {"brake_fade": 0.6})


def test_a_fault_answer_names_the_likeliest_kind_above_its_own_threshold(site):
    truck = haul_truck(site)
    assert shadow._fault_decision(fault_answer(PER_KIND, brake_fade=0.7, overheating=0.8)) == (
        "brake_fade"  # overheating is likelier, but under its threshold (the one 0.9)
    )
    assert shadow._fault_decision(fault_answer(PER_KIND, brake_fade=0.7, overheating=0.95)) == (
        "overheating"
    )
    champion = [(truck.id, T0, fault_answer(ONE, brake_fade=0.7), 1.0, 0.5, T0)]
    challenger = [(truck.id, T0, fault_answer(PER_KIND, brake_fade=0.7), 1.0, 0.5, T0)]
    # The champion says normal (0.7 under its one 0.9), the challenger brake fade.
    assert shadow.agreement("fault", champion, challenger) == {"pairs": 1, "same_decision": 0.0}


def test_only_a_supervisor_may_promote_from_the_shadow_page(client, operator):
    operator.is_staff = True  # let into the admin: reading, not promoting
    operator.save(update_fields=["is_staff"])
    client.force_login(operator)
    assert client.get("/admin/learning/modelversion/shadow/").status_code == 200
    assert client.post("/admin/learning/modelversion/shadow/fault/promote/").status_code == 403
