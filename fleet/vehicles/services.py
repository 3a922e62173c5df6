"""The equipment register's changes that reach beyond one row."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from fleet.vehicles.credentials import revoke_credentials
from fleet.vehicles.models import Equipment, WorkshopRecord


@transaction.atomic
def retire_equipment(equipment: Equipment) -> int:
    """Take a machine out of service for good: retired (kept, with its history), and its
    credentials revoked, so once this commits its broker login is gone and a connected session
    closed. The number of credentials revoked."""
    if equipment.status != Equipment.Status.RETIRED:
        equipment.status = Equipment.Status.RETIRED
        equipment.save(update_fields=["status"])
    return revoke_credentials(equipment)


@dataclass(frozen=True)
class ImportedLabels:
    created: int
    updated: int
    skipped: int  # rows of machines not in the register (or not at the site asked for)


@transaction.atomic
def import_fault_labels(
    lines: Iterable[str], *, site_id: uuid.UUID | None = None
) -> ImportedLabels:
    """The simulator's fault-label log (JSONL, ``simulate --labels``) as workshop records
    marked ``source=simulator``: the demo mine's stand-in for a workshop. Idempotent: a fault
    already imported is updated (its repair time, once it ended), never duplicated. Rows
    without ISO times (a log written without a start time) or of unknown machines are
    skipped."""
    rows = [json.loads(line) for line in lines if line.strip()]
    machines = Equipment.objects.filter(id__in={_uuid(r.get("equipment_id")) for r in rows})
    if site_id is not None:
        machines = machines.filter(site_id=site_id)
    known = set(machines.values_list("id", flat=True))
    records, skipped = [], 0
    for row in rows:
        equipment = _uuid(row.get("equipment_id"))
        if equipment not in known or not row.get("onset") or row.get("kind") not in KINDS:
            skipped += 1
            continue
        onset = datetime.fromisoformat(row["onset"])
        end = datetime.fromisoformat(row["end"]) if row.get("end") else None
        records.append(
            WorkshopRecord(
                equipment_id=equipment,
                kind=row["kind"],
                channel=str(row.get("channel") or "")[:80],
                # The simulator knows the onset; a workshop finds the fault at the latest when
                # the machine comes in for its repair.
                found_at=end or onset,
                onset_at=onset,
                repaired_at=end,
                source=WorkshopRecord.Source.SIMULATOR,
                external_key=f"{equipment}:{row['kind']}:{row.get('channel')}:{row['onset']}",
                note=f"simulator label: intensity {row.get('intensity')} {row.get('unit', '')}",
            )
        )
    by_key = {r.external_key: r for r in records}
    existing = {
        r.external_key: r
        for r in WorkshopRecord.objects.select_for_update().filter(
            source=WorkshopRecord.Source.SIMULATOR, external_key__in=by_key
        )
    }
    changed = []
    for key, row in existing.items():
        new = by_key[key]
        if (row.found_at, row.repaired_at) != (new.found_at, new.repaired_at):
            row.found_at, row.repaired_at = new.found_at, new.repaired_at
            changed.append(row)
    WorkshopRecord.objects.bulk_update(changed, ["found_at", "repaired_at"])
    WorkshopRecord.objects.bulk_create([r for k, r in by_key.items() if k not in existing])
    return ImportedLabels(len(by_key) - len(existing), len(changed), skipped)


KINDS = frozenset(WorkshopRecord.Kind.values)


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
