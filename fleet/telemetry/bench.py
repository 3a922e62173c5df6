"""``manage.py bench ingest``: sustained messages/s stored through the real broker, PostGIS and
Redis, against the broker alone as the baseline in the same run.

Two phases with the same publishers (one MQTT identity per truck, QoS 1, position messages):
1. baseline: a subscriber that only counts and acknowledges (what the broker and this machine
   deliver at all);
2. ingest: a real ``manage.py ingest`` replica storing into the history.
Each phase publishes for ``--seconds``; the rate is messages over the time from the first
publish to the last one counted (baseline) or committed (ingest).

The live rules run on every admitted message before it is stored (signal ``messages_arrived``;
control's compliance with the policy zones): ``--zones N`` activates N speed-limit zones over
the trucks (limits above their speed: every message is tested against every zone, none is
found speeding), ``--no-live-rules`` runs the replica with them switched off
(``CONTROL_LIVE_RULES=0``), and ``hook_us_per_msg`` times the signal alone in this process over
the same messages.

Reported per stored message: ``cpu_us_per_msg``, the replica's user + system CPU (/proc, start-up
excluded), and ``db_cpu_us_per_msg``, its PostgreSQL backends' (found by application name), so
work moved into SQL shows; ``ratio``: stored against broker-only throughput. ``--replicas N``
stores the same load again with N replicas in one shared group, against the one replica.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import orjson
from django.conf import settings
from django.db import connection

from fleet.mine import services as mine
from fleet.mine.mapfile import import_site_map
from fleet.mine.models import PolicyZone, Site
from fleet.protocol import topics
from fleet.telemetry import loadgen, replicas
from fleet.telemetry.intake import Admitted, Inbound, TimeRules, admit
from fleet.telemetry.models import Position
from fleet.telemetry.partitions import ensure_history_partitions
from fleet.telemetry.services import EquipmentDirectory
from fleet.telemetry.signals import messages_arrived
from fleet.vehicles.broker import INGEST
from fleet.vehicles.credentials import issue_credentials
from fleet.vehicles.logins import BrokerAdminError, reconcile_logins
from fleet.vehicles.models import Equipment
from fleet.vehicles.mqtt import broker_address, connect_properties, service_client

BENCH_SLUG = "bench-pit"
LON0, LAT0 = -68.95, -22.35
Log = Callable[[str], None]


# --- set-up ------------------------------------------------------------------------------------


def _bench_map() -> dict:
    d = 0.004
    ring = [
        [LON0 - d, LAT0 - d],
        [LON0 + d, LAT0 - d],
        [LON0 + d, LAT0 + d],
        [LON0 - d, LAT0 + d],
        [LON0 - d, LAT0 - d],
    ]
    node = lambda i, x: {  # noqa: E731 - a two-line table
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [x, LAT0, 3000.0]},
        "properties": {"featureType": "roadNode", "nodeId": i},
    }
    return {
        "type": "FeatureCollection",
        "haulmind": {
            "format": 1,
            "site": {"name": "Benchmark pit", "slug": BENCH_SLUG, "utmSrid": 32719},
        },
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"featureType": "siteBoundary"},
            },
            node(1, LON0 - d / 2),
            node(2, LON0 + d / 2),
            {
                "type": "Feature",
                "geometry": {
                    "type": "LineString",
                    "coordinates": [[LON0 - d / 2, LAT0, 3000.0], [LON0 + d / 2, LAT0, 3000.0]],
                },
                "properties": {
                    "featureType": "way",
                    "wayId": 1,
                    "startNode": 1,
                    "endNode": 2,
                    "oneLane": False,
                },
            },
        ],
    }


def bench_trucks(site: Site, trucks: int, *, prefix: str, key: str) -> list[Equipment]:
    """A benchmark's own autonomous haul trucks ``{prefix}-0001``..., with stable ids (uuid5 of
    ``haulmind:{key}:{number}``), made or brought back to active."""
    fleet = []
    for number in range(1, trucks + 1):
        truck, _ = Equipment.objects.update_or_create(
            site=site,
            name=f"{prefix}-{number:04d}",
            defaults={
                "id": uuid.uuid5(uuid.NAMESPACE_URL, f"haulmind:{key}:{number}"),
                "kind": Equipment.Kind.HAUL_TRUCK,
                "payload_capacity_t": 90,
                "autonomous": True,
                "status": Equipment.Status.ACTIVE,
            },
        )
        fleet.append(truck)
    return fleet


def provision_bench_trucks(
    trucks: int, *, prefix: str = "BT", key: str = "bench"
) -> tuple[Site, list[tuple[str, str, str]]]:
    """The benchmark's own site and trucks, with fresh MQTT credentials (secrets in memory).
    ``prefix``/``key``: a benchmark that counts rows per truck takes trucks of its own, so
    another benchmark publishing at the same time (they share ``BT``) does not add to them."""
    import_site_map(_bench_map())
    site = Site.objects.get(slug=BENCH_SLUG)
    identities = []
    for truck in bench_trucks(site, trucks, prefix=prefix, key=key):
        secrets = issue_credentials(truck)
        identities.append(
            (
                str(truck.id),
                secrets.mqtt_password,
                topics.up_topic(site.slug, str(truck.id), "MachinePositionV1"),
            )
        )
    try:
        missing = reconcile_logins().missing  # each login was sent as it committed
    except BrokerAdminError as exc:
        raise RuntimeError(f"the broker's logins cannot be managed: {exc}") from exc
    if missing:
        raise RuntimeError(f"the broker lacks the logins of {len(missing)} bench truck(s)")
    return site, identities


_SEED_POSITIONS_SQL = """
INSERT INTO telemetry_position (equipment_id, sent_at, received_at, location, elevation_m,
    heading_deg, speed_kmh, sequence, body_digest, late)
