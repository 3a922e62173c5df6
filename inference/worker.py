"""A slice worker: one Celery worker process per slice, serving the deployments the plan gives it.

    python -m inference.worker --node node-a --slice '{...SliceSpec...}' --follow-plan
    python -m inference.worker --slice @slice.json --deployment @fault.json     # fixed, no scheduler

The slice's limits are applied and (for fixed deployments) the models loaded *before* the Celery
consumer starts, so no message is taken by a process that cannot serve it.

**Batching through Celery.** Every request is an ordinary Celery task message
(``inference.infer``) on its deployment's queue, so any Celery client can send one and read the
result with ``AsyncResult``. But the worker does not execute one task per message: the task's
execution strategy (Celery's documented hook, as in celery-batches) hands each message, as it
arrives, to the deployment's ``DynamicBatcher``. The consumer's prefetch (``--prefetch``, per
queue) lets up to that many requests wait unacknowledged, the batcher runs whatever has
gathered as one forward pass, and a writer thread stores the batch's results in one Redis round
trip and then acknowledges the messages. Per-request work is a JSON decode, an append and a
share of one pipeline: that, more than the matrix kernels, is what batching saves on a CPU.

**Nothing lost.** Acknowledgement comes after the result is stored. A worker that dies leaves
its prefetched messages unacknowledged; RabbitMQ requeues them as soon as the connection drops
and another replica of the deployment serves them (Redis as a broker would wait out its
visibility timeout, an hour by default: RabbitMQ is the broker of choice). One queue per
deployment, consumed by all its replicas wherever they run; never a queue per slice, which
would strand a dead node's work.

**Following the plan.** With ``--follow-plan`` the worker beats its slice's state into the
pool's Redis (``inference.pool``) every second and reads what the scheduler assigned to it:
it loads a newly assigned deployment's model, then starts consuming its queue; for a
deployment taken away it stops consuming at once, finishes what it holds, and keeps the model
warm a while in case the work comes back (the next burst is a consumer switch, not a load).

**Packs.** A message may carry many windows of one deployment (``inference.client.send_pack``:
the task's kwargs say ``pack``, with a key per row). The pack's rows go to the batcher as batch
members (``DynamicBatcher.submit_pack``: chunks of ``max_batch_size`` rows), and its one result
holds every row's outputs and each chunk's timings: one decode, one result write, one
acknowledgement and one callback for the whole pack.

Messages and results are JSON (arrays as base64, ``inference.wire``), never pickle. Callers
route with ``send_request`` / ``send_pack`` and read results with ``read_response`` /
``read_pack`` (``inference.client``, importable without PyTorch), through their own Celery app
(fleet's), so nothing here imports fleet; a callback task they own can be linked.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue as queue_module
import re
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from celery import Celery, Task, shared_task, signature

from inference import config
from inference.batching import BatchingConfig, DynamicBatcher, PackResponse, Response
from inference.client import (  # noqa: F401 - the client's names, where callers found them
    QUEUE_PREFIX,
    TASK_NAME,
    queue_name,
    read_pack,
    read_response,
    send_pack,
    send_request,
)
from inference.placement import Deployment
from inference.pool import SLICE_BEAT_S, PoolStore
from inference.slices import EnforcementReport, ShareMeter, SliceSpec, apply_slice
from inference.wire import decode_arrays, encode_arrays
from models import Runtime, load_runtime
from models.artifacts import resolve_checkpoint

logger = logging.getLogger(__name__)

DEFAULT_PREFETCH = 64
KEEP_WARM_S = 60.0
STORE_RETRIES_S = (0.5, 1.0, 2.0)  # pauses between attempts to store a batch's results


def slice_hostname(spec: SliceSpec, node: str) -> str:
    """Celery's worker name for a slice: unique per slice and node."""
    return f"{re.sub(r'[^A-Za-z0-9]+', '-', spec.name)}@{node}"


class RequestExpired(RuntimeError):
    """The request's ``expires`` passed before it was served; it was not run."""


# --- one deployment on this slice --------------------------------------------------------------


