"""The one store path for truck messages, whatever channel brought them (MQTT ingest or the
REST fallback): admit each message, write the batch in one transaction, quarantine what was
refused, then (after the commit) update the latest state and the live picture."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, transaction

from fleet.live.broadcast import broadcast_now
from fleet.mine.models import RoadNetwork
from fleet.telemetry import latest, metrics, status
from fleet.telemetry.intake import Admitted, Inbound, Refused, TimeRules, TruckRef, admit
from fleet.telemetry.models import Rejection
from fleet.telemetry.partitions import ensure_history_partitions
from fleet.telemetry.signals import messages_admitted, messages_arrived
from fleet.telemetry.store import StoreCounts, store_admitted
from fleet.telemetry.tasks import roll_up_positions
from fleet.vehicles.models import Equipment

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BatchResult:
    admitted: list[Admitted] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    counts: StoreCounts = field(default_factory=StoreCounts)

    @property
    def stored(self) -> int:
        return self.counts.positions + self.counts.events


def load_directory(ids: set[uuid.UUID] | None = None) -> dict[uuid.UUID, TruckRef]:
    """Machines that may speak ISO 23725 to us (all, or ``ids``), with their site's active
    road revision."""
    revisions = dict(
        RoadNetwork.objects.filter(status=RoadNetwork.Status.ACTIVE).values_list(
            "site_id", "revision"
        )
    )
    machines = Equipment.objects.filter(autonomous=True).exclude(status=Equipment.Status.RETIRED)
    if ids is not None:
        machines = machines.filter(id__in=ids)
    return {
        row["id"]: TruckRef(
            equipment_id=row["id"],
            site_id=row["site_id"],
            site_slug=row["site__slug"],
            road_revision=revisions.get(row["site_id"]),
        )
        for row in machines.values("id", "site_id", "site__slug")
    }


class EquipmentDirectory:
    """The directory, cached and reloaded every ``refresh_s`` (retirements, new road
    revisions). An EquipmentId not in the cache is looked up at once, so a truck provisioned a
    moment ago is accepted; one that is not found is not looked up again for ``miss_s``, so a
    stream from an unknown sender costs no query per message."""

    def __init__(self, refresh_s: float = 30.0, miss_s: float = 5.0) -> None:
        self.refresh_s = refresh_s
        self.miss_s = miss_s
        self._trucks: dict[uuid.UUID, TruckRef] = {}
        self._unknown: dict[uuid.UUID, float] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def current(self, wanted: set[uuid.UUID] | None = None) -> dict[uuid.UUID, TruckRef]:
        # The ingest replica's MQTT thread admits as messages arrive; its writer thread admits
        # what that could not: one directory, two threads.
        with self._lock:
            return self._current(wanted)

    def _current(self, wanted: set[uuid.UUID] | None) -> dict[uuid.UUID, TruckRef]:
        now = time.monotonic()
        if now - self._loaded_at > self.refresh_s:
            self._trucks, self._unknown = load_directory(), {}
            self._loaded_at = now
        if not wanted:
            # The per-message call (the MQTT thread's admission): O(1). ``set() - keys()``
            # would build a set of every known truck's id, hashing 1,000 UUIDs per message.
            return self._trucks
        missing = {
            equipment_id
            for equipment_id in wanted
            if equipment_id not in self._trucks
            and now - self._unknown.get(equipment_id, float("-inf")) > self.miss_s
        }
        if missing:
            found = load_directory(missing)
            self._trucks.update(found)
            self._unknown.update(dict.fromkeys(missing - found.keys(), now))
        return self._trucks


def claimed_ids(inbound: list[Inbound]) -> set[uuid.UUID]:
    """The EquipmentIds a batch claims to come from (topic or credential), for the cache."""
    wanted = {item.sender for item in inbound if item.sender is not None}
    # ".../{site}/{EquipmentId}/up/{MessageName}": the EquipmentId is third from the end.
    levels = {parts[-3] for item in inbound if len(parts := item.topic.split("/")) >= 3}
    for level in levels:
        with contextlib.suppress(ValueError):
            wanted.add(uuid.UUID(level))
    return wanted


def ingest_batch(
    inbound: list[Inbound],
    directory: EquipmentDirectory,
    rules: TimeRules | None = None,
) -> BatchResult:
    """Admit, store and quarantine one batch in one transaction. Database outages raise
    (the caller retries the same batch, unacknowledged); bad messages never do."""
    started = time.perf_counter()
    rules = rules or TimeRules.from_settings()
    unadmitted = [item for item in inbound if item.outcome is None]
    trucks = directory.current(claimed_ids(unadmitted)) if unadmitted else {}
    result = BatchResult()
    for item in inbound:
        outcome = item.outcome or admit(item, trucks, rules)
        if isinstance(outcome, Admitted):
            result.admitted.append(outcome)
        else:
            result.refused.append(outcome)
    _decide_now(result)
    with transaction.atomic():
        result.counts = _store_isolating_poison(result)
        status.record_reported(result.admitted)
        quarantine(result.refused)
        _tell_listeners(result)
    _count(inbound, result, started)
    after_commit(result)
    return result


def _store_isolating_poison(result: BatchResult) -> StoreCounts:
    """Store the batch; if the database refuses its data (not an outage), store message by
    message so one bad row is quarantined and the rest are kept."""
    try:
        return _store_batch(result.admitted)
    except (DataError, IntegrityError):
        log.warning("batch refused by the database; storing message by message")
    total = StoreCounts()
    kept: list[Admitted] = []
    for item in result.admitted:
        try:
            counts = _store_batch([item])
        except (DataError, IntegrityError) as error:
            detail = str(error).splitlines()[0][:400]
            result.refused.append(
                Refused(item.inbound, "store_failed", detail, item.envelope.equipment_id)
            )
            continue
        kept.append(item)
        total.positions += counts.positions
        total.events += counts.events
        total.duplicates += counts.duplicates
    result.admitted = kept
    return total


def _decide_now(result: BatchResult) -> None:
    """The live rules see each message as it is admitted, before the store: a stop for a truck
    in an exclusion zone must not wait for the batch's commit (or its retries in an outage)."""
    unjudged = [item for item in result.admitted if not item.judged_live]
    if not unjudged:
        return
    try:
        messages_arrived.send(sender=None, admitted=unjudged)
    except Exception:
        log.exception("a listener of messages_arrived failed; the batch is stored")


