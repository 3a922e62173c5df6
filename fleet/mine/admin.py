"""The admin console for the mine map, working offline (vendored OpenLayers, no tiles).

Policy zones follow the ISO 23725 lifecycle: they are created through ``services.create_zone``,
never edited in place, and activated or retired by admin actions that call the services. A site
with history is deactivated, not deleted; the trucks' zone responses are an audit record.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.contrib.gis.admin import GISModelAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q, QuerySet
from django.forms.widgets import Media
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from fleet.audit.admin import AuditAdmin, KeepsHistoryMixin
from fleet.mine import services
from fleet.mine.mapfile import export_site_map
from fleet.mine.models import (
    Area,
    DumpPoint,
    LoadingUnit,
    PolicyZone,
    RoadNetwork,
    RoadNode,
    Site,
    Way,
    ZoneResponse,
)
from fleet.mine.policies import POLICY_NAMES
from fleet.mine.widgets import OL_CSS, OL_JS, OfflineMapWidget, readonly_map, site_context_map

admin.site.site_header = "Haulmind control"
admin.site.site_title = "Haulmind control"
admin.site.index_title = "Mine map and fleet"

EMPTY = admin.site.empty_value_display

# Placeholder the site map's JavaScript swaps for a zone's id to link to its admin page.
ZONE_URL_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


def _fmt_m2(area_m2: float) -> str:
    return f"{area_m2 / 10_000:,.2f} ha" if area_m2 >= 10_000 else f"{area_m2:,.0f} m²"


class MapAdmin(GISModelAdmin):
    """Geometry fields edited on the offline map, with the site drawn around them for context."""

    gis_widget = OfflineMapWidget  # type: ignore[assignment]  # the stubs want an instance

    def context_sites(self, request: HttpRequest, obj: Any | None) -> list[Site]:
        """The sites drawn under the edited geometry: the object's own, else the one named in the
        add form's query string, else every site (a mine company runs few)."""
        site = self.site_of(obj) if obj is not None else None
        if site is not None:
            return [site]
        site_id = request.GET.get("site")
        queryset = Site.objects.all()
        if site_id:
            try:
                return list(queryset.filter(pk=site_id)) or list(queryset)
            except ValidationError:  # not a UUID
                pass
        return list(queryset)

    def site_of(self, obj: Any) -> Site | None:
        return getattr(obj, "site", None)

    def get_form(
        self, request: HttpRequest, obj: Any | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        # get_form builds fresh fields per request, so setting the context here is request-local.
        maps = [
            f.widget for f in form.base_fields.values() if isinstance(f.widget, OfflineMapWidget)
        ]
        if maps:
            context = site_context_map(self.context_sites(request, obj))
            for widget in maps:
                widget.context_map = context
        return form


# --- sites and roads ---------------------------------------------------------------------------


@admin.register(Site)
class SiteAdmin(KeepsHistoryMixin, MapAdmin):
    list_display = (
        "name",
        "slug",
        "active",
        "utm_srid",
        "default_speed_kmh",
        "active_revision",
        "active_zones",
        "map_link",
    )
    list_filter = ("active",)
    search_fields = ("name", "slug")
    ordering = ("name",)
    readonly_fields = ("id", "active", "area_display", "created_at")
    fields = (
        "id",
        "name",
        "slug",
        "active",
        "utm_srid",
        "default_speed_kmh",
        "boundary",
        "area_display",
        "members",
    )
    filter_horizontal = ("members",)
    prepopulated_fields = {"slug": ("name",)}
    actions = ("deactivate", "reactivate")
    keep_instead = "deactivate it instead (the “Deactivate” action, once its machines are retired)"

    @admin.action(
        description="Deactivate the selected sites (kept with their history)",
        permissions=["change"],
    )
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Site]) -> None:
        from fleet.vehicles.models import Equipment

        done = []
        for site in Site.objects.filter(pk__in=queryset.values("pk"), active=True):
            running = list(
                site.equipment.exclude(status=Equipment.Status.RETIRED)
                .order_by("name")
                .values_list("name", flat=True)
            )
            if running:
                more = f" and {len(running) - 10} more" if len(running) > 10 else ""
                self.message_user(
                    request,
                    f"{site} is not deactivated: retire its machines first "
                    f"({', '.join(running[:10])}{more})",
                    messages.ERROR,
                )
                continue
            site.active = False
            site.save(update_fields=["active"])
            done.append(site.name)
        if done:
            self.message_user(request, f"Deactivated {', '.join(done)}.", messages.SUCCESS)

    @admin.action(description="Reactivate the selected sites", permissions=["change"])
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Site]) -> None:
        names = list(
            Site.objects.filter(pk__in=queryset.values("pk"), active=False).values_list(
                "name", flat=True
            )
        )
        Site.objects.filter(name__in=names).update(active=True)
        if names:
            self.message_user(request, f"Reactivated {', '.join(names)}.", messages.SUCCESS)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Site]:
        return (
            super()
            .get_queryset(request)
            .annotate(n_active_zones=Count("zones", filter=Q(zones__status="active")))
        )

    def context_sites(self, request: HttpRequest, obj: Site | None) -> list[Site]:
        # A site's own roads are the context for its boundary; a new site has none yet.
        return [obj] if obj is not None else []

    @admin.display(description="active roads")
    def active_revision(self, site: Site) -> str:
        network = site.active_network
        return f"r{network.revision}" if network else EMPTY

    @admin.display(description="active zones", ordering="n_active_zones")
    def active_zones(self, site: Site) -> int:
        return site.n_active_zones  # type: ignore[attr-defined]

    @admin.display(description="map")
    def map_link(self, site: Site) -> str:
        return format_html(
            '<a href="{}">Site map</a>', reverse("admin:mine_site_map", args=[site.pk])
        )

    @admin.display(description="area")
    def area_display(self, site: Site) -> str:
        if not site.boundary or not site.utm_srid:
            return EMPTY
        return f"{site.to_metric(site.boundary).area / 1e6:,.2f} km²"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.site_map_view)
        return [path("<path:object_id>/map/", view, name="mine_site_map"), *super().get_urls()]

    @property
    def map_media(self) -> Media:
        return Media(css={"all": (OL_CSS, "fleet/admin-map.css")}, js=(OL_JS, "fleet/site-map.js"))

    def site_map_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The whole map of one site: roads, zones, destinations and areas, with a legend."""
        site = self.get_object(request, object_id)
        if site is None:
            raise Http404("no such site")
        if not self.has_view_permission(request, site):
            raise PermissionDenied
        revisions = list(site.road_networks.order_by("-revision"))
        network = self._requested_network(request, revisions) or site.active_network
        map_data = export_site_map(site, network)
        counts = Counter(f["properties"].get("featureType") for f in map_data["features"])
        counts["policyZone"] = site.zones.exclude(status=PolicyZone.Status.DELETED).count()
        counts["one_lane"] = network.ways.filter(one_lane=True).count() if network else 0
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": site,
            "title": f"{site.name}: site map",
            "is_nav_sidebar_enabled": False,  # the map needs the width
            "media": self.map_media,
            "map_data": map_data,
            "network": network,
            "revisions": revisions,
            "counts": counts,
            "zone_url_template": reverse(
                "admin:mine_policyzone_change", args=[ZONE_URL_PLACEHOLDER]
            ),
        }
        return TemplateResponse(request, "admin/mine/site/site_map.html", context)

    @staticmethod
    def _requested_network(
        request: HttpRequest, revisions: list[RoadNetwork]
    ) -> RoadNetwork | None:
        wanted = request.GET.get("revision", "")
        return next((n for n in revisions if str(n.revision) == wanted), None)


@admin.register(RoadNetwork)
class RoadNetworkAdmin(admin.ModelAdmin):
    list_display = ("site", "revision", "status", "note", "way_count", "created_at", "activated_at")
    list_filter = ("site", "status")
    search_fields = ("site__name", "note")
    ordering = ("site", "-revision")
    list_select_related = ("site",)
    # Status changes only through the activate action: one active revision per site.
    readonly_fields = ("status", "created_at", "activated_at")
    actions = ("activate_revision",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[RoadNetwork]:
        return super().get_queryset(request).annotate(n_ways=Count("ways"))

    @admin.display(description="ways", ordering="n_ways")
    def way_count(self, network: RoadNetwork) -> int:
        return network.n_ways  # type: ignore[attr-defined]

    @admin.action(description="Activate the selected revision (retires the current one)")
    def activate_revision(self, request: HttpRequest, queryset: QuerySet[RoadNetwork]) -> None:
        for network in queryset:
            try:
                services.activate_road_network(network)
            except ValidationError as exc:
                self.message_user(request, f"{network}: {' '.join(exc.messages)}", messages.ERROR)
            else:
                self.message_user(request, f"{network.site}: revision {network.revision} is active")


@admin.register(RoadNode)
class RoadNodeAdmin(MapAdmin):
    list_display = ("node_id", "network", "elevation_m")
    list_filter = ("network__site", "network__status")
    search_fields = ("node_id__exact", "network__site__name")
    ordering = ("network", "node_id")
    list_select_related = ("network__site",)

    def site_of(self, obj: RoadNode) -> Site | None:
        return obj.network.site


@admin.register(Way)
class WayAdmin(MapAdmin):
    list_display = (
        "way_id",
        "name",
        "network",
        "length_display",
        "grade_display",
        "max_grade_display",
        "speed_display",
        "one_lane",
    )
    list_filter = ("network__site", "network__status", "one_lane")
    search_fields = ("way_id__exact", "name")
    ordering = ("network", "way_id")
    list_select_related = ("network__site",)
    autocomplete_fields = ("start_node", "end_node")
    readonly_fields = ("length_display", "grade_display", "max_grade_display")
    fields = (
        "network",
        "way_id",
        "name",
        "geometry",
        "elevations_m",
        "start_node",
        "end_node",
        "operating_speed_kmh",
        "one_lane",
        "length_display",
        "grade_display",
        "max_grade_display",
    )

    def site_of(self, obj: Way) -> Site | None:
        return obj.network.site

    @admin.display(description="length", ordering="length_m")
    def length_display(self, way: Way) -> str:
        return f"{way.length_m:,.0f} m"

    @admin.display(description="net grade", ordering="grade_pct")
    def grade_display(self, way: Way) -> str:
        return f"{way.grade_pct:+.1f} %"

    @admin.display(description="steepest", ordering="max_grade_pct")
    def max_grade_display(self, way: Way) -> str:
        return f"{way.max_grade_pct:.1f} %"

    @admin.display(description="speed")
    def speed_display(self, way: Way) -> str:
        suffix = "" if way.operating_speed_kmh else " (default)"
        return f"{way.speed_kmh:g} km/h{suffix}"


# --- policy zones ------------------------------------------------------------------------------


POLICY_HELP = (
    "ISO 23725 policies as a JSON object, e.g. "
    '{"speedLimit": {"type": "absolute", "value": 8.3}} (m/s), '
    '{"exclusion": {}}, {"trafficPermission": {"capacity": 1}}. '
    f"Known policies: {', '.join(POLICY_NAMES)}."
)


class PoliciesField(forms.JSONField):
    def prepare_value(self, value: Any) -> Any:
        # An empty add form shows an empty box, not the JSON literal "null".
        return "" if value is None else super().prepare_value(value)


class ZoneCreationForm(forms.ModelForm):
    """The only way to make a zone in the admin. Geometry and policies are checked by the
    model's clean (zone_geometry_errors, validate_policies), so each reason shows on its field."""

    policies = PoliciesField(
        widget=forms.Textarea(attrs={"rows": 5, "cols": 70, "spellcheck": "false"}),
        help_text=POLICY_HELP,
    )

    class Meta:
        model = PolicyZone
        fields = ("name", "site", "geometry", "policies", "replaces")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        replaces = self.fields.get("replaces")
        if not isinstance(replaces, forms.ModelChoiceField):  # the read-only view has no fields
            return
        live = (PolicyZone.Status.PENDING, PolicyZone.Status.ACTIVE)
        replaces.queryset = PolicyZone.objects.filter(status__in=live)
        replaces.help_text = (
            "Optional: the zone this one supersedes. It goes Pending delete when this one "
            "is activated."
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        replaces, site = cleaned.get("replaces"), cleaned.get("site")
        if replaces is not None and site is not None and replaces.site_id != site.pk:
            self.add_error("replaces", "a zone can only replace a zone of the same site")
        return cleaned


class PolicyKindFilter(admin.SimpleListFilter):
    title = "policy"
    parameter_name = "policy"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in POLICY_NAMES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[PolicyZone]) -> QuerySet:
        value = self.value()
        return queryset.filter(policies__has_key=value) if value else queryset


