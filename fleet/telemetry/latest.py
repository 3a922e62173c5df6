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

# The same for many trucks in one call (a batch): KEYS are the trucks' hashes; ARGV holds, for
# each key in turn, its number of triples and then the triples. One call per batch instead of
# one per truck: the script call's client-side cost was a fifth of the writer's CPU at 1,000
# trucks.
_SET_MANY_IF_NEWER = """
local a = 1
for k = 1, #KEYS do
  local key = KEYS[k]
  local n = tonumber(ARGV[a])
  a = a + 1
  for i = a, a + 3 * n - 1, 3 do
    local field = ARGV[i]
    local stamp = tonumber(ARGV[i + 1])
    local stored = redis.call('HGET', key, field .. '@')
    if (not stored) or tonumber(stored) < stamp then
      redis.call('HSET', key, field, ARGV[i + 2], field .. '@', ARGV[i + 1])
    end
  end
  a = a + 3 * n
end
return 1
"""
# Trucks per script call: bounds the time Redis spends in one script (it serves nobody else
# meanwhile) to a few milliseconds.
_TRUCKS_PER_CALL = 500

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


def _millis(moment: Any) -> int:
    return int(moment.timestamp() * 1000)


def position_summary(item: Admitted) -> dict[str, Any] | None:
    """The position part of the live picture: what the map draws."""
    position = item.envelope.position
    if position is None:
        return None
    return {
        "equipmentId": str(item.envelope.equipment_id),
        "lon": position.longitude,
        "lat": position.latitude,
        "elevation": position.elevation,
        "heading": position.heading,
        "speedKmh": position.speed,
        "at": wire.format_timestamp(item.envelope.timestamp),
        "roadRevision": item.truck.road_revision,
    }


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


def _newest_per_truck(items: Iterable[Admitted]) -> dict[str, dict[str, tuple[int, Admitted]]]:
    """A batch holds many messages per truck; only the newest of each message name goes to
    Redis, so a batch costs one script call, not one per message. Envelope Timestamps are
    compared as they are (aware datetimes); the milliseconds and the id's text are made once
    per truck and field, not per message."""
    newest: dict[Any, dict[str, Admitted]] = {}
    for item in items:
        if item.late:
            continue
        envelope = item.envelope
        kept = newest.get(envelope.equipment_id)
        if kept is None:
            kept = newest[envelope.equipment_id] = {}
        stamp = envelope.timestamp
        previous = kept.get(SEEN_FIELD)
        if previous is None or previous.envelope.timestamp < stamp:
            kept[SEEN_FIELD] = item
        for name in envelope.bodies:
            previous = kept.get(name)
            if previous is None or previous.envelope.timestamp < stamp:
                kept[name] = item
    return {
        str(equipment_id): {
            name: (_millis(item.envelope.timestamp), item) for name, item in fields.items()
        }
        for equipment_id, fields in newest.items()
    }


def _script_args(fields: dict[str, tuple[int, Admitted]]) -> list[Any]:
    args: list[Any] = []
    for name, (stamp, item) in fields.items():
        if name == SEEN_FIELD:
            value: Any = _millis(item.inbound.received_at)
        elif name == wire.POSITION:
            name, value = POSITION_FIELD, orjson.dumps(position_summary(item))
        else:
            value = wire.body_json(item.envelope.bodies[name])
        args += [name, stamp, value]
    return args


def record_latest(items: Iterable[Admitted]) -> None:
    """Update the latest state of every truck in ``items`` (late ones skipped)."""
    trucks = list(_newest_per_truck(items).items())
    if not trucks:
        return
    client = redis_client()
    script = client.register_script(_SET_MANY_IF_NEWER)
    with client.pipeline(transaction=False) as pipe:
        for start in range(0, len(trucks), _TRUCKS_PER_CALL):
            keys: list[str] = []
            args: list[Any] = []
            for equipment_id, fields in trucks[start : start + _TRUCKS_PER_CALL]:
                keys.append(truck_key(equipment_id))
                args.append(len(fields))
                args += _script_args(fields)
            script(keys=keys, args=args, client=pipe)
        pipe.execute()


def record_connection(equipment_id: uuid.UUID | str, state: dict[str, Any]) -> None:
    stamp = int(time.time() * 1000)
    redis_client().register_script(_SET_IF_NEWER)(
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
