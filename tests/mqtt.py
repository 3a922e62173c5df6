"""An MQTT 5 session for tests at the broker, recording what the broker answers."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class Session:
    """A paho MQTT 5 client that records the broker's answers."""

    def __init__(
        self, port: int, username: str, password: str, *, client_id: str | None = None
    ) -> None:
        # A machine's login is bound to its EquipmentId as client id: that is the default.
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or username, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(username, password)
        self.connected = threading.Event()
        self.reason = None
        self.disconnected = threading.Event()
        self.disconnect_reason = None
        self.acks: dict[int, object] = {}
        self.acked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda client, userdata, message: self.received.append(
            message.topic
        )
        self.received: list[str] = []
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connected.wait(10)

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        self.reason = reason
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        self.disconnect_reason = reason
        self.disconnected.set()

    def _record(self, mid: int, outcome: object) -> None:
        with self.acked:
            self.acks[mid] = outcome
            self.acked.notify_all()

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        self._record(mid, reason)

    def _on_subscribe(self, client, userdata, mid, reasons, properties) -> None:
        self._record(mid, reasons[0])

    def wait(self, mid: int):
        with self.acked:
            assert self.acked.wait_for(lambda: mid in self.acks, timeout=10)
            return self.acks[mid]

    def publish(self, topic: str):
        return self.publish_payload(topic, b"{}")

    def publish_payload(self, topic: str, payload: bytes):
        """Publish at QoS 1; the broker's PUBACK reason."""
        properties = Properties(PacketTypes.PUBLISH)
        return self.wait(self.client.publish(topic, payload, qos=1, properties=properties).mid)

    def subscribe(self, topic: str):
        return self.wait(self.client.subscribe(topic, qos=1)[1])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
