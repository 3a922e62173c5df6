"""The outbox in the admin: every command with its audit trail, and each truck's desired and
reported state. Commands are issued by the services (stop, resume, zones), never typed in, and
their status changes only through the services: nobody edits or deletes one here."""

from __future__ import annotations

from django.contrib import admin

from fleet.audit.admin import AuditAdmin, AuditInline, ReadOnlyAdmin
from fleet.control.models import (
    Alert,
    AlertEvent,
    AllStop,
    Assignment,
    CollisionIntervention,
    CollisionRisk,
    Command,
    CommandEvent,
    DispatchPlan,
    DispatchTruck,
    FleetMessage,
    HealthPolicy,
    LoadingUnitStatus,
    SiteDispatch,
    TrafficPermission,
    TrafficPermissionEvent,
    TruckState,
)


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


# --- dispatch ---------------------------------------------------------------------------------


@admin.register(DispatchPlan)
class DispatchPlanAdmin(AuditAdmin):
    """Every flow plan the dispatcher solved, with its trigger, inputs and routes."""

    list_display = ("at", "site", "trigger", "status", "tph", "trucks", "solve_ms", "reason")
    list_filter = ("trigger", "status", "site")
    date_hierarchy = "at"
    readonly_fields = (
        "site", "at", "trigger", "reason", "status", "tph", "trucks", "solve_ms", "plan", "inputs"
    )  # fmt: skip


@admin.register(Assignment)
class AssignmentAdmin(AuditAdmin):
    """Every assignment sent to a truck, its reason and the plan it came from."""

    list_display = ("at", "equipment", "loading_unit", "dump", "manual", "actor", "reason")
    list_filter = ("manual", "loading_unit", "equipment__site")
    search_fields = ("equipment__name", "assignment_id", "reason", "actor")
    date_hierarchy = "at"
    list_select_related = ("equipment", "loading_unit", "dump")
    readonly_fields = (
        "equipment", "assignment_id", "loading_unit", "dump", "plan", "manual", "reason",
        "actor", "command", "expected_arrival", "at",
    )  # fmt: skip


@admin.register(LoadingUnitStatus)
class LoadingUnitStatusAdmin(AuditAdmin):
    """Loading units reported down and back, by whom and why."""

    list_display = ("at", "loading_unit", "available", "dig_rate_tph", "actor", "reason")
    list_filter = ("available", "loading_unit__site")
    date_hierarchy = "at"
    readonly_fields = ("loading_unit", "available", "dig_rate_tph", "reason", "actor", "at")


@admin.register(DispatchTruck)
class DispatchTruckAdmin(ReadOnlyAdmin):
    list_display = ("equipment", "production_state", "empty", "arrived", "manual_hold", "state_at")
    list_filter = ("production_state", "manual_hold")
    readonly_fields = (
        "equipment", "production_state", "state_at", "way_id", "reported_assignment_id",
        "empty", "arrived", "assignment", "manual_hold",
    )  # fmt: skip


@admin.register(SiteDispatch)
class SiteDispatchAdmin(admin.ModelAdmin):
    list_display = ("site", "enabled", "changed_at")


class CollisionInterventionInline(AuditInline):
    model = CollisionIntervention
    fields = ("at", "equipment", "kind", "command", "reason")
    readonly_fields = fields


@admin.register(CollisionRisk)
class CollisionRiskAdmin(ReadOnlyAdmin):
    """Pairs of machines predicted to come too close (fleet.control.collision_services)."""

    list_display = ("opened_at", "first", "second", "d_ca_m", "t_ca_s", "min_d_ca_m", "closed_at")
    list_filter = ("site", ("closed_at", admin.EmptyFieldListFilter))
    search_fields = ("first__name", "second__name")
    date_hierarchy = "opened_at"
    list_select_related = ("first", "second")
    inlines = [CollisionInterventionInline]
    readonly_fields = (
        "site",
        "first",
        "second",
        "opened_at",
        "last_seen_at",
        "closed_at",
        "t_ca_s",
        "d_ca_m",
        "min_d_ca_m",
        "source",
    )


