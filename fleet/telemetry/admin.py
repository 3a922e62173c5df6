"""The quarantine of refused messages, the derived haul cycles and the known ingest replicas,
read-only in the admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from fleet.audit.admin import AuditAdmin, ReadOnlyAdmin
from fleet.telemetry import replicas
from fleet.telemetry.models import HaulCycle, IngestReplica, Rejection, StatusChange


@admin.register(Rejection)
class RejectionAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "reason", "channel", "equipment_id", "detail", "payload_bytes")
    list_filter = ("reason", "channel", "received_at")
    search_fields = ("equipment_id", "detail", "topic")
    date_hierarchy = "received_at"
    readonly_fields = (
        "received_at",
        "channel",
        "topic",
        "equipment_id",
        "reason",
        "detail",
        "payload_bytes",
        "payload_text",
    )
    exclude = ("payload",)

    @admin.display(description="Payload (as received, cut to 4 KiB)")
    def payload_text(self, obj: Rejection) -> str:
        text = bytes(obj.payload).decode("utf-8", errors="backslashreplace")
        return format_html("<pre style='white-space: pre-wrap'>{}</pre>", text)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


@admin.register(StatusChange)
class StatusChangeAdmin(AuditAdmin):
    """Each machine's status history (fleet.telemetry.status): read only, like every audit."""

    list_display = ("at", "equipment", "status", "source")
    list_filter = ("source", "status", "equipment__site")
    search_fields = ("equipment__name",)
    date_hierarchy = "at"
    list_select_related = ("equipment",)


@admin.register(HaulCycle)
class HaulCycleAdmin(ReadOnlyAdmin):
    list_display = (
        "equipment",
        "started_at",
        "loading_unit",
        "dump_point",
        "tonnes",
        "queue_s",
        "load_s",
        "haul_s",
        "dump_s",
        "return_s",
    )
    list_filter = ("loading_unit", "dump_point", "equipment__site")
    search_fields = ("equipment__name",)
    date_hierarchy = "started_at"
    list_select_related = ("equipment", "loading_unit", "dump_point")


class ReplicaStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return replicas.STATES

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        return queryset if self.value() is None else replicas.in_state(queryset, self.value())


@admin.register(IngestReplica)
class IngestReplicaAdmin(ReadOnlyAdmin):
    """The known ingest replicas. Retiring one (a scale-down, a renamed host) is a command, not
    a button: it resumes the replica's broker session to store what it holds, which takes as
    long as the backlog does. ``manage.py ingest --retire NAME``."""

    list_display = (
        "name",
        "replica_state",
        "last_seen",
        "host",
        "stored",
        "retired_at",
        "drained",
        "drain_lag_max_s",
    )
    list_filter = (ReplicaStateFilter,)
    readonly_fields = [f.name for f in IngestReplica._meta.fields]

    @admin.display(description="state")
    def replica_state(self, replica: IngestReplica) -> str:
        state = replicas.state(replica)
        if state != "silent":
            return state
        return format_html(
            "<strong style='color:#b00'>silent</strong> (retire: <code>manage.py ingest "
            "--retire {}</code>)",
            replica.name,
        )

    @admin.display(description="last seen", ordering="last_seen_at")
    def last_seen(self, replica: IngestReplica) -> str:
        age = (timezone.now() - replica.last_seen_at).total_seconds()
        return f"{age:.0f} s ago" if age < 3600 else f"{age / 3600:.1f} h ago"
