"""Filters of the equipment register (the pattern: fleet/api.py)."""

from __future__ import annotations

import django_filters

from fleet.api import FilterSet
from fleet.vehicles.models import Equipment


class EquipmentFilter(FilterSet):
    site = django_filters.UUIDFilter(field_name="site_id", help_text="Only this site's machines")
    kind = django_filters.ChoiceFilter(choices=Equipment.Kind.choices)
    status = django_filters.ChoiceFilter(choices=Equipment.Status.choices)

    class Meta:
        model = Equipment
        fields = ["site", "kind", "status"]


class TruckFilter(FilterSet):
    site = django_filters.UUIDFilter(field_name="site_id", help_text="Only this site's trucks")

    class Meta:
        model = Equipment
        fields = ["site"]
