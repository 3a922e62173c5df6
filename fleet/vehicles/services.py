"""The equipment register's changes that reach beyond one row."""

from __future__ import annotations

from django.db import transaction

from fleet.vehicles.credentials import revoke_credentials
from fleet.vehicles.models import Equipment


@transaction.atomic
def retire_equipment(equipment: Equipment) -> int:
    """Take a machine out of service for good: retired (kept, with its history), and its
    credentials revoked, so once this commits its broker login is gone and a connected session
    closed. The number of credentials revoked."""
    if equipment.status != Equipment.Status.RETIRED:
        equipment.status = Equipment.Status.RETIRED
        equipment.save(update_fields=["status"])
    return revoke_credentials(equipment)