class Replica:
    """One deployment served on this slice: its loaded runtime and its batcher."""

    def __init__(self, deployment: Deployment, spec: SliceSpec, *, engine: str = "auto") -> None:
        self.deployment = deployment
        # A registered version arrives as a store reference: fetched by hash into this host's
        # cache and verified there (a local path, as fixed deployments give, loads as it is).
        directory = resolve_checkpoint(
            deployment.checkpoint,
            root=config.artifact_root(),
            cache=config.artifact_cache(),
            endpoint_url=config.artifact_endpoint(),
        )
        self.runtime: Runtime = load_runtime(
            directory, device=spec.device, engine=engine, threads=spec.threads
        )
        batching = BatchingConfig.from_dict(deployment.batching)
        if batching.memory_budget_bytes is None:
            batching = replace(batching, memory_budget_bytes=spec.memory_bytes)
        self.batcher = DynamicBatcher(self.runtime, batching, name=deployment.name)
        self.consuming = False
        self.retired_at: float | None = None
        self._last_count = (time.monotonic(), 0)

    def describe(self) -> dict[str, Any]:
        """Placement and figures, with the rate served since the last call."""
        stats = self.batcher.stats()
        now, done = time.monotonic(), stats["completed"] + stats["failed"]
        then, before = self._last_count
        self._last_count = (now, done)
        return {
            "deployment": self.deployment.name,
            "model_id": self.runtime.model_id,
            "engine": self.runtime.describe().get("engine"),
            "consuming": self.consuming,
            "served_per_s": (done - before) / max(now - then, 1e-6),
            "batching": stats,
        }

    def close(self) -> None:
        self.batcher.close()


# --- results: one Redis round trip per batch, then the acknowledgements ------------------------


@dataclass(eq=False)
class _Done:
    message: Any
    task_id: str
    embed: Mapping[str, Any]
    result: dict[str, Any] | None
    error: BaseException | None


class ResultWriter:
    """Stores results and acknowledges their messages from one thread, in batches.

    Results finish a batch at a time; writing them one by one would cost a round trip each
    (Celery's own store does a read and a write per task). Here everything finished since the
    last write goes in one pipeline, in Celery's result format so ``AsyncResult`` reads it, and
    only then are the messages acknowledged: a crash in between redelivers, never loses.
    """

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._queue: queue_module.SimpleQueue[_Done | None] = queue_module.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="result-writer", daemon=True)
        self._thread.start()

    def put(self, done: _Done) -> None:
        self._queue.put(done)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue_module.Empty:
                    break
                if item is None:
                    self._flush(batch)
                    return
                batch.append(item)
            self._flush(batch)

    def _flush(self, batch: list[_Done]) -> None:
        for pause in STORE_RETRIES_S:
            try:
                self._store(batch)
                break
            except Exception:
                logger.exception(
                    "could not store %d results; retrying in %.1f s", len(batch), pause
                )
                time.sleep(pause)
        else:
            # Not stored, so never acknowledged: back to the queue, for this replica or another
            # once the backend answers again. Better a request served twice than one lost.
            for done in batch:
                try:
                    done.message.reject(requeue=True)
                except Exception:
                    logger.exception("could not requeue %s", done.task_id)
            return
        for done in batch:
            try:
                done.message.ack()
            except Exception:
                logger.exception("ack failed for %s", done.task_id)
            if done.result is not None:
                self._call_back(done)

    def _store(self, batch: list[_Done]) -> None:
        backend = self.app.backend
        client = getattr(backend, "client", None)
        if client is None or not hasattr(backend, "get_key_for_task"):
            for done in batch:  # not Redis: the backend's own, one at a time
                if done.error is None:
                    backend.mark_as_done(done.task_id, done.result)
                else:
                    backend.mark_as_failure(done.task_id, done.error)
            return
        expires = int(backend.expires or 0)
        with client.pipeline(transaction=False) as pipe:
            for done in batch:
                key = backend.get_key_for_task(done.task_id)
                value = backend.encode(self._meta(done))
                pipe.set(key, value, ex=expires or None)
                pipe.publish(key, value)
            pipe.execute()

    def _meta(self, done: _Done) -> dict[str, Any]:
        backend = self.app.backend
        if done.error is None:
            state, result = "SUCCESS", done.result
        else:
            state, result = "FAILURE", backend.prepare_exception(done.error)
        meta = backend._get_result_meta(result=result, state=state, traceback=None, request=None)
        meta["task_id"] = done.task_id
        return meta

    def _call_back(self, done: _Done) -> None:
        for callback in done.embed.get("callbacks") or ():
            try:
                signature(callback, app=self.app).apply_async((done.result,))
            except Exception:
                logger.exception("callback of %s could not be sent", done.task_id)


