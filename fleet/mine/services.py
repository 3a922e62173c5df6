"""Changing the mine map: zone lifecycle and road-network revisions.

Zones are never edited in place (ISO 23725): a change is a new zone that replaces the old one.
Lifecycle: Pending -> Active -> Pending Delete -> Deleted. Every change is broadcast to the
site's live clients after the commit.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import User
from django.contrib.gis.geos import GEOSGeometry
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from fleet.live.broadcast import broadcast_on_commit
from fleet.mine import signals
from fleet.mine.models import PolicyZone, RoadNetwork, Site

Status = PolicyZone.Status


def _zone_changed(zone: PolicyZone) -> None:
    broadcast_on_commit(
        zone.site_id,
        "zone.changed",
        {"id": str(zone.id), "name": zone.name, "status": zone.status},
    )


def _tell_on_commit(signal: Any, zone: PolicyZone) -> None:
    transaction.on_commit(lambda: signal.send(sender=PolicyZone, zone_id=zone.id))


def _require(zone: PolicyZone, allowed: set[str], action: str) -> None:
    if zone.status not in allowed:
        raise ValidationError(
            f"cannot {action} zone {zone.name!r}: it is {zone.get_status_display()}"
        )


@transaction.atomic
def create_zone(
    *,
    site: Site,
    name: str,
    geometry: GEOSGeometry,
    policies: Any,
    created_by: User | None = None,
    replaces: PolicyZone | None = None,
    zone_id: uuid.UUID | None = None,
) -> PolicyZone:
    """A new Pending zone, validated (geometry and policies) before anything is stored."""
    if replaces is not None:
        _require(replaces, {Status.PENDING, Status.ACTIVE}, "replace")
        if replaces.site_id != site.id:
            raise ValidationError("a zone can only replace a zone of the same site")
    zone = PolicyZone(
        id=zone_id or uuid.uuid4(),
        site=site,
        name=name,
        geometry=geometry,
        policies=policies,
        created_by=created_by,
        replaces=replaces,
    )
    zone.full_clean()
    zone.save()
    _zone_changed(zone)
    return zone


@transaction.atomic
def draw_zone(
    *,
    site: Site,
    name: str,
    geometry: GEOSGeometry,
    policies: Any,
    reason: str,
    created_by: User | None = None,
) -> PolicyZone:
    """A zone drawn in the control room and put in force at once (closing a road cannot wait
    for a second step): created and activated in one transaction, so an invalid zone or a
    refused activation leaves nothing behind."""
    zone = create_zone(
        site=site, name=name, geometry=geometry, policies=policies, created_by=created_by
    )
    return activate_zone(zone, reason=reason)


@transaction.atomic
def activate_zone(zone: PolicyZone, *, reason: str = "") -> PolicyZone:
    """Pending -> Active. A zone that replaces another retires it in the same transaction.
    ``reason`` travels with the activation to the trucks and stays on the zone."""
    zone = PolicyZone.objects.select_for_update().get(pk=zone.pk)
    _require(zone, {Status.PENDING}, "activate")
    zone.status = Status.ACTIVE
    zone.activated_at = timezone.now()
    zone.reason = reason
    zone.save(update_fields=["status", "activated_at", "reason"])
    _zone_changed(zone)
    _tell_on_commit(signals.zone_activated, zone)
    if zone.replaces_id:
        old = PolicyZone.objects.get(pk=zone.replaces_id)
        if old.status in {Status.PENDING, Status.ACTIVE}:
            request_zone_deletion(old)
    return zone


@transaction.atomic
def request_zone_deletion(zone: PolicyZone, *, reason: str = "") -> PolicyZone:
    """Active -> Pending Delete (no longer in the zone set trucks are re-synchronised to); a
    Pending zone that no truck has seen is deleted at once."""
    zone = PolicyZone.objects.select_for_update().get(pk=zone.pk)
    _require(zone, {Status.PENDING, Status.ACTIVE}, "delete")
    now = timezone.now()
    zone.delete_requested_at = now
    zone.delete_reason = reason
    if zone.status == Status.PENDING:
        zone.status, zone.deleted_at = Status.DELETED, now
    else:
        zone.status = Status.PENDING_DELETE
        _tell_on_commit(signals.zone_deletion_requested, zone)
    zone.save(update_fields=["status", "delete_requested_at", "deleted_at", "delete_reason"])
    _zone_changed(zone)
    return zone


@transaction.atomic
def confirm_zone_deleted(zone: PolicyZone, *, unanswered: list[str] | None = None) -> PolicyZone:
    """Pending Delete -> Deleted, once the trucks have dropped it, or at the deadline with the
    names of the machines that had not answered (``unanswered``)."""
    zone = PolicyZone.objects.select_for_update().get(pk=zone.pk)
    _require(zone, {Status.PENDING_DELETE}, "confirm deletion of")
    zone.status, zone.deleted_at = Status.DELETED, timezone.now()
    zone.unanswered = sorted(unanswered or [])
    zone.save(update_fields=["status", "deleted_at", "unanswered"])
    _zone_changed(zone)
    return zone


@transaction.atomic
def activate_road_network(network: RoadNetwork) -> RoadNetwork:
    """Make a revision the site's active road network; the previous one is retired."""
    network = RoadNetwork.objects.select_for_update().get(pk=network.pk)
    if network.status == RoadNetwork.Status.RETIRED:
        raise ValidationError(f"revision {network.revision} is retired; copy it to a new revision")
    if not network.ways.exists():
        raise ValidationError(f"revision {network.revision} has no ways")
    RoadNetwork.objects.filter(site=network.site, status=RoadNetwork.Status.ACTIVE).exclude(
        pk=network.pk
    ).update(status=RoadNetwork.Status.RETIRED)
    network.status = RoadNetwork.Status.ACTIVE
    network.activated_at = timezone.now()
    network.save(update_fields=["status", "activated_at"])
    broadcast_on_commit(
        network.site_id, "roads.changed", {"revision": network.revision, "id": network.pk}
    )
    return network
