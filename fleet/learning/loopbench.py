"""The pool side of ``bench loop``'s model path: a probe truck's window through the real
inference pool and the real inference callback (``fleet.control.loopbench`` runs the loop and
times the command at the truck; this module knows nothing of control).

What it starts, for the benchmark's duration:

- a slice worker (``python -m inference.worker``, as ``bench batching`` starts one) serving a
  private copy of the registry's fault champion: same checkpoint and batching, its own name,
  so its queue is the benchmark's alone (another session's pool never takes a probe's request,
  and the shared routing table is left as it is);
- fleet's Celery worker (``celery -A fleet worker --concurrency=1``, as ``make demo`` runs it)
  on a queue of the benchmark's own, where the requests' callbacks
  (``learning.store_prediction``) go: the second Celery hop, which stores the prediction and
  hands it to control.

A probe's window is what live serving would build: its history is published as telemetry and
stored by the real ingest, and ``serving.build_inputs`` reads it back with the live queries the
moment the newest sample is stored (the live dispatcher runs when the batch holding it commits);
``serving.send_window`` sends it, exactly as ``serving.dispatch`` does. The benchmark holds the
probes' decision slots (``serving.decision_key``) so the ingest replica's own dispatcher leaves
them alone, and sends each probe's window itself: that send is where ``model_ms`` starts.

Load beside the probes: the background fleet's fault decisions, one per truck per
``INFERENCE_INTERVAL_S`` (100 trucks: 10 requests/s), on the same deployment with random inputs
and no callback. Their callbacks (the other trucks' predictions stored and decided) are not
generated: they would need real windows of every background truck.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings

from fleet.learning import serving
from fleet.learning.deployments import champion_deployments
from fleet.learning.features import HEALTH_EXTRAS, TYRES
from fleet.telemetry.bench import LAT0, LON0
from fleet.telemetry.models import Position

Log = Callable[[str], None]
HEAD = "fault"
# Off the bench road's zones (the exclusion zone is at +0.003, +0.003): live rules leave it be.
PROBE_LON, PROBE_LAT = LON0 - 0.001, LAT0 - 0.001
STORED_WITHIN_S = 10.0
# The probe's steady readings by channel (the brakes are set per second).
STEADY = {
    "coolant_temp_c": 92.0,
    "strut_pressure_kpa_FL": 5200.0,
    "strut_pressure_kpa_FR": 5200.0,
    "strut_pressure_kpa_RL": 5600.0,
    "strut_pressure_kpa_RR": 5600.0,
}


@dataclass(frozen=True)
class SentWindow:
    """One probe window sent to the pool (times: seconds since the epoch)."""

    equipment_id: uuid.UUID
    newest_at: float  # the newest sample's Timestamp
    stored_at: float  # when the benchmark saw it stored
    sent_at: float  # just before the request left for the broker
    task_id: str
    build_ms: float  # reading history and building the inputs (serving.build_inputs)


def probe_messages(at: datetime, second: int) -> list[tuple[str, dict[str, Any], datetime]]:
    """One second of a probe's telemetry: a position and a health reading, as (message name,
    body, Timestamp). A truck standing on the bench site whose brakes keep heating (about
    3 °C/s): the champion reads brake fade; the bench's policy acts on any reading anyway."""
    position = {
        "Heading": 90,
        "Latitude": PROBE_LAT,
        "Longitude": PROBE_LON,
        "Elevation": 3000.0,
        "LatitudeAccuracy": 0.4,
        "LongitudeAccuracy": 0.4,
        "ElevationAccuracy": 0.8,
        "HeadingAccuracy": 1.0,
        "Speed": 0.0,
    }
    readings = {**STEADY, "brake_temp_front_c": 180.0 + 3.0 * second}
    readings["brake_temp_rear_c"] = readings["brake_temp_front_c"]
    health = {
        "FuelLevel": 61.5,
        "TotalMachineHour": 12000.0,
        "TotalEngineHour": 11000.0,
        "Tire": [{"TirePosition": t, "TirePressure": 700, "TireTemperature": 55} for t in TYRES],
        "Additional": [
            {"SensorId": sensor, "Value": round(readings[channel], 1), "Unit": unit}
            for channel, sensor, unit in HEALTH_EXTRAS
        ],
    }
    return [("MachinePositionV1", position, at), ("BasicMachineHealthV2", health, at)]


