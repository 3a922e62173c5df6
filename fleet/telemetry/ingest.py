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
- A running replica adopts a known one whose heartbeat expired (``INGEST_REPLICA_ADOPT_S``): it
  claims the dead one's record (one survivor wins) and retires it in a thread of its own, so a
  host that dies for good leaves nothing queued at the broker without an operator. A replica
  that finds its own record taken over (it was cut off, not dead) stops instead of fighting the
  adopter for the session.
"""

from __future__ import annotations

import collections
import logging
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
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet.telemetry import latest, metrics, replicas, status
from fleet.telemetry.intake import Admitted, Inbound, Refused, TimeRules, admit
from fleet.telemetry.partitions import ensure_history_partitions
from fleet.telemetry.services import EquipmentDirectory, LiveFeed, claimed_ids, ingest_batch
from fleet.telemetry.signals import connection_changed, ingest_starting, messages_arrived
from fleet.vehicles.broker import INGEST
from fleet.vehicles.mqtt import (
    ack_many,
    broker_address,
    connect_properties,
    read_buffered,
    service_client,
)
from inference.health import HealthFile

log = logging.getLogger(__name__)

SHARE_GROUP = "ingest"
PARTITION_CHECK_S = 600.0
# Retiring: the session is drained once nothing has arrived for this long after unsubscribing
# (the broker sends an offline session's queue at once, as fast as the Receive Maximum allows).
DRAIN_IDLE_S = 2.0
# Packets the MQTT thread reads in one go before the live rules see what arrived: bounds how
# long the first of them waits for its judgement (each costs some tens of microseconds).
READ_PACKETS = 64


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

    def __init__(
        self, options: IngestOptions, *, retiring: bool = False, adopted_by: str = ""
    ) -> None:
        self.options = options
        self.retiring = retiring or bool(adopted_by)
        # Adopting: a survivor retiring a dead replica it has claimed; it beats for the dead
        # one's record meanwhile, so no other survivor claims it too.
        self.adopted_by = adopted_by
        self.owner = replicas.here()
        self.adoptions: dict[str, IngestRunner] = {}
        self._adoption_threads: dict[str, threading.Thread] = {}
        self.retired = False  # retiring: drained, and the session ended
        self.drained = 0  # retiring: messages the session held
        self.drain_lags_s: list[float] = []
        self._unsubscribed = threading.Event()
        self._last_arrival = time.monotonic()
        self._stored_since_beat = 0
        self._beat_at = float("-inf")
        # Touched with each heartbeat the database took (an orchestrator's liveness probe).
        self.health = HealthFile()
        self.inbox = Inbox(self.options.queue_limit)
        # The live rules' decisions to record, from the MQTT thread to the writer (in order).
        self.decisions: collections.deque[Callable[[], object]] = collections.deque()
        self.directory = EquipmentDirectory()
        self.rules = TimeRules.from_settings()
        self.live = LiveFeed()
        self.connected = threading.Event()
        self._stopping = threading.Event()
        self._leaving = threading.Event()
        self._client = service_client(INGEST, self.options.client_id, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        read_buffered(self._client)
        self._client.on_disconnect = self._on_disconnect
        self._client.on_unsubscribe = self._on_unsubscribe
        self._client.on_subscribe = self._on_subscribe
        # The MQTT thread reads what has arrived in one go (``_read_arrived``): paho's
        # ``_loop`` calls ``self.loop_read()``, which this instance attribute takes over.
        self._paho_loop_read = self._client.loop_read
        self._client.loop_read = self._read_arrived  # type: ignore[method-assign]
        self._arrivals: list[Inbound] = []
        self._arrived = 0
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

    def _read_arrived(self) -> MQTTErrorCode:
        """paho's ``loop_read`` (which reads one packet per ``select``), reading every packet
        already at the socket, up to ``READ_PACKETS``; then the messages that arrived together
        are admitted, judged by the live rules in one call, and handed to the writer. A message
        waits at most for the packets read with it (microseconds each), never for a batch."""
        try:
            for _ in range(READ_PACKETS):
                arrived = self._arrived
                rc = self._paho_loop_read()
                if rc or self._arrived == arrived:  # an error, nothing more, or not a message
                    return rc
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        finally:
            self._hand_over()

    def _on_message(self, client, userdata, message) -> None:
        self._last_arrival = time.monotonic()
        self._arrived += 1
        self._arrivals.append(
            Inbound(
                channel="mqtt",
                payload=message.payload,
                received_at=datetime.now(UTC),
                topic=message.topic,
                ack=(message.mid, message.qos),
            )
        )

    def _hand_over(self) -> None:
        arrivals, self._arrivals = self._arrivals, []
        if not arrivals:
            return
        try:
            self._admit_now([item for item in arrivals if not item.topic.endswith("/connection")])
        except Exception:
            # Never out of the MQTT thread (paho's loop would end with it): what was not admitted
            # here is admitted, judged and stored by the writer with its batch.
            log.exception("admission on the MQTT thread failed; the writer admits these")
        # In the order received, as the PUBACKs must be. Blocks when the writer is behind: the
        # back-pressure (see the module docstring).
        self.inbox.put_many(arrivals, self._stopping)

    def _admit_now(self, arrivals: list[Inbound]) -> None:
        """Admit messages in the MQTT thread as they arrive and show them to the live rules at
        once, in one call for those read together: a safety decision waits neither for the
        batch to fill (INGEST_BATCH_DELAY_MS) nor for its commit. The writer stores them without
        parsing them again. The directory is consulted once for the lot (a dict)."""
        judged: list[Admitted] = []
        try:
            trucks = self.directory.current()
            for inbound in arrivals:
                outcome = admit(inbound, trucks, self.rules)
                if isinstance(outcome, Refused) and outcome.reason == "unknown_equipment":
                    # Perhaps provisioned a moment ago: look it up (at most every few seconds).
                    trucks = self.directory.current(claimed_ids([inbound]))
                    outcome = admit(inbound, trucks, self.rules)
                inbound.outcome = outcome
                if isinstance(outcome, Admitted) and not outcome.late:
                    judged.append(outcome)
        except DatabaseError:
            connection.close()  # the writer admits the rest with the batch, retrying the database
        if not judged:
            return
        try:
            answers = messages_arrived.send(sender=IngestRunner, admitted=judged, live=True)
        except Exception:  # a rule's failure must not cost the messages their storage
            # Not judged here: the writer judges them with their batch (``_decide_now``).
            log.exception("a live rule failed on %d arriving message(s)", len(judged))
            return
        for outcome in judged:
            outcome.judged_live = True
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
        if self.adopted_by:
            pass  # claimed (replicas.claim): its heartbeat expired, and it is this process's now
        elif self.retiring:
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
                if self._leaving.is_set() and not self.retiring:
                    self._start_leaving()
                self._write(self._take_batch())
                self.live.flush()
                self._beat()
                if self.retiring and self._drained_all():
                    self.retired = True
                    break
            self._drain()
        finally:
            self.health.clear()
            self._disconnect()
            for thread in self._adoption_threads.values():
                thread.join(30)  # an adoption stopped with this replica commits what it has
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
        if (self.retiring and not self.adopted_by) or (
            time.monotonic() - self._beat_at < replicas.BEAT_S
        ):
            return
        try:
            ours = replicas.beat(self.options.replica, self._stored_since_beat, owner=self.owner)
            if ours and not self.retiring:
                self._adopt_dead()
        except DatabaseError:
            connection.close()  # the store path retries the database; the beat waits
            return
        if not ours:
            # Cut off long enough for a survivor to adopt this name: the survivor holds the
            # session now and drains it. Taking it back would only make the two fight over it.
            log.error(
                "replica %s was taken over by another process while this one could not beat "
                "(see the replica's record); stopping",
                self.options.replica,
            )
            self.stop()
            return
        self._stored_since_beat = 0
        self._beat_at = time.monotonic()
        self.health.touch()

    def _adopt_dead(self) -> None:
        """Claim each known replica whose heartbeat expired and retire it in a thread."""
        for name in replicas.adoptable(exclude=self.options.replica):
            running = self._adoption_threads.get(name)
            if running is not None and running.is_alive():
                continue
            if not replicas.claim(name, self.owner):
                continue  # another survivor was first
            adopter = IngestRunner(
                IngestOptions(
                    replica=name,
                    batch_size=self.options.batch_size,
                    batch_delay_s=self.options.batch_delay_s,
                    share_group=self.options.share_group,
                    session_expiry_s=self.options.session_expiry_s,
                ),
                adopted_by=self.options.replica,
            )
            adopter.health = HealthFile("")  # the process's health file is this replica's
            self.adoptions[name] = adopter
            thread = threading.Thread(
                target=adopter.run_adoption, name=f"adopt-{name}", daemon=True
            )
            self._adoption_threads[name] = thread
            log.warning(
                "ingest replica %s: heartbeat expired (over %d s): adopting its session to "
                "drain it",
                name,
                settings.INGEST_REPLICA_ADOPT_S,
            )
            thread.start()

    def run_adoption(self) -> None:
        """A survivor's thread: drain and end the claimed replica's session, then report."""
        try:
            self.run()
        except Exception:
            # Its record stops beating, so it is adopted again later, here or elsewhere.
            log.exception("adopting replica %s failed", self.options.replica)
        finally:
            connection.close()  # this thread's own
        if self.retired:
            drain = self.drain
            log.warning(
                "adopted %s (by %s): its session held %d message(s), stored; lag p50 %s s, "
                "max %s s; the broker has forgotten the session",
                self.options.replica,
                self.adopted_by,
                drain.messages,
                drain.lag_p50_s,
                drain.lag_max_s,
            )

    def stop(self) -> None:
        self._stopping.set()
        for adopter in self.adoptions.values():
            adopter.stop()  # not retired: its record goes silent and is adopted again later

    def leave(self) -> None:
        """Stop for good (a scale-down: this name will not come back): take no new work, store
        what the broker has queued and sent to this session, then end the session, as retiring
        the name later would, but at once and by the replica itself. Safe from a signal handler:
        the writer's loop does the work."""
        self._leaving.set()

    def _start_leaving(self) -> None:
        log.info("replica %s is leaving for good: draining its session", self.options.replica)
        self.retiring = True
        self.health.clear()
        # Not connected: _on_connect unsubscribes when the session is resumed (retiring now).
        self._client.unsubscribe(subscriptions(group=self.options.share_group))

    def _drain(self) -> None:
        """On a clean stop, commit and acknowledge what is already here."""
        while True:
            batch = self._take_batch(wait=False)
            if not batch and not self.decisions:
                return
            self._write(batch)

    def _take_batch(self, *, wait: bool = True) -> list[Inbound]:
        batch = self.inbox.take(self.options.batch_size, self.options.batch_delay_s if wait else 0)
        metrics.QUEUE_DEPTH.set(self.inbox.qsize())
        return batch

    def _write(self, batch: list[Inbound]) -> None:
        messages = [item for item in batch if not item.topic.endswith("/connection")]
        states = [item for item in batch if item.topic.endswith("/connection")]
        if messages or self.decisions:
            self._store_until_committed(messages)
        for item in states:
            record_connection_state(item)
        # In the order received, as MQTT expects PUBACKs; the subscriptions are QoS 1 at most.
        ack_many(self._client, [item.ack[0] for item in batch if item.ack[1] == 1])
        for item in batch:
            mid, qos = item.ack
            if qos > 1:
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


