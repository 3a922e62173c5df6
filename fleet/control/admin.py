"""The outbox in the admin: every command with its audit trail, and each truck's desired and
reported state. Commands are issued by the services (stop, resume, zones), never typed in, and
their status changes only through the services: nobody edits or deletes one here."""

from __future__ import annotations

from django.contrib import admin

from fleet.audit.admin import AuditAdmin, AuditInline, ReadOnlyAdmin
from fleet.control.models import AllStop, Command, CommandEvent, FleetMessage, TruckState


class CommandEventInline(AuditInline):
    model = CommandEvent
    fields = ("at", "status", "actor", "detail")
    readonly_fields = fields


@admin.register(CommandEvent)
class CommandEventAdmin(AuditAdmin):
    """Every command's trail in one list: what changed, when, by whom or what."""

    list_display = ("at", "command", "status", "actor", "detail")
    list_filter = ("status", "actor", "command__message_name", "command__equipment__site")
    search_fields = ("command__equipment__name", "command__command_id", "actor", "detail")
    date_hierarchy = "at"
    list_select_related = ("command",)
    readonly_fields = ("command", "at", "status", "actor", "detail")


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
        "safe_stopped_at",
        "resynced_at",
    )
    list_filter = ("connection", "equipment__site", ("safe_stopped_at", admin.EmptyFieldListFilter))
    search_fields = ("equipment__name",)
    list_select_related = ("equipment",)


@admin.register(AllStop)
class AllStopAdmin(AuditAdmin):
    """Every all-stop applied and removed, with its reason and who; the machines' answers are
    their commands (Commands, message MachineAllStopRequestV1)."""

    list_display = ("at", "site", "mode", "actor", "reason", "machines")
    list_filter = ("mode", "site")
    search_fields = ("reason", "actor", "stop_id")
    date_hierarchy = "at"
    readonly_fields = ("site", "mode", "stop_id", "reason", "actor", "machines", "at")


@admin.register(FleetMessage)
class FleetMessageAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "site", "message_name", "published_at")
    list_filter = ("message_name", "site")
    readonly_fields = ("site", "message_name", "body", "answer_key", "created_at", "published_at")
