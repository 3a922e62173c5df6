"""Filters of the truck link's lists (the pattern: fleet/api/__init__.py)."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet

from fleet.api import FilterSet
from fleet.telemetry import replicas
from fleet.telemetry.models import IngestReplica


class IngestReplicaFilter(FilterSet):
    state = django_filters.ChoiceFilter(
        choices=replicas.STATES, method="filter_state", help_text="Only replicas in this state"
    )

    class Meta:
        model = IngestReplica
        fields = ["state"]

    def filter_state(self, queryset: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        return replicas.in_state(queryset, value)
