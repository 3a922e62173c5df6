"""The pool in the admin: "Nodes" is a live page (nodes, slices, replicas, deployments, the plan)
with Drain / Undrain buttons for those with ``pool.drain_node``; "Drain changes" is the audit.
Both go through ``fleet.pool.services``, the same path as the REST API."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from fleet.audit.admin import AuditAdmin
from fleet.pool import services
from fleet.pool.models import DRAIN_PERMISSION, DrainChange, Node


@admin.register(DrainChange)
class DrainChangeAdmin(AuditAdmin):
    """The audit: read only, like every audit trail."""

    list_display = ("at", "node", "draining", "by_name", "reason")
    list_filter = ("draining", "node")
    search_fields = ("node", "by_name", "reason")
    date_hierarchy = "at"


@admin.register(Node)
class NodeAdmin(AuditAdmin):
    """Not a table: the changelist is the live pool read from Redis. Node is a proxy of the drain
    audit (the drain permission's home), so its admin is an audit admin too."""

    def get_urls(self) -> list[URLPattern]:
        site = self.admin_site
        return [
            path(
                "<str:name>/drain/",
                site.admin_view(require_POST(self.drain_view)),
                {"draining": True},
                name="pool_node_drain",
            ),
            path(
                "<str:name>/undrain/",
                site.admin_view(require_POST(self.drain_view)),
                {"draining": False},
                name="pool_node_undrain",
            ),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Inference pool",
            "can_drain": request.user.has_perm(DRAIN_PERMISSION),
            "audit_url": reverse("admin:pool_drainchange_changelist"),
            "drains": services.recent_drains(limit=10),
            **(extra_context or {}),
        }
        try:
            reading = services.read_pool()
        except services.PoolUnavailable as exc:
            context["unavailable"] = str(exc)
        else:
            context["pool"] = services.summary(reading)
        return TemplateResponse(request, "admin/pool/node/pool.html", context)

    def drain_view(self, request: HttpRequest, name: str, draining: bool) -> HttpResponse:
        if not request.user.has_perm(DRAIN_PERMISSION):
            raise PermissionDenied
        reason = request.POST.get("reason", "")[:500]
        try:
            services.set_draining(name, draining, by=request.user, reason=reason)
        except services.UnknownNode:
            self.message_user(request, f"No node named {name!r} in the pool.", messages.ERROR)
        except services.PoolUnavailable as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            verb = "drained: it gets no new work" if draining else "back in service"
            self.message_user(request, f"Node {name} {verb}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:pool_node_changelist"))
