"""The ORM side of audit records: an abstract base whose rows are written once and never changed
or deleted, except by the archive (``fleet.audit.archive``) after it has written them to a file.

Enforcement cannot rest on permissions: superusers hold them all. So the refusals live in the
ORM model, its queryset and two signals, on every path Django offers for changing a stored row:

- ``save()`` of a stored row, ``save_base()`` called directly, and a fixture loaded over a
  stored row (``pre_save``, raw);
- ``delete()``; a query's ``update()``, ``delete()``, ``bulk_update()`` and
  ``bulk_create(update_conflicts=True)`` (an upsert); related managers (they use the default
  manager's queryset); Django's internal base manager (``Meta.base_manager_name``);
- a cascade from a deleted parent (``pre_delete``: Django's collector sends it for every row it
  deletes once a receiver exists, so no fast path skips it). Foreign keys of audit tables are
  PROTECT anyway (checked by ``fleet.audit.checks``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, ClassVar

from django.apps import apps
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models.signals import class_prepared, pre_delete, pre_save

# Set only by ``archive_deletions()``, which only ``fleet.audit.archive`` enters.
_archiving: ContextVar[bool] = ContextVar("haulmind_audit_archiving", default=False)


class AuditError(PermissionDenied):
    """A change or deletion of an audit row was refused. A ``PermissionDenied``, so a view that
    ever let one through answers 403, not 500."""


def _refused(model: type[models.Model], what: str) -> AuditError:
    return AuditError(
        f"{model._meta.label} is an audit record and append-only: {what} is refused. "
        "Rows are kept; `manage.py archive_audit` moves old ones to a file."
    )


@contextmanager
def archive_deletions() -> Iterator[None]:
    """The one path allowed to delete audit rows: ``fleet.audit.archive``, once it has written
    them to the archive file. Nothing else enters it (``tests/audit`` checks the callers)."""
    token = _archiving.set(True)
    try:
        yield
    finally:
        _archiving.reset(token)


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        raise _refused(self.model, "updating rows with a query")

    update.alters_data = True  # type: ignore[attr-defined]

    def delete(self) -> tuple[int, dict[str, int]]:
        if not _archiving.get():
            raise _refused(self.model, "deleting rows with a query")
        return super().delete()

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]

    def bulk_update(self, objs: Iterable[Any], fields: Any, batch_size: Any = None) -> int:
        # Refused here, before Django's bulk_update opens its transaction (an error inside it
        # would leave the caller's transaction broken).
        raise _refused(self.model, "updating rows with bulk_update")

    bulk_update.alters_data = True  # type: ignore[attr-defined]

    def bulk_create(self, objs: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        if kwargs.get("update_conflicts"):
            raise _refused(self.model, "an upsert (bulk_create with update_conflicts)")
        return super().bulk_create(objs, *args, **kwargs)

    bulk_create.alters_data = True  # type: ignore[attr-defined]


class AuditManager(models.Manager.from_queryset(AuditQuerySet)):  # type: ignore[misc]
    pass


class AuditRecord(models.Model):
    """Inherit this (and ``AuditRecord.Meta`` in the ORM model's own Meta) to make a table an
    audit record. See ``fleet.audit`` for everything that follows from it."""

    # The DateTimeField that ages a row: the archive moves rows older than its cut-off by it.
    audit_time_field: ClassVar[str] = ""
    # Boolean fields a service may set once, False to True, on a stored row (a later event
    # marking an earlier one, e.g. a promotion rolled back); nothing else ever changes.
    audit_one_way_flags: ClassVar[tuple[str, ...]] = ()
    # A foreign key whose row is part of this trail (a command for its events): the archive
    # moves that row with the last of its trail.
    audit_archive_parent: ClassVar[str] = ""

    objects = AuditManager()

    class Meta:
        abstract = True
        # Django's internal manager (related lookups, deletion) is the guarded one too.
        base_manager_name = "objects"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if args:
            raise TypeError("pass save()'s options by keyword")
        if not self._state.adding:
            self._set_one_way_flags(kwargs.get("update_fields"), kwargs.get("using"))
            return
        if kwargs.get("force_update"):
            raise _refused(type(self), "an update")
        # A new row with the key of a stored one fails to insert; it never overwrites.
        kwargs["force_insert"] = True
        super().save(**kwargs)

    save.alters_data = True  # type: ignore[attr-defined]

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if not _archiving.get():
            raise _refused(type(self), "deleting a row")
        return super().delete(*args, **kwargs)

    delete.alters_data = True  # type: ignore[attr-defined]

    def _set_one_way_flags(self, update_fields: Iterable[str] | None, using: str | None) -> None:
        flags = set(update_fields or ())
        if not flags or not flags <= set(self.audit_one_way_flags):
            raise _refused(type(self), "changing a stored row")
        if any(getattr(self, flag) is not True for flag in flags):
            raise _refused(type(self), f"clearing {', '.join(sorted(flags))}")
        unset = (
            type(self)
            ._base_manager.db_manager(using)
            .filter(pk=self.pk, **dict.fromkeys(flags, False))
        )
        # The one update an audit row allows, conditional so a flag is set exactly once.
        if not models.QuerySet.update(unset, **dict.fromkeys(flags, True)):
            raise AuditError(
                f"{self._meta.label} {self.pk}: {', '.join(sorted(flags))} already set "
                "(a one-way flag is set once)"
            )

    @classmethod
    def archivable(cls, cutoff: datetime) -> models.QuerySet:
        """The rows the archive may move: by default those older than ``cutoff`` by
        ``audit_time_field``. A table narrows this where live code still reads old rows or a
        trail must move whole."""
        return cls._default_manager.filter(**{f"{cls.audit_time_field}__lt": cutoff})


def audit_models() -> list[type[AuditRecord]]:
    """Every audit table (concrete ORM models; proxies share their table's rows)."""
    return [
        model
        for model in apps.get_models()
        if issubclass(model, AuditRecord) and not model._meta.proxy
    ]


def _refuse_cascade(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    if not _archiving.get():
        raise _refused(sender, "deleting a row (with what it belongs to)")


def _refuse_overwrite(
    sender: type[models.Model], instance: models.Model, raw: bool = False, **kwargs: Any
) -> None:
    if raw:  # loaddata: restoring an archive appends, it never overwrites a stored row
        stored = sender._base_manager.db_manager(kwargs.get("using")).filter(pk=instance.pk)
        if instance.pk is not None and stored.exists():
            raise _refused(sender, f"loading a fixture over the stored row {instance.pk}")
    elif not instance._state.adding:  # save_base() called directly on a stored row
        raise _refused(sender, "changing a stored row")


def _guard(sender: type[models.Model], **kwargs: Any) -> None:
    if issubclass(sender, AuditRecord) and not sender._meta.abstract:
        label = sender._meta.label
        pre_delete.connect(
            _refuse_cascade, sender=sender, weak=False, dispatch_uid=f"audit-delete-{label}"
        )
        pre_save.connect(
            _refuse_overwrite, sender=sender, weak=False, dispatch_uid=f"audit-save-{label}"
        )


class_prepared.connect(_guard, dispatch_uid="haulmind-audit-records")
