"""The quarantine of refused messages and the derived haul cycles, read-only in the admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from fleet.telemetry.models import HaulCycle, Rejection


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by the system (history, audits): browsed, never added, edited or deleted
    by hand. A subclass may let someone delete (quarantined messages, for the superuser)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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
