"""``manage.py ingest``: truck messages from MQTT into the history, at least once in, exactly
once stored.

- A shared subscription (``$share/ingest/...``): add replicas to scale out.
- A persistent session (stable client id, clean_start False, a session expiry): Mosquitto drops
  the in-flight messages of a clean-session shared subscriber that dies (its issue 2662); a
  persistent one gets them back when it reconnects.
- ``manual_ack``: the broker's PUBACK is sent only after the batch holding the message is
  committed. A crash before the commit means redelivery, and the history's key de-duplicates.
- Back-pressure: the MQTT thread hands messages to the writer through a bounded queue; when the
  database is slow the queue fills, the MQTT thread waits, unacknowledged messages reach the
  Receive Maximum and the broker holds the rest. Memory stays bounded.
- A replica has a stable name (``fleet.telemetry.replicas``); it announces itself and beats, so
  one that has gone silent is seen. Retiring one (``retiring=True``) resumes its session without
  taking new work (it unsubscribes), stores what the broker queued for it, and ends the session
  (expiry 0), so nothing stays behind at the broker for a replica that never returns.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet.telemetry import latest, metrics, replicas, status
from fleet.telemetry.intake import Admitted, Inbound, Refused, TimeRules, admit
from fleet.telemetry.partitions import ensure_history_partitions
from fleet.telemetry.services import EquipmentDirectory, LiveFeed, claimed_ids, ingest_batch
from fleet.telemetry.signals import connection_changed, ingest_starting, messages_arrived
from fleet.vehicles.broker import INGEST
from fleet.vehicles.mqtt import broker_address, connect_properties, service_client

log = logging.getLogger(__name__)

SHARE_GROUP = "ingest"
PARTITION_CHECK_S = 600.0
# Retiring: the session is drained once nothing has arrived for this long after unsubscribing
# (the broker sends an offline session's queue at once, as fast as the Receive Maximum allows).
DRAIN_IDLE_S = 2.0


def subscriptions(root: str | None = None, group: str = SHARE_GROUP) -> list[str]:
    root = root or settings.MQTT_TOPIC_ROOT
    return [
        f"$share/{group}/{root}/+/+/up/#",
        f"$share/{group}/{root}/+/+/connection",
    ]


@dataclass
class IngestOptions:
    """``replica``: the stable name; ``client_id`` (its broker session) follows from it."""

    replica: str = ""
    client_id: str = ""
    batch_size: int = field(default_factory=lambda: settings.INGEST_BATCH_SIZE)
    batch_delay_s: float = field(default_factory=lambda: settings.INGEST_BATCH_DELAY_MS / 1000)
    queue_limit: int = field(default_factory=lambda: settings.INGEST_QUEUE_LIMIT)
    receive_maximum: int = field(default_factory=lambda: settings.INGEST_RECEIVE_MAXIMUM)
    session_expiry_s: int = 24 * 3600
    share_group: str = SHARE_GROUP

    def __post_init__(self) -> None:
        if not self.client_id:
            self.client_id = replicas.client_id_for(replicas.replica_name(self.replica))
        self.replica = self.replica or self.client_id.removeprefix(replicas.CLIENT_ID_PREFIX)


class IngestRunner:
    """One ingest replica. ``run()`` blocks until ``stop()``; safe to stop from a signal."""

    def __init__(self, options: IngestOptions, *, retiring: bool = False) -> None:
        self.options = options
        self.retiring = retiring
        self.retired = False  # retiring: drained, and the session ended
        self.drained = 0  # retiring: messages the session held
        self.drain_lags_s: list[float] = []
        self._unsubscribed = threading.Event()
        self._last_arrival = time.monotonic()
        self._stored_since_beat = 0
        self._beat_at = float("-inf")
        self.inbox: queue.Queue[Inbound] = queue.Queue(maxsize=self.options.queue_limit)
        # The live rules' decisions to record, from the MQTT thread to the writer (in order).
        self.decisions: collections.deque[Callable[[], object]] = collections.deque()
        self.directory = EquipmentDirectory()
        self.rules = TimeRules.from_settings()
        self.live = LiveFeed()
        self.connected = threading.Event()
        self._stopping = threading.Event()
        self._client = service_client(INGEST, self.options.client_id, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._client.on_unsubscribe = self._on_unsubscribe
        self._client.on_subscribe = self._on_subscribe
        self._partitions_checked = float("-inf")

    # --- MQTT thread ---------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT connection refused: %s", reason_code)
            return
        topics = subscriptions(group=self.options.share_group)
        if self.retiring:
            # No new work for a replica that is leaving; what the broker queued still comes.
            if flags.session_present:
                client.unsubscribe(topics)
            else:
                self._unsubscribed.set()  # no session: nothing was queued
        else:
            # Subscribing again on a resumed session is harmless and covers a first start.
            client.subscribe([(topic, 1) for topic in topics])
        self.connected.set()
        log.info(
            "ingest connected as %s (session present: %s)",
            self.options.client_id,
            flags.session_present,
        )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        connection.close()  # this thread's, opened by admission (the directory, the rules)
        if not self._stopping.is_set():
            log.warning("MQTT disconnected (%s); paho reconnects", reason_code)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            log.error("ingest subscription refused by the broker: %s", refused)
        else:
            log.info("ingest subscribed as %s: receiving", self.options.client_id)

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._last_arrival = time.monotonic()
        self._unsubscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        self._last_arrival = time.monotonic()
        inbound = Inbound(
            channel="mqtt",
            payload=message.payload,
            received_at=datetime.now(UTC),
            topic=message.topic,
            ack=(message.mid, message.qos),
        )
        if not inbound.topic.endswith("/connection"):
            self._admit_now(inbound)
        # Blocks when the writer is behind: this is the back-pressure (see the module docstring).
        while not self._stopping.is_set():
            try:
                self.inbox.put(inbound, timeout=0.5)
                return
            except queue.Full:
                continue

    def _admit_now(self, inbound: Inbound) -> None:
        """Admit a message in the MQTT thread as it arrives and show it to the live rules at
        once: a safety decision waits neither for the batch to fill (INGEST_BATCH_DELAY_MS) nor
        for its commit. The writer stores it without parsing it again."""
        try:
            outcome = admit(inbound, self.directory.current(), self.rules)
            if isinstance(outcome, Refused) and outcome.reason == "unknown_equipment":
                # Perhaps provisioned a moment ago: look it up (at most every few seconds).
                outcome = admit(inbound, self.directory.current(claimed_ids([inbound])), self.rules)
        except DatabaseError:
            connection.close()  # the writer admits it with the batch, and retries the database
            return
        inbound.outcome = outcome
        if not isinstance(outcome, Admitted) or outcome.late:
            return
        outcome.judged_live = True
        try:
            answers = messages_arrived.send(sender=IngestRunner, admitted=[outcome], live=True)
        except Exception:  # a rule's failure must not cost the message its storage
            log.exception("a live rule failed on a message from %s", outcome.truck.equipment_id)
            return
        for _, records in answers:
            self.decisions.extend(records or ())

    def _record_decisions(self) -> None:
        """Write what the live rules decided (and already did) before the next batch is stored:
        a truck's answer to a stop is in a later batch than the message that caused it, so it
        finds its command. A database outage leaves the rest for the store path's retry."""
        while self.decisions:
            record = self.decisions[0]
            try:
                record()
            except DatabaseError:
                raise
            except Exception:
                log.exception("could not record a live decision; dropped")
            self.decisions.popleft()

    # --- writer (the caller's thread) ----------------------------------------------------
    def run(self) -> None:
        if self.retiring:
            replicas.check_retirable(self.options.replica)
        else:
            replicas.announce(self.options.replica, self.options.client_id)
        address = broker_address()
        self._ensure_partitions()
        ingest_starting.send(sender=IngestRunner)
        self._client.connect(
            address.host,
            address.port,
            keepalive=30,
            clean_start=False,
            properties=connect_properties(
                session_expiry_s=self.options.session_expiry_s,
                receive_maximum=self.options.receive_maximum,
            ),
        )
        self._client.loop_start()
        try:
            while not self._stopping.is_set():
                self._write(self._take_batch())
                self.live.flush()
                self._beat()
                if self.retiring and self._drained_all():
                    self.retired = True
                    break
            self._drain()
        finally:
            self._disconnect()
        if self.retired:
            replicas.record_retired(self.options.replica, self.drain)

    @property
    def drain(self) -> replicas.Drain:
        return replicas.Drain(self.drained, self.drain_lags_s)

    def _drained_all(self) -> bool:
        return (
            self._unsubscribed.is_set()
            and self.inbox.empty()
            and time.monotonic() - self._last_arrival > DRAIN_IDLE_S
        )

    def _disconnect(self) -> None:
        if self.retired:
            # Session expiry 0 on DISCONNECT: the broker forgets the session and its group
            # membership; nothing more is queued for this name.
            properties = Properties(PacketTypes.DISCONNECT)
            properties.SessionExpiryInterval = 0
            self._client.disconnect(properties=properties)
        else:
            self._client.disconnect()
        self._client.loop_stop()

    def _beat(self) -> None:
        if self.retiring or time.monotonic() - self._beat_at < replicas.BEAT_S:
            return
        try:
            replicas.beat(self.options.replica, self._stored_since_beat)
        except DatabaseError:
            connection.close()  # the store path retries the database; the beat waits
            return
        self._stored_since_beat = 0
        self._beat_at = time.monotonic()

    def stop(self) -> None:
        self._stopping.set()

    def _drain(self) -> None:
        """On a clean stop, commit and acknowledge what is already here."""
        while True:
            batch = self._take_batch(wait=False)
            if not batch and not self.decisions:
                return
            self._write(batch)

    def _take_batch(self, *, wait: bool = True) -> list[Inbound]:
        batch: list[Inbound] = []
        deadline = time.monotonic() + self.options.batch_delay_s
        while len(batch) < self.options.batch_size:
            timeout = deadline - time.monotonic()
            try:
                if wait and timeout > 0:
                    batch.append(self.inbox.get(timeout=timeout))
                else:
                    batch.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        metrics.QUEUE_DEPTH.set(self.inbox.qsize())
        return batch

    def _write(self, batch: list[Inbound]) -> None:
        messages = [item for item in batch if not item.topic.endswith("/connection")]
        states = [item for item in batch if item.topic.endswith("/connection")]
        if messages or self.decisions:
            self._store_until_committed(messages)
        for item in states:
            record_connection_state(item)
        for item in batch:  # in the order received, as MQTT expects PUBACKs
            mid, qos = item.ack
            if qos > 0:
                self._client.ack(mid, qos)

    def _store_until_committed(self, messages: list[Inbound]) -> None:
        delay = 0.5
        while True:
            self._ensure_partitions()
            try:
                self._record_decisions()
                result = ingest_batch(messages, self.directory) if messages else None
            except DatabaseError as error:
                # An outage: keep the batch (unacknowledged), wait, reconnect, retry. Meanwhile
                # the queue fills and the broker holds the rest.
                metrics.STORE_RETRIES.inc()
                log.warning("database unavailable (%s); retrying in %.1f s", error, delay)
                connection.close()
                if self._stopping.wait(delay):
                    raise
                delay = min(delay * 2, 10.0)
                close_old_connections()
                continue
            if result is None:
                return
            self.live.add(result)
            self._stored_since_beat += result.stored
            if self.retiring:
                committed = datetime.now(UTC)
                self.drained += len(messages)
                self.drain_lags_s += [
                    (committed - item.envelope.timestamp).total_seconds()
                    for item in result.admitted
                ]
            return

    def _ensure_partitions(self) -> None:
        if time.monotonic() - self._partitions_checked > PARTITION_CHECK_S:
            try:
                ensure_history_partitions()
                self._partitions_checked = time.monotonic()
            except DatabaseError:
                connection.close()


