"""The FMS's own MQTT 5 clients (ingest, the outbox), configured from ``MQTT_URL``, each logged
in as its service (``fleet.vehicles.broker``)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
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
