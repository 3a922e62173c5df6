"""The trucks of ``bench rule`` (fleet.control.compliance_bench): load-generator processes,
started with ``spawn``, so nothing here imports Django."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from fleet.protocol import wire
from fleet.telemetry.loadgen import LAT0, LON0

INSIDE = (LON0 + 0.002, LAT0)  # the zone's centre, ~200 m east of where the trucks drive


def _position(lon: float, lat: float, heading: int) -> dict[str, Any]:
    return {
        "Heading": heading,
        "Latitude": lat,
        "Longitude": lon,
        "Elevation": 3000.0,
        "LatitudeAccuracy": 0.4,
        "LongitudeAccuracy": 0.4,
        "ElevationAccuracy": 0.8,
        "HeadingAccuracy": 1.0,
        "Speed": 20.0,
    }


def drive_into_zone(
    identities: list[tuple[str, str, str]],
    host: str,
    port: int,
    start_at: float,
    enter_at: list[float],
    end_at: float,
    hz: float,
    results: Any,
) -> None:
    """One load-generator process: a client per truck, positions at ``hz`` from ``start_at``,
    inside the zone from the truck's ``enter_at`` (wall clock) on, until ``end_at``. Puts
    ``(sent, [(equipment_id, first_inside, stop_arrived or None), ...])`` on ``results``."""
    lock = threading.Lock()
    first_inside: dict[str, float] = {}
    stopped: dict[str, float] = {}

    def on_message(client, userdata, message) -> None:
        arrived = time.time()
        envelope = wire.parse_fms_message(bytes(message.payload))
        request = envelope.bodies.get("MachineAllStopRequestV1")
        if request is None or request.mode != "Apply":
            return
        equipment_id, up = userdata
        with lock:  # a stop before the entry would be a retry of a previous run's
            if equipment_id in first_inside:
                stopped.setdefault(equipment_id, arrived)
        if envelope.command_id is not None:  # answered as a truck's link would
            ack = wire.encode(
                "CommandAcknowledgementV1",
                {"CommandId": str(envelope.command_id), "Status": "Accepted"},
                equipment_id=equipment_id,
                validate=False,
            )
            client.publish(f"{up}CommandAcknowledgementV1", ack, qos=1)

    clients = []
    for username, password, topic in identities:
        root = topic.rsplit("/up/", 1)[0]
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=username,
            protocol=paho.MQTTv5,
            userdata=(username, f"{root}/up/"),
        )
        client.username_pw_set(username, password)
        client.max_inflight_messages_set(200)
        client.max_queued_messages_set(400)
        client.on_message = on_message
        client.on_connect = lambda c, u, f, rc, p, r=root: c.subscribe(f"{r}/down/#", qos=1)
        client.connect(host, port)
        client.loop_start()
        clients.append((client, username, topic))
    while time.time() < start_at:
        time.sleep(0.01)
    sent, tick, heading = 0, 1.0 / hz, 0
    while (now := time.time()) < end_at:
        heading = (heading + 1) % 360
        for (client, username, topic), entering in zip(clients, enter_at, strict=True):
            inside = time.time() >= entering
            lon, lat = INSIDE if inside else (LON0, LAT0)
            payload = wire.encode(
                "MachinePositionV1",
                _position(lon, lat, heading),
                equipment_id=uuid.UUID(username),
                timestamp=datetime.now(UTC),
                validate=False,
            )
            if inside and username not in first_inside:
                with lock:
                    first_inside[username] = time.time()
            client.publish(topic, payload, qos=1)
            sent += 1
        time.sleep(max(0.0, now + tick - time.time()))
    time.sleep(0.5)
    for client, _, _ in clients:
        client.disconnect()
        client.loop_stop()
    with lock:
        results.put((sent, [(u, first_inside.get(u), stopped.get(u)) for _, u, _ in clients]))
