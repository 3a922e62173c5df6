"""The one store path (MQTT and REST): admission rules, de-duplication, quarantine."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.test import override_settings

from fleet.telemetry import latest
from fleet.telemetry.intake import Inbound
from fleet.telemetry.models import Event, Position, Rejection
from fleet.telemetry.services import EquipmentDirectory, ingest_batch
from tests.factories import haul_truck, truck_message


def topic(site, equipment_id, name="MachinePositionV1") -> str:
    return f"iso23725/v1/{site.slug}/{equipment_id}/up/{name}"


def mqtt(site, equipment_id, payload: bytes, name="MachinePositionV1", received_at=None):
    return Inbound(
        channel="mqtt",
        payload=payload,
        received_at=received_at or datetime.now(UTC),
        topic=topic(site, equipment_id, name),
        ack=(1, 1),
    )


@pytest.fixture
def truck(site):
    return haul_truck(site)


def test_it_stores_a_position_with_the_active_road_revision(site, truck):
    result = ingest_batch(
        [mqtt(site, truck.id, truck_message(truck.id, sequence=7))], EquipmentDirectory()
    )

    assert result.stored == 1 and not result.refused
    row = Position.objects.get(equipment_id=truck.id)
    assert row.road_revision == site.active_network.revision
    assert row.sequence == 7 and row.late is False
    assert row.location.x == pytest.approx(-68.90)


def test_a_redelivered_message_is_stored_once(site, truck):
    payload = truck_message(truck.id)
    first = ingest_batch([mqtt(site, truck.id, payload)], EquipmentDirectory())
    again = ingest_batch(
        [mqtt(site, truck.id, payload), mqtt(site, truck.id, payload)], EquipmentDirectory()
    )

    assert first.stored == 1
    assert again.stored == 0 and again.counts.duplicates == 2
    assert Position.objects.filter(equipment_id=truck.id).count() == 1


def test_two_messages_of_one_millisecond_are_told_apart_by_their_sequence(site, truck):
    at = datetime.now(UTC)
    body = {"PayloadWeight": 88, "Accuracy": 1.5}
    batch = [
        mqtt(
            site,
            truck.id,
            truck_message(truck.id, "HaulTruckPayloadV1", body, at=at, sequence=s),
            "HaulTruckPayloadV1",
        )
        for s in (1, 2)
    ]

    assert ingest_batch(batch, EquipmentDirectory()).stored == 2
    assert Event.objects.filter(equipment_id=truck.id).count() == 2


def test_two_different_positions_with_one_timestamp_and_no_header_id_are_both_stored(site, truck):
    at = datetime.now(UTC)
    first, second = (truck_message(truck.id, at=at, speed=s) for s in (30.0, 31.0))

    result = ingest_batch(
        [mqtt(site, truck.id, first), mqtt(site, truck.id, second)], EquipmentDirectory()
    )

    assert result.stored == 2 and result.counts.duplicates == 0
    assert sorted(Position.objects.values_list("speed_kmh", flat=True)) == [30.0, 31.0]


def test_two_positions_with_one_timestamp_and_header_id_but_different_bodies_are_both_stored(
    site, truck
):
    """A truck whose HeaderId counter restarted (a reboot) reuses numbers: the body still tells
    its messages apart."""
    at = datetime.now(UTC)
    batch = [
        mqtt(site, truck.id, truck_message(truck.id, at=at, sequence=0, lon=lon))
        for lon in (-68.9, -68.8)
    ]

    assert ingest_batch(batch, EquipmentDirectory()).stored == 2


def test_the_same_body_spelled_differently_is_the_same_message(site, truck):
    """The digest is taken from the parsed body, so a redelivery through another path (REST,
    another encoder) with other key order or spacing is still recognised."""
    at = datetime.now(UTC)
    payload = truck_message(truck.id, at=at, sequence=3)
    respelled = orjson.dumps(
        orjson.loads(payload), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2
    )

    result = ingest_batch(
        [mqtt(site, truck.id, payload), mqtt(site, truck.id, respelled)], EquipmentDirectory()
    )

    assert result.stored == 1 and result.counts.duplicates == 1


def test_rows_that_share_a_timestamp_are_read_in_header_id_order_then_arrival(
    site, truck, api_client, supervisor
):
    at = datetime.now(UTC) - timedelta(seconds=5)
    arrivals = [  # (HeaderId or None, speed): sent in this order, in separate batches
        (2, 20.0),
        (1, 10.0),
        (None, 5.0),
        (None, 6.0),
    ]
    for n, (sequence, speed) in enumerate(arrivals):
        ingest_batch(
            [
                mqtt(
                    site,
                    truck.id,
                    truck_message(truck.id, at=at, sequence=sequence, speed=speed),
                    received_at=datetime.now(UTC) + timedelta(milliseconds=n),
                )
            ],
            EquipmentDirectory(),
        )
    api_client.force_authenticate(supervisor)
    url = f"/api/v1/trucks/{truck.id}/positions/"
    seen, query = [], {"from": (at - timedelta(seconds=1)).isoformat(), "limit": 1}
    while url:
        page = api_client.get(url, query).json()
        seen += page["results"]
        url, query = page["next"], None
    assert [p["speed_kmh"] for p in seen] == [5.0, 6.0, 10.0, 20.0]  # -1 (none) first
    assert [p["sequence"] for p in seen] == [None, None, 1, 2]


def test_a_page_cursor_that_is_not_one_is_refused_naming_the_parameter(
    truck, api_client, supervisor
):
    api_client.force_authenticate(supervisor)
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    for path in ("positions", "events"):
        response = api_client.get(
            f"/api/v1/trucks/{truck.id}/{path}/", {"from": start, "cursor": "bm90LWEtY3Vyc29y"}
        )
        assert response.status_code == 400 and "cursor" in response.json()


def test_a_malformed_message_is_quarantined_and_its_neighbours_are_stored(site, truck):
    good_before = truck_message(truck.id, at=datetime.now(UTC) - timedelta(seconds=1))
    good_after = truck_message(truck.id)
    bad = good_after.replace(b'"Heading":90', b'"Heading":400')

    result = ingest_batch(
        [
            mqtt(site, truck.id, good_before),
            mqtt(site, truck.id, bad),
            mqtt(site, truck.id, good_after),
        ],
        EquipmentDirectory(),
    )

    assert result.stored == 2
    (rejection,) = Rejection.objects.all()
    assert rejection.reason == "out_of_range"
    assert "Heading" in rejection.detail
    assert rejection.equipment_id == truck.id
    assert bytes(rejection.payload) == bad


def test_a_truck_cannot_speak_for_another_on_its_topic(site, truck):
    other = haul_truck(site, "HT-002")
    result = ingest_batch([mqtt(site, truck.id, truck_message(other.id))], EquipmentDirectory())

    assert result.stored == 0
    assert result.refused[0].reason == "wrong_equipment"


def test_an_unknown_or_retired_truck_is_refused(site, truck):
    stranger = uuid.uuid4()
    truck.status = truck.Status.RETIRED
    truck.save()
    result = ingest_batch(
        [
            mqtt(site, stranger, truck_message(stranger)),
            mqtt(site, truck.id, truck_message(truck.id)),
        ],
        EquipmentDirectory(),
    )

    assert [r.reason for r in result.refused] == ["unknown_equipment", "unknown_equipment"]


def test_the_topic_must_name_the_message_inside(site, truck):
    result = ingest_batch(
        [mqtt(site, truck.id, truck_message(truck.id), name="HaulTruckPayloadV1")],
        EquipmentDirectory(),
    )
    assert result.refused[0].reason == "bad_topic"


@override_settings(INGEST_CLOCK_SKEW_S=5, INGEST_LATE_AFTER_S=10, INGEST_BACKFILL_S=3600)
def test_time_rules_refuse_the_future_and_the_too_old_and_mark_the_late(site, truck):
    now = datetime.now(UTC)
    ahead = truck_message(truck.id, at=now + timedelta(seconds=30))
    slightly_ahead = truck_message(truck.id, at=now + timedelta(seconds=2))
    late = truck_message(truck.id, at=now - timedelta(minutes=20))
    too_old = truck_message(truck.id, at=now - timedelta(hours=2))

    result = ingest_batch(
        [mqtt(site, truck.id, p, received_at=now) for p in (ahead, slightly_ahead, late, too_old)],
        EquipmentDirectory(),
    )

    assert sorted(r.reason for r in result.refused) == ["from_the_future", "too_old"]
    assert sorted(item.late for item in result.admitted) == [False, True]
    assert Position.objects.filter(late=True).count() == 1


def test_late_data_never_reaches_the_latest_state(site, truck):
    now = datetime.now(UTC)
    ingest_batch(
        [mqtt(site, truck.id, truck_message(truck.id, at=now, lon=-68.901))], EquipmentDirectory()
    )
    ingest_batch(
        [mqtt(site, truck.id, truck_message(truck.id, at=now - timedelta(minutes=5), lon=-68.95))],
        EquipmentDirectory(),
    )

    state = latest.read_latest([truck.id])[str(truck.id)]
    assert state["position"]["lon"] == pytest.approx(-68.901)
    assert state["seenAgeS"] < 5


def test_the_latest_state_keeps_the_newest_of_messages_arriving_out_of_order(site, truck):
    now = datetime.now(UTC)
    newer = truck_message(truck.id, at=now, lon=-68.902)
    older = truck_message(truck.id, at=now - timedelta(seconds=2), lon=-68.903)
    ingest_batch([mqtt(site, truck.id, newer)], EquipmentDirectory())
    ingest_batch([mqtt(site, truck.id, older)], EquipmentDirectory())

    assert latest.read_latest([truck.id])[str(truck.id)]["position"]["lon"] == pytest.approx(
        -68.902
    )


def test_one_batch_of_many_trucks_leaves_each_truck_its_own_newest_state(site, truck):
    """The latest state is written for every truck of a batch in one script call."""
    other = haul_truck(site, "HT-002")
    now = datetime.now(UTC)
    batch = [
        mqtt(site, truck.id, truck_message(truck.id, at=now, lon=-68.911)),
        mqtt(site, other.id, truck_message(other.id, at=now - timedelta(seconds=1), lon=-68.921)),
        mqtt(site, truck.id, truck_message(truck.id, at=now - timedelta(seconds=1), lon=-68.912)),
        mqtt(site, other.id, truck_message(other.id, at=now, lon=-68.922)),
    ]
    ingest_batch(batch, EquipmentDirectory())
    # An older batch afterwards changes nothing (per field, the newest Timestamp stays).
    older = now - timedelta(seconds=3)
    ingest_batch(
        [mqtt(site, other.id, truck_message(other.id, at=older, lon=-68.929))],
        EquipmentDirectory(),
    )

    states = latest.read_latest([truck.id, other.id])
    assert states[str(truck.id)]["position"]["lon"] == pytest.approx(-68.911)
    assert states[str(other.id)]["position"]["lon"] == pytest.approx(-68.922)


@override_settings(INGEST_QUARANTINE_ROWS=10)
def test_the_quarantine_is_bounded(site, truck):
    junk = [mqtt(site, truck.id, b"{not json" + str(i).encode()) for i in range(25)]
    ingest_batch(junk, EquipmentDirectory())
    ingest_batch(junk[:5], EquipmentDirectory())

    assert Rejection.objects.count() <= 11
    assert set(Rejection.objects.values_list("reason", flat=True)) == {"invalid_json"}


def test_a_huge_payload_is_kept_only_in_part(site, truck):
    huge = b"[" + b"1," * 200_000 + b"1]"
    ingest_batch([mqtt(site, truck.id, huge)], EquipmentDirectory())

    rejection = Rejection.objects.get()
    assert rejection.reason == "too_large"
    assert rejection.payload_bytes == len(huge)
    assert len(bytes(rejection.payload)) == Rejection.PAYLOAD_LIMIT


def test_a_truck_provisioned_after_the_directory_was_loaded_is_accepted_at_once(site, truck):
    directory = EquipmentDirectory(refresh_s=3600)
    ingest_batch([mqtt(site, truck.id, truck_message(truck.id))], directory)
    newcomer = haul_truck(site, "HT-099")

    result = ingest_batch([mqtt(site, newcomer.id, truck_message(newcomer.id))], directory)

    assert result.stored == 1, result.refused


def test_nul_characters_are_refused_or_stored_without_losing_the_batch(site, truck):
    """PostgreSQL keeps no NUL in text or jsonb: a message quoting one (an unknown key, a text
    value) must not fail the batch that holds it, over MQTT no less than over REST."""
    now = datetime.now(UTC)
    good_before = truck_message(truck.id, at=now - timedelta(seconds=2))
    good_after = truck_message(truck.id, at=now - timedelta(seconds=1))
    envelope = orjson.loads(truck_message(truck.id, at=now))
    envelope["MachinePositionV1"]["Bad\u0000Key"] = 1
    unknown_key = orjson.dumps(envelope)
    batch = [mqtt(site, truck.id, p) for p in (good_before, unknown_key, good_after)]

    result = ingest_batch(batch, EquipmentDirectory())

    assert result.stored == 2
    (rejection,) = Rejection.objects.all()
    assert "\x00" not in rejection.detail and "Bad" in rejection.detail
    assert bytes(rejection.payload) == unknown_key  # the bytes as received, for the admin


def test_a_nul_in_a_text_value_loses_only_its_own_message(site, truck):
    now = datetime.now(UTC)
    ack = truck_message(
        truck.id,
        "CommandAcknowledgementV1",
        {"CommandId": str(uuid.uuid4()), "Status": "Rejected", "Reason": "brake\u0000fault"},
        at=now,
    )
    batch = [mqtt(site, truck.id, truck_message(truck.id, at=now - timedelta(seconds=1)))]
    batch.append(mqtt(site, truck.id, ack, "CommandAcknowledgementV1"))

    result = ingest_batch(batch, EquipmentDirectory())

    assert Position.objects.filter(equipment_id=truck.id).count() == 1
    assert result.stored + len(result.refused) == 2
    assert all("\x00" not in r.detail for r in Rejection.objects.all())
