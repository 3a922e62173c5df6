"""Control listens to ingest, the map and the inference callback through signals (telemetry,
mine and learning never import control)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.dispatch import receiver

from fleet.control import (
    collision_services,
    compliance,
    dispatching,
    health,
    services,
    traffic_services,
    zones,
)
from fleet.learning.signals import prediction_recorded
from fleet.mine.signals import zone_activated, zone_deletion_requested
from fleet.telemetry.signals import (
    connection_changed,
    ingest_starting,
    messages_admitted,
    messages_arrived,
)
from fleet.vehicles.models import Equipment

log = logging.getLogger(__name__)


@receiver(messages_arrived, dispatch_uid="control-compliance")
def check_compliance(sender: Any, admitted: list, live: bool = False, **kwargs: Any) -> list:
    """Live: what was decided is returned for the ingest writer to record (see the signal)."""
    if not settings.CONTROL_LIVE_RULES:
        return []
    if live:
        return compliance.check_live(admitted)
    compliance.check_admitted(admitted)
    return []


@receiver(ingest_starting, dispatch_uid="control-reflex")
def make_ready(sender: Any, **kwargs: Any) -> None:
    if settings.CONTROL_LIVE_RULES:
        compliance.make_ready()


@receiver(prediction_recorded, dispatch_uid="control-health")
def consider_prediction(sender: Any, head: str, **kwargs: Any) -> None:
    if head == "fault":
        health.consider_fault_prediction(
            health.FaultPrediction.from_outputs(
                prediction_id=kwargs["prediction_id"],
                equipment_id=kwargs["equipment_id"],
                model_id=kwargs["model_id"],
                window_start=kwargs["window_start"],
                window_end=kwargs["window_end"],
                outputs=kwargs["outputs"],
            )
        )
    elif head == "trajectory":  # at most every COLLISION_MIN_INTERVAL_MS per site; beat: 1 Hz
        site_id = (
            Equipment.objects.filter(pk=kwargs["equipment_id"])
            .values_list("site_id", flat=True)
            .first()
        )
        if site_id is not None:
            collision_services.assess_collision_risk(site_id, force=False)


@receiver(messages_admitted, dispatch_uid="control-answers")
def apply_answers(sender: Any, admitted: list, **kwargs: Any) -> None:
    envelopes = [item.envelope for item in admitted]
    services.record_answers(envelopes)
    zones.record_zone_responses(envelopes)
    try:  # a failed dispatch decision must not undo the answers applied above
        with transaction.atomic():
            dispatching.record_production_states(envelopes)
    except Exception:
        log.exception("dispatch could not follow the production states of a batch")
    try:  # likewise: the traffic decisions of a batch stand on their own
        with transaction.atomic():
            traffic_services.handle_truck_messages(envelopes)
    except Exception:
        log.exception("traffic permissions could not be decided for a batch")


@receiver(connection_changed, dispatch_uid="control-connection")
def reconcile_on_connect(sender: Any, equipment_id: str, state: dict, **kwargs: Any) -> None:
    try:
        equipment = uuid.UUID(equipment_id)
    except ValueError:
        return
    services.record_connection(equipment, str(state.get("ConnectionState", "")))


@receiver(zone_activated, dispatch_uid="control-zone-activated")
def send_zone_activation(sender: Any, zone_id: uuid.UUID, **kwargs: Any) -> None:
    compliance.INDEX.invalidate()  # this process judges by it at once; others within seconds
    zones.send_zone_activation(zone_id)


@receiver(zone_deletion_requested, dispatch_uid="control-zone-deletion")
def send_zone_deactivation(sender: Any, zone_id: uuid.UUID, **kwargs: Any) -> None:
    compliance.INDEX.invalidate()
    zones.send_zone_deactivation(zone_id)
