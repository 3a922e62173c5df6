"""Celery tasks of control: plain data in, the work is in the services."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from fleet.control import collision_services, dispatching, traffic_services, zones
from fleet.control.services import expire_commands


@shared_task(name="control.expire_commands")
def expire_commands_task() -> int:
    return expire_commands()


@shared_task(name="control.complete_zone_deletions")
def complete_zone_deletions() -> list[str]:
    """Finish zones whose deletion every machine asked confirmed or that timed out; their ids."""
    timeout = timedelta(seconds=settings.ZONE_DELETE_TIMEOUT_S)
    return [str(zone.id) for zone in zones.complete_zone_deletions(timeout=timeout)]


@shared_task(name="control.reconcile_zone_sets")
def reconcile_zone_sets() -> int:
    """Re-synchronise connected machines whose reported zones differ from the desired ones."""
    settle = timedelta(seconds=settings.ZONE_RESYNC_SETTLE_S)
    return len(zones.reconcile_zone_sets(settle=settle))


@shared_task(name="control.replan_dispatch")
def replan_dispatch() -> list[int]:
    """Re-plan every dispatched site whose flow plan is older than DISPATCH_REPLAN_S."""
    return [plan.pk for plan in dispatching.replan_due_sites()]


@shared_task(name="control.assess_collision_risk", ignore_result=True, expires=2)
def assess_collision_risk() -> int:
    """Collision risk on every active site (beat, every second); how many risks are open.
    Expires: a run that waited two seconds in the queue is already out of date."""
    from fleet.mine.models import Site

    return sum(
        collision_services.assess_collision_risk(site).risks
        for site in Site.objects.filter(active=True)
    )


@shared_task(name="control.sweep_traffic")
def sweep_traffic() -> int:
    """Traffic permissions: unused grants expire, waiting bounds are enforced (every ~2 s)."""
    return traffic_services.sweep()
