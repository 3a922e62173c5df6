"""Live predictions: from ingested telemetry to inference requests on the pool.

The path (docs/models.md, "Live predictions"):

1. ingest commits a batch and sends ``messages_admitted`` inside it; ``on_messages_admitted``
   notes the batch's trucks and, once the batch is committed (``transaction.on_commit``), hands
   them to a background thread. The ingest loop only pays for a dict update: reading history
   and sending happen beside it, and a slow database or broker here never holds ingest up.
2. The thread asks Redis which of those trucks are **due** (one decision per truck every
   ``INFERENCE_INTERVAL_S``, default 10 s: the cadence the fault rule was chosen at). A key
   per truck, set only if absent with that expiry, so every ingest replica agrees on one
   dispatch per truck per interval.
3. For the due trucks it takes the last ``HISTORY_S`` seconds of positions and health
   readings at 1 Hz (the last reading of each second, a missed one held, as the training data
   holds a GPS dropout) from the process's rolling buffers (``fleet.learning.recent``: a ring
   per truck that every batch ingest admits feeds), reading the history back
   (``fleet.telemetry.queries``) only to fill a gap: a truck first seen, a reconnect, messages
   another replica received. It builds each head's inputs with the feature module the
   training pipeline uses too (``fleet.learning.features``: ``window_inputs`` cuts the 64 s
   window and computes the fault head's history features and the trajectory features). Where
   the pool serves ETA or trajectory, ``routes.route_inputs`` plans each truck's route to its
   next stop: the ETA head gets it with the site's per-segment table
   (``features.eta_features``; a truck not on its way to a known stop is counted and skipped),
   the trajectory head the road ahead (``features.route_ahead``; none known: zeros and a 0
   flag, as in training).
4. One pack per head (every due truck's window for that head, as one array; ``send_pack_of``)
   goes to the head's queue from the pool's routing table (``PoolStore.routes``) through
   ``inference.client.send_pack``, with ``fleet.learning.tasks.store_predictions`` linked as
   its one callback (it records the pack's predictions in bulk and hands each to control) and
   an expiry of one interval (the next window supersedes it). A pack is cut where its compute
   would pass a share of the deployment's SLO at the replicas' measured cost per window, and
   into one part per replica when there is work enough (``PoolStore.pack_limits``,
   ``inference.client.pack_sizes``). A head the pool does not route is skipped.
   ``send_window`` still sends one truck's window alone (the loop benchmark).

Nothing here raises into ingest: every failure is logged and counted
(``haulmind_inference_requests_total``, by head and outcome).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram

from fleet.learning import features, recent
from fleet.learning.features import HEADS, HISTORY_S, WINDOW_S
from fleet.learning.recent import RECENT, RecentTelemetry
from fleet.learning.shadow_names import is_shadow, shadow_deployment
from fleet.telemetry import latest, queries
from fleet.telemetry.intake import Admitted

log = logging.getLogger(__name__)

# WINDOW_S (64 s) and HISTORY_S (960 s: the fault head's context reaches back "now", 60 s, at
# its longest lag, 900 s) are the feature module's.
# A truck whose last health reading is older than this (1 Hz stream) is not decided on: its
# held values would read as a frozen sensor.
HEALTH_STALE_S = 5

REQUESTS = PromCounter(
    "haulmind_inference_requests_total",
    "Live inference requests, by head and outcome: sent, no_route (the pool does not serve "
    "the head), no_inputs (the head needs what live telemetry does not give), send_failed; "
    "eta only: no_stop (not on its way to a known stop), no_plan (no route from its way), "
    "no_payload, no_history (the site's per-segment table is empty), no_map.",
    ["head", "outcome"],
)
WINDOWS = PromCounter(
    "haulmind_inference_windows_total",
    "Trucks due for a decision, by outcome: built, short_history (under a window of "
    "positions), no_health (no recent health reading), incomplete (a channel never reported), "
    "failed.",
    ["outcome"],
)
FILLED = PromCounter(
    "haulmind_inference_history_reads_total",
    "Trucks whose recent telemetry was read back from the history to fill a gap in this "
    "process's buffers (first seen, a reconnect, messages another replica received).",
)
DISPATCH_CPU = PromCounter(
    "haulmind_inference_dispatch_cpu_seconds_total",
    "CPU of the rounds that had due trucks (the dispatching thread's own clock: reading the "
    "buffers, filling their gaps, building the inputs, sending the packs).",
)
ROUNDS = PromCounter(
    "haulmind_inference_rounds_total",
    "Rounds with due trucks, by outcome: on_time, late (not finished within the decision "
    "interval: its trucks were due again before their windows were sent).",
    ["outcome"],
)
DISPATCH_SECONDS = Histogram(
    "haulmind_inference_dispatch_seconds",
    "Reading history, building inputs and sending requests for one set of due trucks.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def interval_s() -> float:
    return float(settings.INFERENCE_INTERVAL_S)


# --- 1. the hook on ingest ---------------------------------------------------------------------


def on_messages_admitted(sender: Any, admitted: list[Admitted], **kwargs: Any) -> None:
    """Receiver of ``messages_admitted`` (inside the batch's transaction): the batch feeds the
    trucks' rolling buffers (``recent.RECENT``) and, after the commit, its trucks go to the
    dispatcher. Late (back-filled) messages describe the past and
    never trigger a decision."""
    RECENT.record(admitted)
    trucks = {item.truck.equipment_id: item.truck.site_id for item in admitted if not item.late}
    if trucks:
        transaction.on_commit(partial(DISPATCHER.add, trucks), robust=True)


class Dispatcher:
    """One background thread per process that dispatches the trucks ingest hands it. Trucks
    arriving while it works are merged into the next round, so a slow round never builds a
    backlog: each truck is at most once in the pending set."""

    def __init__(self) -> None:
        self._pending: dict[uuid.UUID, uuid.UUID] = {}
        self._cond = threading.Condition()
        self._busy = False
        self._thread: threading.Thread | None = None

    def add(self, trucks: Mapping[uuid.UUID, uuid.UUID]) -> None:
        with self._cond:
            self._pending.update(trucks)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="inference-dispatch", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until nothing is pending or running (tests, clean shutdown)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending))
                trucks, self._pending, self._busy = self._pending, {}, True
            try:
                dispatch(trucks)
            except Exception:  # dispatch counts its own failures; this is the last guard
                log.exception("live inference dispatch failed")
            finally:
                with self._cond:
                    idle = not self._pending
                # This thread's own connection: kept while trucks keep coming, closed when
                # there is nothing to do (an idle ingest holds no connection for it).
                if idle:
                    connection.close()
                else:
                    close_old_connections()
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


DISPATCHER = Dispatcher()


# --- 2.-4. one round -----------------------------------------------------------------------------


@dataclass
class TruckInputs:
    """One truck's decision: the window's end, its last fix and every head's inputs."""

    equipment_id: uuid.UUID
    site_id: uuid.UUID
    window_end: datetime
    origin: tuple[float, float, float]  # lon, lat, heading (deg) of the last fix
    window: np.ndarray  # [C, L] float32
    context: np.ndarray  # [F] float32: the fault head's history features
    trajectory: np.ndarray  # [4] float32: speed, yaw rate, acceleration, previous speed
    eta: np.ndarray | None = None  # [9] float32: route features + per-segment table
    eta_outcome: str = "no_inputs"  # why ``eta`` is None (routes.route_inputs)
    ahead: np.ndarray = field(default_factory=features.no_route_ahead)  # the road ahead

    def inputs(self, head: str) -> dict[str, np.ndarray] | None:
        """The request's inputs for ``head`` (a batch of one), or None where live telemetry
        lacks them (ETA: no known next stop or route; ``eta_outcome`` says which)."""
        window = self.window[None]
        if head == "fault":
            return {"window": window, "features": self.context[None]}
        if head == "trajectory":
            return {
                "window": window,
                "features": features.trajectory_inputs(self.trajectory, self.ahead),
            }
        if head == "payload":
            return {"window": window}
        if head == "eta" and self.eta is not None:
            return {"window": window, "features": self.eta[None].astype(np.float32)}
        return None


def dispatch(
    trucks: Mapping[uuid.UUID, uuid.UUID],
    *,
    routes: Mapping[str, Mapping[str, Any]] | None = None,
    app: Any = None,
    now: datetime | None = None,
) -> Counter[str]:
    """Send requests for the due ones of ``trucks`` (EquipmentId -> site id). Returns the
    round's outcomes ("<head>:<outcome>" and "window:<outcome>") as also counted in the
    metrics."""
    started, cpu_started = time.perf_counter(), time.thread_time()
    report: Counter[str] = Counter()
    due = claim_due(trucks)
    if not due:
        return report
    live = routes is None
    routes = current_routes() if routes is None else routes
    served = [head for head in HEADS if head in routes]
    for head in HEADS:
        if head not in routes:
            _count(report, head, "no_route", len(due))
    if served:
        built = build_inputs(due, now=now)
        if "eta" in served or "trajectory" in served:
            add_routes(built, now=now)
        shadows = [shadow_deployment(h) for h in served if shadow_deployment(h) in routes]
        limits = current_pack_limits([*served, *shadows]) if live and built else {}
        _send_all(built, served, routes, app, report, limits)
    took = time.perf_counter() - started
    DISPATCH_SECONDS.observe(took)
    DISPATCH_CPU.inc(time.thread_time() - cpu_started)
    ROUNDS.labels("late" if took > interval_s() else "on_time").inc()
    return report


# Decision slots this process knows are taken, by key -> until when (monotonic) it does not ask
# Redis again: its own claims until they expire, another holder's for a moment. Ingest hands
# the dispatcher the trucks of every batch (at 1,000 trucks, every truck every batch), and one
# SET per truck per batch was about 5 % of an ingest replica's CPU (py-spy, issue 14).
_TAKEN: dict[str, float] = {}
_TAKEN_BY_OTHERS_S = 1.0


def claim_due(trucks: Mapping[uuid.UUID, uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """The trucks whose last decision is an interval old or more, claimed for this process."""
    ttl_ms = max(int(interval_s() * 1000), 1)
    now = time.monotonic()
    prefix = decision_key("")
    keys = {truck: f"{prefix}{truck}" for truck in trucks}
    ids = [truck for truck, key in keys.items() if _TAKEN.get(key, 0.0) <= now]
    if not ids:
        return {}
    with latest.redis_client().pipeline(transaction=False) as pipe:
        for truck in ids:
            pipe.set(keys[truck], b"1", nx=True, px=ttl_ms)
        claimed = pipe.execute()
    if len(_TAKEN) > 100_000:  # forget the expired ones (trucks gone, old key prefixes)
        for key in [key for key, until in _TAKEN.items() if until <= now]:
            del _TAKEN[key]
    ours = now + ttl_ms / 1000
    theirs = now + min(_TAKEN_BY_OTHERS_S, ttl_ms / 1000)
    for truck, ok in zip(ids, claimed, strict=True):
        _TAKEN[keys[truck]] = ours if ok else theirs
    return {truck: trucks[truck] for truck, ok in zip(ids, claimed, strict=True) if ok}


def decision_key(truck: uuid.UUID | str) -> str:
    """The Redis key whose holder makes the truck's decision of the current interval."""
    return f"{settings.REDIS_KEY_PREFIX}:inference:decided:{truck}"


def current_routes() -> dict[str, dict[str, Any]]:
    """The pool's routing table (empty when no pool runs or its Redis is out of reach)."""
    from inference.pool import PoolStore

    try:
        return PoolStore().routes()
    except Exception:
        log.exception("could not read the pool's routing table")
        return {}


def current_pack_limits(heads: Iterable[str]) -> dict[str, Any]:
    """Each head's pack limits (``PoolStore.pack_limits``); empty when out of reach."""
    from inference.pool import PoolStore

    try:
        return dict(PoolStore().pack_limits(heads))
    except Exception:
        log.exception("could not read the pool's pack limits")
        return {}


def _send_all(
    built: list[TruckInputs],
    heads: list[str],
    routes: Mapping[str, Mapping[str, Any]],
    app: Any,
    report: Counter[str],
    limits: Mapping[str, Any] | None = None,
) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=interval_s())
    for head in heads:
        ready: list[tuple[TruckInputs, dict[str, np.ndarray]]] = []
        for truck in built:
            inputs = truck.inputs(head)
            if inputs is None:
                _count(report, head, truck.eta_outcome if head == "eta" else "no_inputs")
            else:
                ready.append((truck, inputs))
        _send_packs(head, ready, routes[head], (limits or {}).get(head), app, expires, report)
        shadow = shadow_deployment(head)
        if ready and shadow in routes:
            # The challenger answers the very windows the champion got; its answers are
            # stored apart and acted on by no one (fleet.learning.shadow).
            _send_packs(
                head,
                ready,
                routes[shadow],
                (limits or {}).get(shadow),
                app,
                expires,
                report,
                deployment=shadow,
            )


# Rows of a pack where the pool has no limits for the head (none measured, no pool store).
DEFAULT_PACK_ROWS = 32


def _send_packs(
    head: str,
    ready: list[tuple[TruckInputs, dict[str, np.ndarray]]],
    route: Mapping[str, Any],
    limit: Any,
    app: Any,
    expires: datetime,
    report: Counter[str],
    *,
    deployment: str | None = None,
) -> None:
    """One head's windows of this tick, as few packs as its limit allows; counted per window.
    ``limit``: the head's ``inference.pool.PackLimit`` (None: ``DEFAULT_PACK_ROWS`` a pack)."""
    from inference.client import pack_sizes

    sizes = (
        pack_sizes(len(ready), limit.cap, replicas=limit.replicas, min_rows=limit.min_rows)
        if limit is not None
        else pack_sizes(len(ready), DEFAULT_PACK_ROWS)
    )
    start = 0
    counted = head if deployment is None or deployment == head else deployment
    for size in sizes:
        part, start = ready[start : start + size], start + size
        try:
            send_pack_of(
                head,
                part,
                queue=route.get("queue"),
                app=app,
                expires=expires,
                deployment=deployment,
            )
        except Exception:
            log.exception("could not send a pack of %d %s windows", len(part), counted)
            _count(report, counted, "send_failed", len(part))
        else:
            _count(report, counted, "sent", len(part))


def send_pack_of(
    head: str,
    rows: Sequence[tuple[TruckInputs, Mapping[str, np.ndarray]]],
    *,
    queue: str | None,
    app: Any = None,
    expires: datetime | None = None,
    deployment: str | None = None,
    callback_queue: str | None = None,
) -> Any:
    """Send many trucks' windows for one head as one pack (their inputs stacked, one key per
    truck), with ``tasks.store_predictions`` linked as its one callback; returns the pack's
    ``AsyncResult``. Callback queue and ``deployment`` as for ``send_window``."""
    from fleet.celery import app as fleet_app
    from fleet.learning.tasks import store_predictions
    from inference.client import send_pack

    trucks = [truck for truck, _ in rows]
    stacked = {name: np.concatenate([inputs[name] for _, inputs in rows]) for name in rows[0][1]}
    meta = pack_meta(trucks, head)
    if deployment is not None and is_shadow(deployment):
        meta["shadow"] = True
    callback = store_predictions.s(meta).set(
        queue=callback_queue or settings.CELERY_TASK_DEFAULT_QUEUE
    )
    return send_pack(
        app or fleet_app,
        deployment or head,
        stacked,
        keys=[str(truck.equipment_id) for truck in trucks],
        queue=queue,
        link=callback,
        expires=expires or datetime.now(UTC) + timedelta(seconds=interval_s()),
    )


def pack_meta(trucks: Sequence[TruckInputs], head: str) -> dict[str, Any]:
    """What a pack's callback needs beside the result: the head and each row's
    ``callback_meta`` (without the head), in the pack's order."""
    rows = [callback_meta(truck, head) for truck in trucks]
    for row in rows:
        del row["head"]
    return {"head": head, "rows": rows}


def send_window(
    truck: TruckInputs,
    head: str,
    inputs: Mapping[str, np.ndarray],
    *,
    queue: str | None,
    app: Any = None,
    expires: datetime | None = None,
    deployment: str | None = None,
    callback_queue: str | None = None,
) -> Any:
    """Send one head's request for one truck's window to the pool, with
    ``tasks.store_prediction`` linked as its callback; returns the request's ``AsyncResult``.

    The callback goes to fleet's own queue (``CELERY_TASK_DEFAULT_QUEUE``, or
    ``callback_queue``) by name: the slice worker sends it through its own Celery app, whose
    default queue is Celery's, not fleet's. ``deployment``: the pool deployment that serves the
    head, where it is not named after it (a benchmark's private copy)."""
    # Imported here: the inference client pulls in PyTorch, which processes that never
    # dispatch (the web server) should not load.
    from fleet.celery import app as fleet_app
    from fleet.learning.tasks import store_prediction
    from inference.worker import send_request

    callback = store_prediction.s(callback_meta(truck, head)).set(
        queue=callback_queue or settings.CELERY_TASK_DEFAULT_QUEUE
    )
    return send_request(
        app or fleet_app,
        deployment or head,
        inputs,
        queue=queue,
        link=callback,
        expires=expires or datetime.now(UTC) + timedelta(seconds=interval_s()),
    )


def callback_meta(truck: TruckInputs, head: str) -> dict[str, Any]:
    """What the callback needs beside the response (plain JSON: it travels in the message)."""
    return {
        "truck": str(truck.equipment_id),
        "site": str(truck.site_id),
        "head": head,
        "window_start": (truck.window_end - timedelta(seconds=WINDOW_S - 1)).isoformat(),
        "window_end": truck.window_end.isoformat(),
        "origin": list(truck.origin),
    }


def _count(report: Counter[str], head: str, outcome: str, n: int = 1) -> None:
    REQUESTS.labels(head, outcome).inc(n)
    report[f"{head}:{outcome}"] += n


# --- building the inputs -------------------------------------------------------------------------


def build_inputs(
    trucks: Mapping[uuid.UUID, uuid.UUID], *, now: datetime | None = None
) -> list[TruckInputs]:
    """Every head's inputs for the trucks that have enough recent history, from the process's
    rolling buffers (``recent.RECENT``, fed by ingest), the history read back only where they
    have a gap (``fill_gaps``). Trucks without are counted (``WINDOWS``) and left out."""
    now = now or datetime.now(UTC)
    since = now - timedelta(seconds=HISTORY_S + interval_s())
    fill_gaps(trucks, now)
    out: list[TruckInputs] = []
    for truck, site in trucks.items():
        outcome, inputs = truck_inputs(truck, site, RECENT.seconds(truck, since))
        WINDOWS.labels(outcome).inc()
        if inputs is not None:
            out.append(inputs)
    return out


# Trucks read back per query pair: a first sight of 1,000 trucks is about two million rows; in
# parts, the buffers' lock (which ingest's writer takes for every batch, inside its transaction)
# is held a fraction of a second at a time instead of for the whole read.
FILL_TRUCKS = 25


def fill_gaps(
    trucks: Iterable[uuid.UUID], now: datetime, buffers: RecentTelemetry | None = None
) -> int:
    """Read back from the history what the buffers lack of the trucks' last ``HISTORY_S``
    (plus an interval) seconds: two queries for all of them, each truck from where its gap
    starts (``RecentTelemetry.gaps``). Returns how many trucks were read."""
    buffers = RECENT if buffers is None else buffers
    wanted = list(buffers.gaps(trucks, now, HISTORY_S + interval_s()).items())
    for at in range(0, len(wanted), FILL_TRUCKS):
        part = dict(wanted[at : at + FILL_TRUCKS])
        buffers.merge(
            queries.recent_positions(part),
            queries.recent_events(part, recent.HEALTH),
            covered=dict.fromkeys(part, now),
        )
        FILLED.inc(len(part))
    return len(wanted)


def add_routes(built: list[TruckInputs], *, now: datetime | None = None) -> None:
    """Each built truck's planned-route inputs (``routes.route_inputs``): the ETA head's
    features, or why not, and the trajectory head's road ahead."""
    from fleet.learning import routes

    if not built:
        return
    until = max(now or datetime.now(UTC), max(t.window_end for t in built))
    trucks = {t.equipment_id: (t.site_id, *t.origin) for t in built}
    try:
        found = routes.route_inputs(trucks, until)
    except Exception:
        log.exception("could not plan the trucks' routes")
        found = {}
    for truck in built:
        planned = found.get(truck.equipment_id)
        if planned is None:
            truck.eta_outcome, truck.eta = "failed", None
            continue
        truck.eta_outcome, truck.eta, truck.ahead = planned.outcome, planned.eta, planned.ahead


def truck_inputs(
    truck: uuid.UUID, site: uuid.UUID, seconds: recent.Seconds | None
) -> tuple[str, TruckInputs | None]:
    """(outcome, inputs) of one truck from its buffered seconds (``RecentTelemetry.seconds``)."""
    if seconds is None or seconds.end - seconds.start + 1 < WINDOW_S:
        return "short_history", None
    if seconds.newest_health < seconds.end - HEALTH_STALE_S:
        return "no_health", None
    series, last_fix = recent.series(seconds)
    if series is None:
        return "incomplete", None
    return "built", live_inputs(truck, site, series, seconds.end, last_fix)


def live_inputs(
    truck: uuid.UUID,
    site: uuid.UUID,
    series: np.ndarray,
    end_second: int,
    last_fix: tuple[float, float, float],
) -> TruckInputs:
    """Every head's inputs from one truck's resampled series: ``features.window_inputs``, the
    code the training pipeline cuts its windows with."""
    end = np.asarray([series.shape[1] - 1])
    built = features.window_inputs(series[None], np.zeros(1, dtype=np.int64), end, WINDOW_S)
    return TruckInputs(
        equipment_id=truck,
        site_id=site,
        window_end=datetime.fromtimestamp(end_second, UTC),
        origin=last_fix,
        window=built.window[0],
        context=built.context[0],
        trajectory=built.trajectory[0],
    )
