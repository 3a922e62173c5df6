"""The admin side of audit records and of the rows history refers to.

- ``ReadOnlyAdmin``: records written by the system (history, the outbox, the registry), browsed
  and never edited by hand.
- ``AuditAdmin`` / ``AuditInline``: an audit table in the admin console is browsed, filtered and
  searched by whoever may view it, and never added to, changed or deleted by anyone, superusers
  included (a superuser passes every permission check, so these answer False outright).
- ``KeepsHistoryMixin``: machines, sites and users are retired or deactivated, not deleted. When
  history refers to one (PROTECT), deleting it is refused with a message that says so and what to
  do instead, in place of Django's page of protected objects.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.utils import NestedObjects, unquote
from django.core.exceptions import PermissionDenied
from django.db import models, router
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by the system (history, audits): browsed, never added, edited or deleted
    by hand. A subclass may let someone delete (quarantined messages, for the superuser)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AuditAdmin(ReadOnlyAdmin):
    """Every audit table's admin. ``fleet.audit.checks`` fails start-up for one that is not.
    Unlike a ReadOnlyAdmin, it may not be loosened: no delete action, no save."""

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        raise PermissionDenied("audit records are append-only")

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        raise PermissionDenied("audit records are append-only")

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        raise PermissionDenied("audit records are append-only")


class AuditInline(admin.TabularInline):
    """Audit rows shown under the row they belong to (a command's events): read-only."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _count(label: Counter[type[models.Model]]) -> str:
    return ", ".join(
        f"{n} {model._meta.verbose_name if n == 1 else model._meta.verbose_name_plural}"
        for model, n in sorted(label.items(), key=lambda item: str(item[0]._meta.verbose_name))
    )


def _delete_unless_kept(
    modeladmin: KeepsHistoryMixin, request: HttpRequest, queryset: models.QuerySet
) -> HttpResponse | None:
    if modeladmin.refuse_deleting_history(request, list(queryset)):
        return None
    return delete_selected(cast(Any, modeladmin), request, queryset)


_delete_unless_kept.allowed_permissions = ("delete",)  # type: ignore[attr-defined]
_delete_unless_kept.short_description = delete_selected.short_description  # type: ignore[attr-defined]


class KeepsHistoryMixin:
    """For a ModelAdmin of rows history refers to. ``keep_instead`` says what to do instead of
    deleting, e.g. 'retire it instead (the “Retire” action)'."""

    keep_instead = "keep it instead"

    def history_of(self, obj: models.Model) -> Counter[type[models.Model]]:
        """What refers to ``obj`` and forbids its deletion, counted per ORM model."""
        collector = NestedObjects(using=router.db_for_write(type(obj)))
        collector.collect([obj])
        return Counter(type(row) for row in collector.protected)

    def refuse_deleting_history(self, request: HttpRequest, objs: list[models.Model]) -> bool:
        """Message each object history keeps; True if there was one (nothing is deleted)."""
        kept = False
        for obj in objs:
            history = self.history_of(obj)
            if history:
                kept = True
                self.message_user(  # type: ignore[attr-defined]
                    request,
                    f"{obj} is kept: history refers to it ({_count(history)}). "
                    f"{self.keep_instead[:1].upper()}{self.keep_instead[1:]}.",
                    messages.ERROR,
                )
        return kept

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if (
            obj is not None
            and self.has_delete_permission(request, obj)  # type: ignore[attr-defined]
            and self.refuse_deleting_history(request, [obj])
        ):
            opts = obj._meta
            return HttpResponseRedirect(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
            )
        return super().delete_view(request, object_id, extra_context)  # type: ignore[misc]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)  # type: ignore[misc]
        if "delete_selected" in actions:
            _, name, description = actions["delete_selected"]
            actions["delete_selected"] = (_delete_unless_kept, name, description)
        return actions
