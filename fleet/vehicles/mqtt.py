"""The FMS's own MQTT 5 clients (ingest, the outbox), configured from ``MQTT_URL``, each logged
in as its service (``fleet.vehicles.broker``)."""

from __future__ import annotations

import itertools
import ssl
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from django.conf import settings
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet.vehicles.broker import ServiceLogin, service_password


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def broker_address() -> BrokerAddress:
    url = urlsplit(settings.MQTT_URL)
    tls = url.scheme == "mqtts"
    return BrokerAddress(url.hostname or "127.0.0.1", url.port or (8883 if tls else 1883), tls)


def service_client(
    login: ServiceLogin, client_id: str, *, manual_ack: bool = False, userdata: object = None
) -> paho.Client:
    """A paho client logged in as one of the FMS's services (not yet connected)."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5,
        manual_ack=manual_ack,
        userdata=userdata,
    )
    client.username_pw_set(login.username, service_password(login))
    if broker_address().tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
    return client


def connect_properties(
    *, session_expiry_s: int = 0, receive_maximum: int | None = None
) -> Properties:
    properties = Properties(PacketTypes.CONNECT)
    if session_expiry_s:
        properties.SessionExpiryInterval = session_expiry_s
    if receive_maximum:
        properties.ReceiveMaximum = receive_maximum
    return properties


# --- a lean receiver (ingest at thousands of messages per second) ---------------------------
# paho 2 reads each packet with three or four recv() calls (the command byte, each length byte,
# the rest) and sends each PUBACK as a packet of its own, waking its network thread through a
# socket pair each time: a few system calls per message on top of the message's own work. The
# two helpers below use paho's socket-wrapper seam (what its websocket transport uses:
# ``_create_socket``, ``pending``) and its packet queue; paho is pinned below 3 in pyproject.

# Below malloc's mmap threshold (a recv allocates this much, then shrinks to what came); at
# 2,000 messages/s of ~300 bytes a read still carries ~100 of them.
_READ_CHUNK = 32 * 1024
_PUBACK_HEAD = (paho.PUBACK << 8) | 2  # the fixed header: PUBACK, remaining length 2


class BufferedSocket:
    """A socket read in large chunks, paho's small reads served from memory. ``pending()`` tells
    paho's loop that bytes are already here, so it does not wait in ``select`` for them (as for
    a TLS socket's buffered records)."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buffer = b""
        self._at = 0

    def recv(self, size: int) -> bytes:
        if self._at >= len(self._buffer):
            data = self._sock.recv(max(size, _READ_CHUNK))  # BlockingIOError: nothing here
            if len(data) <= size:  # b"" is the end of the stream, as from the socket
                return data
            self._buffer, self._at = data, 0
        start = self._at
        self._at = min(start + size, len(self._buffer))
        return self._buffer[start : self._at]

    def pending(self) -> int:
        inner = getattr(self._sock, "pending", None)
        return len(self._buffer) - self._at + (inner() if inner is not None else 0)

    def send(self, data: bytes | bytearray) -> int:
        return self._sock.send(data)

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def close(self) -> None:
        self._buffer, self._at = b"", 0
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def read_buffered(client: paho.Client) -> None:
    """Make ``client`` read its connection through a :class:`BufferedSocket` (every connect
    and reconnect)."""
    create = client._create_socket

    def buffered() -> BufferedSocket:
        return BufferedSocket(create())

    client._create_socket = buffered  # type: ignore[method-assign]


def ack_many(client: paho.Client, mids: list[int]) -> None:
    """PUBACK the QoS 1 messages ``mids`` (a ``manual_ack`` client), in order, as one write:
    what ``client.ack`` does per message, less one socket-pair wake and one ``send`` each. A
    PUBACK with reason Success and no properties is the four bytes MQTT 3.1.1 and 5 share."""
    if not mids:
        return
    queue_packet = getattr(client, "_packet_queue", None)
    if queue_packet is None:  # not the paho this was written against: one by one
        for mid in mids:
            client.ack(mid, 1)
        return
    pairs = itertools.chain.from_iterable((_PUBACK_HEAD, mid) for mid in mids)
    packed = struct.pack(f"!{2 * len(mids)}H", *pairs)
    queue_packet(paho.PUBACK, packed, 0, 1)
