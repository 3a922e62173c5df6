"""The ingest process's own hand on the trucks: a stop decided by a live rule is published the
moment it is decided, by the process that saw the message, and recorded right after.

The outbox's usual path is a transaction (the command row), a commit, a ``NOTIFY``, the
delivery process waking, reading the due commands and publishing them: sound, but several
hops, a batch and a handful of database round trips behind a rule that has just seen a truck
drive into an exclusion zone; in a busy Python process each round trip also waits for the
interpreter lock. Here the rule decides from memory (``fleet.control.compliance``), the stop
leaves at once on this process's own outbox connection, and its record (the alert, the command
as Sent, their events) is written by the ingest writer before it stores the next batch, so the
truck's acknowledgement, which can only come after, always finds its command when it reaches
the same replica. One that reaches another replica first is not matched; the outbox's retry
(``COMMAND_RETRY_S`` later, the same CommandId) is acknowledged again and closes it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

import paho.mqtt.client as paho

from fleet.control.services import targeted_stop_id
from fleet.protocol import topics, wire
from fleet.vehicles.broker import OUTBOX
from fleet.vehicles.mqtt import BrokerAddress, broker_address, service_client

log = logging.getLogger(__name__)

CONNECT_WAIT_S = 0.5


class Reflex:
    """One MQTT connection per process (the outbox login), made on first use, kept warm."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: paho.Client | None = None
        self._address: BrokerAddress | None = None
        self._connected = threading.Event()

    def start(self) -> None:
        """Connect (in the background) if not connected to the configured broker yet."""
        address = broker_address()
        if self._client is not None and address == self._address:
            return
        with self._lock:
            if self._client is None or address != self._address:
                self._connect(address)

    def publish(
        self, site_slug: str, equipment_id: uuid.UUID, message_name: str, envelope: bytes
    ) -> bool:
        """Hand a message to the broker now (QoS 1). False if this process has no connection:
        the caller records it unsent, and the outbox sends it."""
        self.start()
        client = self._client
        # Connecting (a first stop right after start, a reconnect): worth a short wait.
        if client is None or not self._connected.wait(CONNECT_WAIT_S):
            return False
        topic = topics.down_topic(site_slug, str(equipment_id), message_name)
        return client.publish(topic, envelope, qos=1).rc == paho.MQTT_ERR_SUCCESS

    def stop_now(self, site_slug: str, equipment_id: uuid.UUID, command_id: uuid.UUID) -> bool:
        """The truck's targeted stop (MachineAllStopRequestV1 Apply), published at once."""
        body = {"ModeAllStop": "Apply", "ModeAllStopId": str(targeted_stop_id(equipment_id))}
        envelope = wire.encode(
            "MachineAllStopRequestV1", body, equipment_id=equipment_id, command_id=command_id
        )
        return self.publish(site_slug, equipment_id, "MachineAllStopRequestV1", envelope)

    def _connect(self, address: BrokerAddress) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        self._connected.clear()
        client_id = f"haulmind-reflex-{socket.gethostname()}-{os.getpid()}"[:64]
        client = service_client(OUTBOX, client_id)
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *args: self._connected.clear()
        client.connect_async(address.host, address.port, keepalive=30)
        client.loop_start()  # connects, and reconnects, in its own thread
        self._client, self._address = client, address

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("reflex: the broker refused the outbox login: %s", reason_code)
        else:
            self._connected.set()


REFLEX = Reflex()