@admin.register(PolicyZone)
class PolicyZoneAdmin(MapAdmin):
    form = ZoneCreationForm
    list_display = (
        "name",
        "site",
        "status",
        "policy_summary",
        "area_display",
        "created_by",
        "created_at",
        "activated_at",
    )
    list_filter = ("site", "status", PolicyKindFilter)
    search_fields = ("name", "id")
    ordering = ("site", "name")
    list_select_related = ("site", "created_by")
    date_hierarchy = "created_at"
    actions = ("activate", "request_deletion")
    readonly_view_fields = (
        "id",
        "name",
        "site",
        "status",
        "policies_display",
        "area_display",
        "zone_map",
        "replaces",
        "replaced_by_link",
        "created_by",
        "created_at",
        "activated_at",
        "delete_requested_at",
        "deleted_at",
    )

    # Zones are never edited in place (ISO 23725) nor deleted outright: a change is a new zone
    # that replaces the old one, and deletion is a request the trucks must acknowledge.
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_activate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("mine.activate_policyzone")

    def get_fields(self, request: HttpRequest, obj: PolicyZone | None = None) -> Any:
        return self.readonly_view_fields if obj is not None else ZoneCreationForm.Meta.fields

    def get_readonly_fields(self, request: HttpRequest, obj: PolicyZone | None = None) -> Any:
        return self.readonly_view_fields if obj is not None else ()

    @property
    def media(self) -> Media:
        # The read-only view shows the zone on a map through a display field, not a form field,
        # so the map's scripts are not in the form's media.
        return super().media + OfflineMapWidget().media

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """``?replaces=<zone id>`` starts a replacement prefilled from the zone it replaces."""
        initial: dict[str, Any] = {**super().get_changeform_initial_data(request)}
        old = self._zone_to_replace(request)
        if old is not None:
            initial.update(
                site=old.site_id,
                name=old.name,
                geometry=old.geometry,
                policies=old.policies,
                replaces=old.pk,
            )
        return initial

    def _zone_to_replace(self, request: HttpRequest) -> PolicyZone | None:
        wanted = request.GET.get("replaces")
        if not wanted:
            return None
        try:
            return PolicyZone.objects.filter(pk=wanted).first()
        except ValidationError:  # not a UUID
            return None

    def context_sites(self, request: HttpRequest, obj: PolicyZone | None) -> list[Site]:
        old = self._zone_to_replace(request) if obj is None else None
        return [old.site] if old is not None else super().context_sites(request, obj)

    def save_model(
        self, request: HttpRequest, obj: PolicyZone, form: forms.ModelForm, change: bool
    ) -> None:
        # The service is the one place zones are created (validation, broadcast). Reusing the
        # form instance's id keeps the admin's log entry and redirect pointing at the new zone.
        zone = services.create_zone(
            zone_id=obj.pk,
            site=obj.site,
            name=obj.name,
            geometry=obj.geometry,
            policies=obj.policies,
            created_by=request.user if isinstance(request.user, User) else None,
            replaces=obj.replaces,
        )
        obj.refresh_from_db(from_queryset=PolicyZone.objects.filter(pk=zone.pk))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        zone = self.get_object(request, object_id)
        live = zone is not None and zone.status in (
            PolicyZone.Status.PENDING,
            PolicyZone.Status.ACTIVE,
        )
        extra = {"can_replace": live and self.has_add_permission(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description="policies")
    def policy_summary(self, zone: PolicyZone) -> str:
        return ", ".join(sorted(zone.policies)) if isinstance(zone.policies, dict) else EMPTY

    @admin.display(description="policies")
    def policies_display(self, zone: PolicyZone) -> str:
        return format_html("<pre>{}</pre>", json.dumps(zone.policies, indent=2))

    @admin.display(description="area", ordering="area_m2")
    def area_display(self, zone: PolicyZone) -> str:
        return _fmt_m2(zone.area_m2)

    @admin.display(description="map")
    def zone_map(self, zone: PolicyZone) -> str:
        return readonly_map("zone_map", zone.geometry, site_context_map([zone.site]))

    @admin.display(description="replaced by")
    def replaced_by_link(self, zone: PolicyZone) -> str:
        successor = PolicyZone.objects.filter(replaces=zone).first()
        if successor is None:
            return EMPTY
        url = reverse("admin:mine_policyzone_change", args=[successor.pk])
        return format_html('<a href="{}">{}</a>', url, successor)

    def _run_lifecycle(
        self, request: HttpRequest, queryset: QuerySet[PolicyZone], service: Any, done: str
    ) -> None:
        changed = []
        for zone in queryset:
            try:
                service(zone)
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), messages.ERROR)
            else:
                changed.append(zone.name)
        if changed:
            self.message_user(request, f"{done}: {', '.join(changed)}", messages.SUCCESS)

    # Trucks learn of zone changes when they (re)connect or report being out of sync: the
    # zone set is re-synchronised then. Sending each change to the connected trucks at once
    # comes with the control loop.
    @admin.action(
        description="Activate the selected zones (trucks get them when they next re-synchronise)",
        permissions=["activate"],
    )
    def activate(self, request: HttpRequest, queryset: QuerySet[PolicyZone]) -> None:
        self._run_lifecycle(request, queryset, services.activate_zone, "Activated")

    @admin.action(
        description="Request deletion of the selected zones (Pending Delete until every truck "
        "dropped them or the timeout passed)",
        permissions=["activate"],
    )
    def request_deletion(self, request: HttpRequest, queryset: QuerySet[PolicyZone]) -> None:
        self._run_lifecycle(request, queryset, services.request_zone_deletion, "Deletion requested")


