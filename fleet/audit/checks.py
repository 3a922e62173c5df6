"""System checks (``manage.py check``, CI): an audit table declared but not guarded everywhere
fails start-up, instead of being found out when a row goes missing."""

from __future__ import annotations

from typing import Any

from django.contrib.admin import AdminSite
from django.core import checks
from django.db import models

# A deleted parent must not erase an audit row (CASCADE) nor rewrite who or what it names
# (SET_NULL, SET_DEFAULT, SET(...)): the parent's deletion is refused instead.
KEEPING = (models.PROTECT, models.RESTRICT, models.DO_NOTHING)


@checks.register(checks.Tags.models)
def audit_tables_are_guarded(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from django.contrib import admin

    return check_audit_tables(admin_site=admin.site)


def check_audit_tables(*, admin_site: AdminSite) -> list[checks.CheckMessage]:
    from fleet.audit.admin import AuditAdmin, AuditInline
    from fleet.audit.records import AuditQuerySet, AuditRecord, audit_models

    errors: list[checks.CheckMessage] = []
    for model, model_admin in admin_site._registry.items():
        if issubclass(model, AuditRecord) and not isinstance(model_admin, AuditAdmin):
            errors.append(
                checks.Error(
                    f"{model._meta.label} is an audit record but its admin "
                    f"{type(model_admin).__name__} is not a fleet.audit.admin.AuditAdmin",
                    hint="Register it with an AuditAdmin subclass: read-only for everyone.",
                    obj=type(model_admin),
                    id="audit.E001",
                )
            )
        for inline in model_admin.inlines:
            if issubclass(inline.model, AuditRecord) and not issubclass(inline, AuditInline):
                errors.append(
                    checks.Error(
                        f"{inline.__name__} shows {inline.model._meta.label} (an audit record) "
                        "but is not a fleet.audit.admin.AuditInline",
                        obj=inline,
                        id="audit.E001",
                    )
                )
    for model in audit_models():
        label = model._meta.label
        if not isinstance(model._base_manager.get_queryset(), AuditQuerySet):
            errors.append(
                checks.Error(
                    f"{label}'s base manager is not the guarded AuditManager",
                    hint="Declare its Meta as `class Meta(AuditRecord.Meta):`.",
                    obj=model,
                    id="audit.E002",
                )
            )
        for field in model._meta.concrete_fields:
            remote = field.remote_field
            if remote is not None and remote.on_delete not in KEEPING:
                errors.append(
                    checks.Error(
                        f"{label}.{field.name} is on_delete={remote.on_delete.__name__}: deleting "
                        f"a {remote.model._meta.verbose_name} would erase or rewrite audit rows",
                        hint="Use models.PROTECT: retire or deactivate the parent instead.",
                        obj=field,
                        id="audit.E003",
                    )
                )
        time_field = next(
            (f for f in model._meta.concrete_fields if f.name == model.audit_time_field), None
        )
        if not isinstance(time_field, models.DateTimeField):
            errors.append(
                checks.Error(
                    f"{label}.audit_time_field ({model.audit_time_field!r}) does not name one of "
                    "its DateTimeFields",
                    hint="The archive ages rows by it.",
                    obj=model,
                    id="audit.E004",
                )
            )
    return errors