def _tell_listeners(result: BatchResult) -> None:
    """Control applies command answers in the same transaction as the history, so an answer
    is never stored without its effect; a failing listener rolls back only its savepoint."""
    if not result.admitted:
        return
    try:
        with transaction.atomic():
            messages_admitted.send(sender=None, admitted=result.admitted)
    except Exception:
        log.exception("a listener of messages_admitted failed; the batch is stored")


def _store_batch(items: list[Admitted]) -> StoreCounts:
    try:
        with transaction.atomic():
            return store_admitted(items)
    except IntegrityError as error:
        if "no partition of relation" not in str(error):
            raise
    # The periodic task has not made this day's partition yet (a fresh database): make it.
    ensure_history_partitions()
    with transaction.atomic():
        return store_admitted(items)


def quarantine(refused: list[Refused]) -> None:
    """Keep refused messages for an admin to browse, bounded in size and count."""
    if not refused:
        return
    Rejection.objects.bulk_create(
        Rejection(
            received_at=item.inbound.received_at,
            channel=item.inbound.channel,
            topic=item.inbound.topic[:300],
            equipment_id=item.equipment_id,
            reason=item.reason,
            detail=item.detail[:500],
            payload=bytes(item.inbound.payload[: Rejection.PAYLOAD_LIMIT]),
            payload_bytes=len(item.inbound.payload),
        )
        for item in refused
    )
    newest = Rejection.objects.order_by("-id").values_list("id", flat=True).first()
    if newest is not None:
        Rejection.objects.filter(id__lte=newest - settings.INGEST_QUARANTINE_ROWS).delete()


