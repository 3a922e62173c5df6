"""Audit rows are kept indefinitely by default. ``manage.py archive_audit`` moves rows older than
a configured age to a gzipped JSON-lines file under var/, counted in a manifest, and deletes
exactly those rows; the file loads back with ``manage.py loaddata``."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.core.serializers import serialize
from django.utils import timezone

from fleet.audit import audit_models
from fleet.control import services as control
from fleet.control.models import Command, CommandEvent
from fleet.learning.models import AliasChange
from fleet.mine.models import ZoneResponse
from fleet.pool.models import DrainChange
from tests.audit.conftest import model_version, written_at

pytestmark = pytest.mark.django_db

NOW = timezone.now()
OLD = NOW - timedelta(days=400)


@pytest.fixture(autouse=True)
def archive_dir(settings, isolated_var_dir) -> Path:
    """The archive files of a test go to its scratch var/, whatever the settings say."""
    settings.AUDIT_ARCHIVE_DIR = isolated_var_dir / "audit-archive"
    return settings.AUDIT_ARCHIVE_DIR


def archive(*args: str) -> str:
    out = io.StringIO()
    call_command("archive_audit", *args, stdout=out)
    return out.getvalue()


def archive_files(var_dir: Path) -> list[Path]:
    return sorted((var_dir / "audit-archive").glob("audit-*.jsonl.gz"))


def snapshot() -> dict[str, list[dict]]:
    """Every audit row and every command, as Django serialises them."""
    models = [Command, *audit_models()]
    return {
        m._meta.label_lower: json.loads(serialize("json", m._base_manager.order_by("pk")))
        for m in models
    }


@pytest.fixture
def history(site, truck, supervisor) -> dict[str, list]:
    """A year-old trail beside today's: what the archive takes and what it leaves."""
    zone = site.zones.get()
    v1, v2, v3 = model_version(1), model_version(2), model_version(3)
    with written_at(OLD):
        closed = control.stop_truck(truck, reason="old stop", actor=supervisor)
        control.record_answer(truck.pk, command_id=closed.command_id, accepted=True)
        left_open = control.resume_truck(truck, reason="old resume", actor=supervisor)
        old_response = ZoneResponse.objects.create(
            zone=zone, equipment=truck, request="activate", accepted=True, responded_at=OLD
        )
        undone = AliasChange.objects.create(
            name="fault-head",
            alias="champion",
            action="promote",
            from_version=v1,
            to_version=v2,
            at=OLD,
        )
        undone.rolled_back = True
        undone.save(update_fields=["rolled_back"])
        roll_back = AliasChange.objects.create(
            name="fault-head",
            alias="champion",
            action="roll_back",
            from_version=v2,
            to_version=v1,
            at=OLD,
        )
        in_force = AliasChange.objects.create(
            name="fault-head",
            alias="champion",
            action="promote",
            from_version=v1,
            to_version=v3,
            at=OLD,
        )
        old_drain = DrainChange.objects.create(node="gpu-1", draining=True, by_name="sofia")
    # Today: a new stop supersedes the year-old resume, so that trail ends today.
    new_stop = control.stop_truck(truck, reason="new stop", actor=supervisor)
    new_response = ZoneResponse.objects.create(
        zone=zone, equipment=truck, request="deactivate", accepted=True, responded_at=NOW
    )
    new_drain = DrainChange.objects.create(node="gpu-1", draining=False, by_name="sofia")
    return {
        "moved": [closed, *closed.events.all(), old_response, undone, roll_back, old_drain],
        "kept": [left_open, *left_open.events.all(), new_stop, new_response, in_force, new_drain],
    }


MOVED_COUNTS = {
    "control.command": 1,
    "control.commandevent": 2,
    "mine.zoneresponse": 1,
    "learning.aliaschange": 2,
    "pool.drainchange": 1,
}


def exists(row) -> bool:
    return type(row)._base_manager.filter(pk=row.pk).exists()


def test_by_default_audit_rows_are_kept_indefinitely(history, isolated_var_dir):
    output = archive()
    assert "kept indefinitely" in output
    assert archive_files(isolated_var_dir) == []
    assert all(exists(row) for row in history["moved"] + history["kept"])


def test_the_archive_moves_only_rows_older_than_the_age(history, isolated_var_dir):
    output = archive("--older-than-days", "90")
    (path,) = archive_files(isolated_var_dir)
    assert "Archived 7 audit rows" in output and str(path) in output
    assert not any(exists(row) for row in history["moved"])
    assert all(exists(row) for row in history["kept"])

    with gzip.open(path, "rt") as lines:
        rows = [json.loads(line) for line in lines]
    assert sorted((r["model"], str(r["pk"])) for r in rows) == sorted(
        (row._meta.label_lower, str(row.pk)) for row in history["moved"]
    )


def test_the_manifest_counts_the_rows_and_fingerprints_the_file(history, isolated_var_dir):
    archive("--older-than-days", "90")
    (path,) = archive_files(isolated_var_dir)
    manifest = json.loads(
        path.with_name(path.name.replace(".jsonl.gz", ".manifest.json")).read_text()
    )
    assert manifest["counts"] == MOVED_COUNTS and manifest["rows"] == 7
    assert manifest["older_than_days"] == 90
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_archive_file_loads_back_as_it_was(history, isolated_var_dir):
    before = snapshot()
    archive("--older-than-days", "90")
    (path,) = archive_files(isolated_var_dir)
    call_command("loaddata", str(path), verbosity=0)
    assert snapshot() == before


def test_a_dry_run_counts_and_moves_nothing(history, isolated_var_dir):
    output = archive("--older-than-days", "90", "--dry-run")
    assert "Would archive 7 audit rows" in output
    for label, count in MOVED_COUNTS.items():
        assert f"{label}: {count}" in output
    assert archive_files(isolated_var_dir) == []
    assert all(exists(row) for row in history["moved"] + history["kept"])


def test_the_configured_age_applies_when_none_is_given(history, isolated_var_dir, settings):
    settings.AUDIT_ARCHIVE_AFTER_DAYS = 90
    assert "Archived 7 audit rows" in archive()
    assert len(archive_files(isolated_var_dir)) == 1


def test_a_second_run_finds_nothing_more_to_move(history, isolated_var_dir):
    archive("--older-than-days", "90")
    assert "Nothing older than 90 days" in archive("--older-than-days", "90")
    assert len(archive_files(isolated_var_dir)) == 1


def test_an_age_under_a_day_is_refused(history):
    with pytest.raises(CommandError, match="at least 1"):
        archive("--older-than-days", "0")


def test_an_open_command_is_never_archived_however_old(truck, supervisor, isolated_var_dir):
    with written_at(OLD):
        stuck = control.stop_truck(truck, reason="never answered", actor=supervisor)
    archive("--older-than-days", "90")
    assert Command.objects.filter(pk=stuck.pk).exists()
    assert CommandEvent.objects.filter(command=stuck).count() == 1
