"""The outbox in the admin: every command with its audit trail, and each truck's desired and
reported state. Commands are issued by the services (stop, resume, zones), never typed in."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from fleet.control.models import Command, CommandEvent, TruckState
from fleet.telemetry.admin import ReadOnlyAdmin


class CommandEventInline(admin.TabularInline):
    model = CommandEvent
    fields = ("at", "status", "actor", "detail")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Command)
class CommandAdmin(ReadOnlyAdmin):
    list_display = (
        "issued_at",
        "equipment",
        "message_name",
        "status",
        "reason",
        "attempts",
        "answered_at",
    )
    list_filter = ("status", "message_name", "equipment__site")
    search_fields = ("equipment__name", "command_id", "reason")
    date_hierarchy = "issued_at"
    list_select_related = ("equipment",)
    inlines = [CommandEventInline]
    readonly_fields = (
        "command_id",
        "equipment",
        "message_name",
        "body",
        "status",
        "reason",
        "issued_by",
        "issued_at",
        "expires_at",
        "sent_at",
        "attempts",
        "next_attempt_at",
        "answered_at",
        "answer",
        "supersede_key",
        "answer_key",
    )


@admin.register(TruckState)
class TruckStateAdmin(ReadOnlyAdmin):
    list_display = (
        "equipment",
        "connection",
        "stop_id",
        "all_stop_id",
        "reported_all_stop",
        "resynced_at",
    )
    list_filter = ("connection", "equipment__site")
    search_fields = ("equipment__name",)
    list_select_related = ("equipment",)
