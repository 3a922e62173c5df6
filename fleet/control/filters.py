"""Filters of the outbox's lists (the pattern: fleet/api.py)."""

from __future__ import annotations

from typing import Any

import django_filters

from fleet.api import BooleanFilter, FilterSet
from fleet.control.models import Alert, Command, TrafficPermission, TruckState


class CommandFilter(FilterSet):
    equipment = django_filters.UUIDFilter(
        field_name="equipment_id", help_text="Only this machine's commands (its EquipmentId)"
    )
    status = django_filters.ChoiceFilter(choices=Command.Status.choices)

    class Meta:
        model = Command
        fields = ["equipment", "status"]


class AlertFilter(FilterSet):
    site = django_filters.UUIDFilter(field_name="site_id", help_text="Only this site's alerts")
    equipment = django_filters.UUIDFilter(
        field_name="equipment_id", help_text="Only this machine's alerts (its EquipmentId)"
    )
    status = django_filters.MultipleChoiceFilter(choices=Alert.Status.choices)
    severity = django_filters.MultipleChoiceFilter(choices=Alert.Severity.choices)
    kind = django_filters.CharFilter(help_text="e.g. exclusion, speeding, fault:tyre_leak")
    source = django_filters.CharFilter(help_text="The rule or model version, e.g. fault@3")
    since = django_filters.IsoDateTimeFilter(
        field_name="last_seen_at", lookup_expr="gte", help_text="Seen at or after this time"
    )

    class Meta:
        model = Alert
        fields = ["site", "equipment", "status", "severity", "kind", "source", "since"]


class TruckStateFilter(FilterSet):
    site = django_filters.UUIDFilter(field_name="equipment__site_id", help_text="Only this site")
    safe_stopped = BooleanFilter(
        field_name="safe_stopped_at",
        lookup_expr="isnull",
        exclude=True,
        help_text="true: only machines stopped by their own safe state (FMS heartbeat lost)",
    )
    connection = django_filters.CharFilter(help_text="Online, Offline or ConnectionBroken")

    class Meta:
        model = TruckState
        fields = ["site", "safe_stopped", "connection"]


class TrafficPermissionFilter(FilterSet):
    site = django_filters.UUIDFilter(field_name="site_id", help_text="Only this site's")
    zone = django_filters.UUIDFilter(
        field_name="zone_id", help_text="Only this one-lane section's (its ZoneId)"
    )
    equipment = django_filters.UUIDFilter(
        field_name="equipment_id", help_text="Only this truck's (its EquipmentId)"
    )
    status = django_filters.ChoiceFilter(choices=TrafficPermission.Status.choices)
    open = BooleanFilter(method="filter_open", help_text="true: only the waiting and granted ones")

    class Meta:
        model = TrafficPermission
        fields = ["site", "zone", "equipment", "status", "open"]

    def filter_open(self, queryset: Any, name: str, value: bool | None) -> Any:
        if value is None:
            return queryset
        if value:
            return queryset.filter(status__in=TrafficPermission.OPEN)
        return queryset.exclude(status__in=TrafficPermission.OPEN)
