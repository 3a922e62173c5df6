"""A load generator that imports nothing from Django, so ``spawn``-ed publisher processes start
fast and need no settings: the benchmarks run it in several processes at once."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from fleet.protocol import wire

LON0, LAT0 = -68.95, -22.35


def publish_positions(
    identities: list[tuple[str, str, str]],
    host: str,
    port: int,
    seconds: float,
    rate: float,
    sent: Any,
    start_at: float,
    per_timestamp: int = 1,
    header_id: bool = True,
    stop: Any = None,
) -> None:
    """One publisher process: a client per truck, QoS 1 positions for ``seconds`` from the
    wall-clock ``start_at`` (or until ``stop``, a multiprocessing Event, is set), flat out or
    at ``rate`` msgs/s; adds the broker-acked count to ``sent`` (a shared multiprocessing
    value).

    ``per_timestamp``: how many successive positions of a truck share one envelope Timestamp
    (a truck batching its fixes); ``header_id``: whether they carry a HeaderId. Either way each
    position is a different message (its heading moves on), which the history must keep."""
    acked, lock, connected = _truck_clients(identities, host, port)
    clients = [(client, uuid.UUID(username), topic) for client, username, topic in connected]
    body = {
        "Heading": 90,
        "Latitude": LAT0,
        "Longitude": LON0,
        "Elevation": 3000.0,
        "LatitudeAccuracy": 0.4,
        "LongitudeAccuracy": 0.4,
        "ElevationAccuracy": 0.8,
        "HeadingAccuracy": 1.0,
        "Speed": 35.0,
    }
    while time.time() < start_at:
        time.sleep(0.01)
    deadline = time.monotonic() + seconds
    interval = len(clients) / rate if rate else 0.0
    sequence = 0
    last_ms = 0
    while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        round_started = time.monotonic()
        if sequence % per_timestamp == 0:  # a new Timestamp, later than the last
            last_ms = max(int(time.time() * 1000), last_ms + 1)
        at = datetime.fromtimestamp(last_ms / 1000, UTC)
        body["Heading"] = sequence % 360
        for client, equipment_id, topic in clients:
            payload = wire.encode(
                "MachinePositionV1",
                body,
                equipment_id=equipment_id,
                timestamp=at,
                sequence=sequence if header_id else None,
                validate=False,
            )
            while client.publish(topic, payload, qos=1).rc == paho.MQTT_ERR_QUEUE_SIZE:
                time.sleep(0.001)
        sequence += 1
        if interval:
            time.sleep(max(0.0, interval - (time.monotonic() - round_started)))
    drain_until = time.monotonic() + 30
    while time.monotonic() < drain_until and any(c._out_messages for c, _, _ in clients):
        time.sleep(0.05)
    with lock:
        sent.value += acked[0]
    for client, _, _ in clients:
        client.disconnect()
        client.loop_stop()


def publish_streams(
    identities: list[tuple[str, str, str]],
    host: str,
    port: int,
    seconds: float,
    streams: list[tuple[str, dict, float]],
    sent: Any,
    start_at: float,
) -> None:
    """One publisher process: a client per truck publishing ``streams``, each (message name,
    body, Hz), as a truck does (positions at 2 Hz and health at 1 Hz, say), for ``seconds``
    from the wall-clock ``start_at``; each topic its own HeaderId. The identities' topics name
    the truck's up-topic of any message (its last level is replaced). Adds the broker-acked
    count to ``sent``."""
    acked, lock, connected = _truck_clients(identities, host, port)
    clients = [
        (client, uuid.UUID(username), topic.rsplit("/", 1)[0])
        for client, username, topic in connected
    ]
    tick_s = 1.0 / max(hz for _, _, hz in streams)
    every = [max(1, round(1.0 / (hz * tick_s))) for _, _, hz in streams]
    while time.time() < start_at:
        time.sleep(0.01)
    started = time.monotonic()
    tick = 0
    while time.monotonic() - started < seconds:
        at = datetime.now(UTC)
        for (name, body, _), each in zip(streams, every, strict=True):
            if tick % each:
                continue
            for client, equipment_id, up in clients:
                payload = wire.encode(
                    name,
                    body,
                    equipment_id=equipment_id,
                    timestamp=at,
                    sequence=tick // each,
                    validate=False,
                )
                while client.publish(f"{up}/{name}", payload, qos=1).rc == paho.MQTT_ERR_QUEUE_SIZE:
                    time.sleep(0.001)
        tick += 1
        time.sleep(max(0.0, started + tick * tick_s - time.monotonic()))
    drain_until = time.monotonic() + 30
    while time.monotonic() < drain_until and any(c._out_messages for c, _, _ in clients):
        time.sleep(0.05)
    with lock:
        sent.value += acked[0]
    for client, _, _ in clients:
        client.disconnect()
        client.loop_stop()


def answer_all_stops(
    identities: list[tuple[str, str, str]],
    host: str,
    port: int,
    ready: Any,
    stop: Any,
    latencies: Any,
) -> None:
    """One process of trucks that obey all-stops as a real truck's link would: each client
    subscribes to its own down-topic and its site's fleet topic and answers every
    MachineAllStopRequestV1 at once with MachineAllStopV1 (QoS 1) carrying its ModeAllStopId.
    Adds its subscribed clients to ``ready`` (a shared counter); runs until ``stop`` is set;
    puts the list of request latencies (envelope Timestamp to arrival, ms) on ``latencies``."""
    seen: list[float] = []
    lock = threading.Lock()
    clients = []

    def on_message(client, userdata, message) -> None:
        arrived = datetime.now(UTC)
        envelope = wire.parse_fms_message(bytes(message.payload))
        request = envelope.bodies.get("MachineAllStopRequestV1")
        if request is None:
            return
        equipment_id, up = userdata
        mode = "On" if request.mode == "Apply" else "Off"
        answer = wire.encode(
            "MachineAllStopV1",
            {"ModeAllStop": mode, "ModeAllStopId": str(request.all_stop_id)},
            equipment_id=equipment_id,
            validate=False,
        )
        client.publish(f"{up}MachineAllStopV1", answer, qos=1)
        with lock:
            seen.append((arrived - envelope.timestamp).total_seconds() * 1000)

    def on_subscribe(client, userdata, mid, reason_codes, properties) -> None:
        with ready.get_lock():
            ready.value += 1

    for username, password, topic in identities:
        root = topic.rsplit("/up/", 1)[0]  # {root}/{site}/{EquipmentId}
        site_root = root.rsplit("/", 1)[0]
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=username,
            protocol=paho.MQTTv5,
            userdata=(username, f"{root}/up/"),
        )
        client.username_pw_set(username, password)
        client.on_message = on_message
        client.on_subscribe = on_subscribe
        client.on_connect = lambda c, u, f, rc, p, r=root, s=site_root: c.subscribe(
            [(f"{r}/down/#", 1), (f"{s}/fleet/down/MachineAllStopRequestV1", 1)]
        )
        client.connect(host, port)
        client.loop_start()
        clients.append(client)
    stop.wait()
    for client in clients:
        client.disconnect()
        client.loop_stop()
    latencies.put(seen)


def _truck_clients(
    identities: list[tuple[str, str, str]], host: str, port: int
) -> tuple[list[int], threading.Lock, list[tuple[Any, str, str]]]:
    """A connected MQTT client per truck identity (username, password, topic), looping; the
    one-element list their broker acknowledgements are counted in, and its lock."""
    acked = [0]
    lock = threading.Lock()

    def on_publish(client, userdata, mid, reason_code, properties) -> None:
        with lock:
            acked[0] += 1

    clients = []
    for username, password, topic in identities:
        client = paho.Client(
            # The broker binds a machine's login to its EquipmentId as the client id.
            CallbackAPIVersion.VERSION2,
            client_id=username,
            protocol=paho.MQTTv5,
        )
        client.username_pw_set(username, password)
        client.max_inflight_messages_set(200)
        client.max_queued_messages_set(400)
        client.on_publish = on_publish
        client.connect(host, port)
        client.loop_start()
        clients.append((client, username, topic))
    return acked, lock, clients