def _count(inbound: list[Inbound], result: BatchResult, started: float) -> None:
    for channel, number in Counter(item.channel for item in inbound).items():
        metrics.RECEIVED.labels(channel).inc(number)
    for (channel, reason), number in Counter(
        (item.inbound.channel, item.reason) for item in result.refused
    ).items():
        metrics.REJECTED.labels(channel, reason).inc(number)
    metrics.STORED.labels("position").inc(result.counts.positions)
    metrics.STORED.labels("event").inc(result.counts.events)
    metrics.DUPLICATES.inc(result.counts.duplicates)
    committed = datetime.now(UTC)
    for item in result.admitted:
        if item.late:
            metrics.LATE.inc()
        else:
            metrics.LAG.observe(max(0.0, (committed - item.envelope.timestamp).total_seconds()))
    metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
    metrics.BATCH_SIZE.observe(len(inbound))


def after_commit(result: BatchResult) -> None:
    """Latest state, and roll-ups of back-filled minutes: best effort. Redis or the Celery
    broker being down must not lose or block the history, which is already committed."""
    try:
        latest.record_latest(result.admitted)
    except Exception:
        log.exception("could not update the latest state in Redis")
    late = [
        item.envelope.timestamp for item in result.admitted if item.late and item.envelope.position
    ]
    if late:
        try:
            roll_up_positions.apply_async(
                args=[min(late).isoformat(), (max(late) + timedelta(minutes=1)).isoformat()],
                ignore_result=True,
            )
        except Exception:  # the range is rolled up again by the next back-fill touching it
            log.exception("could not queue the roll-up of back-filled positions")


class LiveFeed:
    """Coalesces the live picture per site: at most one ``positions`` event per site per
    interval, holding each truck's newest position, however many messages arrived; likewise
    ``health`` (each truck's newest charted health readings) and the ``productionStates``."""

    def __init__(self, interval_s: float | None = None) -> None:
        self.interval_s = (
            settings.LIVE_POSITION_INTERVAL_MS / 1000 if interval_s is None else interval_s
        )
        self._pending: dict[uuid.UUID, dict[uuid.UUID, Admitted]] = {}
        self._states: dict[uuid.UUID, list[dict[str, Any]]] = {}
        self._health: dict[uuid.UUID, dict[str, dict[str, Any]]] = {}
        self._flushed_at = 0.0

    def add(self, result: BatchResult) -> None:
        for item in result.admitted:
            if item.late:
                continue
            site = item.truck.site_id
            if item.envelope.position is not None:
                # The newest message per truck; its summary is made once, when it is sent.
                self._pending.setdefault(site, {})[item.envelope.equipment_id] = item
            state = item.envelope.bodies.get("HaulTruckProductionStateV2")
            if state is not None:
                self._states.setdefault(site, []).append(
                    {"equipmentId": str(item.envelope.equipment_id), **state.to_wire()}
                )
            health = latest.live_health(item)
            if health is not None:  # the machine detail's charts (once a second per truck)
                self._health.setdefault(site, {})[health["equipmentId"]] = health

    def flush(self, *, force: bool = False) -> int:
        """Send what is pending if the interval has passed; returns events sent."""
        now = time.monotonic()
        if not force and now - self._flushed_at < self.interval_s:
            return 0
        self._flushed_at = now
        sent = 0
        pending, states, health = self._pending, self._states, self._health
        self._pending, self._states, self._health = {}, {}, {}
        try:
            for site, trucks in pending.items():
                summaries = [latest.position_summary(item) for item in trucks.values()]
                broadcast_now(site, "positions", {"trucks": summaries})
                sent += 1
            for site, changes in states.items():
                broadcast_now(site, "productionStates", {"changes": _jsonable(changes)})
                sent += 1
            for site, readings in health.items():
                broadcast_now(site, "health", {"trucks": list(readings.values())})
                sent += 1
        except Exception:
            log.exception("live broadcast failed")
        return sent


def _jsonable(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {key: str(value) if isinstance(value, uuid.UUID) else value for key, value in c.items()}
        for c in changes
    ]


def is_outage(error: BaseException) -> bool:
    """A database error worth retrying (connection lost, server restarting)."""
    return isinstance(error, DatabaseError) and not isinstance(error, DataError | IntegrityError)