def record_connection_state(item: Inbound) -> None:
    """A truck's retained connection state (or its last will): kept in the latest state, and
    told to control (a truck coming Online is re-synchronised). The broker's ACL lets only the
    truck itself (and its will) write this topic."""
    parts = item.topic.split("/")
    equipment_id = parts[-2] if len(parts) >= 2 else ""
    try:
        state = orjson.loads(item.payload) if item.payload else {"ConnectionState": "Offline"}
    except orjson.JSONDecodeError:
        state = None
    if not isinstance(state, dict):
        log.warning("ignored a malformed connection state on %s", item.topic[:200])
        return
    try:
        latest.record_connection(
            equipment_id, {**state, "receivedAt": item.received_at.isoformat()}
        )
    except redis.RedisError:
        log.exception("could not record the connection state in Redis")
    try:
        status.record_link(
            uuid.UUID(equipment_id), str(state.get("ConnectionState")), item.received_at
        )
    except ValueError:
        pass  # not an EquipmentId: nothing to record
    except DatabaseError:
        log.exception("could not record %s's link state in its status history", equipment_id)
        connection.close()
    try:
        connection_changed.send(sender=None, equipment_id=equipment_id, state=state)
    except DatabaseError:
        # Not retried: the truck re-announces itself on its next connect, and its stale
        # desired state shows on the dashboard meanwhile.
        log.exception("could not reconcile %s after its connection changed", equipment_id)
        connection.close()
