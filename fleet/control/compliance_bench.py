"""``manage.py bench rule --trucks 100 --rate 1000 --json``: the live rule path, from a truck's
position inside an exclusion zone leaving the truck to the stop it causes arriving at that
truck, through the real services (the rule part of issue 11's ``bench loop``).

The trucks are the benchmark's own (``provision_bench_trucks``), each a real MQTT client in a
load-generator process publishing positions at ``rate / trucks`` Hz outside an active exclusion
zone; at its own moment (spread over the run) each truck drives into the zone and keeps
publishing from inside. The FMS side is a real ingest replica (admission, the live rules before
the store, the store) and a real outbox delivery process. ``rule_p99_ms``: over the trucks,
wall time from the publish of a truck's first position inside the zone to the stop (a
MachineAllStopRequestV1 Apply on its own down topic) arriving at it; every truck acknowledges
its stop as a real one would. All on one machine, so one clock.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable

import numpy as np
from django.contrib.auth.models import User
from django.contrib.gis.geos import Polygon
from django.db import connection

from fleet.control import alerts, rule_loadgen
from fleet.control.bench import _cpu_s, _start
from fleet.control.models import Alert, Command
from fleet.mine import services as mine
from fleet.mine.models import PolicyZone, Site
from fleet.telemetry import replicas
from fleet.telemetry.bench import free_port, provision_bench_trucks, wait_for_metrics
from fleet.vehicles.mqtt import broker_address

Log = Callable[[str], None]
ZONE_NAME = "bench-rule-exclusion"
HALF = 0.0003  # degrees: a zone of ~60 m x 66 m around rule_loadgen.INSIDE
STOP_WAIT_S = 10.0  # after the last truck enters


def _fresh_zone(site: Site) -> PolicyZone:
    """One active exclusion zone around INSIDE; open bench alerts resolved, so each truck's
    entry opens an alert (and a stop) again."""
    bench_user, _ = User.objects.get_or_create(username="bench-operator")
    stale = Command.objects.filter(equipment__site=site, status__in=Command.OPEN)
    Command.change_statuses(
        stale.values_list("pk", flat=True), Command.Status.EXPIRED, actor="bench", detail="reset"
    )
    for alert in Alert.objects.filter(site=site).exclude(status=Alert.Status.RESOLVED):
        alerts.resolve_alert(alert, actor=bench_user, note="bench start")
    zone = PolicyZone.objects.filter(
        site=site, name=ZONE_NAME, status=PolicyZone.Status.ACTIVE
    ).first()
    if zone is None:
        x, y = rule_loadgen.INSIDE
        ring = [(x - HALF, y - HALF), (x + HALF, y - HALF), (x + HALF, y + HALF),
                (x - HALF, y + HALF), (x - HALF, y - HALF)]  # fmt: skip
        zone = mine.activate_zone(
            mine.create_zone(
                site=site,
                name=ZONE_NAME,
                geometry=Polygon(ring, srid=4326),
                policies={"exclusion": {}},
            )
        )
    return zone


def run(options: dict, log: Log) -> dict:
    trucks, seconds = options["trucks"], options["seconds"]
    rate = options["rate"] or 10.0 * trucks  # default: 10 Hz a truck
    processes = max(1, options["publishers"])
    site, identities = provision_bench_trucks(trucks)
    _fresh_zone(site)
    connection.close()
    metrics_port = free_port()
    name = f"bench-rule-{os.getpid()}"
    ingest = _start(
        ["ingest", "--replica", name, "--share-group", f"benchrule{os.getpid()}",
         "--session-expiry", "60", "--metrics-port", str(metrics_port)],
        "bench-rule-ingest.log",
    )  # fmt: skip
    delivery = _start(["deliver_commands", "--client-id", name], "bench-rule-outbox.log")
    try:
        wait_for_metrics(metrics_port, ingest)
        start_at = time.time() + 3.0
        # Entries spread over the run after a second of warm-up, the last 2 s before its end.
        enter = list(start_at + 1.0 + np.linspace(0.0, max(0.0, seconds - 3.0), trucks))
        end_at = max(enter) + STOP_WAIT_S
        log(f"rule: {trucks} trucks at {rate / trucks:g} Hz, one entering the zone at a time")
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        address = broker_address()
        workers = [
            context.Process(
                target=rule_loadgen.drive_into_zone,
                args=(
                    identities[i::processes],
                    address.host,
                    address.port,
                    start_at,
                    enter[i::processes],
                    end_at,
                    rate / trucks,
                    results,
                ),
            )
            for i in range(processes)
        ]
        cpu = {"ingest": _cpu_s(ingest), "delivery": _cpu_s(delivery)}
        for worker in workers:
            worker.start()
        gathered = [results.get(timeout=end_at - time.time() + 120) for _ in workers]
        for worker in workers:
            worker.join(30)
        cpu = {k: _cpu_s(p) - cpu[k] for k, p in (("ingest", ingest), ("delivery", delivery))}
    finally:
        for process in (ingest, delivery):
            process.terminate()
            process.wait(30)
        replicas.forget(name)
    sent = sum(s for s, _ in gathered)
    rows = [row for _, found in gathered for row in found]
    # A stop that arrived before the truck's entry would be a previous run's: not counted.
    latencies = np.array(
        [(b - a) * 1000 for _, a, b in rows if a is not None and b is not None and b >= a]
    )
    return {
        "trucks": trucks,
        "rate": round(sent / (end_at - start_at)),
        "sent": sent,
        "entered": sum(1 for _, a, _ in rows if a is not None),
        "stopped": int(latencies.size),
        "missed": sum(1 for _, a, b in rows if a is not None and b is None),
        "rule_p50_ms": round(float(np.percentile(latencies, 50)), 1) if latencies.size else None,
        "rule_p99_ms": round(float(np.percentile(latencies, 99)), 1) if latencies.size else None,
        "rule_max_ms": round(float(latencies.max()), 1) if latencies.size else None,
        "ingest_cpu_us_per_msg": round(cpu["ingest"] / max(1, sent) * 1e6, 1),
        "delivery_cpu_ms_per_stop": round(cpu["delivery"] / max(1, latencies.size) * 1000, 1),
    }
