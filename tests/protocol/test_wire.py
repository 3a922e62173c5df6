"""The ISO 23725 parser: a corpus of bad messages with their reasons, the tolerant-reader rules,
and property tests (hypothesis): whatever bytes arrive, the parser returns an envelope or a
WireError with a known reason, never anything else."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.protocol import wire
from tests.factories import position_body

TRUCK = uuid.UUID("2248d535-3daf-4a86-b1e1-4951a22beec6")
AT = datetime(2026, 11, 22, 13, 41, 56, 123000, tzinfo=UTC)


def envelope(**bodies) -> dict:
    return {
        "Protocol": "ISO23725",
        "Version": 1,
        "Timestamp": "2026-11-22T13:41:56.123Z",
        "EquipmentId": str(TRUCK),
        **(bodies or {"MachinePositionV1": position_body()}),
    }


def raw(message: dict) -> bytes:
    # The standard library, not orjson: it writes integers of any size, as a truck might.
    return json.dumps(message).encode()


def reason_of(payload: bytes) -> str:
    with pytest.raises(wire.WireError) as caught:
        wire.parse_message(payload)
    return caught.value.reason


def test_a_position_parses_into_typed_fields():
    parsed = wire.parse_message(raw(envelope()))

    assert parsed.equipment_id == TRUCK
    assert parsed.timestamp == AT
    assert parsed.name == "MachinePositionV1"
    assert parsed.position.heading == 90
    assert parsed.position.speed == 32.5


def test_numeric_strings_and_the_other_protocol_name_are_read():
    body = {**position_body(), "Heading": "222", "Speed": " 12.5 "}
    parsed = wire.parse_message(
        raw({**envelope(MachinePositionV1=body), "Protocol": "Open-Autonomy"})
    )

    assert parsed.protocol == "Open-Autonomy"
    assert parsed.position.heading == 222
    assert parsed.position.speed == 12.5


def test_null_means_sensor_unavailable_and_is_never_replaced_by_a_default():
    health = {
        "FuelLevel": None,
        "TotalMachineHour": 1200.5,
        "TotalEngineHour": None,
        "Tire": [{"TirePosition": "1.1", "TirePressure": None, "TireTemperature": 41}],
        "Additional": [],
    }
    parsed = wire.parse_message(raw(envelope(BasicMachineHealthV2=health)))
    body = parsed.bodies["BasicMachineHealthV2"]

    assert body.fuel_level is None
    assert body.tires[0].pressure is None
    assert orjson.loads(wire.body_json(body))["FuelLevel"] is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe not text", "not_utf8"),
        (b'{"Protocol": "ISO23725",', "invalid_json"),
        (b"[1, 2, 3]", "not_an_object"),
        (raw({"hello": "world"}), "bad_envelope"),
        (raw({**envelope(), "Protocol": "MQTT"}), "bad_protocol"),
        (raw({**envelope(), "Version": 2}), "bad_version"),
        (raw({**envelope(), "Version": True}), "bad_version"),
        (raw({**envelope(), "Timestamp": "2026-11-22 13:41:56"}), "bad_timestamp"),
        (raw({**envelope(), "Timestamp": "yesterday"}), "bad_timestamp"),
        (raw({**envelope(), "EquipmentId": "truck-17"}), "bad_equipment_id"),
        (raw({k: v for k, v in envelope().items() if k != "EquipmentId"}), "bad_equipment_id"),
        (raw({k: v for k, v in envelope().items() if k != "MachinePositionV1"}), "no_body"),
        (raw(envelope(MachineTeleportV1={})), "unknown_message"),
        (
            raw(
                envelope(
                    MachineAllStopRequestV1={"ModeAllStop": "Apply", "ModeAllStopId": str(TRUCK)}
                )
            ),
            "unknown_message",
        ),
        (raw(envelope(MachinePositionV1={**position_body(), "Heading": 360})), "out_of_range"),
        (raw(envelope(MachinePositionV1={**position_body(), "Latitude": 91})), "out_of_range"),
        (raw(envelope(MachinePositionV1={**position_body(), "Heading": True})), "bad_field"),
        (raw(envelope(MachinePositionV1={**position_body(), "Speed": "fast"})), "bad_field"),
        (raw(envelope(MachinePositionV1={**position_body(), "Speed": "NaN"})), "not_finite"),
        (raw(envelope(MachinePositionV1={**position_body(), "Colour": "yellow"})), "bad_field"),
        (
            raw(
                envelope(
                    MachinePositionV1={k: v for k, v in position_body().items() if k != "Latitude"}
                )
            ),
            "bad_field",
        ),
        (
            raw(
                envelope(
                    HaulTruckProductionStateV2={
                        "AssignmentId": str(TRUCK),
                        "WayId": 3,
                        "AutonomyMode": "Autonomous",
                        "ProductionState": "Flying",
                    }
                )
            ),
            "bad_field",
        ),
        (b"{" + b'"a":1,' * 100_000 + b'"b":2}', "too_large"),
    ],
)
def test_each_bad_message_gets_its_reason(payload, reason):
    assert reason_of(payload) == reason


def test_the_reasons_name_the_message_and_field():
    bad = raw(envelope(MachinePositionV1={**position_body(), "Heading": 400}))
    with pytest.raises(wire.WireError) as caught:
        wire.parse_message(bad)
    assert "MachinePositionV1" in caught.value.detail and "Heading" in caught.value.detail


def test_every_reason_is_declared():
    assert {"too_large", "out_of_range", "not_finite"} <= wire.REASONS


def test_encode_refuses_what_the_truck_would_refuse():
    with pytest.raises(wire.WireError):
        wire.encode(
            "MachineAllStopRequestV1",
            {"ModeAllStop": "Maybe", "ModeAllStopId": str(TRUCK)},
            equipment_id=None,
        )


# --- properties -------------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
positions = st.fixed_dictionaries(
    {
        "Heading": st.integers(0, 359),
        "Latitude": st.floats(-90, 90),
        "Longitude": st.floats(-180, 180),
        "Elevation": st.floats(-1000, 9000),
        "LatitudeAccuracy": st.floats(0, 1000),
        "LongitudeAccuracy": st.floats(0, 1000),
        "ElevationAccuracy": st.floats(0, 1000),
        "HeadingAccuracy": st.floats(0, 360),
        "Speed": st.floats(-50, 200),
    }
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | finite | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@given(positions, st.integers(0, 2**62))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_any_valid_position_round_trips(body, sequence):
    payload = wire.encode(
        "MachinePositionV1", body, equipment_id=TRUCK, timestamp=AT, sequence=sequence
    )
    parsed = wire.parse_message(payload)

    assert parsed.sequence == sequence
    assert orjson.loads(wire.body_json(parsed.position)) == pytest.approx(body)


@given(st.binary(max_size=2048))
@settings(max_examples=500)
def test_arbitrary_bytes_never_crash_the_parser(payload):
    try:
        wire.parse_message(payload)
    except wire.WireError as error:
        assert error.reason in wire.REASONS


@given(st.dictionaries(st.text(max_size=24), json_values, max_size=6))
@settings(max_examples=500)
def test_arbitrary_json_objects_get_a_known_reason(obj):
    try:
        wire.parse_message(raw(obj))
    except wire.WireError as error:
        assert error.reason in wire.REASONS


@given(st.sampled_from(sorted(position_body())), json_values)
@settings(max_examples=500)
def test_any_field_replaced_by_any_value_is_accepted_or_refused_with_a_reason(field, value):
    body = {**position_body(), field: value}
    try:
        parsed = wire.parse_message(raw(envelope(MachinePositionV1=body)))
    except wire.WireError as error:
        assert error.reason in wire.REASONS
        assert field in error.detail
    else:
        assert parsed.position is not None