SELECT t.id, s.at, s.at, ST_SetSRID(ST_MakePoint(%(lon)s + 1e-6 * (s.n %% 100), %(lat)s), 4326),
    3000.0, 90, 35.0, s.n, 0, false
FROM unnest(%(trucks)s::uuid[]) AS t(id),
    LATERAL (SELECT n, %(start)s::timestamptz + n * interval '1 second' AS at
             FROM generate_series(0, %(seconds)s - 1) AS n) AS s
ON CONFLICT DO NOTHING
"""
_SEED_EVENTS_SQL = """
INSERT INTO telemetry_event (equipment_id, message_name, sent_at, received_at, body, sequence,
    body_digest, late)
SELECT t.id, %(name)s, s.at, s.at, %(body)s::jsonb, s.n, 0, false
FROM unnest(%(trucks)s::uuid[]) AS t(id),
    LATERAL (SELECT n, %(start)s::timestamptz + n * interval '1 second' + interval '300 ms' AS at
             FROM generate_series(0, %(seconds)s - 1) AS n) AS s
ON CONFLICT DO NOTHING
"""


def seed_history(
    trucks: list[uuid.UUID], start: datetime, seconds: int, events: dict[str, dict]
) -> int:
    """A benchmark's history made by the database itself: each truck's position and each of
    ``events`` (message name -> body) once a second over ``seconds`` from ``start``, what a
    replica that starts later finds stored. Returns the rows written."""
    ensure_history_partitions()
    params = {"trucks": trucks, "start": start, "seconds": seconds, "lon": LON0, "lat": LAT0}
    with connection.cursor() as cursor:
        cursor.execute(_SEED_POSITIONS_SQL, params)
        written = cursor.rowcount
        for name, body in events.items():
            cursor.execute(
                _SEED_EVENTS_SQL, {**params, "name": name, "body": orjson.dumps(body).decode()}
            )
            written += cursor.rowcount
    return written


def _run_publishers(identities, options: dict) -> tuple[int, float]:
    processes, seconds, rate = options["publishers"], options["seconds"], options["rate"]
    address = broker_address()
    context = multiprocessing.get_context("spawn")
    sent = context.Value("q", 0)
    start_at = time.time() + 3.0  # every client connected before the clock starts
    workers = [
        context.Process(
            target=loadgen.publish_positions,
            args=(
                identities[i::processes],
                address.host,
                address.port,
                seconds,
                rate / processes if rate else 0.0,
                sent,
                start_at,
                options.get("same_timestamp") or 1,
                not options.get("no_header_id"),
            ),
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 120)
    if not sent.value:
        raise RuntimeError(
            "the publishers delivered nothing to the broker (see their errors above)"
        )
    return int(sent.value), start_at


# --- phase 1: the broker alone ---------------------------------------------------------------


def _baseline(site: Site, identities, options: dict, log: Log) -> dict:
    counted = [0, 0.0]
    lock = threading.Lock()

    def on_message(client, userdata, message) -> None:
        client.ack(message.mid, message.qos)
        with lock:
            counted[0] += 1
            counted[1] = time.time()

    client = service_client(INGEST, f"bench-baseline-{os.getpid()}", manual_ack=True)
    client.on_message = on_message
    address = broker_address()
    client.connect(
        address.host,
        address.port,
        clean_start=True,
        properties=connect_properties(receive_maximum=settings.INGEST_RECEIVE_MAXIMUM),
    )
    client.subscribe(f"$share/bench-baseline/{settings.MQTT_TOPIC_ROOT}/{site.slug}/+/up/#", qos=1)
    client.loop_start()
    time.sleep(0.5)
    log("baseline: publishing to a subscriber that only counts")
    sent, started = _run_publishers(identities, options)
    _wait_stable(lambda: counted[0], sent)
    client.disconnect()
    client.loop_stop()
    return {
        "sent": sent,
        "received": counted[0],
        "per_s": counted[0] / max(1e-6, counted[1] - started),
    }


# --- phase 2: ingest ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _p99_from_histogram(text: str, name: str) -> float | None:
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append(
                (float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1]))
            )
    if not buckets or buckets[-1][1] == 0:
        return None
    target = 0.99 * buckets[-1][1]
    return next(bound for bound, count in sorted(buckets) if count >= target)


def _wait_stable(
    count: Callable[[], int], expected: int, quiet_s: float = 3.0, limit_s: float = 120.0
) -> None:
    deadline = time.monotonic() + limit_s
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = count()
        if now >= expected:
            return
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > quiet_s:
            return
        time.sleep(0.1)


# --- the live rules' share -----------------------------------------------------------------------

BENCH_ZONE = "bench-zone"


def _bench_zones(site: Site, count: int) -> int:
    """``count`` active speed-limit zones over the bench trucks (nested squares, limit 20 m/s
    = 72 km/h, above the publishers' 35 km/h), replacing the last run's."""
    from django.contrib.gis.geos import Polygon
    from django.utils import timezone

    PolicyZone.objects.filter(site=site, name__startswith=BENCH_ZONE).exclude(
        status=PolicyZone.Status.DELETED
    ).update(status=PolicyZone.Status.DELETED, deleted_at=timezone.now())
    for n in range(count):
        d = 0.0005 + 0.0001 * n
        ring = [
            (LON0 - d, LAT0 - d),
            (LON0 + d, LAT0 - d),
            (LON0 + d, LAT0 + d),
            (LON0 - d, LAT0 + d),
            (LON0 - d, LAT0 - d),
        ]
        zone = mine.create_zone(
            site=site,
            name=f"{BENCH_ZONE}-{n}",
            geometry=Polygon(ring, srid=4326),
            policies={"speedLimit": {"type": "absolute", "value": 20.0}},
        )
        mine.activate_zone(zone)
    return count


def _hook_cost(identities, messages: int = 4000) -> float:
    """Microseconds per message of the ``messages_arrived`` signal (every live rule), over
    admitted positions like the publishers', in this process, best of three."""
    from datetime import UTC, datetime

    from fleet.protocol import wire

    directory = EquipmentDirectory().current()
    rules = TimeRules.from_settings()
    admitted: list[Admitted] = []
    now = datetime.now(UTC)
    for i in range(messages):
        username, _, topic = identities[i % len(identities)]
        payload = wire.encode(
            "MachinePositionV1",
            _position(),
            equipment_id=uuid.UUID(username),
            timestamp=now,
        )
        outcome = admit(Inbound("mqtt", payload, now, topic=topic), directory, rules)
        if isinstance(outcome, Admitted):
            admitted.append(outcome)
    if not admitted:
        raise RuntimeError("no bench message was admitted for the hook's timing")
    messages_arrived.send(sender=None, admitted=admitted[:10])  # warm: the zone index loads
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for start in range(0, len(admitted), 500):  # ingest's batches
            messages_arrived.send(sender=None, admitted=admitted[start : start + 500])
        best = min(best, time.process_time() - started)
    return best / len(admitted) * 1e6


def _position() -> dict:
    """The body fleet.telemetry.loadgen publishes."""
    return {
        "Heading": 90,
        "Latitude": LAT0,
        "Longitude": LON0,
        "Elevation": 3000.0,
        "LatitudeAccuracy": 0.4,
        "LongitudeAccuracy": 0.4,
        "ElevationAccuracy": 0.8,
        "HeadingAccuracy": 1.0,
        "Speed": 35.0,
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BackendCpu:
    """PostgreSQL's CPU for the connections of the replicas (their ``application_name``, set
    through libpq's ``PGAPPNAME``): the backends' user + system CPU from /proc, sampled every
    half second because a connection may close (the inference dispatcher's, when idle) and take
    its last figures with it. A backend seen first during the run counts from zero (its
    connection's start-up is the replica's work too). Needs the database on this host."""

    def __init__(self, application_name: str, interval_s: float = 0.5) -> None:
        self.application_name = application_name
        self.interval_s = interval_s
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backend-cpu", daemon=True)
        self._sample(baseline=True)

    def _pids(self) -> list[int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                [self.application_name],
            )
            return [row[0] for row in cursor.fetchall()]

    def _sample(self, *, baseline: bool = False) -> None:
        for pid in self._pids():
            try:
                cpu = _cpu_s(pid)
            except (OSError, IndexError):  # gone meanwhile, or not on this host
                continue
            self._first.setdefault(pid, cpu if baseline else 0.0)
            self._last[pid] = cpu

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()
        connection.close()  # this thread's own

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> float:
        """CPU seconds spent by the replicas' backends since this was made."""
        self._stop.set()
        self._thread.join(10)
        self._sample()
        return sum(self._last[pid] - first for pid, first in self._first.items())


def _start_replica(name: str, group: str, metrics_port: int, options: dict, log_path: Path):
    return subprocess.Popen(  # noqa: S603 - our own command
        [
            sys.executable,
            "manage.py",
            "ingest",
            "--replica",
            name,
            "--share-group",
            group,
            "--session-expiry",
            "60",
            "--metrics-port",
            str(metrics_port),
        ],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "CONTROL_LIVE_RULES": "0" if options.get("no_live_rules") else "1",
            "PGAPPNAME": f"haulmind-bench-ingest-{os.getpid()}",
        },
        stdout=log_path.open("a"),
        stderr=subprocess.STDOUT,
    )


def _ingest(site: Site, identities, options: dict, log: Log, replicas_n: int = 1) -> dict:
    truck_ids = [uuid.UUID(username) for username, _, _ in identities]
    Position.objects.filter(equipment_id__in=truck_ids).delete()
    log_path = Path(settings.VAR_DIR) / "bench-ingest.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    group = f"bench{os.getpid()}-{replicas_n}"
    started_replicas = []  # (name, port, process)
    try:
        for number in range(replicas_n):
            # A name (client id) per phase: the one-replica phase's session lives on at the broker
            # (expiry 60 s), subscribed in its own group, and a replica resuming it would get
            # every message twice (both groups), stored once and counted as duplicates.
            name, port = f"bench-{os.getpid()}-{replicas_n}-{number}", free_port()
            started_replicas.append(
                (name, port, _start_replica(name, group, port, options, log_path))
            )
        for _, port, process in started_replicas:
            wait_for_metrics(port, process)
        # start-up, before the first message
        idle_cpu_s = sum(_cpu_s(process.pid) for _, _, process in started_replicas)
        backends = BackendCpu(f"haulmind-bench-ingest-{os.getpid()}")
        backends.start()
        log(f"ingest: publishing to {replicas_n} real ingest replica(s)")
        stored = Position.objects.filter(equipment_id__in=truck_ids)
        last = {"count": -1, "at": 0.0}  # when the stored count last grew

        def count() -> int:
            value = stored.count()
            if value != last["count"]:
                last.update(count=value, at=time.time())
            return value

        sent, started = _run_publishers(identities, options)
        _wait_stable(count, sent, quiet_s=5.0)
        total = stored.count()
        metrics = [
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            for _, port, _ in started_replicas
        ]
        cpu_s = sum(_cpu_s(process.pid) for _, _, process in started_replicas) - idle_cpu_s
        db_cpu_s = backends.stop()
    finally:
        for name, _, process in started_replicas:
            process.terminate()
            process.wait(30)
            # Its session expires in a minute and its share group dies with it: not a replica
            # to watch or retire.
            replicas.forget(name)
    lags = [_p99_from_histogram(text, "haulmind_ingest_lag_seconds") for text in metrics]
    lag = max((value for value in lags if value is not None), default=None)
    return {
        "replicas": replicas_n,
        "sent": sent,
        "stored": total,
        "per_s": total / max(1e-6, last["at"] - started),
        "duplicates": int(
            sum(_metric(text, "haulmind_ingest_duplicates_total") for text in metrics)
        ),
        "rejected": int(sum(_metric(text, "haulmind_ingest_rejected_total") for text in metrics)),
        # A histogram bound, so "at most"; beyond the last finite bucket the lag is unbounded.
        "p99_lag_ms": None if lag is None or lag == float("inf") else round(lag * 1000),
        # Includes the idle polling over the run and the quiet wait at the end.
        "cpu_us_per_msg": round(cpu_s / max(1, total) * 1e6, 1),
        "db_cpu_us_per_msg": round(db_cpu_s / max(1, total) * 1e6, 1),
    }


def wait_for_metrics(port: int, replica: subprocess.Popen, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if replica.poll() is not None:
            raise RuntimeError("the ingest replica exited at start; see var/bench-ingest.log")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)
            time.sleep(1.0)  # connected and subscribed by now
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the ingest replica did not start within a minute")


def in_process(options: dict, log: Log) -> dict:
    """``--in-process``: what a replica does per message, less paho and the broker, on this
    process's CPU clock (``time.process_time``: every thread, the inference dispatcher's too):
    the MQTT thread's part on groups of messages as read together (admission, the live rules),
    then the writer's (``ingest_batch``: COPY and insert, the listeners, Redis latest state)
    and the live feed's flush, against the real PostgreSQL and Redis. One batch holds one
    position of each of ``--trucks`` trucks (what 1,000 trucks at 10 Hz send in 0.1 s); the
    first batch warms up and is not counted."""
    from datetime import UTC, datetime, timedelta

    from fleet.protocol import wire
    from fleet.telemetry.ingest import READ_PACKETS, IngestOptions, IngestRunner
    from fleet.telemetry.signals import ingest_starting

    import_site_map(_bench_map())
    site = Site.objects.get(slug=BENCH_SLUG)
    trucks = bench_trucks(site, options["trucks"], prefix="BI", key="bench-ingest")
    batches = max(2, int(options["seconds"] * 10) + 1)
    Position.objects.filter(equipment_id__in=[t.id for t in trucks]).delete()
    runner = IngestRunner(IngestOptions(replica=f"bench-in-process-{os.getpid()}"))
    ingest_starting.send(sender=IngestRunner)
    body = _position()
    start = datetime.now(UTC) - timedelta(seconds=batches * 0.1 + 1)
    work = [
        [
            (
                wire.encode(
                    "MachinePositionV1",
                    body,
                    equipment_id=truck.id,
                    timestamp=start + timedelta(milliseconds=100 * number),
                    sequence=number + 1,
                ),
                topics.up_topic(site.slug, str(truck.id), "MachinePositionV1"),
            )
            for truck in trucks
        ]
        for number in range(batches)
    ]
    log(f"in-process: {batches} batches of {len(trucks)} positions")
    per_batch_us = []
    try:
        for number, batch in enumerate(work):
            started = time.process_time()
            now = datetime.now(UTC)
            items = [
                Inbound("mqtt", payload, now, topic=topic, ack=(1, 1)) for payload, topic in batch
            ]
            for at in range(0, len(items), READ_PACKETS):
                runner._admit_now(items[at : at + READ_PACKETS])
            runner._store_until_committed(items)
            runner.live.flush()
            if number:
                per_batch_us.append((time.process_time() - started) / len(items) * 1e6)
    finally:
        stored = Position.objects.filter(equipment_id__in=[t.id for t in trucks])
        count = stored.count()
        stored.delete()
    ordered = sorted(per_batch_us)
    return {
        "trucks": len(trucks),
        "batches": len(per_batch_us),
        "group": READ_PACKETS,
        "stored": count,
        "in_process_cpu_us_per_msg": round(sum(per_batch_us) / len(per_batch_us), 1),
        "median_batch_us_per_msg": round(ordered[len(ordered) // 2], 1),
        "best_batch_us_per_msg": round(ordered[0], 1),
        "load_average": os.getloadavg()[0],
    }


def run(options: dict, log: Log) -> dict:
    if options.get("in_process"):
        return in_process(options, log)
    # Trucks of its own: ``stored`` and ``lost`` count this run's trucks' rows, and bench
    # serving (or control's benches) publishing to the shared ``BT`` trucks meanwhile made
    # stored exceed sent (2026-12-06).
    site, identities = provision_bench_trucks(options["trucks"], prefix="BI", key="bench-ingest")
    zones = _bench_zones(site, options.get("zones") or 0)
    hook_us = None if options.get("no_live_rules") else round(_hook_cost(identities), 2)
    connection.close()  # the spawned publishers and the replica open their own
    baseline = _baseline(site, identities, options, log)
    ingest = _ingest(site, identities, options, log)
    figures = {
        "trucks": options["trucks"],
        "seconds": options["seconds"],
        "publishers": options["publishers"],
        "per_timestamp": options.get("same_timestamp") or 1,
        "header_id": not options.get("no_header_id"),
        "sent": ingest["sent"],
        "stored": ingest["stored"],
        "lost": ingest["sent"] - ingest["stored"],
        "duplicates": ingest["duplicates"],
        "rejected": ingest["rejected"],
        "stored_per_s": round(ingest["per_s"]),
        "broker_only_per_s": round(baseline["per_s"]),
        "ratio": round(ingest["per_s"] / max(1e-6, baseline["per_s"]), 3),
        "p99_ingest_lag_ms": ingest["p99_lag_ms"],
        "live_rules": not options.get("no_live_rules"),
        "zones": zones,
        # The replica's own CPU (user + system, /proc) and its PostgreSQL backends', per row.
        "cpu_us_per_msg": ingest["cpu_us_per_msg"],
        "db_cpu_us_per_msg": ingest["db_cpu_us_per_msg"],
        "hook_us_per_msg": hook_us,
    }
    more = options.get("replicas") or 1
    if more > 1:  # the same publishers again, into several replicas of one shared group
        scaled = _ingest(site, identities, options, log, replicas_n=more)
        figures["replicas"] = {
            "replicas": more,
            "sent": scaled["sent"],
            "stored": scaled["stored"],
            "lost": scaled["sent"] - scaled["stored"],
            "duplicates": scaled["duplicates"],
            "stored_per_s": round(scaled["per_s"]),
            "ratio": round(scaled["per_s"] / max(1e-6, baseline["per_s"]), 3),
            "gain_over_one": round(scaled["per_s"] / max(1e-6, ingest["per_s"]), 3),
            "cpu_us_per_msg": scaled["cpu_us_per_msg"],
            "db_cpu_us_per_msg": scaled["db_cpu_us_per_msg"],
            "p99_ingest_lag_ms": scaled["p99_lag_ms"],
        }
    return figures
