"""Celery tasks of the mine map: plain data in, the work is in services."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from fleet.mine import services


@shared_task(name="mine.complete_zone_deletions")
def complete_zone_deletions() -> list[str]:
    """Finish zones whose deletion every truck confirmed or that timed out; returns their ids."""
    timeout = timedelta(seconds=settings.ZONE_DELETE_TIMEOUT_S)
    return [str(zone.id) for zone in services.complete_zone_deletions(timeout=timeout)]
