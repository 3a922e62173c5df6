"""Latest state per truck in Redis: one hash per truck, a field per message name.

Ingest replicas share the work through a shared subscription, so two replicas may write the
same truck out of order; a small Lua script keeps, per field, only the newest envelope
Timestamp. Late (back-filled) messages never reach this: they do not describe the present.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any

import msgspec
import orjson
import redis
from django.conf import settings

from fleet.protocol import wire
from fleet.telemetry.intake import Admitted

# ARGV: triples (field, timestamp in ms, value). Sets each field only when newer than stored.
_SET_IF_NEWER = """
for i = 1, #ARGV, 3 do
  local field = ARGV[i]
  local stamp = tonumber(ARGV[i + 1])
  local stored = redis.call('HGET', KEYS[1], field .. '@')
  if (not stored) or tonumber(stored) < stamp then
    redis.call('HSET', KEYS[1], field, ARGV[i + 2], field .. '@', ARGV[i + 1])
  end
end
return 1
"""

# The same for many trucks in one call (a batch): KEYS are the trucks' hashes; ARGV[1] is one
# MessagePack array holding, for each key in turn, the flat triples of that truck. One argument
# per call instead of ~8 per truck: packing the arguments one by one (redis-py encodes and
# frames each) was a third of the replica's CPU at 1,000 trucks (issue 14). The stamp travels as
# a number and is written back with %d, so the stored text is the same as before.
_SET_MANY_IF_NEWER = """
local rows = cmsgpack.unpack(ARGV[1])
for k = 1, #KEYS do
  local key = KEYS[k]
  local row = rows[k]
  for i = 1, #row, 3 do
    local field = row[i]
    local stamp = row[i + 1]
    local stored = redis.call('HGET', key, field .. '@')
    if (not stored) or tonumber(stored) < stamp then
      redis.call('HSET', key, field, row[i + 2], field .. '@', string.format('%d', stamp))
    end
  end
end
return 1
"""
# Trucks per script call: bounds the time Redis spends in one script (it serves nobody else
# meanwhile) to a few milliseconds.
_TRUCKS_PER_CALL = 500
_PACK = msgspec.msgpack.Encoder()

POSITION_FIELD = "position"
SEEN_FIELD = "seen"
CONNECTION_FIELD = "connection"
HEALTH = "BasicMachineHealthV2"


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)


def redis_client() -> redis.Redis:
    return _client(settings.REDIS_URL)


def truck_key(equipment_id: uuid.UUID | str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:truck:{equipment_id}"


@cache
def _scripts(client: redis.Redis) -> tuple[Any, Any]:
    """The two scripts, registered once per client (each registration hashes its source)."""
    return client.register_script(_SET_IF_NEWER), client.register_script(_SET_MANY_IF_NEWER)


def _millis(moment: Any) -> int:
    return int(moment.timestamp() * 1000)


def position_summary(item: Admitted) -> dict[str, Any] | None:
    """The position part of the live picture: what the map draws. Made once per message: the
    latest state and the live feed both want the newest message's (kept on the message)."""
    if item.summary is not None:
        return item.summary
    position = item.envelope.position
    if position is None:
        return None
    item.summary = {
        "equipmentId": str(item.envelope.equipment_id),
        "lon": position.longitude,
        "lat": position.latitude,
        "elevation": position.elevation,
        "heading": position.heading,
        "speedKmh": position.speed,
        "at": wire.format_timestamp(item.envelope.timestamp),
        "roadRevision": item.truck.road_revision,
    }
    return item.summary


# The BasicMachineHealthV2 readings the machine detail charts, from its Additional[] by SensorId
# (the names the simulator sends and the learning pipeline reads: fleet/simulator/link.py).
CHARTED_SENSORS = {
    "EngineCoolantTemp": "coolantC",
    "BrakeTempFront": "brakeFrontC",
    "BrakeTempRear": "brakeRearC",
}


def health_summary(at: datetime, body: dict[str, Any]) -> dict[str, Any]:
    """The charted part of one BasicMachineHealthV2 body (its wire form): coolant and brake
    temperatures in °C and each tyre's pressure in kPa. A reading the truck reported as
    unavailable (null) stays null: never a default in its place."""
    summary: dict[str, Any] = {"at": wire.format_timestamp(at)}
    readings = {r.get("SensorId"): r.get("Value") for r in body.get("Additional") or ()}
    for sensor, key in CHARTED_SENSORS.items():
        summary[key] = readings.get(sensor)
    summary["tyresKpa"] = {
        str(tyre.get("TirePosition")): tyre.get("TirePressure") for tyre in body.get("Tire") or ()
    }
    return summary


