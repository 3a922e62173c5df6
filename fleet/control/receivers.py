"""Control listens to ingest through signals (telemetry never imports control)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import transaction
from django.dispatch import receiver

from fleet.control import dispatching, services, zones
from fleet.mine.signals import zone_activated, zone_deletion_requested
from fleet.telemetry.signals import connection_changed, messages_admitted

log = logging.getLogger(__name__)


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


@receiver(connection_changed, dispatch_uid="control-connection")
def reconcile_on_connect(sender: Any, equipment_id: str, state: dict, **kwargs: Any) -> None:
    try:
        equipment = uuid.UUID(equipment_id)
    except ValueError:
        return
    services.record_connection(equipment, str(state.get("ConnectionState", "")))


@receiver(zone_activated, dispatch_uid="control-zone-activated")
def send_zone_activation(sender: Any, zone_id: uuid.UUID, **kwargs: Any) -> None:
    zones.send_zone_activation(zone_id)


@receiver(zone_deletion_requested, dispatch_uid="control-zone-deletion")
def send_zone_deactivation(sender: Any, zone_id: uuid.UUID, **kwargs: Any) -> None:
    zones.send_zone_deactivation(zone_id)
