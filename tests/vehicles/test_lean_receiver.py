"""Ingest's lean receiver: paho reads through a buffer, and a batch's PUBACKs go as one write."""

from __future__ import annotations

import socket
import struct

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from fleet.vehicles.mqtt import BufferedSocket, ack_many


def test_small_reads_are_served_from_one_read_of_the_socket_until_it_is_empty():
    left, right = socket.socketpair()
    right.sendall(b"\x30\x05hello\x30\x02ok")
    left.setblocking(False)
    buffered = BufferedSocket(left)
    assert buffered.recv(1) == b"\x30"
    assert buffered.pending() == 10  # the rest came with the first read
    assert buffered.recv(1) == b"\x05"
    assert buffered.recv(5) == b"hello"
    assert buffered.recv(100) == b"\x30\x02ok"  # no more than is there: a short read
    assert buffered.pending() == 0
    try:
        buffered.recv(1)
    except BlockingIOError:
        pass  # nothing at the socket: as paho expects from a non-blocking one
    else:
        raise AssertionError("expected BlockingIOError")
    right.close()
    assert buffered.recv(1) == b""  # the end of the stream
    buffered.close()


def test_a_batch_of_acknowledgements_is_one_packet_of_standard_pubacks_in_order():
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5, manual_ack=True)
    ack_many(client, [7, 65535, 1])
    (packet,) = client._out_packet
    assert packet["packet"] == struct.pack("!6H", 0x4002, 7, 0x4002, 65535, 0x4002, 1)
    ack_many(client, [])
    assert len(client._out_packet) == 1
