"""``manage.py bench loop --trucks 100 --rate 1000 --json``: the control loop under load,
through the real services, on both of its paths.

The background fleet publishes positions at ``--rate`` msgs/s (the load a site's ingest carries)
for the whole run. The FMS side is a real ingest replica (compliance decides as the message is
admitted) and a real outbox delivery process.

**The rule path.** Probe trucks, one per round, each publish one position inside an active
exclusion zone and wait on their own down-topic for the stop. Per probe:

- ``rule_ms``: publish (the probe's QoS 1 PUBLISH leaving for the broker on this machine) to the
  stop arriving at the probe;
- ``decide_ms``: publish to the command's ``issued_at`` (broker -> ingest -> admission ->
  compliance -> alert -> command row);
- ``deliver_ms``: ``issued_at`` to arrival (commit, NOTIFY, the outbox publishing, the broker).

**The model path** (``--rounds`` more probes, after the rule rounds). Its pool side is
``fleet.learning.loopbench`` (a slice worker serving the fault champion, fleet's Celery worker
for the callbacks, the background fleet's fault requests), handed in as ``pool`` because
control never imports what serving imports. Per probe: a window's worth of its telemetry
(positions and health) is published and stored by ingest, then one live sample; once that is
stored the pool side builds the window as live serving does and sends it. The site's health
policy (set here) makes any fault-head answer on the probe act at once: threshold 0 and a run
of one for brake fade, action stop. That is a measurement device, not a tuning: the path and
its costs are those of a real decision. Per probe:

- ``model_ms``: the window's send to the stop arriving at the probe (two Celery hops: request
  to the slice worker, callback to fleet's worker; the health rule; the outbox; the broker);
- ``window_age_ms``: the newest sample's Timestamp to that send (ingest storing it, reading
  the history back, building the inputs);
- parts: ``pool`` (send to the result stored by the slice worker: broker, batcher, forward
  pass; ``infer`` is the batcher's wait plus the forward pass within it), ``callback`` (result
  stored to the prediction row: the second hop and ``store_prediction``), ``model_decide``
  (prediction row to the stop's command row: the health rule, the alert), ``model_outbox``
  (command row to arrival).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import paho.mqtt.client as paho
from django.contrib.auth.models import User
from django.contrib.gis.geos import Polygon
from django.db import connection
from paho.mqtt.enums import CallbackAPIVersion

from fleet.control import alerts, health
from fleet.control.bench import cpu_seconds, start_command
from fleet.control.models import Alert, Command
from fleet.learning.models import Prediction
from fleet.mine import services as mine
from fleet.mine.models import PolicyZone, Site
from fleet.protocol import topics, wire
from fleet.telemetry import loadgen, replicas
from fleet.telemetry.bench import LAT0, LON0, free_port, provision_bench_trucks, wait_for_metrics
from fleet.vehicles.mqtt import broker_address

Log = Callable[[str], None]
ZONE_NAME = "bench exclusion"
ZONE_LON, ZONE_LAT, ZONE_HALF = LON0 + 0.003, LAT0 + 0.003, 0.0005
STOP = "MachineAllStopRequestV1"
MODEL_WAIT_S = 10.0  # a model probe's stop not there by then is counted as missing
FIRST_MODEL_WAIT_S = 60.0  # the first model probe warms the whole chain (workers, caches)
BACKGROUND_MAX_S = 1800.0  # the background fleet runs until told to stop, at most this long


def _exclusion_zone(site: Site) -> PolicyZone:
    zone = PolicyZone.objects.filter(
        site=site, name=ZONE_NAME, status=PolicyZone.Status.ACTIVE
    ).first()
    if zone is not None:
        return zone
    x, y, d = ZONE_LON, ZONE_LAT, ZONE_HALF
    ring = ((x - d, y - d), (x + d, y - d), (x + d, y + d), (x - d, y + d), (x - d, y - d))
    return mine.activate_zone(
        mine.create_zone(
            site=site,
            name=ZONE_NAME,
            geometry=Polygon(ring, srid=4326),
            policies={"exclusion": {}},
        )
    )


class Probe:
    """One probe truck: publishes what it is told to, times the stop's arrival."""

    def __init__(self, identity: tuple[str, str, str], site: Site) -> None:
        self.equipment_id, password, self.up = identity
        self.site_slug = site.slug
        self.arrived = threading.Event()
        self.arrived_at = 0.0
        address = broker_address()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=self.equipment_id, protocol=paho.MQTTv5
        )
        self.client.username_pw_set(self.equipment_id, password)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        self.client.subscribe(topics.down_filter(site.slug, self.equipment_id), qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("a probe truck could not subscribe to its down-topic")

    def _on_message(self, client, userdata, message) -> None:
        if message.topic.endswith("/" + STOP) and not self.arrived.is_set():
            self.arrived_at = time.time()
            self.arrived.set()

    def enter_zone(self) -> float:
        body = {
            "Heading": 0,
            "Latitude": ZONE_LAT,
            "Longitude": ZONE_LON,
            "Elevation": 3000.0,
            "LatitudeAccuracy": 0.4,
            "LongitudeAccuracy": 0.4,
            "ElevationAccuracy": 0.8,
            "HeadingAccuracy": 1.0,
            "Speed": 20.0,
        }
        payload = wire.encode(
            "MachinePositionV1",
            body,
            equipment_id=self.equipment_id,
            timestamp=datetime.now(UTC),
        )
        sent_at = time.time()
        self.client.publish(self.up, payload, qos=1)
        return sent_at

    def publish(self, messages: Sequence[tuple[str, dict, datetime]]) -> None:
        """(message name, body, Timestamp) each on its up-topic, QoS 1."""
        for name, body, at in messages:
            payload = wire.encode(name, body, equipment_id=self.equipment_id, timestamp=at)
            topic = topics.up_topic(self.site_slug, self.equipment_id, name)
            self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class SentWindow(Protocol):
    equipment_id: uuid.UUID
    newest_at: float
    stored_at: float
    sent_at: float
    task_id: str
    build_ms: float


class ModelPool(Protocol):
    """The pool side of the model path (``fleet.learning.loopbench.ModelPool``)."""

    model_id: str
    load_sent: int

    def start(self) -> None: ...
    def close(self) -> None: ...
    def start_load(self) -> float: ...
    def cpu_seconds(self) -> dict[str, float]: ...
    def hold(self, trucks: list[uuid.UUID], seconds: float) -> None: ...
    def send(self, equipment_id: uuid.UUID, site_id: uuid.UUID, newest: datetime) -> SentWindow: ...
    def results_stored_at(self, task_ids: list[str]) -> dict[str, float]: ...


# Stand-ins the pool side provides: its probe's telemetry (history, then one live second).
History = Callable[[datetime], list[tuple[str, dict, datetime]]]
Live = Callable[[datetime, int], list[tuple[str, dict, datetime]]]


@dataclass(frozen=True)
class ModelSide:
    """What ``fleet.learning.loopbench`` hands in (see ``fleet.management.commands.bench``)."""

    pool: Callable[[dict, Log], ModelPool]
    history: History
    live: Live
    window_s: int


def _background(identities, rate: float, stop):
    address = broker_address()
    context = multiprocessing.get_context("spawn")
    sent = context.Value("q", 0)
    process = context.Process(
        target=loadgen.publish_positions,
        args=(identities, address.host, address.port, BACKGROUND_MAX_S, rate, sent),
        kwargs={"start_at": time.time() + 3.0, "stop": stop},
    )
    process.start()
    return process, sent


def _measure(probes: list[Probe], gap_s: float) -> list[tuple[str, float, float | None]]:
    """(equipment id, publish time, arrival time or None) per probe, one after the other."""
    results = []
    for probe in probes:
        sent_at = probe.enter_zone()
        arrived = probe.arrived.wait(5.0)
        results.append((probe.equipment_id, sent_at, probe.arrived_at if arrived else None))
        time.sleep(gap_s)
    return results


@dataclass(frozen=True)
class ModelRound:
    """One model probe: its window as sent (None when it never was) and the stop's arrival."""

    equipment_id: uuid.UUID
    sent: SentWindow | None
    arrived_at: float | None


def _measure_model(
    probes: list[Probe],
    side: ModelSide,
    pool: ModelPool,
    site: Site,
    gap_s: float,
    log: Log,
    *,
    first: bool = False,
) -> list[ModelRound]:
    """Per probe, one after the other: its history, then a live second, then its window.
    ``first``: the run's first probe, which warms the chain up (workers, connections, caches)
    and must get its stop."""
    rounds = []
    for number, probe in enumerate(probes):
        equipment_id = uuid.UUID(probe.equipment_id)
        end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        probe.publish(side.history(end))
        time.sleep(gap_s)  # the history is stored by then; the live second is its own batch
        now = datetime.now(UTC)
        newest = now.replace(microsecond=now.microsecond // 1000 * 1000)  # the wire's precision
        probe.publish(side.live(newest, side.window_s))
        try:
            sent = pool.send(equipment_id, site.id, newest)
        except (TimeoutError, RuntimeError) as error:
            if first:
                raise RuntimeError(
                    f"the first model probe's window was not sent: {error}"
                ) from None
            log(f"loop: model probe {number}: {error}")
            rounds.append(ModelRound(equipment_id, None, None))
            continue
        arrived = probe.arrived.wait(FIRST_MODEL_WAIT_S if first else MODEL_WAIT_S)
        rounds.append(ModelRound(equipment_id, sent, probe.arrived_at if arrived else None))
        if first and not arrived:
            raise RuntimeError(
                "the first model probe got no stop within "
                f"{FIRST_MODEL_WAIT_S:.0f} s: see var/bench/loop-*.log and bench-loop-*.log"
            )
        time.sleep(gap_s)
    return rounds


def _fresh_probes(probe_ids: list[uuid.UUID]) -> None:
    """A probe truck starts with nothing open: an earlier run's alert would fold the new finding
    into itself (no new stop), and its commands would arrive as if they were this run's."""
    bench_user, _ = User.objects.get_or_create(username="bench-supervisor")
    for alert in Alert.objects.filter(equipment_id__in=probe_ids).exclude(
        status=Alert.Status.RESOLVED
    ):
        alerts.resolve_alert(alert, actor=bench_user, note="benchmark reset")
    stale = Command.objects.filter(equipment_id__in=probe_ids, status__in=Command.OPEN)
    Command.change_statuses(
        stale.values_list("pk", flat=True),
        Command.Status.EXPIRED,
        actor="bench",
        detail="benchmark reset",
    )


def _act_at_once(site: Site) -> None:
    """The bench site's health policy: a fault-head answer on brake fade acts on its first
    decision, whatever its probability (the other classes raise nothing that acts)."""
    bench_user, _ = User.objects.get_or_create(username="bench-supervisor")
    quiet = {name: health.Action.NONE for name in health.DEFAULTS}
    health.change_policy(
        site,
        actor=bench_user,
        thresholds={"brake_fade": 0.0},
        consecutive=1,
        actions={**quiet, "brake_fade": health.Action.STOP},
    )


def run(options: dict, log: Log, model: ModelSide | None = None) -> dict:
    trucks, rate, rounds = options["trucks"], options["rate"] or 1000.0, options["rounds"]
    model_rounds = rounds + 1 if model is not None else 0  # the first one warms the chain up
    site, identities = provision_bench_trucks(trucks + rounds + model_rounds)
    rule_ids, model_ids = identities[trucks : trucks + rounds], identities[trucks + rounds :]
    _exclusion_zone(site)
    _fresh_probes([uuid.UUID(e) for e, _, _ in identities[trucks:]])
    pool = model.pool(options, log) if model is not None else None  # no champion: fails here
    if model is not None:
        _act_at_once(site)
    connection.close()
    metrics_port, name = free_port(), f"bench-loop-{os.getpid()}"
    ingest = start_command(
        [
            "ingest",
            "--replica",
            name,
            "--share-group",
            f"benchloop{os.getpid()}",
            "--session-expiry",
            "60",
            "--metrics-port",
            str(metrics_port),
        ],
        "bench-loop-ingest.log",
    )
    delivery = start_command(["deliver_commands", "--client-id", name], "bench-loop-outbox.log")
    probes: list[Probe] = []
    model_probes: list[Probe] = []
    gap_s = 0.5
    stop = multiprocessing.get_context("spawn").Event()
    background = sent = None
    measured: list = []
    model_measured: list[ModelRound] = []
    model_figures: dict[str, Any] = {}
    try:
        if pool is not None:
            pool.start()
            pool.hold([uuid.UUID(e) for e, _, _ in model_ids], BACKGROUND_MAX_S)
        wait_for_metrics(metrics_port, ingest)
        background, sent = _background(identities[:trucks], rate, stop)
        background_started = time.monotonic()
        probes = [Probe(identity, site) for identity in rule_ids]
        model_probes = [Probe(identity, site) for identity in model_ids]
        time.sleep(8.0)  # the background load is flowing (it starts 3 s after its process)
        cpu = cpu_seconds(ingest)
        started = time.monotonic()
        measured = _measure(probes, gap_s)
        ingest_cpu_s, elapsed = cpu_seconds(ingest) - cpu, time.monotonic() - started
        log(f"loop: {len(measured)} rule probes measured under {rate:g} msgs/s")
        if pool is not None and model is not None:
            load_rate = pool.start_load()
            _measure_model(model_probes[:1], model, pool, site, gap_s, log, first=True)
            cpu_before, load_before = pool.cpu_seconds(), pool.load_sent
            model_measured = _measure_model(model_probes[1:], model, pool, site, gap_s, log)
            cpu_after, load_sent = pool.cpu_seconds(), pool.load_sent - load_before
            windows = max(1, len(model_measured))
            model_figures = {
                "model_id": pool.model_id,
                "pool_load_per_s": round(load_rate, 1),
                # the slice serves the probes' windows and the background's requests alike
                "slice_cpu_ms_per_request": _per(
                    cpu_after, cpu_before, "slice", windows + load_sent
                ),
                # fleet's worker runs only the probes' callbacks
                "callback_cpu_ms_per_window": _per(cpu_after, cpu_before, "callbacks", windows),
            }
            log(f"loop: {len(model_measured)} model probes measured under {rate:g} msgs/s")
        stop.set()
        background_s = time.monotonic() - background_started - 3.0
    finally:
        stop.set()
        if background is not None:
            background.join(120)
        for probe in probes + model_probes:
            probe.close()
        if pool is not None:
            pool.close()
        for process in (ingest, delivery):
            process.terminate()
            process.wait(30)
        replicas.forget(name)
    figures = _figures(measured, trucks, rate, ingest_cpu_s, elapsed, int(sent.value))
    figures["background_msgs_per_s"] = round(int(sent.value) / max(background_s, 1e-9), 1)
    if pool is not None:
        stored = pool.results_stored_at([r.sent.task_id for r in model_measured if r.sent])
        figures |= model_figures
        figures |= figures_of_model_rounds(model_measured, *_model_rows(model_measured, stored))
    return figures


def _model_rows(
    rounds: list[ModelRound], stored: dict[str, float]
) -> tuple[dict[str, float], dict[uuid.UUID, dict[str, Any]], dict[uuid.UUID, float]]:
    """(result stored at by task id, the probe's prediction, the stop's issued_at) per probe."""
    sent = [r.sent for r in rounds if r.sent is not None]
    if not sent:
        return stored, {}, {}
    since = datetime.fromtimestamp(min(s.sent_at for s in sent), UTC)
    ids = [s.equipment_id for s in sent]
    predictions = {
        row["equipment_id"]: row
        for row in Prediction.objects.filter(
            equipment_id__in=ids, model_name="fault", created_at__gte=since
        )
        .order_by("created_at")
        .values("equipment_id", "created_at", "queue_ms", "compute_ms")
    }
    issued = {
        equipment_id: at.timestamp()
        for equipment_id, at in Command.objects.filter(
            equipment_id__in=ids,
            message_name=STOP,
            reason__startswith="alert",
            issued_at__gte=since,
        )
        .order_by("issued_at")
        .values_list("equipment_id", "issued_at")
    }
    return stored, predictions, issued


def figures_of_model_rounds(
    rounds: list[ModelRound],
    stored: dict[str, float],
    predictions: dict[uuid.UUID, dict[str, Any]],
    issued: dict[uuid.UUID, float],
) -> dict[str, Any]:
    """The model path's figures from its rounds (times in seconds since the epoch) and what
    the services recorded: when each result was stored (by task id), each probe's prediction
    row (``created_at``, ``queue_ms``, ``compute_ms``) and its stop's ``issued_at``. A part
    is left out for a probe whose record is missing; a probe whose stop never came counts in
    ``model_probes`` only."""
    total, age, build, pool, infer, callback, decide, outbox = ([] for _ in range(8))
    for item in rounds:
        sent = item.sent
        if sent is None or item.arrived_at is None:
            continue
        total.append((item.arrived_at - sent.sent_at) * 1000)
        age.append((sent.sent_at - sent.newest_at) * 1000)
        build.append(sent.build_ms)
        done = stored.get(sent.task_id)
        row = predictions.get(sent.equipment_id)
        at = issued.get(sent.equipment_id)
        predicted = row["created_at"].timestamp() if row else None
        if done is not None:
            pool.append((done - sent.sent_at) * 1000)
        if row and row.get("queue_ms") is not None and row.get("compute_ms") is not None:
            infer.append(row["queue_ms"] + row["compute_ms"])
        if done is not None and predicted is not None:
            callback.append((predicted - done) * 1000)
        if predicted is not None and at is not None:
            decide.append((at - predicted) * 1000)
        if at is not None:
            outbox.append((item.arrived_at - at) * 1000)
    return {
        "model_probes": len(rounds),
        "model_stopped": len(total),
        "model_p50_ms": _p(total, 50),
        "model_p99_ms": _p(total, 99),
        "window_age_p50_ms": _p(age, 50),
        "window_age_p99_ms": _p(age, 99),
        "window_build_p99_ms": _p(build, 99),
        **{
            f"model_{name}_{q}_ms": _p(values, float(q[1:]))
            for name, values in (
                ("pool", pool),
                ("infer", infer),
                ("callback", callback),
                ("decide", decide),
                ("outbox", outbox),
            )
            for q in ("p50", "p99")
        },
    }


def _per(after: dict[str, float], before: dict[str, float], part: str, n: int) -> float:
    """Milliseconds of CPU per unit of work."""
    return round((after[part] - before[part]) / max(1, n) * 1000, 2)


def _p(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def _figures(
    measured, trucks: int, rate: float, ingest_cpu_s: float, elapsed_s: float, sent: int
) -> dict:
    issued = dict(
        Command.objects.filter(
            equipment_id__in=[uuid.UUID(e) for e, _, _ in measured],
            message_name=STOP,
            reason__startswith="alert",
            issued_at__gte=datetime.fromtimestamp(min(t for _, t, _ in measured), UTC),
        ).values_list("equipment_id", "issued_at")
    )
    rule, decide, deliver = [], [], []
    for equipment_id, sent_at, arrived_at in measured:
        if arrived_at is None:
            continue
        rule.append((arrived_at - sent_at) * 1000)
        at = issued.get(uuid.UUID(equipment_id))
        if at is not None:
            decide.append((at.timestamp() - sent_at) * 1000)
            deliver.append((arrived_at - at.timestamp()) * 1000)

    return {
        "trucks": trucks,
        "rate": rate,
        "background_sent": sent,
        "probes": len(measured),
        "stopped": len(rule),
        "rule_p50_ms": _p(rule, 50),
        "rule_p99_ms": _p(rule, 99),
        "decide_p99_ms": _p(decide, 99),
        "deliver_p99_ms": _p(deliver, 99),
        "ingest_cpu_us_per_msg": round(ingest_cpu_s / max(1.0, rate * elapsed_s) * 1e6, 1),
    }