@admin.register(CollisionIntervention)
class CollisionInterventionAdmin(AuditAdmin):
    """Every slow-down, stop, prevent-motion and resume for a collision risk, with its reason."""

    list_display = ("at", "equipment", "kind", "reason", "command")
    list_filter = ("kind", "equipment__site")
    search_fields = ("equipment__name", "reason")
    date_hierarchy = "at"
    list_select_related = ("equipment", "command")
    readonly_fields = ("risk", "equipment", "kind", "command", "reason", "at")


# --- alerts -------------------------------------------------------------------------------------


class AlertEventInline(AuditInline):
    model = AlertEvent
    fields = ("at", "action", "actor", "detail")
    readonly_fields = fields


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    """Alerts are raised by control's rules and answered through the API (acknowledge, assign,
    resolve, each audited): listed and filtered here, never edited."""

    list_display = (
        "last_seen_at",
        "equipment",
        "severity",
        "kind",
        "status",
        "source",
        "count",
        "reason",
        "assigned_to",
        "verdict",
    )
    list_filter = (
        "status",
        "verdict",
        "severity",
        "kind",
        "source",
        "site",
        ("assigned_to", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("equipment__name", "reason", "source", "channel")
    date_hierarchy = "last_seen_at"
    list_select_related = ("equipment", "assigned_to")
    inlines = [AlertEventInline]
    readonly_fields = (
        "site",
        "equipment",
        "kind",
        "fold_key",
        "severity",
        "status",
        "source",
        "inputs",
        "channel",
        "reason",
        "count",
        "first_seen_at",
        "last_seen_at",
        "assigned_to",
        "resolved_at",
        "verdict",
        "verdict_at",
        "command_ids",
    )


@admin.register(AlertEvent)
class AlertEventAdmin(AuditAdmin):
    list_display = ("at", "alert", "action", "actor", "detail")
    list_filter = ("action", "alert__site")
    search_fields = ("actor", "detail", "alert__equipment__name")
    date_hierarchy = "at"
    list_select_related = ("alert",)
    readonly_fields = ("alert", "at", "action", "actor", "detail")


@admin.register(HealthPolicy)
class HealthPolicyAdmin(admin.ModelAdmin):
    list_display = ("site", "consecutive", "workshop_way_id", "updated_by", "updated_at")
    readonly_fields = ("updated_by", "updated_at")


# --- traffic permissions ------------------------------------------------------------------------


class TrafficPermissionEventInline(AuditInline):
    model = TrafficPermissionEvent
    fields = ("at", "status", "actor", "reason")
    readonly_fields = fields


@admin.register(TrafficPermission)
class TrafficPermissionAdmin(ReadOnlyAdmin):
    """Who asked for which one-lane section, what was decided, by which rule or person, and
    when the truck acknowledged. Decided by the arbiter or through the API, never edited here."""

    list_display = (
        "requested_at",
        "equipment",
        "zone",
        "way_id",
        "gate",
        "loaded",
        "status",
        "decided_by",
        "reason",
        "overtakes",
        "acknowledged_at",
    )
    list_filter = ("status", "site", "zone", "loaded")
    search_fields = ("equipment__name", "zone__name", "reason", "decided_by")
    date_hierarchy = "requested_at"
    list_select_related = ("equipment", "zone")
    inlines = [TrafficPermissionEventInline]
    readonly_fields = tuple(f.name for f in TrafficPermission._meta.fields)


@admin.register(TrafficPermissionEvent)
class TrafficPermissionEventAdmin(AuditAdmin):
    list_display = ("at", "permission", "status", "actor", "reason")
    list_filter = ("status", "actor", "permission__zone")
    search_fields = ("permission__equipment__name", "actor", "reason")
    date_hierarchy = "at"
    readonly_fields = ("permission", "at", "status", "actor", "reason")