# --- the slice worker --------------------------------------------------------------------------


class SliceWorker:
    """Everything one worker process does for its slice: limits, replicas, results, heartbeat."""

    def __init__(
        self,
        spec: SliceSpec,
        *,
        node: str | None = None,
        app: Celery | None = None,
        store: PoolStore | None = None,
        cgroup: bool | str = True,
        engine: str = "auto",
        prefetch: int = DEFAULT_PREFETCH,
    ) -> None:
        self.spec = spec
        self.node = node or socket.gethostname()
        self.hostname = slice_hostname(spec, self.node)
        self.app = app or make_app()
        self.store = store
        self.engine = engine
        self.prefetch = prefetch
        self.report: EnforcementReport = apply_slice(spec, cgroup=cgroup)
        for step in self.report.steps:
            logger.info(
                "%s: %s %s (%s)",
                spec.name,
                step.mechanism,
                "applied" if step.applied else "not applied",
                step.detail,
            )
        self.meter = ShareMeter(spec)
        self.replicas: dict[str, Replica] = {}
        self.plan_version = 0
        self._unloadable: dict[str, Deployment] = {}  # deployment versions that failed to load
        self.writer = ResultWriter(self.app)
        self._lock = threading.Lock()
        self._busy_seen = 0.0
        self._stop = threading.Event()

    @property
    def key(self) -> str:
        return f"{self.node}/{self.spec.name}"

    # --- serving -------------------------------------------------------------------------------

    def load(self, deployment: Deployment) -> Replica:
        """Load a deployment's model on this slice (kept if already loaded and unchanged)."""
        with self._lock:
            current = self.replicas.get(deployment.name)
        if current is not None and current.deployment == deployment:
            current.retired_at = None
            return current
        replica = Replica(deployment, self.spec, engine=self.engine)
        with self._lock:
            old, self.replicas[deployment.name] = self.replicas.get(deployment.name), replica
        if old is not None:
            replica.consuming = old.consuming
            old.close()
        logger.info("%s: loaded %s (%s)", self.key, deployment.name, replica.runtime.model_id)
        return replica

    def receive(self, message: Any) -> None:
        """One request message, as the consumer receives it: into its deployment's batcher."""
        task_id = str(message.headers.get("id", ""))
        embed: Mapping[str, Any] = {}
        try:
            args, kwargs, embed = message.decode()
            deployment, inputs, timeout_ms = _request_args(args, kwargs)
            _refuse_if_expired(message.headers.get("expires"))
            with self._lock:
                replica = self.replicas.get(deployment)
            if replica is None:
                # Never consumed without its model loaded; should it happen, another replica
                # of the deployment takes it rather than the caller getting an error.
                logger.error("%s: %r is not served here; requeued", self.key, deployment)
                message.reject(requeue=True)
                return
            arrays = decode_arrays(inputs)
            keys = _pack_keys(kwargs, arrays)
            future: Future[Any] = (
                replica.batcher.submit_pack(arrays, timeout_ms=timeout_ms)
                if keys is not False
                else replica.batcher.submit(arrays, timeout_ms=timeout_ms)
            )
        except Exception as exc:
            self.writer.put(_Done(message, task_id, embed or {}, None, exc))
            return
        future.add_done_callback(
            lambda f: self._finished(f, message, task_id, embed, replica, keys)
        )

    def _finished(
        self,
        future: Future[Any],
        message: Any,
        task_id: str,
        embed: Mapping[str, Any],
        replica: Replica,
        keys: list[str] | bool | None,
    ) -> None:
        error = future.exception()
        result = None
        if error is None:
            done = future.result()
            result = (
                _encoded_response(done, self.hostname, replica.runtime)
                if keys is False
                else _encoded_pack(done, keys, self.hostname, replica.runtime)
            )
        self.writer.put(_Done(message, task_id, embed, result, error))

    # --- following the plan --------------------------------------------------------------------

    def follow(self, interval_s: float = 0.2) -> None:
        """Until stopped: read the plan and apply it; beat the slice's state (``SLICE_BEAT_S``)."""
        last_beat = 0.0
        while not self._stop.is_set():
            try:
                self.sync()
                if time.monotonic() - last_beat >= SLICE_BEAT_S:
                    self.store.beat_slice(self.heartbeat())
                    last_beat = time.monotonic()
            except Exception:
                logger.exception("%s: could not follow the plan", self.key)
            self._stop.wait(interval_s)

    def sync(self) -> None:
        """Serve what the plan assigns to this slice, and only that, in the deployments' current
        form: a new champion changes the deployment, not the plan, and is loaded in place."""
        if self.store is None:
            raise RuntimeError("following the plan needs a PoolStore")
        version, assigned = self.store.assigned(self.key)
        self._apply(set(assigned))
        self.plan_version = version
        self._unload_cold()

    def _apply(self, assigned: set[str]) -> None:
        for name in sorted(assigned):
            deployment = self.store.deployment(name) if self.store else None
            if deployment is None:
                logger.warning("%s: plan names unknown deployment %s", self.key, name)
                continue
            if self._unloadable.get(name) == deployment:
                continue  # said once; the replica already loaded (if any) keeps serving
            try:
                replica = self.load(deployment)
            except Exception:
                logger.exception("%s: cannot load %s; keeping what serves it now", self.key, name)
                self._unloadable[name] = deployment
                continue
            if not replica.consuming:
                self.consume(name, True)
        with self._lock:
            taken_away = [r for n, r in self.replicas.items() if n not in assigned and r.consuming]
        for replica in taken_away:
            self.consume(replica.deployment.name, False)

    def consume(self, deployment: str, on: bool) -> None:
        """Start or stop taking the deployment's queue (through Celery's remote control, which
        runs the change in the consumer's own thread)."""
        control = self.app.control
        queue = queue_name(deployment)
        if on:
            control.add_consumer(queue, destination=[self.hostname], reply=True, timeout=5)
        else:
            control.cancel_consumer(queue, destination=[self.hostname], reply=True, timeout=5)
        with self._lock:
            replica = self.replicas.get(deployment)
            if replica is not None:
                replica.consuming = on
                replica.retired_at = None if on else time.monotonic()
        logger.info("%s: %s %s", self.key, "consuming" if on else "stopped consuming", queue)

    def _unload_cold(self) -> None:
        """Free a model no longer assigned once it has stayed cold for ``KEEP_WARM_S``."""
        now = time.monotonic()
        with self._lock:
            cold = [
                n
                for n, r in self.replicas.items()
                if r.retired_at is not None and now - r.retired_at > KEEP_WARM_S
            ]
            replicas = [self.replicas.pop(n) for n in cold]
        for replica in replicas:
            replica.close()

    # --- reporting -----------------------------------------------------------------------------

    def heartbeat(self) -> dict[str, Any]:
        """The slice's state for the pool: what the scheduler and the dashboards read."""
        with self._lock:
            replicas = list(self.replicas.values())
        described = [r.describe() for r in replicas]
        busy_total = sum(d["batching"]["busy_s"] for d in described)
        share = self.meter.sample(busy_seconds_total=busy_total).to_dict()
        return {
            "node": self.node,
            "name": self.spec.name,
            "device": self.spec.device,
            "kind": self.spec.kind,
            "compute_share": self.spec.compute_share,
            "memory_bytes": self.spec.memory_bytes,
            "hostname": self.hostname,
            "pid": os.getpid(),
            "busy": min(1.0, share.get("of_allocation") or 0.0),
            "serving": sorted(d["deployment"] for d in described if d["consuming"]),
            "plan_version": self.plan_version,
            "share": share,
            "enforcement": self.report.to_dict(),
            "replicas": described,
        }

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.stop()
        with self._lock:
            replicas = list(self.replicas.values())
        for replica in replicas:
            replica.close()
        self.writer.close()


