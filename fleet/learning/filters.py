"""Filters of the model registry's lists (the pattern: fleet/api.py)."""

from __future__ import annotations

import django_filters

from fleet.api import FilterSet
from fleet.learning.models import AliasChange, ModelAlias, ModelVersion

NAME_HELP = "Only this model name"


class ModelVersionFilter(FilterSet):
    name = django_filters.CharFilter(max_length=100, help_text=NAME_HELP)
    kind = django_filters.ChoiceFilter(choices=ModelVersion.Kind.choices)

    class Meta:
        model = ModelVersion
        fields = ["name", "kind"]


class ModelAliasFilter(FilterSet):
    name = django_filters.CharFilter(max_length=100, help_text=NAME_HELP)
    alias = django_filters.ChoiceFilter(choices=ModelAlias.Alias.choices)

    class Meta:
        model = ModelAlias
        fields = ["name", "alias"]


class AliasChangeFilter(ModelAliasFilter):
    class Meta:
        model = AliasChange
        fields = ["name", "alias"]
