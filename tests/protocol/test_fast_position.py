"""The msgspec fast path for plain MachinePositionV1 envelopes (fleet.protocol.wire) against the
hand-written reader: the same shapes, field by field, and the same result for every message,
value or rejection. No database."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import pytest

from fleet.protocol import wire

TRUCK = "2248d535-3daf-4a86-b1e1-4951a22beec6"
BODY = {
    "Heading": 211,
    "Latitude": -23.456789,
    "Longitude": -70.123456,
    "Elevation": 2875.23,
    "LatitudeAccuracy": 0.31,
    "LongitudeAccuracy": 0.27,
    "ElevationAccuracy": 0.58,
    "HeadingAccuracy": 2.1,
    "Speed": 43.1,
}


def envelope(body: Any = None, **headers: Any) -> dict[str, Any]:
    message = {
        "Protocol": "ISO23725",
        "Version": 1,
        "Timestamp": "2026-11-22T13:41:56.123Z",
        "EquipmentId": TRUCK,
        "HeaderId": 7,
    }
    message.update(headers)
    message = {key: value for key, value in message.items() if value is not ...}
    message[wire.POSITION] = dict(BODY) if body is None else body
    return message


def slow(payload: bytes) -> wire.Envelope:
    """The hand-written reader alone (what parse_message did before the fast path)."""
    return wire._require_equipment(wire._parse_envelope(payload, wire._TRUCK_PARSERS))


def outcome(parse, payload: bytes) -> Any:
    try:
        return parse(payload)
    except wire.WireError as error:
        return ("refused", error.reason, error.detail)


def test_the_fast_structs_are_the_dataclass_and_its_ranges_field_by_field() -> None:
    body_fields = {f.name: f for f in msgspec.structs.fields(wire._FastPositionBody)}
    position_fields = [f.name for f in dataclasses.fields(wire.MachinePositionV1)]
    # Every motion field of the dataclass, in its order, then its measured Timestamp; only
    # the attachments are left to the reader.
    assert [name for name, *_ in wire._FAST_POSITION_FIELDS] + ["timestamp", "attachments"] == (
        position_fields
    )
    assert list(body_fields) == [wire_name for _, wire_name, *_ in wire._FAST_POSITION_FIELDS] + [
        "Timestamp"
    ]
    # The reader's own key set, less the alternative spellings it alone accepts.
    assert set(body_fields) == wire._POSITION_KEYS - {
        "HeightAccuracy",
        "Attachment",
        "AttachmentV1",
    }
    for _, wire_name, kind, (lo, hi) in wire._FAST_POSITION_FIELDS:
        info = msgspec.inspect.type_info(body_fields[wire_name].type)
        assert info.ge == lo and info.le == hi, wire_name
        assert isinstance(
            info, msgspec.inspect.IntType if kind is int else msgspec.inspect.FloatType
        )
    headers = [f.name for f in msgspec.structs.fields(wire._FastPositionEnvelope)]
    assert set(headers) - {wire.POSITION} <= wire._HEADER_KEYS


# Messages the fast path takes, and variants that must go to the reader (tolerated or refused).
CASES: list[dict[str, Any]] = [
    envelope(),
    envelope(HeaderId=...),
    envelope(HeaderId=None),
    envelope(HeaderId=2**63 - 1),
    envelope(HeaderId=2**63),
    envelope(HeaderId=-1),
    envelope(HeaderId="12"),
    envelope(Protocol="Open-Autonomy"),
    envelope(Protocol=" ISO23725 "),
    envelope(Protocol="ISO-23725"),
    envelope(Protocol=...),
    envelope(Version=2),
    envelope(Version=1.0),
    envelope(Version=True),
    envelope(Version="1"),
    envelope(Timestamp="2026-11-22T15:41:56.123+02:00"),
    envelope(Timestamp="2026-11-22T13:41:56.123"),
    envelope(Timestamp="2026-11-22T13:41:56.123456789Z"),
    envelope(Timestamp=" 2026-11-22T13:41:56Z "),
    envelope(Timestamp="yesterday"),
    envelope(Timestamp=1),
    envelope(EquipmentId=f"{{{TRUCK}}}"),
    envelope(EquipmentId=TRUCK.upper()),
    envelope(EquipmentId=TRUCK.replace("-", "")),
    envelope(EquipmentId="truck-7"),
    envelope(EquipmentId=None),
    envelope(EquipmentId=...),
    envelope(CommandId=TRUCK),
    envelope(Extra=1),
    envelope([]),
    envelope({}),
    {**envelope(), "BasicMachineHealthV2": {}},
]
for field, values in {
    "Heading": [0, 359, 360, -1, 12.0, 12.5, "12", True, None, 2**64 - 1],
    "Latitude": [90, -90, 90.0001, "1.5", " 1.5 ", "NaN", False, 1e308, 0],
    "Speed": [-50, 200, -50.5, 200.1, "fast", None],
    "ElevationAccuracy": [0, -0.0, -1e-9, None],
    "Elevation": [-1000, 9000, 9000.5],
}.items():
    CASES += [envelope({**BODY, field: value}) for value in values]
    CASES.append(envelope({key: value for key, value in BODY.items() if key != field}))
CASES += [
    envelope({**BODY, "Timestamp": "2026-11-22T13:41:56.023Z"}),
    envelope({**BODY, "Timestamp": None}),
    envelope({**BODY, "Timestamp": "2026-11-22 13:41:56"}),
    envelope({**BODY, "HeightAccuracy": 0.58}),
    envelope({**BODY, "HeightAccuracy": 0.6}),
    envelope(
        {k: v for k, v in {**BODY, "HeightAccuracy": 0.58}.items() if k != "ElevationAccuracy"}
    ),
    envelope({**BODY, "Attachment": []}),
    envelope({**BODY, "Attachment": [{**BODY, "EquipmentId": TRUCK}]}),
    envelope({**BODY, "Colour": "yellow"}),
]


@pytest.mark.parametrize("message", CASES, ids=itertools.count())
def test_fast_path_agrees_with_the_reader(message: dict[str, Any]) -> None:
    payload = orjson.dumps(message)
    assert outcome(wire.parse_message, payload) == outcome(slow, payload)


def test_raw_bytes_edge_cases_agree() -> None:
    good = orjson.dumps(envelope())
    for payload in [
        good,
        good.replace(b'"Heading":211', b'"Heading":211,"Heading":12'),  # the last one wins
        good.replace(b"-23.456789", b"-23.4567890000000000001"),
        good[:-1],
        b"\xff" + good,
        b"[]",
        b"",
        good.replace(b"211", b"NaN"),
        good.replace(b"211", b"1e400"),
    ]:
        assert outcome(wire.parse_message, payload) == outcome(slow, payload), payload


def test_the_fast_path_takes_a_plain_position_and_nothing_else() -> None:
    plain = orjson.dumps(envelope())
    parsed = wire._parse_position_fast(plain)
    assert parsed == slow(plain)
    assert parsed.timestamp == datetime(2026, 11, 22, 13, 41, 56, 123000, tzinfo=UTC)
    tolerated = orjson.dumps(envelope({**BODY, "Heading": "211"}))
    assert wire._parse_position_fast(tolerated) is None
    assert wire.parse_message(tolerated) == parsed
