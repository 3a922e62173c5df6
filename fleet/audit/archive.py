"""Moving old audit rows out of the database to a file: the one path that deletes them.

Audit rows are kept indefinitely by default. ``manage.py archive_audit --older-than-days N`` (or
the ``AUDIT_ARCHIVE_AFTER_DAYS`` setting) takes, table by table, the rows its ORM model says may
go (``AuditRecord.archivable``: older than the cut-off, whole trails only), writes them with
Django's JSON-lines serializer into one gzip file under ``var/audit-archive/`` beside a manifest
(cut-off, rows per table, the file's sha256), and deletes exactly the rows it wrote, in the same
transaction. ``manage.py loaddata <file>`` loads the file back (appending: never over a stored row).

A row is never lost: the file is written, synced and renamed into place before the transaction
that deleted its rows commits, and removed if that commit fails. A crash between the two leaves a
file whose rows are also still stored; the next run archives them again into a new file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, cast

from django.core import serializers
from django.db import models, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from fleet.audit.records import AuditRecord, archive_deletions, audit_models

# Rows per statement: each batch is written, then deleted by primary key.
BATCH_SIZE = 1000


@dataclass
class ArchiveResult:
    older_than_days: int
    cutoff: datetime
    dry_run: bool
    counts: Counter[str] = field(default_factory=Counter)
    path: Path | None = None  # None when nothing was archived (or a dry run)

    @property
    def rows(self) -> int:
        return sum(self.counts.values())


def archive_audit(
    older_than_days: int,
    *,
    directory: Path,
    dry_run: bool = False,
    now: datetime | None = None,
) -> ArchiveResult:
    """Move audit rows older than ``older_than_days`` to a file in ``directory``. A dry run
    does the same work in a transaction it rolls back, and writes nothing: its counts are
    exactly what a real run would move."""
    if older_than_days < 1:
        raise ValueError("the age must be at least 1 day")
    now = now or timezone.now()
    result = ArchiveResult(older_than_days, now - timedelta(days=older_than_days), dry_run)
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    final = directory / f"audit-{stamp}.jsonl.gz"
    partial = final.with_name(final.name + ".partial")
    manifest = final.with_name(f"audit-{stamp}.manifest.json")
    try:
        with transaction.atomic():
            with archive_deletions(), _sink(partial, dry_run) as out:
                for model in audit_models():
                    _archive_table(model, result, out)
            if dry_run:
                transaction.set_rollback(True)
            elif result.rows:
                partial.replace(final)
                result.path = final
                _write_manifest(manifest, result, now)
    except BaseException:
        for path in (final, manifest):
            if result.path is not None:
                path.unlink(missing_ok=True)
        raise
    finally:
        partial.unlink(missing_ok=True)
    return result


@contextmanager
def _sink(path: Path, dry_run: bool) -> Iterator[IO[str] | None]:
    if dry_run:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as raw:
        # No name or time in the gzip header: the same rows make the same bytes.
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed,
            io.TextIOWrapper(packed, encoding="utf-8", newline="\n") as text,
        ):
            yield text
        raw.flush()
        os.fsync(raw.fileno())


def _archive_table(model: type[AuditRecord], result: ArchiveResult, out: IO[str] | None) -> None:
    parent = (
        cast(models.ForeignKey, model._meta.get_field(model.audit_archive_parent))
        if model.audit_archive_parent
        else None
    )
    rows_of = model.archivable(result.cutoff).order_by("pk")
    last = None
    while True:
        page = rows_of if last is None else rows_of.filter(pk__gt=last)
        rows = list(page[:BATCH_SIZE])
        if not rows:
            return
        last = rows[-1].pk
        keys = [row.pk for row in rows]
        owners: list[models.Model] = []
        if parent is not None:
            # The parents whose whole trail is in this batch go with it (a command with the
            # last of its events); the others wait for the batch that holds their last row.
            elsewhere = model._base_manager.filter(**{parent.attname: OuterRef("pk")}).exclude(
                pk__in=keys
            )
            owner_model = cast(type[models.Model], parent.related_model)
            owners = list(
                owner_model._base_manager.filter(
                    pk__in={getattr(row, parent.attname) for row in rows}
                )
                .exclude(Exists(elsewhere))
                .order_by("pk")
            )
        _write(out, owners, result)
        _write(out, rows, result)
        model._base_manager.filter(pk__in=keys).delete()
        if owners:
            type(owners[0])._base_manager.filter(pk__in=[o.pk for o in owners]).delete()


def _write(out: IO[str] | None, rows: list[models.Model], result: ArchiveResult) -> None:
    if not rows:
        return
    result.counts[rows[0]._meta.label_lower] += len(rows)
    if out is not None:
        out.write(serializers.serialize("jsonl", rows))


def _write_manifest(path: Path, result: ArchiveResult, now: datetime) -> None:
    if result.path is None:
        return
    digest = hashlib.sha256(result.path.read_bytes()).hexdigest()
    manifest = {
        "file": result.path.name,
        "created_at": now.isoformat(),
        "older_than_days": result.older_than_days,
        "cutoff": result.cutoff.isoformat(),
        "counts": dict(sorted(result.counts.items())),
        "rows": result.rows,
        "sha256": digest,
        "format": "Django serializer jsonl, gzip",
        "restore": f"python manage.py loaddata {result.path.name}",
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n")
