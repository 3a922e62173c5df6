"""Retention of live predictions: the hourly purge keeps the last PREDICTION_RETENTION_DAYS."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from fleet.learning import tasks
from fleet.learning.models import Prediction
from tests.factories import haul_truck

pytestmark = pytest.mark.django_db


def prediction(truck, age: timedelta, head: str = "payload") -> Prediction:
    return Prediction.objects.create(
        equipment=truck,
        model_name=head,
        model_id=f"{head}@1",
        window_end=timezone.now() - age,
        outputs={"tonnes": 90.0},
    )


def test_the_purge_deletes_only_predictions_older_than_the_retention(site, settings):
    settings.PREDICTION_RETENTION_DAYS = 7
    truck = haul_truck(site)
    old = [prediction(truck, timedelta(days=7, minutes=1)), prediction(truck, timedelta(days=30))]
    kept = [
        prediction(truck, timedelta(days=6, hours=23)),
        prediction(truck, timedelta(seconds=10), head="fault"),
    ]

    assert tasks.purge_predictions() == len(old)

    remaining = set(Prediction.objects.values_list("pk", flat=True))
    assert remaining == {p.pk for p in kept}


def test_the_purge_works_in_batches_until_nothing_old_is_left(site, monkeypatch):
    monkeypatch.setattr(tasks, "PURGE_BATCH", 2)
    truck = haul_truck(site)
    for minutes in range(5):
        prediction(truck, timedelta(days=3, minutes=minutes))
    fresh = prediction(truck, timedelta(hours=1))

    assert tasks.purge_predictions(days=2) == 5
    assert list(Prediction.objects.values_list("pk", flat=True)) == [fresh.pk]


def test_the_purge_is_scheduled_hourly_by_beat():
    entry = next(
        e
        for e in settings.CELERY_BEAT_SCHEDULE.values()
        if e["task"] == tasks.purge_predictions.name
    )
    assert entry["schedule"] == 3600.0
    assert settings.PREDICTION_RETENTION_DAYS >= 1


def test_the_purge_finds_old_rows_by_the_window_end_index(site):
    """Cheap however large the table: the oldest rows are found by the index, not a scan."""
    truck = haul_truck(site)
    prediction(truck, timedelta(days=10))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT id FROM learning_prediction WHERE window_end < now() LIMIT 10"
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "learning_pred_window_end" in plan
