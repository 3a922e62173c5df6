"""The registry in the admin console: versions are read-only (registered from their
checkpoints by ``services.register_version``); promotion and roll-back are actions that call the
services, so the admin and any other caller share one audited path."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from fleet.audit.admin import AuditAdmin, ReadOnlyAdmin
from fleet.learning import services
from fleet.learning.models import AliasChange, ModelAlias, ModelVersion, Prediction

PROMOTE_PERMISSION = "learning.promote_modelversion"


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = (
        "__str__",
        "kind",
        "level",
        "parent",
        "aliases_display",
        "short_sha",
        "created_at",
    )
    list_filter = ("name", "kind", "level")
    search_fields = ("name", "sha256", "data_hash")
    list_select_related = ("parent",)
    actions = ("promote_champion", "promote_challenger", "roll_back_champion")

    def has_promote_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PROMOTE_PERMISSION)

    @admin.display(description="aliases")
    def aliases_display(self, version: ModelVersion) -> str:
        return ", ".join(a.alias for a in version.aliases.all()) or admin.site.empty_value_display

    @admin.display(description="sha256")
    def short_sha(self, version: ModelVersion) -> str:
        return f"{version.sha256[:12]}..."

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelVersion]:
        return super().get_queryset(request).prefetch_related("aliases")

    @admin.action(description="Promote to champion (one version per name)", permissions=["promote"])
    def promote_champion(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        self._promote(request, queryset, ModelAlias.Alias.CHAMPION)

    @admin.action(
        description="Promote to challenger (one version per name)", permissions=["promote"]
    )
    def promote_challenger(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        self._promote(request, queryset, ModelAlias.Alias.CHALLENGER)

    @admin.action(
        description="Roll back the champion of the selected names", permissions=["promote"]
    )
    def roll_back_champion(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for name in sorted(set(queryset.values_list("name", flat=True))):
            self._call(request, partial(services.roll_back, name, by=request.user), "Rolled back")

    def _promote(self, request: HttpRequest, queryset: QuerySet[ModelVersion], alias: str) -> None:
        chosen: dict[str, list[ModelVersion]] = {}
        for version in queryset:
            chosen.setdefault(version.name, []).append(version)
        for name, versions in sorted(chosen.items()):
            if len(versions) > 1:
                self.message_user(
                    request,
                    f"{name}: select one version to promote, not {len(versions)}",
                    messages.ERROR,
                )
                continue
            v = versions[0]
            promote = partial(services.promote, v.name, v.version, alias, by=request.user)
            self._call(request, promote, "Promoted")

    def _call(self, request: HttpRequest, action: Callable[[], ModelAlias], done: str) -> None:
        try:
            row = action()
        except services.RegistryError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(
                request, f"{done}: {row.name} {row.alias} is now {row.version}", messages.SUCCESS
            )


@admin.register(ModelAlias)
class ModelAliasAdmin(ReadOnlyAdmin):
    list_display = ("name", "alias", "version", "updated_by", "updated_at")
    list_filter = ("name", "alias")
    list_select_related = ("version", "updated_by")


@admin.register(AliasChange)
class AliasChangeAdmin(AuditAdmin):
    """The audit trail: who moved which alias, when, from which version to which."""

    list_display = (
        "at",
        "name",
        "alias",
        "action",
        "from_version",
        "to_version",
        "by",
        "rolled_back",
    )
    list_filter = ("name", "alias", "action")
    list_select_related = ("from_version", "to_version", "by")


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    """What the served networks said, per truck: written only by the inference callback."""

    list_display = (
        "window_end",
        "equipment",
        "model_name",
        "model_id",
        "queue",
        "compute",
        "replica",
    )
    list_filter = ("model_name",)
    search_fields = ("equipment__name", "model_id")
    list_select_related = ("equipment",)
    date_hierarchy = "window_end"

    @admin.display(description="queue ms", ordering="queue_ms")
    def queue(self, obj: Prediction) -> str:
        return f"{obj.queue_ms:.1f}"

    @admin.display(description="compute ms", ordering="compute_ms")
    def compute(self, obj: Prediction) -> str:
        return f"{obj.compute_ms:.1f}"
