"""The equipment register and machine credentials in the admin console.

Secrets are shown once, on the page that issues them, and never stored: the database keeps only
hashes (``fleet.vehicles.credentials``). Credentials are never edited; they are revoked. A machine
with history is retired, never deleted.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from fleet.audit.admin import KeepsHistoryMixin
from fleet.vehicles.credentials import IssuedCredentials, issue_credentials, revoke_credentials
from fleet.vehicles.logins import confirm_logins
from fleet.vehicles.models import Credential, Equipment, WorkshopRecord
from fleet.vehicles.services import retire_equipment

PROVISION_PERMISSION = "vehicles.provision_equipment"


def _broker_note() -> str:
    # Each change reached the broker as it committed; confirming tells what it really holds.
    return confirm_logins()


class ProvisioningMixin:
    def has_provision_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PROVISION_PERMISSION)


class CredentialInline(admin.TabularInline):
    model = Credential
    fields = ("kind", "key_id", "created_at", "revoked_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Equipment)
class EquipmentAdmin(KeepsHistoryMixin, ProvisioningMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "kind",
        "site",
        "status",
        "autonomous",
        "payload_capacity_t",
        "live_credentials",
        "id",
    )
    list_filter = ("site", "kind", "status", "autonomous")
    search_fields = ("name", "id", "manufacturer", "model")
    ordering = ("site", "kind", "name")
    list_select_related = ("site",)
    readonly_fields = ("id", "created_at")
    fields = (
        "id",
        "site",
        "kind",
        "name",
        "manufacturer",
        "model",
        "payload_capacity_t",
        "autonomous",
        "status",
        "created_at",
    )
    inlines = (CredentialInline,)
    actions = ("retire", "issue_machine_credentials", "revoke_all_credentials")
    keep_instead = "retire it instead (the “Retire” action)"

    def save_model(self, request: HttpRequest, obj: Equipment, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "status" in form.changed_data and obj.status == Equipment.Status.RETIRED:
            # Retired by editing the form: the same as the action, its logins go too.
            retire_equipment(obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Equipment]:
        live = Q(credentials__revoked_at__isnull=True)
        return super().get_queryset(request).annotate(n_live=Count("credentials", filter=live))

    @admin.display(description="live credentials", ordering="n_live")
    def live_credentials(self, equipment: Equipment) -> int:
        return equipment.n_live  # type: ignore[attr-defined]

    @admin.action(
        description="Retire the selected machines (kept with their history; credentials revoked)",
        permissions=["change"],
    )
    def retire(self, request: HttpRequest, queryset: QuerySet[Equipment]) -> None:
        retired: list[str] = []
        revoked = 0
        with transaction.atomic():
            machines = Equipment.objects.select_for_update().filter(
                pk__in=list(queryset.values_list("pk", flat=True))
            )
            for machine in machines.exclude(status=Equipment.Status.RETIRED):
                revoked += retire_equipment(machine)
                retired.append(machine.name)
        if not retired:
            self.message_user(request, "Nothing to retire: the selection is already retired.")
            return
        retired.sort()
        note = f"; {revoked} credential(s) revoked, {_broker_note()}" if revoked else ""
        self.message_user(request, f"Retired {', '.join(retired)}{note}.", messages.SUCCESS)

    @admin.action(
        description="Issue credentials (revokes the current ones; secrets shown once)",
        permissions=["provision"],
    )
    def issue_machine_credentials(
        self, request: HttpRequest, queryset: QuerySet[Equipment]
    ) -> HttpResponse | None:
        issued: list[tuple[Equipment, IssuedCredentials]] = []
        refused: list[str] = []
        with transaction.atomic():
            for machine in queryset.select_related("site"):
                if machine.status == Equipment.Status.RETIRED:
                    refused.append(f"{machine}: retired")
                    continue
                try:
                    issued.append((machine, issue_credentials(machine)))
                except ValueError as exc:  # a manned machine
                    refused.append(str(exc))
        for reason in refused:
            self.message_user(request, f"No credentials issued: {reason}", messages.WARNING)
        if not issued:
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "New machine credentials",
            "issued": issued,
            "refused": refused,
            "broker_note": _broker_note(),
        }
        response = TemplateResponse(
            request, "admin/vehicles/equipment/issued_credentials.html", context
        )
        # The page holds secrets: no browser or proxy may keep a copy.
        add_never_cache_headers(response)
        response["Cache-Control"] = "no-store, no-cache, must-revalidate, private, max-age=0"
        return response

    @admin.action(
        description="Revoke all credentials of the selected machines", permissions=["provision"]
    )
    def revoke_all_credentials(self, request: HttpRequest, queryset: QuerySet[Equipment]) -> None:
        revoked = sum(revoke_credentials(machine) for machine in queryset)
        self.message_user(request, f"Revoked {revoked} credential(s); {_broker_note()}.")


class LiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("live", "Live"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Credential]) -> QuerySet:
        if self.value() == "live":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(Credential)
class CredentialAdmin(ProvisioningMixin, admin.ModelAdmin):
    """Read-only: credentials are issued from the equipment list and only ever revoked. The hash
    is not shown; it is of no use to a person and one less thing to leak."""

    list_display = ("equipment", "kind", "key_id", "state", "created_at", "revoked_at")
    list_filter = (LiveFilter, "kind", "equipment__site")
    search_fields = ("equipment__name", "key_id")
    ordering = ("equipment", "kind", "-created_at")
    list_select_related = ("equipment",)
    fields = ("equipment", "kind", "key_id", "state", "created_at", "revoked_at")
    readonly_fields = fields
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # kept as history: which key a machine used, and when it stopped working

    @admin.display(description="state", boolean=False)
    def state(self, credential: Credential) -> str:
        return "revoked" if credential.revoked_at else "live"

    @admin.action(
        description="Revoke (every live credential of the selected credentials' machines)",
        permissions=["provision"],
    )
    def revoke(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        # revoke_credentials works per machine: a machine whose MQTT password leaked must not
        # keep a working REST token either, so both go and it is issued a fresh pair.
        machines = Equipment.objects.filter(
            pk__in=queryset.filter(revoked_at__isnull=True).values("equipment_id")
        )
        revoked = {machine.name: revoke_credentials(machine) for machine in machines}
        if not revoked:
            self.message_user(request, "Nothing to revoke: the selection is already revoked.")
            return
        names = ", ".join(f"{name} ({n})" for name, n in sorted(revoked.items()))
        self.message_user(request, f"Revoked credentials of {names}; {_broker_note()}.")


@admin.register(WorkshopRecord)
class WorkshopRecordAdmin(admin.ModelAdmin):
    """The faults the workshop found: kept by supervisors, read by every role; the labels a
    site's own fault head learns from. Imported ones say so in their source."""

    list_display = ("found_at", "equipment", "kind", "channel", "onset_at", "repaired_at", "source")
    list_filter = ("source", "kind", "equipment__site")
    search_fields = ("equipment__name", "channel", "note")
    date_hierarchy = "found_at"
    list_select_related = ("equipment",)
    readonly_fields = ("recorded_at",)
