"""The registry in the admin console: versions are read-only (registered from their
checkpoints by ``services.register_version``); promotion and roll-back are actions that call the
services, so the admin and any other caller share one audited path."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from fleet.audit.admin import AuditAdmin, ReadOnlyAdmin
from fleet.learning import services, shadow
from fleet.learning.models import (
    AliasChange,
    ModelAlias,
    ModelVersion,
    Prediction,
    ShadowPrediction,
)

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

    def get_urls(self) -> list[URLPattern]:
        site = self.admin_site
        return [
            path("shadow/", site.admin_view(self.shadow_view), name="learning_shadow"),
            path(
                "shadow/<str:name>/promote/",
                site.admin_view(require_POST(self.promote_challenger_view)),
                name="learning_shadow_promote",
            ),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {"shadow_url": reverse("admin:learning_shadow"), **(extra_context or {})}
        return super().changelist_view(request, context)

    def shadow_view(self, request: HttpRequest) -> HttpResponse:
        """Champions and their challengers in shadow: both versions' live figures side by
        side, and (for supervisors) the challenger's promotion with those figures audited."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        since = _since(request.GET.get("hours"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Champions and challengers in shadow",
            "can_promote": self.has_promote_permission(request),
            "models": [
                figure_table(shadow.side_by_side(n, since=since)) for n in shadow.shadowed_names()
            ],
            "hours": request.GET.get("hours", ""),
            "audit_url": reverse("admin:learning_aliaschange_changelist"),
        }
        return TemplateResponse(request, "admin/learning/shadow.html", context)

    def promote_challenger_view(self, request: HttpRequest, name: str) -> HttpResponse:
        if not self.has_promote_permission(request):
            raise PermissionDenied
        row = ModelAlias.objects.select_related("version").filter(
            name=name, alias=ModelAlias.Alias.CHALLENGER
        )
        challenger = row.first()
        if challenger is None:
            self.message_user(request, f"{name} has no challenger", messages.ERROR)
        else:
            figures = shadow.side_by_side(name, since=_since(request.POST.get("hours")))
            version = challenger.version
            promote = partial(
                services.promote, name, version.version, by=request.user, figures=figures
            )
            self._call(request, promote, "Promoted")
        return HttpResponseRedirect(reverse("admin:learning_shadow"))

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
            figures = shadow.side_by_side(v.name) if alias == ModelAlias.Alias.CHAMPION else {}
            promote = partial(
                services.promote, v.name, v.version, alias, by=request.user, figures=figures
            )
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


@admin.register(ShadowPrediction)
class ShadowPredictionAdmin(ReadOnlyAdmin):
    """What challengers said about live windows in shadow: stored, compared, never acted on."""

    list_display = ("window_end", "equipment", "model_name", "model_id", "compute_ms", "replica")
    list_filter = ("model_name", "model_id")
    search_fields = ("equipment__name", "model_id")
    list_select_related = ("equipment",)
    date_hierarchy = "window_end"


def _since(hours: str | None) -> Any:
    try:
        return shadow.since_hours(float(hours or 0))
    except ValueError:
        return None


# The rows of the side-by-side table, in this order; a figure neither version has is left out.
FIGURE_ROWS = (
    ("windows", "windows answered"),
    ("trucks", "trucks"),
    ("positive_rate", "share of windows over threshold"),
    ("alarms", "alarms (its decision rule)"),
    ("alarms_per_truck_hour", "alarms per truck-hour"),
    ("labelled_faults", "labelled faults (workshop, verdicts)"),
    ("precision", "precision against labels"),
    ("recall", "recall against labels"),
    ("f1", "event F1 against labels"),
    ("mae_s", "P50 error against haul cycles (s)"),
    ("coverage", "P10-P90 coverage"),
    ("mae_t", "error against the payload meter (t)"),
    ("ade_m", "ADE against reported positions (m)"),
    ("labelled", "windows with a label"),
    ("compute_ms_p50", "compute ms p50"),
    ("compute_ms_p95", "compute ms p95"),
    ("queue_ms_p50", "queue ms p50"),
    ("age_s_p50", "window end to answer, s p50"),
    ("age_s_p95", "window end to answer, s p95"),
)


def figure_table(figures: dict[str, Any]) -> dict[str, Any]:
    """``shadow.side_by_side`` as rows of (label, champion's, challenger's) for the admin."""
    champion = figures.get("champion") or {}
    challenger = figures.get("challenger") or {}
    rows = [
        (label, champion.get(key), challenger.get(key))
        for key, label in FIGURE_ROWS
        if key in champion or key in challenger
    ]
    agreement = [(k, v) for k, v in (challenger.get("agreement") or {}).items()]
    return {**figures, "rows": rows, "agreement": agreement}