@admin.register(ZoneResponse)
class ZoneResponseAdmin(AuditAdmin):
    """What the trucks answered to zone activations and deactivations; never written by hand,
    never deleted."""

    list_display = ("zone", "equipment", "request", "accepted", "reason", "responded_at")
    list_filter = ("request", "accepted", "zone__site")
    search_fields = ("zone__name", "equipment__name", "reason")
    ordering = ("-responded_at",)
    list_select_related = ("zone", "equipment")


# --- destinations and areas --------------------------------------------------------------------


@admin.register(LoadingUnit)
class LoadingUnitAdmin(MapAdmin):
    list_display = ("name", "site", "material", "loading_rate_tph", "equipment", "active")
    list_filter = ("site", "material", "active")
    search_fields = ("name", "equipment__name")
    ordering = ("site", "name")
    list_select_related = ("site", "equipment")


@admin.register(DumpPoint)
class DumpPointAdmin(MapAdmin):
    list_display = ("name", "site", "kind", "capacity_tph", "active")
    list_filter = ("site", "kind", "active")
    search_fields = ("name",)
    ordering = ("site", "name")
    list_select_related = ("site",)


@admin.register(Area)
class AreaAdmin(MapAdmin):
    list_display = ("name", "site", "kind", "area_display")
    list_filter = ("site", "kind")
    search_fields = ("name",)
    ordering = ("site", "name")
    list_select_related = ("site",)
    readonly_fields = ("area_display",)

    @admin.display(description="area")
    def area_display(self, area: Area) -> str:
        if area.geometry is None or area.site_id is None:
            return EMPTY
        return _fmt_m2(area.site.to_metric(area.geometry).area)
