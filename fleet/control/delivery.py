"""``manage.py deliver_commands``: the outbox's delivery process. Publishes due commands on
each truck's down-topic (QoS 1, the broker's PUBACK confirms the hand-over), retries with
back-off until the truck answers or the command expires. Woken at once by NOTIFY when a
command is issued; replicas share the work through ``FOR UPDATE SKIP LOCKED``."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from fleet.control import services
from fleet.control.models import Command
from fleet.protocol import topics
from fleet.vehicles.broker import OUTBOX
from fleet.vehicles.mqtt import broker_address, service_client
from inference.health import HealthFile

log = logging.getLogger(__name__)

PUBACK_TIMEOUT_S = 5.0
SITES_REFRESH_S = 30.0
EXPIRE_EVERY_S = 2.0
IDLE_WAIT_S = 1.0
BEAT_POLL_S = 0.05  # the heartbeat thread's tick: beats leave within this of their time


class OutboxDelivery:
    """``sites``: the slugs whose commands, fleet messages and heartbeats this process delivers
    (those whose machines reach its broker); None: every site's."""

    def __init__(self, client_id: str | None = None, sites: Sequence[str] | None = None) -> None:
        self.client_id = client_id or f"haulmind-outbox-{socket.gethostname()}"[:64]
        self.sites = list(sites) if sites is not None else None
        self.connected = threading.Event()
        self._stopping = threading.Event()
        self._client = service_client(OUTBOX, self.client_id)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *args: self.connected.clear()
        self._expired_at = 0.0
        self._beat_at = float("-inf")
        self._sites: list[str] = []
        self._sites_at = float("-inf")
        self.delivered = 0
        self.heartbeats = 0
        # Touched after each round the database answered (an orchestrator's liveness probe).
        self.health = HealthFile()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT connection refused: %s", reason_code)
        else:
            self.connected.set()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        address = broker_address()
        self._client.connect(address.host, address.port, keepalive=30)
        self._client.loop_start()
        # The heartbeat beats on its own thread: a round of deliveries (a zone to 300 trucks:
        # 300 publishes, their PUBACKs, 300 rows marked) can take longer than a truck waits for
        # it, and every truck would stop (seen in bench shift).
        beats = threading.Thread(target=self._beat_loop, name="fms-heartbeat", daemon=True)
        beats.start()
        try:
            self._listen()
            while not self._stopping.is_set():
                try:
                    sent = self.deliver_due() if self.connected.is_set() else 0
                    self._expire_now_and_then()
                    self.health.touch()
                except DatabaseError:
                    log.exception("database unavailable; retrying")
                    connection.close()
                    self._stopping.wait(2.0)
                    self._listen()
                    continue
                if not sent:
                    self._wait_for_notify()
        finally:
            self._stopping.set()
            self.health.clear()
            beats.join(5)
            self._client.disconnect()
            self._client.loop_stop()

    def _beat_loop(self) -> None:
        try:
            while not self._stopping.wait(BEAT_POLL_S):
                try:
                    self._beat_when_due()
                except DatabaseError:
                    log.exception("database unavailable for the heartbeat's sites; retrying")
                    connection.close()
        finally:
            connection.close()

    def deliver_due(self) -> int:
        """One round: publish the fleet-topic messages, then every due command; mark those the
        broker took. Returns how many were published."""
        return self._deliver_fleet_messages() + self._deliver_commands()

    def _deliver_fleet_messages(self) -> int:
        with transaction.atomic():
            due = services.due_fleet_messages(self.sites)
            published = 0
            for message in due:
                topic = topics.fleet_down_topic(message.site.slug, message.message_name)
                info = self._client.publish(topic, services.fleet_envelope(message), qos=1)
                try:
                    info.wait_for_publish(timeout=PUBACK_TIMEOUT_S)
                except (RuntimeError, ValueError):
                    continue
                if info.is_published():
                    services.mark_fleet_message_published(message)
                    published += 1
        return published

    def _deliver_commands(self) -> int:
        with transaction.atomic():
            due = services.due_commands(sites=self.sites)
            pending = [(command, self._publish(command)) for command in due]
            deadline = time.monotonic() + PUBACK_TIMEOUT_S
            sent = 0
            for command, info in pending:
                remaining = max(0.0, deadline - time.monotonic())
                try:
                    info.wait_for_publish(timeout=remaining)
                except (RuntimeError, ValueError):
                    continue
                if info.is_published():
                    services.mark_sent(command, actor="mqtt")
                    sent += 1
        self.delivered += sent
        return sent

    def _publish(self, command: Command):
        topic = services.down_topic_of(command)
        return self._client.publish(topic, services.envelope_of(command), qos=1)

    def _beat_when_due(self) -> None:
        """FmsHeartbeatV1 on every active site's fleet topic (QoS 0: a beat that cannot arrive
        on time is worthless late, and an offline truck must not get a backlog of them)."""
        interval_s = settings.FMS_HEARTBEAT_MS / 1000
        now = time.monotonic()
        if not self.connected.is_set() or now - self._beat_at < interval_s:
            return
        if now - self._sites_at > SITES_REFRESH_S:
            self._sites = services.heartbeat_sites(self.sites)
            self._sites_at = now
        payload = services.heartbeat_envelope()
        for slug in self._sites:
            self._client.publish(topics.fleet_down_topic(slug, "FmsHeartbeatV1"), payload, qos=0)
        self.heartbeats += 1
        self._beat_at = now

    def _expire_now_and_then(self) -> None:
        if time.monotonic() - self._expired_at > EXPIRE_EVERY_S:
            services.expire_commands()
            self._expired_at = time.monotonic()

    def _listen(self) -> None:
        try:
            connection.ensure_connection()
            connection.connection.execute(f"LISTEN {services.NOTIFY_CHANNEL}")
        except DatabaseError:
            connection.close()

    def _wait_for_notify(self) -> None:
        """Sleep until a command is issued (NOTIFY) or the next retry may be due."""
        try:
            for _ in connection.connection.notifies(timeout=IDLE_WAIT_S, stop_after=1):
                pass
        except Exception:
            connection.close()
            self._stopping.wait(0.5)
            self._listen()
