"""``python manage.py archive_audit [--older-than-days N] [--dry-run] [--out DIR]``

Moves audit rows older than N days (default: the ``AUDIT_ARCHIVE_AFTER_DAYS`` setting; unset or
0 keeps them indefinitely) to ``var/audit-archive/audit-<time>.jsonl.gz`` with a manifest, and
deletes exactly those rows. See ``fleet.audit.archive`` and docs/operations.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleet.audit.archive import archive_audit


class Command(BaseCommand):
    help = "Move audit rows older than an age to a gzipped JSON-lines file, then delete them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than-days",
            type=int,
            default=None,
            help="Archive rows older than this many days (default: AUDIT_ARCHIVE_AFTER_DAYS; "
            "unset keeps every row).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would move; change nothing."
        )
        parser.add_argument(
            "--out",
            type=Path,
            default=None,
            help="Directory of the archive files (default: AUDIT_ARCHIVE_DIR, var/audit-archive).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than_days"]
        if days is None:
            days = settings.AUDIT_ARCHIVE_AFTER_DAYS
            if not days:
                self.stdout.write(
                    "Audit rows are kept indefinitely: AUDIT_ARCHIVE_AFTER_DAYS is not set and "
                    "no --older-than-days was given. Nothing archived."
                )
                return
        if days < 1:
            raise CommandError(f"--older-than-days must be at least 1 (got {days})")
        directory = (
            options["out"] or settings.AUDIT_ARCHIVE_DIR or Path(settings.VAR_DIR) / "audit-archive"
        )
        result = archive_audit(days, directory=Path(directory), dry_run=options["dry_run"])
        when = f"older than {days} days (before {result.cutoff:%Y-%m-%d %H:%M} UTC)"
        if not result.rows:
            self.stdout.write(f"Nothing {when} to archive.")
            return
        for label, count in sorted(result.counts.items()):
            self.stdout.write(f"  {label}: {count}")
        if result.dry_run:
            self.stdout.write(f"Would archive {result.rows} audit rows {when}.")
        else:
            self.stdout.write(
                self.style.SUCCESS(f"Archived {result.rows} audit rows {when} to {result.path}")
            )
