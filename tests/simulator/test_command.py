"""``manage.py simulate`` end to end on a private broker."""

from __future__ import annotations

import json
import stat

import pytest
from django.core.management import CommandError, call_command

from fleet.vehicles.models import Equipment


@pytest.fixture
def two_trucks(site):
    for name in ("HT-002", "HT-001", "HT-003"):
        Equipment.objects.create(
            site=site, kind="haul_truck", name=name, payload_capacity_t=90, autonomous=True
        )


@pytest.fixture
def on_test_broker(mqtt_broker):
    return mqtt_broker  # the settings point the simulator at it


def test_it_runs_the_first_trucks_by_name_and_writes_labels(
    two_trucks, on_test_broker, tmp_path, capsys, isolated_var_dir
):
    labels = tmp_path / "labels.jsonl"
    call_command(
        "simulate", "--site", "testpit", "--trucks", "2", "--hz", "5", "--duration", "8",
        "--speedup", "8", "--fault-rate", "2000", "--seed", "1", "--labels", str(labels),
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "simulating 2 trucks" in out and "stopped:" in out and "MachinePositionV1" in out
    stored = json.loads((isolated_var_dir / "simulator" / "credentials.json").read_text())
    assert sorted(entry["name"] for entry in stored.values()) == ["HT-001", "HT-002"]
    assert (
        stat.S_IMODE((isolated_var_dir / "simulator" / "credentials.json").stat().st_mode) == 0o600
    )
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    assert rows and {row["equipment_id"] for row in rows} <= set(stored)
    assert {"kind", "channel", "onset", "end", "intensity"} <= set(rows[0])
    # A second run reuses the stored secrets instead of rotating them.
    call_command(
        "simulate", "--site", "testpit", "--trucks", "2", "--duration", "1", "--speedup", "4"
    )
    assert json.loads((isolated_var_dir / "simulator" / "credentials.json").read_text()) == stored


def test_it_says_how_to_get_more_trucks(two_trucks):
    with pytest.raises(CommandError, match=r"run `python manage\.py create_demo_mine --trucks 5`"):
        call_command("simulate", "--site", "testpit", "--trucks", "5")


def test_it_names_a_missing_site(db):
    with pytest.raises(CommandError, match="no site 'nowhere'"):
        call_command("simulate", "--site", "nowhere")
