"""What a site produced (fleet.telemetry.production): tonnes per hour in buckets, the cycle-time
breakdown and each loading unit's share, from the haul cycles that ended in the range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleet.telemetry.models import HaulCycle
from tests.factories import haul_truck

T0 = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)


def cycle(truck, unit, ended_min: int, tonnes: float | None, queue_s: float = 60.0) -> HaulCycle:
    ended = T0 + timedelta(minutes=ended_min)
    return HaulCycle.objects.create(
        equipment=truck,
        loading_unit=unit,
        started_at=ended - timedelta(minutes=20),
        ended_at=ended,
        tonnes=tonnes,
        queue_s=queue_s,
        spot_s=30,
        load_s=120,
        haul_s=400,
        dump_s=60,
        return_s=330,
    )


def test_production_over_a_shift_in_hourly_buckets(site, viewer, api_client):
    unit = site.loading_units.first()
    one, two = haul_truck(site, "HT-001"), haul_truck(site, "HT-002")
    cycle(one, unit, 30, 90.0, queue_s=100)
    cycle(two, unit, 50, 88.0, queue_s=20)
    cycle(one, unit, 90, None)  # no payload reported: a cycle, no tonnes
    cycle(two, unit, 130, 91.0)  # ended after the range
    api_client.force_authenticate(viewer)

    answer = api_client.get(
        f"/api/v1/sites/{site.id}/production/",
        {"from": T0.isoformat(), "to": (T0 + timedelta(hours=2)).isoformat()},
    )

    assert answer.status_code == 200
    body = answer.json()
    assert (body["cycles"], body["tonnes"], body["tph"]) == (3, 178.0, 89.0)
    assert [(p["cycles"], p["tph"]) for p in body["tph_series"]] == [(2, 178.0), (1, 0.0)]
    assert body["cycle_time_s"]["queue_s"] == round((100 + 20 + 60) / 3, 1)
    assert body["cycle_time_s"]["haul_s"] == 400.0
    (shovel,) = body["loading_units"]
    assert (shovel["name"], shovel["cycles"], shovel["tonnes"]) == (unit.name, 3, 178.0)


def test_a_bucket_out_of_range_is_a_400_naming_it(site, viewer, api_client):
    api_client.force_authenticate(viewer)
    answer = api_client.get(
        f"/api/v1/sites/{site.id}/production/", {"from": T0.isoformat(), "bucket": 5}
    )
    assert answer.status_code == 400 and "bucket" in answer.json()
