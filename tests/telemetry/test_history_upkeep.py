"""Roll-ups, retention and haul cycles derived from the stored history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from fleet.telemetry import partitions
from fleet.telemetry.cycles import cycles_from_states, derive_haul_cycles
from fleet.telemetry.intake import Inbound
from fleet.telemetry.models import HaulCycle, PositionMinute
from fleet.telemetry.rollups import roll_up_positions
from fleet.telemetry.services import EquipmentDirectory, ingest_batch
from tests.factories import LAT0, LON0, haul_truck, truck_message

pytestmark = pytest.mark.django_db


def store(site, truck, name, body=None, *, at, **position):
    payload = truck_message(truck.id, name, body, at=at, **position)
    topic = f"iso23725/v1/{site.slug}/{truck.id}/up/{name}"
    result = ingest_batch(
        [Inbound("mqtt", payload, datetime.now(UTC), topic=topic)], EquipmentDirectory()
    )
    assert result.stored >= 1, result.refused


def test_positions_roll_up_into_minutes_with_the_last_location(site):
    truck = haul_truck(site)
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
    for second, speed in ((5, 10.0), (20, 30.0), (50, 20.0)):
        store(
            site,
            truck,
            "MachinePositionV1",
            at=minute + timedelta(seconds=second),
            speed=speed,
            lon=LON0 + second * 1e-5,
        )

    roll_up_positions(minute, minute + timedelta(minutes=1))
    roll_up_positions(minute, minute + timedelta(minutes=1))  # idempotent

    row = PositionMinute.objects.get(equipment_id=truck.id)
    assert row.samples == 3
    assert row.mean_speed_kmh == pytest.approx(20.0)
    assert row.max_speed_kmh == pytest.approx(30.0)
    assert row.location.x == pytest.approx(LON0 + 50e-5)


def test_retention_drops_whole_days_and_keeps_the_window(settings):
    settings.INGEST_RETENTION_DAYS = 3
    now = datetime.now(UTC)
    old_day = (now - timedelta(days=10)).date()
    partitions.ensure_partitions(old_day, old_day)
    partitions.ensure_partitions(now.date(), now.date())  # a reused test database may lack it

    dropped = partitions.drop_expired_partitions(now)

    assert partitions.partition_name("telemetry_position", old_day) in dropped
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_regclass(%s)", [partitions.partition_name("telemetry_position", now.date())]
        )
        assert cursor.fetchone()[0] is not None


def test_a_cycle_runs_from_one_loading_to_the_next_split_into_phases():
    t0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    states = [
        (t0, "Loading"),
        (t0 + timedelta(seconds=150), "Hauling"),
        (t0 + timedelta(seconds=750), "Dumping"),
        (t0 + timedelta(seconds=810), "Driving"),
        (t0 + timedelta(seconds=1290), "Queued"),
        (t0 + timedelta(seconds=1350), "Spotting"),
        (t0 + timedelta(seconds=1390), "Loading"),
        (t0 + timedelta(seconds=1500), "Hauling"),
    ]

    (cycle,) = cycles_from_states(states)

    assert cycle.started_at == t0 and cycle.ended_at == t0 + timedelta(seconds=1390)
    assert cycle.phases == {
        "queue_s": 60.0,
        "spot_s": 40.0,
        "load_s": 150.0,
        "haul_s": 600.0,
        "dump_s": 60.0,
        "return_s": 480.0,
    }


def test_haul_cycles_are_derived_from_stored_states_with_shovel_dump_and_tonnes(site):
    haul_truck(site, "HT-IDLE")  # reported no state in the window: no cycle, and no failure
    truck = haul_truck(site)
    shovel = site.loading_units.get()
    crusher = site.dump_points.get()
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)
    timeline = [
        (0, "Loading", shovel.location),
        (150, "Hauling", shovel.location),
        (700, "Dumping", crusher.location),
        (760, "Driving", crusher.location),
        (1300, "Loading", shovel.location),
    ]
    for offset, state, where in timeline:
        at = t0 + timedelta(seconds=offset)
        store(site, truck, "MachinePositionV1", at=at, lon=where.x, lat=where.y)
        body = {
            "AssignmentId": "5b0e5a3e-4b6e-4f3a-9d0f-1f2e3d4c5b6a",
            "WayId": 1,
            "AutonomyMode": "Autonomous",
            "ProductionState": state,
        }
        store(site, truck, "HaulTruckProductionStateV2", body, at=at + timedelta(milliseconds=1))
    store(
        site,
        truck,
        "HaulTruckPayloadV1",
        {"PayloadWeight": 87, "Accuracy": 2},
        at=t0 + timedelta(seconds=149),
    )

    assert derive_haul_cycles() == 1
    assert derive_haul_cycles() == 1  # the same cycle again: upserted, not duplicated

    cycle = HaulCycle.objects.get()
    assert cycle.loading_unit == shovel and cycle.dump_point == crusher
    assert cycle.tonnes == 87
    assert cycle.load_s == pytest.approx(150, abs=0.01)
    assert cycle.return_s == pytest.approx(540, abs=0.01)
    assert cycle.road_revision == site.active_network.revision
    assert LAT0  # the factory's site is where the trucks drive
