"""Workshop records: the simulator's fault-label log imported as the workshop's records, marked
as such, idempotently (the log is rewritten whole as faults begin and end)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from fleet.vehicles.models import WorkshopRecord
from tests.factories import haul_truck

pytestmark = pytest.mark.django_db
ONSET = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def label(truck, kind: str, onset: str, end: str | None) -> str:
    return json.dumps(
        {
            "equipment_id": str(truck.id),
            "kind": kind,
            "channel": "tyre_pressure_kpa_2.1" if kind == "tyre_leak" else "coolant_temp_c",
            "tyre": None,
            "onset_s": 0.0,
            "end_s": None,
            "intensity": 1.5,
            "unit": "kPa/min",
            "onset": onset,
            "end": end,
        }
    )


def test_the_simulators_labels_become_workshop_records_marked_as_imported(site, tmp_path):
    truck = haul_truck(site)
    path = tmp_path / "fault-labels.jsonl"
    lines = [
        label(truck, "tyre_leak", "2026-12-06T08:00:00.000+00:00", None),
        label(truck, "overheating", "2026-12-06T09:00:00.000+00:00", "2026-12-06T09:40:00+00:00"),
        json.dumps(
            {
                "equipment_id": "00000000-0000-0000-0000-000000000001",
                "kind": "tyre_leak",
                "onset": "2026-12-06T08:00:00+00:00",
            }
        ),
    ]
    path.write_text("\n".join(lines) + "\n")
    call_command("import_fault_labels", str(path), "--site", site.slug)
    leak, hot = (
        WorkshopRecord.objects.get(kind="tyre_leak"),
        WorkshopRecord.objects.get(kind="overheating"),
    )
    assert leak.source == hot.source == WorkshopRecord.Source.SIMULATOR
    assert leak.get_source_display() == "Imported from the simulator's fault-label log"
    assert leak.onset_at == ONSET and leak.found_at == ONSET and leak.repaired_at is None
    assert hot.repaired_at == datetime(2026, 12, 6, 9, 40, tzinfo=UTC)

    # The leak is repaired later: importing the rewritten log updates it, adds nothing.
    lines[0] = label(
        truck, "tyre_leak", "2026-12-06T08:00:00.000+00:00", "2026-12-06T10:00:00+00:00"
    )
    path.write_text("\n".join(lines) + "\n")
    call_command("import_fault_labels", str(path))
    assert WorkshopRecord.objects.count() == 2
    leak.refresh_from_db()
    assert leak.repaired_at == datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
