"""Control listens to ingest through signals (telemetry never imports control)."""

from __future__ import annotations

import uuid
from typing import Any

from django.dispatch import receiver

from fleet.control import services
from fleet.telemetry.signals import connection_changed, messages_admitted


@receiver(messages_admitted, dispatch_uid="control-answers")
def apply_answers(sender: Any, admitted: list, **kwargs: Any) -> None:
    services.record_answers(item.envelope for item in admitted)


@receiver(connection_changed, dispatch_uid="control-connection")
def reconcile_on_connect(sender: Any, equipment_id: str, state: dict, **kwargs: Any) -> None:
    try:
        equipment = uuid.UUID(equipment_id)
    except ValueError:
        return
    services.record_connection(equipment, str(state.get("ConnectionState", "")))
