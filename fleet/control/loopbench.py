"""``manage.py bench loop --trucks 100 --rate 1000 --json``: the control loop's rule path under
load, through the real services: from a truck's message arriving at the broker (a truck entering
an exclusion zone) to the stop command it causes arriving at that truck.

The background fleet publishes positions at ``--rate`` msgs/s (the load a site's ingest carries);
probe trucks, one per round, each publish one position inside an active exclusion zone and wait
on their own down-topic for the stop. The FMS side is a real ingest replica (compliance decides
as the message is admitted) and a real outbox delivery process. Per probe:

- ``rule_ms``: publish (the probe's QoS 1 PUBLISH leaving for the broker on this machine) to the
  stop arriving at the probe;
- ``decide_ms``: publish to the command's ``issued_at`` (broker -> ingest -> admission ->
  compliance -> alert -> command row);
- ``deliver_ms``: ``issued_at`` to arrival (commit, NOTIFY, the outbox publishing, the broker).

Only the rule path is measured here; the model path (a window through the pool to a command) is
not part of this benchmark (see docs/benchmarks.md).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import paho.mqtt.client as paho
from django.contrib.auth.models import User
from django.contrib.gis.geos import Polygon
from django.db import connection
from paho.mqtt.enums import CallbackAPIVersion

from fleet.control import alerts
from fleet.control.bench import cpu_seconds, start_command
from fleet.control.models import Alert, Command
from fleet.mine import services as mine
from fleet.mine.models import PolicyZone, Site
from fleet.protocol import topics, wire
from fleet.telemetry import loadgen, replicas
from fleet.telemetry.bench import LAT0, LON0, free_port, provision_bench_trucks, wait_for_metrics
from fleet.vehicles.mqtt import broker_address

Log = Callable[[str], None]
ZONE_NAME = "bench exclusion"
ZONE_LON, ZONE_LAT, ZONE_HALF = LON0 + 0.003, LAT0 + 0.003, 0.0005


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
    """One probe truck: publishes a position inside the zone, times the stop's arrival."""

    def __init__(self, identity: tuple[str, str, str], site: Site) -> None:
        self.equipment_id, password, self.up = identity
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
        if message.topic.endswith("/MachineAllStopRequestV1") and not self.arrived.is_set():
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

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _background(identities, rate: float, seconds: float):
    address = broker_address()
    context = multiprocessing.get_context("spawn")
    sent = context.Value("q", 0)
    process = context.Process(
        target=loadgen.publish_positions,
        args=(identities, address.host, address.port, seconds, rate, sent, time.time() + 3.0),
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


def run(options: dict, log: Log) -> dict:
    trucks, rate, rounds = options["trucks"], options["rate"] or 1000.0, options["rounds"]
    site, identities = provision_bench_trucks(trucks + rounds)
    _exclusion_zone(site)
    _fresh_probes([uuid.UUID(e) for e, _, _ in identities[trucks:]])
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
    gap_s = 0.5
    background, sent = _background(identities[:trucks], rate, 8.0 + rounds * (gap_s + 0.5))
    try:
        wait_for_metrics(metrics_port, ingest)
        probes = [Probe(identity, site) for identity in identities[trucks:]]
        time.sleep(5.0)  # the background load is flowing
        cpu = cpu_seconds(ingest)
        started = time.monotonic()
        measured = _measure(probes, gap_s)
        ingest_cpu_s, elapsed = cpu_seconds(ingest) - cpu, time.monotonic() - started
        log(f"loop: {len(measured)} probes measured under {rate:g} msgs/s")
    finally:
        background.join(120)
        for probe in probes:
            probe.close()
        for process in (ingest, delivery):
            process.terminate()
            process.wait(30)
        replicas.forget(name)
    return _figures(measured, trucks, rate, ingest_cpu_s, elapsed, int(sent.value))


def _figures(
    measured, trucks: int, rate: float, ingest_cpu_s: float, elapsed_s: float, sent: int
) -> dict:
    issued = dict(
        Command.objects.filter(
            equipment_id__in=[uuid.UUID(e) for e, _, _ in measured],
            message_name="MachineAllStopRequestV1",
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

    def p(values: list[float], q: float) -> float | None:
        return round(float(np.percentile(values, q)), 1) if values else None

    return {
        "trucks": trucks,
        "rate": rate,
        "background_sent": sent,
        "probes": len(measured),
        "stopped": len(rule),
        "rule_p50_ms": p(rule, 50),
        "rule_p99_ms": p(rule, 99),
        "decide_p99_ms": p(decide, 99),
        "deliver_p99_ms": p(deliver, 99),
        "ingest_cpu_us_per_msg": round(ingest_cpu_s / max(1.0, rate * elapsed_s) * 1e6, 1),
    }
