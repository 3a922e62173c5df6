"""Filters of the outbox's lists (the pattern: fleet/api.py)."""

from __future__ import annotations

import django_filters

from fleet.api import FilterSet
from fleet.control.models import Alert, Command, TruckState


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
    safe_stopped = django_filters.BooleanFilter(
        field_name="safe_stopped_at",
        lookup_expr="isnull",
        exclude=True,
        help_text="true: only machines stopped by their own safe state (FMS heartbeat lost)",
    )
    connection = django_filters.CharFilter(help_text="Online, Offline or ConnectionBroken")

    class Meta:
        model = TruckState
        fields = ["site", "safe_stopped", "connection"]
