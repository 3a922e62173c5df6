"""Trucks for the multi-host test: each its own MQTT login and session, publishing positions at
QoS 1 and counting what the broker acknowledged, until SIGTERM.

    python -m tests.multihost.trucks --broker 10.231.0.1:1883 --fleet fleet.json --rate 5 \\
        --out published.json

``fleet.json``: ``[{"equipment_id", "username", "password", "topic"}, ...]``. On SIGTERM each
truck stops publishing and waits for its outstanding acknowledgements; ``published.json`` then
holds, per truck, the sequence numbers the broker acknowledged (PUBACK with a success code) and
how many were sent without one. Runs without Django: the message is the project's own encoder's.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.factories import truck_message


class Truck:
    def __init__(self, entry: dict[str, str], host: str, port: int) -> None:
        self.equipment_id = entry["equipment_id"]
        self.topic = entry["topic"]
        self.sent = 0
        self.pending: dict[int, int] = {}  # mid -> sequence
        self.acked: list[int] = []
        self.refused: list[int] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=entry["username"], protocol=paho.MQTTv5
        )
        self.client.username_pw_set(entry["username"], entry["password"])
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            print(f"truck {self.equipment_id}: connection refused: {reason_code}", flush=True)
        else:
            self.connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self.lock:
            sequence = self.pending.pop(mid, None)
            if sequence is None:
                return
            (self.refused if reason_code.is_failure else self.acked).append(sequence)

    def publish(self) -> None:
        payload = truck_message(self.equipment_id, at=datetime.now(UTC), sequence=self.sent)
        with self.lock:  # the ack may arrive before publish() returns
            info = self.client.publish(self.topic, payload, qos=1)
            self.pending[info.mid] = self.sent
        self.sent += 1

    def finish(self, timeout_s: float) -> dict[str, object]:
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        self.client.disconnect()
        self.client.loop_stop()
        return {
            "sent": self.sent,
            "acked": sorted(self.acked),
            "refused": sorted(self.refused),
            "unacked": sorted(self.pending.values()),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True, help="host:port")
    parser.add_argument("--fleet", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=5.0, help="messages per second per truck")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    host, port = args.broker.rsplit(":", 1)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    print(f"connecting to {args.broker}", flush=True)
    trucks = [Truck(entry, host, int(port)) for entry in json.loads(args.fleet.read_text())]
    for truck in trucks:
        if not truck.connected.wait(20):
            raise SystemExit(f"truck {truck.equipment_id} could not connect to {args.broker}")
    print(f"{len(trucks)} trucks connected; publishing at {args.rate} Hz each", flush=True)
    period = 1.0 / args.rate
    tick = time.monotonic()
    while not stopping.is_set():
        for truck in trucks:
            truck.publish()
        tick += period
        stopping.wait(max(0.0, tick - time.monotonic()))
    result = {truck.equipment_id: truck.finish(30) for truck in trucks}
    args.out.write_text(json.dumps(result))
    print(f"published {sum(t.sent for t in trucks)} messages", flush=True)


if __name__ == "__main__":
    main()
