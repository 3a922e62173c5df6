"""Live serving's rolling buffers: the windows they give are the ones the stored history gives
for the same messages, and a gap (another replica's messages, a truck first seen) is read back
from the history, from where it starts."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest

from fleet.learning import serving
from fleet.learning.features import HEALTH_EXTRAS, HISTORY_S, TYRES
from fleet.learning.recent import RECENT, RecentTelemetry
from fleet.protocol import wire
from fleet.telemetry.intake import Inbound
from fleet.telemetry.partitions import ensure_history_partitions
from fleet.telemetry.services import EquipmentDirectory, ingest_batch
from tests.factories import LAT0, LON0, haul_truck

SECONDS = HISTORY_S + 40  # more than a decision's history


@pytest.fixture(autouse=True)
def fresh_buffers():
    RECENT.clear()
    yield
    RECENT.clear()


@pytest.fixture
def truck(site):
    return haul_truck(site)


def position(t: float, rng: np.random.Generator) -> dict:
    """A truck driving a 300 m circle at 30 km/h, with GPS noise."""
    angle = t * (30 / 3.6) / 300
    return {
        "Heading": round(math.degrees(angle + math.pi / 2)) % 360,
        "Latitude": LAT0 + 300 * math.sin(angle) / 111_000 + rng.normal(0, 1e-6),
        "Longitude": LON0 + 300 * math.cos(angle) / 103_000 + rng.normal(0, 1e-6),
        "Elevation": 2900.0 + 10 * math.sin(angle) + rng.normal(0, 0.1),
        "LatitudeAccuracy": 0.4,
        "LongitudeAccuracy": 0.5,
        "ElevationAccuracy": 0.8,
        "HeadingAccuracy": 1.5,
        "Speed": 30 + rng.normal(0, 0.5),
    }


def health(t: float, rng: np.random.Generator, *, tyres: bool = True) -> dict:
    """Health with a coolant drift and noise; ``tyres`` False: tyre pressures unavailable."""
    return {
        "FuelLevel": round(80 - t / 100, 2),
        "Tire": [
            {
                "TirePosition": tyre,
                "TirePressure": int(700 + rng.normal(0, 2)) if tyres else None,
                "TireTemperature": int(60 + rng.normal(0, 1)),
            }
            for tyre in TYRES
        ],
        "Additional": [
            {"SensorId": sensor, "Value": round(90 + t / 120 + rng.normal(0, 0.3), 2), "Unit": unit}
            for _, sensor, unit in HEALTH_EXTRAS
        ],
    }


def messages(truck, end: datetime, seed: int = 7) -> list[tuple[str, bytes]]:
    """``SECONDS`` of a truck ending at ``end``: positions at 2 Hz (a 20 s GPS dropout), health
    at 1 Hz (now and then a second one in the same second, its tyre pressures unavailable: the
    first one's are kept), each topic with its HeaderId; as (topic, payload) in the order
    sent."""
    rng = np.random.default_rng(seed)
    out = []
    sequence = {"MachinePositionV1": 0, "BasicMachineHealthV2": 0}
    start = end - timedelta(seconds=SECONDS)
    for tenth in range(0, SECONDS * 10, 5):
        at = start + timedelta(milliseconds=100 * tenth + int(rng.integers(0, 40)))
        t = tenth / 10
        sends = []
        if not 300 <= t < 320:
            sends.append(("MachinePositionV1", position(t, rng)))
        if tenth % 10 == 0:
            sends.append(("BasicMachineHealthV2", health(t, rng)))
        elif rng.random() < 0.05:
            sends.append(("BasicMachineHealthV2", health(t, rng, tyres=False)))
        for name, body in sends:
            payload = wire.encode(
                name, body, equipment_id=truck.id, timestamp=at, sequence=sequence[name]
            )
            sequence[name] += 1
            out.append((f"iso23725/v1/{truck.site.slug}/{truck.id}/up/{name}", payload))
    return out


def ingest(site, sent: list[tuple[str, bytes]]) -> None:
    ensure_history_partitions()
    directory = EquipmentDirectory()
    now = datetime.now(UTC)
    for start in range(0, len(sent), 500):
        batch = [
            Inbound("mqtt", payload, now, topic=topic)
            for topic, payload in sent[start : start + 500]
        ]
        result = ingest_batch(batch, directory)
        assert not result.refused, result.refused[:1]
    assert serving.DISPATCHER.wait_idle(30)


def from_history(truck, site, now: datetime) -> serving.TruckInputs | None:
    """The truck's inputs from a buffer that only the stored history filled."""
    buffers = RecentTelemetry()
    assert serving.fill_gaps([truck.id], now, buffers) == 1
    since = now - timedelta(seconds=HISTORY_S + serving.interval_s())
    return serving.truck_inputs(truck.id, site.id, buffers.seconds(truck.id, since))[1]


def assert_same(a: serving.TruckInputs, b: serving.TruckInputs) -> None:
    assert (a.window_end, a.origin) == (b.window_end, b.origin)
    np.testing.assert_array_equal(a.window, b.window)
    np.testing.assert_array_equal(a.context, b.context)
    np.testing.assert_array_equal(a.trajectory, b.trajectory)


def test_a_window_from_the_buffer_is_the_one_the_stored_history_gives(site, truck):
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)
    # Seen before any of it was stored (its first sight read back an empty history).
    serving.fill_gaps([truck.id], end - timedelta(seconds=SECONDS + 1))
    ingest(site, messages(truck, end))
    now = datetime.now(UTC)
    reads = serving.FILLED._value.get()

    [live] = serving.build_inputs({truck.id: site.id}, now=now)

    assert serving.FILLED._value.get() == reads  # the buffer had it all: nothing read back
    stored = from_history(truck, site, now)
    assert stored is not None
    assert_same(live, stored)
    assert live.window.shape == (25, serving.WINDOW_S)
    assert np.isfinite(live.context).all() and live.context.any()


