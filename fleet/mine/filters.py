"""Filters of the mine map's lists (the pattern: fleet/api.py)."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet

from fleet.api import INT_MAX, FilterSet, IntegerFilter
from fleet.mine.models import Area, DumpPoint, LoadingUnit, PolicyZone, RoadNetwork, Way

SITE_HELP = "Only this site's (its id)"


class SiteFilter(FilterSet):
    """``?site=``: what one site holds."""

    site = django_filters.UUIDFilter(field_name="site_id", help_text=SITE_HELP)


class RoadNetworkFilter(SiteFilter):
    status = django_filters.ChoiceFilter(choices=RoadNetwork.Status.choices)

    class Meta:
        model = RoadNetwork
        fields = ["site", "status"]


class WayFilter(FilterSet):
    """The ways of the active road network, or of ``?revision=`` (with ``?site=``)."""

    site = django_filters.UUIDFilter(field_name="network__site_id", help_text=SITE_HELP)
    revision = IntegerFilter(
        field_name="network__revision",
        min_value=0,
        max_value=INT_MAX,
        help_text="Road-network revision (default: the active one)",
    )

    class Meta:
        model = Way
        fields = ["site", "revision"]

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        queryset = super().filter_queryset(queryset)
        if self.form.cleaned_data.get("revision") is None:
            queryset = queryset.filter(network__status=RoadNetwork.Status.ACTIVE)
        return queryset


class PolicyZoneFilter(SiteFilter):
    """Zones that are not deleted, or those of ``?status=``."""

    status = django_filters.ChoiceFilter(
        choices=PolicyZone.Status.choices, help_text="Default: every status but deleted"
    )

    class Meta:
        model = PolicyZone
        fields = ["site", "status"]

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("status"):
            queryset = queryset.exclude(status=PolicyZone.Status.DELETED)
        return queryset


class LoadingUnitFilter(SiteFilter):
    class Meta:
        model = LoadingUnit
        fields = ["site"]


class DumpPointFilter(SiteFilter):
    kind = django_filters.ChoiceFilter(choices=DumpPoint.Kind.choices)

    class Meta:
        model = DumpPoint
        fields = ["site", "kind"]


class AreaFilter(SiteFilter):
    kind = django_filters.ChoiceFilter(choices=Area.Kind.choices)

    class Meta:
        model = Area
        fields = ["site", "kind"]
