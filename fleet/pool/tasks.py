"""Celery tasks of the pool's Django side."""

from __future__ import annotations

import logging

from celery import shared_task

from fleet.pool import services

log = logging.getLogger(__name__)


@shared_task(name="pool.sample_utilisation")
def sample_utilisation() -> int:
    """Every minute (beat): the pool's utilisation into PostgreSQL. A pool whose Redis is away
    is a gap in the series, not a failure."""
    try:
        return services.sample_utilisation()
    except services.PoolUnavailable as error:
        log.warning("pool utilisation not sampled: %s", error)
        return 0
