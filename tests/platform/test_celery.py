"""A real Celery worker on the configured broker (RabbitMQ where it runs) runs the map's tasks."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.gis.geos import Polygon
from django.utils import timezone

from fleet.control.tasks import complete_zone_deletions
from fleet.mine import services
from fleet.mine.models import PolicyZone
from tests.factories import LAT0, LON0, square


def test_a_worker_finishes_a_zone_deletion_that_timed_out(celery_worker_process, site):
    zone = services.activate_zone(
        services.create_zone(
            site=site,
            name="Blast area",
            geometry=Polygon(square(LON0, LAT0, 0.0004), srid=4326),
            policies={"exclusion": {}},
        )
    )
    services.request_zone_deletion(zone)
    PolicyZone.objects.filter(pk=zone.pk).update(
        delete_requested_at=timezone.now() - timedelta(hours=1)
    )

    result = complete_zone_deletions.delay()
    finished = result.get(timeout=60)

    assert finished == [str(zone.id)], celery_worker_process.output()
    zone.refresh_from_db()
    assert zone.status == PolicyZone.Status.DELETED