def test_messages_another_replica_stored_are_read_back_from_where_the_gap_starts(site, truck):
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)
    sent = messages(truck, end, seed=11)
    ingest(site, sent)
    now = datetime.now(UTC)
    # This replica saw only the first half and every third message after it (the broker gave
    # the rest to another member of the shared subscription).
    mine = RecentTelemetry()
    serving.fill_gaps([truck.id], end - timedelta(seconds=SECONDS + 1), mine)  # seen before
    half = len(sent) // 2
    for i, (_, payload) in enumerate(sent):
        if i < half or i % 3 == 0:
            mine.record([SimpleNamespace(envelope=wire.parse_message(payload))])
    wanted = mine.gaps([truck.id], now, HISTORY_S + serving.interval_s())
    first_missing = wire.parse_message(sent[half][1]).timestamp
    assert list(wanted) == [truck.id]
    # From the second of the last message seen before the jump, not the whole history.
    assert first_missing - timedelta(seconds=2) <= wanted[truck.id] <= first_missing
    mine._fill_from[truck.id] = int(wanted[truck.id].timestamp())  # gaps() took it: put back

    assert serving.fill_gaps([truck.id], now, mine) == 1

    since = now - timedelta(seconds=HISTORY_S + serving.interval_s())
    _, live = serving.truck_inputs(truck.id, site.id, mine.seconds(truck.id, since))
    assert live is not None
    assert_same(live, from_history(truck, site, now))
    assert mine.gaps([truck.id], now, HISTORY_S) == {}  # filled: nothing more to read


def test_a_truck_first_seen_is_read_back_whole_and_a_silent_one_from_its_newest(site, truck):
    buffers = RecentTelemetry()
    now = datetime.now(UTC)
    first = buffers.gaps([truck.id], now, 970)
    assert first == {truck.id: now - timedelta(seconds=970)}
    buffers.merge([], [], covered={truck.id: now - timedelta(seconds=60)})

    later = buffers.gaps([truck.id], now, 970)

    assert later == {
        truck.id: datetime.fromtimestamp(int((now - timedelta(seconds=60)).timestamp()), UTC)
    }