class Inbox:
    """The MQTT thread's hand-over to the writer: what was read together goes in as one list,
    and the writer takes up to a batch at once, so the lock and the wake-up are paid per list,
    not per message (``queue.Queue`` paid them per message). Holds at most ``limit`` messages:
    ``put_many`` waits while it is full (the back-pressure)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._items: collections.deque[Inbound] = collections.deque()
        self._changed = threading.Condition()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_many(self, items: list[Inbound], stopping: threading.Event) -> None:
        """Append ``items`` in order, waiting for room; gives up when ``stopping`` is set (the
        rest are not acknowledged, so the broker sends them again)."""
        at = 0
        with self._changed:
            while at < len(items):
                room = self.limit - len(self._items)
                if room <= 0:
                    if stopping.is_set():
                        return
                    self._changed.wait(0.5)
                    continue
                self._items.extend(items[at : at + room])
                at += room
                self._changed.notify_all()

    def take(self, most: int, wait_s: float) -> list[Inbound]:
        """Up to ``most`` messages, waiting at most ``wait_s`` for that many."""
        deadline = time.monotonic() + wait_s
        with self._changed:
            while len(self._items) < most:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            items = self._items
            batch = [items.popleft() for _ in range(min(most, len(items)))]
            if batch:
                self._changed.notify_all()  # room for the MQTT thread
            return batch


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
