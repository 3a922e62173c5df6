"""Filters of the outbox's lists (the pattern: fleet/api.py)."""

from __future__ import annotations

import django_filters

from fleet.api import FilterSet
from fleet.control.models import Command


class CommandFilter(FilterSet):
    equipment = django_filters.UUIDFilter(
        field_name="equipment_id", help_text="Only this machine's commands (its EquipmentId)"
    )
    status = django_filters.ChoiceFilter(choices=Command.Status.choices)

    class Meta:
        model = Command
        fields = ["equipment", "status"]