def live_health(item: Admitted) -> dict[str, Any] | None:
    """The health part of the live picture (event ``health``), or None if ``item`` has none."""
    body = item.envelope.bodies.get(HEALTH)
    if body is None:
        return None
    return {
        "equipmentId": str(item.envelope.equipment_id),
        **health_summary(item.envelope.timestamp, body.to_wire()),
    }


def _newest_per_truck(items: Iterable[Admitted]) -> dict[uuid.UUID, dict[str, Admitted]]:
    """A batch holds many messages per truck; only the newest of each message name goes to
    Redis, so a batch costs one script call, not one per message. Envelope Timestamps are
    compared as they are (aware datetimes)."""
    newest: dict[uuid.UUID, dict[str, Admitted]] = {}
    for item in items:
        if item.late:
            continue
        envelope = item.envelope
        kept = newest.get(envelope.equipment_id)  # type: ignore[arg-type]
        if kept is None:  # the usual case at many trucks: one message per truck per batch
            kept = newest[envelope.equipment_id] = dict.fromkeys(envelope.bodies, item)  # type: ignore[index]
            kept[SEEN_FIELD] = item
            continue
        stamp = envelope.timestamp
        if kept[SEEN_FIELD].envelope.timestamp < stamp:
            kept[SEEN_FIELD] = item
        for name in envelope.bodies:
            previous = kept.get(name)
            if previous is None or previous.envelope.timestamp < stamp:
                kept[name] = item
    return newest


def _row(fields: dict[str, Admitted]) -> list[Any]:
    """One truck's flat (field, timestamp in ms, value) triples."""
    row: list[Any] = []
    stamps: dict[int, int] = {}  # id(item) -> ms: the fields of one message share its stamp
    for name, item in fields.items():
        stamp = stamps.get(id(item))
        if stamp is None:
            stamp = stamps[id(item)] = _millis(item.envelope.timestamp)
        if name == SEEN_FIELD:
            value: Any = _millis(item.inbound.received_at)
        elif name == wire.POSITION:
            name, value = POSITION_FIELD, orjson.dumps(position_summary(item)).decode()
        else:
            value = wire.body_json(item.envelope.bodies[name]).decode()
        row += (name, stamp, value)  # text: Redis' cmsgpack reads no MessagePack bin
    return row


def record_latest(items: Iterable[Admitted]) -> None:
    """Update the latest state of every truck in ``items`` (late ones skipped)."""
    trucks = list(_newest_per_truck(items).items())
    if not trucks:
        return
    client = redis_client()
    script = _scripts(client)[1]
    prefix = truck_key("")
    with client.pipeline(transaction=False) as pipe:
        for start in range(0, len(trucks), _TRUCKS_PER_CALL):
            chunk = trucks[start : start + _TRUCKS_PER_CALL]
            keys = [f"{prefix}{equipment_id}" for equipment_id, _ in chunk]
            rows = [_row(fields) for _, fields in chunk]
            script(keys=keys, args=[_PACK.encode(rows)], client=pipe)
        pipe.execute()


def record_connection(equipment_id: uuid.UUID | str, state: dict[str, Any]) -> None:
    stamp = int(time.time() * 1000)
    _scripts(redis_client())[0](
        keys=[truck_key(equipment_id)], args=[CONNECTION_FIELD, stamp, orjson.dumps(state)]
    )


def read_latest(equipment_ids: Iterable[uuid.UUID | str]) -> dict[str, dict[str, Any]]:
    """EquipmentId -> {field: decoded value, ``seenAgeS``: seconds since the newest message}."""
    ids = [str(equipment_id) for equipment_id in equipment_ids]
    client = redis_client()
    with client.pipeline(transaction=False) as pipe:
        for equipment_id in ids:
            pipe.hgetall(truck_key(equipment_id))
        raw_states = pipe.execute()
    now_ms = time.time() * 1000
    return {
        equipment_id: _decode(raw, now_ms)
        for equipment_id, raw in zip(ids, raw_states, strict=True)
    }


def _decode(raw: dict[bytes, bytes], now_ms: float) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for key, value in raw.items():
        field = key.decode()
        if field.endswith("@"):
            continue
        if field == SEEN_FIELD:
            state["seenAgeS"] = round(max(0.0, now_ms - float(value)) / 1000, 3)
        else:
            state[field] = orjson.loads(value)
    return state