def _request_args(args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[str, Any, Any]:
    values = [*args]
    names = ("deployment", "inputs", "timeout_ms")
    for name in names[len(values) :]:
        values.append(kwargs.get(name))
    if len(values) != 3 or not isinstance(values[0], str) or not isinstance(values[1], Mapping):
        raise ValueError("an inference request is (deployment, inputs, timeout_ms)")
    return values[0], values[1], values[2]


def _pack_keys(kwargs: Mapping[str, Any], arrays: Mapping[str, Any]) -> list[str] | bool | None:
    """False for a single request; for a pack (``inference.client.send_pack``) its row keys,
    or None where it named none."""
    if not kwargs.get("pack"):
        return False
    keys = kwargs.get("keys")
    if keys is None:
        return None
    rows = {len(a) for a in arrays.values()}
    if not isinstance(keys, list) or rows != {len(keys)}:
        raise ValueError(f"a pack needs one key per row: {len(keys)} keys, rows {sorted(rows)}")
    return [str(k) for k in keys]


def _refuse_if_expired(expires: str | None) -> None:
    if not expires:
        return
    deadline = datetime.fromisoformat(expires)
    if deadline.tzinfo is not None and deadline.timestamp() < time.time():
        raise RequestExpired(f"request expired at {expires} before it was served")


def _encoded_pack(
    pack: PackResponse, keys: list[str] | None, replica: str, runtime: Runtime
) -> dict[str, Any]:
    """A pack's result: every row's outputs, per chunk its timings (``read_pack`` reads it),
    and the totals a plain request's result has, so ``read_response`` reads it too."""
    return {
        "outputs": encode_arrays(pack.outputs),
        "keys": keys,
        "chunks": [list(chunk) for chunk in pack.chunks],
        "queue_ms": max(c[2] for c in pack.chunks),
        "compute_ms": sum(c[3] for c in pack.chunks),
        "batch_rows": pack.rows,
        "batch_requests": len(pack.chunks),
        "replica": replica,
        "model_id": runtime.model_id,
        "device": runtime.device,
    }


def _encoded_response(response: Response, replica: str, runtime: Runtime) -> dict[str, Any]:
    return {
        "outputs": encode_arrays(response.outputs),
        "queue_ms": response.queue_ms,
        "compute_ms": response.compute_ms,
        "batch_rows": response.batch_rows,
        "batch_requests": response.batch_requests,
        "replica": replica,
        "model_id": runtime.model_id,
        "device": runtime.device,
    }


# --- the Celery side ---------------------------------------------------------------------------

_worker: SliceWorker | None = None


def install_worker(worker: SliceWorker | None) -> None:
    """Make ``worker`` the one this process's consumer hands requests to (None to remove)."""
    global _worker
    _worker = worker


def current_worker() -> SliceWorker:
    if _worker is None:
        raise RuntimeError("no slice worker installed in this process")
    return _worker


def batching_strategy(task: Task, app: Celery, consumer: Any, **_: Any) -> Any:
    """Celery execution strategy of ``inference.infer``: each message goes to the batcher of
    its deployment as it arrives, instead of to the pool as a task of its own."""
    worker = current_worker()

    def on_message(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any):
        worker.receive(message)

    return on_message


class BatchedTask(Task):
    Strategy = "inference.worker:batching_strategy"


@shared_task(name=TASK_NAME, base=BatchedTask, acks_late=True, reject_on_worker_lost=True)
def infer(
    deployment: str,
    inputs: dict[str, Any],
    timeout_ms: float | None = None,
    pack: bool = False,
    keys: list[str] | None = None,
) -> dict[str, Any]:
    """Serve one request or pack outside a slice worker (tests, eager mode): the worker's
    strategy batches messages without calling this."""
    worker = current_worker()
    replica = worker.replicas.get(deployment)
    if replica is None:
        raise LookupError(f"{deployment!r} is not served on {worker.key}")
    arrays = decode_arrays(inputs)
    if pack:
        done = replica.batcher.infer_pack(arrays, timeout_ms=timeout_ms)
        return _encoded_pack(done, keys, worker.hostname, replica.runtime)
    response = replica.batcher.infer(arrays, timeout_ms=timeout_ms)
    return _encoded_response(response, worker.hostname, replica.runtime)


# --- the worker process ------------------------------------------------------------------------


def make_app(broker: str | None = None, backend: str | None = None) -> Celery:
    """A Celery app for slice workers (and for tests' clients), configured like fleet's:
    JSON only, late acks. Broker and backend are fleet's (``inference.config``)."""
    app = Celery(
        "haulmind-inference",
        # No Django fixup, even when DJANGO_SETTINGS_MODULE is set (tests, fleet's clients):
        # a slice worker knows nothing of fleet.
        fixups=[],
        # Never the process's current app: in a fleet process (an ingest replica sending packs,
        # a test) fleet's own shared tasks would then be sent through this app, to its default
        # queue, where no fleet worker listens. The slice worker's main() makes it current.
        set_as_current=False,
        broker=broker or config.broker_url(),
        backend=backend or config.result_backend_url(),
    )
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        result_expires=3600,
        worker_hijack_root_logger=False,
        # A worker whose host drops off the network (no FIN, no RST) keeps its prefetched
        # requests unacknowledged until RabbitMQ misses two of its heartbeats: Celery's 120 s
        # default would hold them for minutes; this hands them to other replicas in ~20 s.
        broker_heartbeat=config.broker_heartbeat_s(),
    )
    return app