def probe_history(end: datetime) -> list[tuple[str, dict[str, Any], datetime]]:
    """A window's worth of 1 Hz telemetry ending at ``end`` (published in a burst just before
    the probe's round: a run needs no minute of warm-up per probe)."""
    out = []
    for i in range(serving.WINDOW_S):
        out += probe_messages(end - timedelta(seconds=serving.WINDOW_S - 1 - i), i)
    return out


def wait_stored(equipment_id: uuid.UUID, at: datetime, timeout_s: float = STORED_WITHIN_S) -> bool:
    """Until the truck's position with Timestamp ``at`` is in the history. The live dispatcher
    starts when the batch commits; polling every 5 ms adds up to that to ``window_age`` and
    costs the benchmark's process about a tenth of a core while it waits."""
    deadline = time.monotonic() + timeout_s
    stored = Position.objects.filter(equipment_id=equipment_id, sent_at__gte=at)
    while time.monotonic() < deadline:
        if stored.exists():
            return True
        time.sleep(0.005)
    return False


class ModelPool:
    """The slice worker and the callback worker of one benchmark run (``start`` / ``close``)."""

    def __init__(self, options: dict[str, Any], log: Log) -> None:
        self.log = log
        self.share = float(options.get("share") or 0.5)
        self.trucks = int(options.get("trucks") or 0)
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.name = f"benchloop-{HEAD}-{tag}"
        self.callback_queue = f"benchloop-callbacks-{tag}"
        self._stack = contextlib.ExitStack()
        self._celery: subprocess.Popen | None = None
        self._slice: subprocess.Popen | None = None
        self._held: list[uuid.UUID] = []
        self._load_stop = threading.Event()
        self._load_thread: threading.Thread | None = None
        self.load_sent = 0
        champion = {d.model or d.name: d for d in champion_deployments()}.get(HEAD)
        if champion is None:
            raise RuntimeError(
                f"no {HEAD} champion in the registry: run `manage.py train_models` first "
                "(about 2 min here), or `bench loop --no-model` for the rule path alone"
            )
        self.deployment = replace(champion, name=self.name)
        self.model_id = champion.model_id

    # --- processes ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start both workers and wait until the slice worker answers (its model loaded)."""
        from fleet.learning.poolbench import random_inputs
        from inference.bench import bench_slice, slice_worker
        from inference.worker import send_request

        self._inputs = random_inputs(self.deployment, rows=1)
        log_dir = Path(settings.VAR_DIR) / "bench"
        log_dir.mkdir(parents=True, exist_ok=True)
        spec = bench_slice(self.share)
        self._slice = self._stack.enter_context(
            slice_worker(
                spec, [self.deployment], node=self.name, log_path=log_dir / "loop-slice.log"
            )
        )
        self._celery = subprocess.Popen(  # noqa: S603 - our own worker
            [sys.executable, "-m", "celery", "-A", "fleet", "worker", "--loglevel=INFO",
             "--concurrency=1", "-n", f"{self.name}@%h", "-Q", self.callback_queue,
             "--without-gossip", "--without-mingle"],
            cwd=settings.BASE_DIR,
            stdout=(log_dir / "loop-celery.log").open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.log(f"loop: {self.model_id} on {spec.name} ({self.share:g} of the CPU) as {self.name}")
        from fleet.celery import app

        send_request(app, self.name, self._inputs).get(timeout=120)

    def close(self) -> None:
        self._load_stop.set()
        if self._load_thread is not None:
            self._load_thread.join(10)
        self.release()
        if self._celery is not None:
            self._celery.terminate()
            try:
                self._celery.wait(30)
            except subprocess.TimeoutExpired:
                self._celery.kill()
        self._stack.close()
        from fleet.celery import app
        from inference.worker import queue_name

        with app.connection_for_write() as connection:
            channel = connection.channel()
            for name in (queue_name(self.name), self.callback_queue):
                with contextlib.suppress(Exception):
                    channel.queue_delete(name)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU so far of the slice worker and of the callback worker (its pool child too)."""
        return {
            "slice": _tree_cpu_s(self._slice.pid) if self._slice else 0.0,
            "callbacks": _tree_cpu_s(self._celery.pid) if self._celery else 0.0,
        }

    # --- the fleet's own decisions beside the probes ---------------------------------------------

    def start_load(self) -> float:
        """The background fleet's fault requests (see the module docstring); returns their rate."""
        rate = self.trucks / float(settings.INFERENCE_INTERVAL_S)
        if rate <= 0:
            return 0.0
        self._load_thread = threading.Thread(target=self._load, args=(rate,), daemon=True)
        self._load_thread.start()
        return rate

    def _load(self, rate: float) -> None:
        from fleet.celery import app
        from inference.worker import send_request

        next_at = time.monotonic()
        while not self._load_stop.is_set():
            expires = datetime.now(UTC) + timedelta(seconds=float(settings.INFERENCE_INTERVAL_S))
            send_request(app, self.name, self._inputs, expires=expires)
            self.load_sent += 1
            next_at += 1.0 / rate
            self._load_stop.wait(max(0.0, next_at - time.monotonic()))

    # --- the probes ------------------------------------------------------------------------------

    def hold(self, trucks: list[uuid.UUID], seconds: float) -> None:
        """Take the trucks' decision slots for ``seconds``: the ingest replica's dispatcher
        then leaves their windows to the benchmark."""
        from fleet.telemetry import latest

        with latest.redis_client().pipeline(transaction=False) as pipe:
            for truck in trucks:
                pipe.set(serving.decision_key(truck), b"bench", px=int(seconds * 1000))
            pipe.execute()
        self._held += trucks

    def release(self) -> None:
        from fleet.telemetry import latest

        if self._held:
            latest.redis_client().delete(*(serving.decision_key(t) for t in self._held))
            self._held = []

    def send(self, equipment_id: uuid.UUID, site_id: uuid.UUID, newest: datetime) -> SentWindow:
        """Once the sample at ``newest`` is stored: build the truck's window from the history
        and send it to the pool, the callback to the benchmark's worker."""
        from inference.worker import queue_name

        if not wait_stored(equipment_id, newest):
            raise TimeoutError(f"the probe's sample was not stored within {STORED_WITHIN_S} s")
        stored_at = time.time()
        built = serving.build_inputs({equipment_id: site_id})
        if not built:
            raise RuntimeError("the probe's history gave no window (see serving.build_inputs)")
        build_ms = (time.time() - stored_at) * 1000
        truck = built[0]
        inputs = truck.inputs(HEAD)
        if inputs is None:  # never for the fault head: the window and its history suffice
            raise RuntimeError(f"no {HEAD} inputs from the probe's window")
        sent_at = time.time()
        result = serving.send_window(
            truck,
            HEAD,
            inputs,
            queue=queue_name(self.name),
            deployment=self.name,
            callback_queue=self.callback_queue,
        )
        return SentWindow(
            equipment_id, newest.timestamp(), stored_at, sent_at, str(result.id), build_ms
        )

    def results_stored_at(self, task_ids: list[str]) -> dict[str, float]:
        """When the slice worker stored each request's result (Celery's ``date_done``): the
        end of the first hop, just before it sends the callback."""
        from celery.result import AsyncResult

        from fleet.celery import app

        out = {}
        for task_id in task_ids:
            done = AsyncResult(task_id, app=app).date_done
            if isinstance(done, str):
                done = datetime.fromisoformat(done)
            if done is not None:
                out[task_id] = (done if done.tzinfo else done.replace(tzinfo=UTC)).timestamp()
        return out


def _tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(times.get(p, 0.0) for p in tree)
