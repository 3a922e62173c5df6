"""``manage.py bench allstop --trucks 1000 --json``: a site's all-stop, from the Apply in the
platform until every truck has acknowledged it, through the real services.

The trucks are the benchmark's own (``provision_bench_trucks``), answered by load-generator
processes that obey as a truck's link would (``loadgen.answer_all_stops``); the FMS side is a
real ingest replica and a real outbox delivery process. Each round applies an all-stop (as the
emergency-stop rule would), waits for every machine's acknowledgement, then removes it (as a
supervisor) and waits again. ``p99_ms`` is over the Apply rounds; the Remove rounds are reported
beside them. A machine that has not acknowledged within ``LOST_AFTER_S`` is ``lost``.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection

from fleet.control import allstop
from fleet.control.models import AllStop, Command
from fleet.mine.models import Site
from fleet.telemetry import loadgen, replicas
from fleet.telemetry.bench import free_port, provision_bench_trucks, wait_for_metrics
from fleet.vehicles.mqtt import broker_address

Log = Callable[[str], None]
LOST_AFTER_S = 10.0
READY_WITHIN_S = 600.0
POLL_S = 0.002


def start_command(argv: list[str], log_name: str) -> subprocess.Popen:
    log_path = Path(settings.VAR_DIR) / log_name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "manage.py", *argv],
        cwd=settings.BASE_DIR,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )


def cpu_seconds(process: subprocess.Popen) -> float:
    """User + system CPU seconds of a child process so far (Linux /proc)."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_acknowledged(event: AllStop, trucks: int) -> tuple[float, int]:
    """Seconds from ``event`` to the last machine's acknowledgement, and how many never came."""
    commands = Command.objects.filter(
        message_name=allstop.MESSAGE,
        answer_key=f"allstop:{event.stop_id}:{event.mode}",
        status=Command.Status.ACKNOWLEDGED,
    )
    deadline = time.monotonic() + LOST_AFTER_S
    done = 0
    while time.monotonic() < deadline:
        done = commands.count()
        if done >= trucks:
            break
        time.sleep(POLL_S)
    last = commands.order_by("-answered_at").values_list("answered_at", flat=True).first()
    elapsed = (last - event.at).total_seconds() if last else LOST_AFTER_S
    return elapsed, trucks - done


def _round(site: Site, supervisor: User, trucks: int) -> dict:
    t0 = time.perf_counter()
    applied = allstop.apply_all_stop(site, reason="benchmark", rule="bench")
    issue_s = time.perf_counter() - t0
    apply_s, apply_lost = _wait_acknowledged(applied, trucks)
    removed = allstop.remove_all_stop(site, reason="benchmark over", actor=supervisor)
    remove_s, remove_lost = _wait_acknowledged(removed, trucks)
    return {
        "issue_ms": issue_s * 1000,
        "apply_ms": apply_s * 1000,
        "remove_ms": remove_s * 1000,
        "lost": apply_lost + remove_lost,
    }


def _answerers(identities, processes: int):
    address = broker_address()
    context = multiprocessing.get_context("spawn")
    ready, stop, latencies = context.Value("i", 0), context.Event(), context.Queue()
    workers = [
        context.Process(
            target=loadgen.answer_all_stops,
            args=(identities[i::processes], address.host, address.port, ready, stop, latencies),
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    return workers, ready, stop, latencies


def run(options: dict, log: Log) -> dict:
    trucks, rounds = options["trucks"], options["rounds"]
    log(f"allstop: provisioning {trucks} bench trucks")
    site, identities = provision_bench_trucks(trucks)
    supervisor, _ = User.objects.get_or_create(username="bench-supervisor")
    if allstop.in_force(site):
        allstop.remove_all_stop(site, reason="bench start", actor=supervisor)
    connection.close()
    metrics_port = free_port()
    name = f"bench-allstop-{os.getpid()}"
    ingest = start_command(
        [
            "ingest",
            "--replica",
            name,
            "--share-group",
            f"benchallstop{os.getpid()}",
            "--session-expiry",
            "60",
            "--metrics-port",
            str(metrics_port),
        ],
        "bench-allstop-ingest.log",
    )
    delivery = start_command(["deliver_commands", "--client-id", name], "bench-allstop-outbox.log")
    workers, ready, stop, latencies = _answerers(identities, options["publishers"])
    try:
        wait_for_metrics(metrics_port, ingest)
        # Each connection is a password check at the broker: a thousand take minutes here.
        deadline = time.monotonic() + READY_WITHIN_S
        while ready.value < trucks and time.monotonic() < deadline:
            time.sleep(0.5)
        if ready.value < trucks:
            raise RuntimeError(f"only {ready.value} of {trucks} trucks subscribed in time")
        log(f"allstop: {ready.value} trucks listening; {rounds} rounds of apply + remove")
        _round(site, supervisor, trucks)  # warm-up: caches, prepared plans, broker sessions
        cpu = {"ingest": cpu_seconds(ingest), "delivery": cpu_seconds(delivery)}
        results = [_round(site, supervisor, trucks) for _ in range(rounds)]
        cpu = {k: cpu_seconds(p) - cpu[k] for k, p in (("ingest", ingest), ("delivery", delivery))}
    finally:
        stop.set()
        seen = [ms for _ in workers for ms in latencies.get(timeout=60)]
        for worker in workers:
            worker.join(30)
        for process in (ingest, delivery):
            process.terminate()
            process.wait(30)
        replicas.forget(name)
    apply_ms = np.array([r["apply_ms"] for r in results])
    remove_ms = np.array([r["remove_ms"] for r in results])
    acks = 2 * rounds * trucks
    return {
        "trucks": trucks,
        "rounds": rounds,
        "p99_ms": round(float(np.percentile(apply_ms, 99)), 1),
        "p50_ms": round(float(np.percentile(apply_ms, 50)), 1),
        "remove_p99_ms": round(float(np.percentile(remove_ms, 99)), 1),
        "issue_p99_ms": round(float(np.percentile([r["issue_ms"] for r in results], 99)), 1),
        "broker_p99_ms": round(float(np.percentile(seen, 99)), 1) if seen else None,
        "lost": int(sum(r["lost"] for r in results)),
        "ingest_cpu_us_per_ack": round(cpu["ingest"] / acks * 1e6, 1),
        "delivery_cpu_ms_per_round": round(cpu["delivery"] / (2 * rounds) * 1000, 1),
    }
