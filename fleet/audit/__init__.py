"""Audit records: ORM model tables that are append-only.

A table is an audit record by declaring it, never by copying code::

    from fleet.audit import AuditRecord

    class DrainChange(AuditRecord):
        audit_time_field = "at"          # what ages a row for the archive
        ...
        class Meta(AuditRecord.Meta):    # keeps the guarded base manager
            ordering = ["-at"]

and by registering its admin as an ``fleet.audit.admin.AuditAdmin``. From then on:

- the ORM refuses to change or delete a stored row, whatever the path: ``save()`` of a stored
  row, ``delete()``, a query's ``update()`` / ``delete()`` / ``bulk_update()``, a related
  manager, a cascade from a deleted parent, a fixture loaded over a stored row
  (``records.AuditError``, a ``PermissionDenied``: a 403 if it ever reaches a view);
- the admin shows it read-only to everyone, superusers included (no add, change, delete or
  delete action);
- the roles never grant add / change / delete on it (``fleet.accounts.roles``);
- ``manage.py check`` fails if its admin is not an ``AuditAdmin``, if it lost the guarded base
  manager, or if one of its foreign keys would erase (CASCADE) or rewrite (SET_NULL) it;
- ``manage.py archive_audit`` is the one path that removes rows: those older than a configured
  age, after writing them to a file (``fleet.audit.archive``). By default nothing is archived.

Direct SQL is outside the application's reach and outside what this guards.
"""

from fleet.audit import checks as _checks  # noqa: F401  (registers the system checks)
from fleet.audit.records import AuditError, AuditManager, AuditQuerySet, AuditRecord, audit_models

__all__ = ["AuditError", "AuditManager", "AuditQuerySet", "AuditRecord", "audit_models"]
