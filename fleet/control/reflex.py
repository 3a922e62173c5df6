"""The ingest process's own hand on the trucks: the live rules' commands, published the moment
they commit, by the process that decided them.

The outbox's usual path is a commit, a ``NOTIFY``, the delivery process waking, reading the due
commands and publishing them: sound, but several hops and a batch behind a safety rule that has
just seen a truck drive into an exclusion zone. Here the decision's database work (the alert,
the command: the outbox row is still written first, so nothing is sent that is not recorded)
runs on a thread of its own, never on the MQTT thread that saw the message; the command is
published by this process's own outbox connection as soon as it commits, and marked sent when
the broker confirms it. The command is issued with its first outbox attempt
``COMMAND_RETRY_S`` away, so the delivery process only retries it: if this process dies
between the commit and the publish, or the broker is away, the command still goes out, late.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import paho.mqtt.client as paho
from django.conf import settings
from django.db import connection

from fleet.control import services
from fleet.control.models import Command
from fleet.vehicles.broker import OUTBOX
from fleet.vehicles.mqtt import BrokerAddress, broker_address, service_client

log = logging.getLogger(__name__)

PUBACK_TIMEOUT_S = 2.0
CONNECT_WAIT_S = 1.0  # on a first decision right after start, or a reconnect
# A thread idle this long gives its database connection back (a test database can be dropped,
# a pooler reclaims it); the next decision opens a new one.
IDLE_CLOSE_S = 1.0


def first_attempt_in() -> timedelta:
    """When the outbox's own first attempt falls due for a command this module publishes."""
    return timedelta(seconds=settings.COMMAND_RETRY_S)


@dataclass(frozen=True, slots=True)
class Decision:
    """The database work of one decision, returning the commands to publish now, and what to
    do when that work failed (a rule forgets that it acted, so the next message tries again)."""

    act: Callable[[], list[Command]]
    failed: Callable[[], None] = lambda: None
    what: str = ""


class Reflex:
    """One worker thread and one MQTT connection per process, started on first use."""

    def __init__(self) -> None:
        self._inbox: queue.SimpleQueue[Decision] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._client: paho.Client | None = None
        self._address: BrokerAddress | None = None
        self._connected = threading.Event()
        self.published = 0

    def start(self) -> None:
        """Warm up (the thread, the broker connection) before the first decision needs them."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="reflex", daemon=True)
                self._thread.start()

    def submit(self, decision: Decision) -> None:
        self.start()
        self._inbox.put(decision)

    def _run(self) -> None:
        self._publisher()
        while True:
            try:
                decision = self._inbox.get(timeout=IDLE_CLOSE_S)
            except queue.Empty:
                connection.close()
                self._publisher()  # keep the connection warm
                continue
            self._carry_out(decision)

    def _carry_out(self, decision: Decision) -> None:
        try:
            commands = decision.act()
        except Exception:
            log.exception("could not act on %s", decision.what or "a live decision")
            connection.close()
            decision.failed()
            return
        for command in commands:
            self._publish(command)

    def _publish(self, command: Command) -> None:
        client = self._publisher()
        if client is None or not self._connected.wait(CONNECT_WAIT_S):
            return  # the outbox's retry sends it
        try:
            info = client.publish(
                services.down_topic_of(command), services.envelope_of(command), qos=1
            )
            info.wait_for_publish(timeout=PUBACK_TIMEOUT_S)
        except (RuntimeError, ValueError):
            log.warning("could not publish %s; the outbox retries it", command.command_id)
            return
        if info.is_published():
            self.published += 1
            try:
                services.mark_sent(command, actor="reflex")
            except Exception:  # sent all the same; the outbox's retry is harmless
                log.exception("could not mark %s sent", command.command_id)
                connection.close()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("reflex: the broker refused the outbox login: %s", reason_code)
        else:
            self._connected.set()

    def _publisher(self) -> paho.Client | None:
        """The outbox login's connection, (re)made when the configured broker changes."""
        address = broker_address()
        if self._client is not None and address == self._address:
            return self._client
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        client_id = f"haulmind-reflex-{socket.gethostname()}-{os.getpid()}"
        client = service_client(OUTBOX, client_id[:64])
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *args: self._connected.clear()
        self._connected.clear()
        try:
            client.connect(address.host, address.port, keepalive=30)
        except OSError as error:
            log.warning("reflex: broker %s:%s unreachable (%s)", address.host, address.port, error)
            return None
        client.loop_start()
        self._client, self._address = client, address
        return client


REFLEX = Reflex()