def worker_argv(worker: SliceWorker, queues: Sequence[str], loglevel: str = "INFO") -> list[str]:
    """Celery worker arguments: the threads pool only sets the prefetch here (the strategy
    does the work), so ``--concurrency`` is the prefetch per queue."""
    # A slice with nothing assigned yet listens on a queue of its own, never Celery's default.
    queues = list(queues) or [f"{QUEUE_PREFIX}slice.{worker.hostname}"]
    return [
        "worker",
        "--pool=threads",
        f"--concurrency={worker.prefetch}",
        f"--queues={','.join(queues)}",
        "--prefetch-multiplier=1",
        f"--hostname={worker.hostname}",
        "--without-gossip",
        "--without-mingle",
        f"--loglevel={loglevel}",
    ]


def _json_arg(text: str) -> Any:
    """JSON, or ``@path`` to a JSON file."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    return json.loads(text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slice", required=True, help="SliceSpec as JSON or @file")
    parser.add_argument("--node", default=os.environ.get("HAULMIND_NODE") or socket.gethostname())
    parser.add_argument(
        "--deployment", action="append", default=[], help="serve this (JSON or @file), no plan"
    )
    parser.add_argument("--follow-plan", action="store_true", help="serve what the plan assigns")
    parser.add_argument("--prefetch", type=int, default=DEFAULT_PREFETCH)
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--no-cgroup", action="store_true", help="do not set a CPU quota")
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.loglevel, format="%(asctime)s %(name)s %(message)s")
    spec = SliceSpec.from_dict(_json_arg(args.slice))
    app = make_app()
    app.set_current()  # this process serves the pool alone
    worker = SliceWorker(
        spec,
        node=args.node,
        app=app,
        store=PoolStore() if args.follow_plan else None,
        cgroup=not args.no_cgroup,
        engine=args.engine,
        prefetch=args.prefetch,
    )
    fixed = [Deployment.from_dict(_json_arg(d)) for d in args.deployment]
    for deployment in fixed:
        worker.load(deployment).consuming = True
    # Run as ``-m`` this file is ``__main__``; the strategy Celery imports reads the global of
    # ``inference.worker``, so install the worker there.
    from inference import worker as this_module

    this_module.install_worker(worker)
    if args.follow_plan:
        # The consumer must exist before the plan can add queues to it: start following once
        # Celery reports the worker ready.
        from celery.signals import worker_ready

        worker_ready.connect(
            lambda **_: threading.Thread(target=worker.follow, daemon=True).start(), weak=False
        )
    try:
        app.worker_main(worker_argv(worker, [queue_name(d.name) for d in fixed], args.loglevel))
    finally:
        worker.close()
        if worker.store is not None:
            worker.store.redis.delete(worker.store.key("slice", worker.key))


if __name__ == "__main__":
    main()
