"""Load for the pool's benchmarks: requests sent as Celery tasks, latencies measured end to end.

A benchmark client must cost little per request or it measures itself: it sends through the
caller's Celery app like any producer, but reads results from one Redis subscription to every
result channel (the workers publish each result as they store it) instead of a subscription
per ``AsyncResult``. Latency is from just before the send to the moment the result arrives:
what a caller sees, broker and queueing included.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis
from celery import Celery

from inference.client import TASK_NAME, queue_name, send_pack
from inference.wire import encode_arrays

RESULT_CHANNEL = "celery-task-meta-"  # Celery's Redis backend publishes each result here


@dataclass
class Tally:
    """One deployment's outcome over a measured interval."""

    sent: int = 0
    done: int = 0
    failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    # Windows served (a pack counts its rows; a single request one) and the rows of the
    # forward passes they ran in, as the results report them: whether batches were full.
    rows: int = 0
    batch_rows: int = 0
    batches: int = 0

    def mean_batch_rows(self) -> float | None:
        return self.batch_rows / self.batches if self.batches else None

    def p99_ms(self) -> float | None:
        return float(np.percentile(self.latencies_ms, 99)) if self.latencies_ms else None

    def p50_ms(self) -> float | None:
        return float(np.percentile(self.latencies_ms, 50)) if self.latencies_ms else None


class LoadClient:
    """Sends requests and matches their results as they are published."""

    def __init__(self, app: Celery, redis_url: str, *, id_prefix: str = "") -> None:
        """``id_prefix`` starts every task id this client sends, so that several clients each
        subscribe to their own results only."""
        self.app = app
        self.id_prefix = id_prefix
        self.redis = redis.Redis.from_url(redis_url)
        self._pending: dict[str, tuple[str, float, int]] = {}
        self._lock = threading.Lock()
        self.tallies: dict[str, Tally] = defaultdict(Tally)
        self.recording = False
        self.on_result: Callable[[str], None] | None = None
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe(RESULT_CHANNEL + id_prefix + "*")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="results", daemon=True)
        self._thread.start()
        self._producer = app.amqp.producer_pool.acquire(block=True)

    def send(self, deployment: str, encoded_inputs: Mapping[str, Any]) -> None:
        """One request (inputs already encoded: the client should not pay for it per send)."""
        task_id = self._register(deployment, 1)
        self.app.send_task(
            TASK_NAME,
            args=[deployment, encoded_inputs, None],
            queue=queue_name(deployment),
            task_id=task_id,
            producer=self._producer,
        )

    def send_pack(self, deployment: str, inputs: Mapping[str, np.ndarray]) -> None:
        """One pack (``inference.client.send_pack``: many windows, one message), its rows
        counted as windows when its result arrives."""
        rows = int(next(iter(inputs.values())).shape[0])
        task_id = self._register(deployment, rows)
        send_pack(self.app, deployment, inputs, task_id=task_id, producer=self._producer)

    def _register(self, deployment: str, rows: int) -> str:
        # Registered before the send: a fast worker's result can arrive before send returns.
        task_id = f"{self.id_prefix}{uuid.uuid4()}"
        with self._lock:
            self._pending[task_id] = (deployment, time.perf_counter(), rows)
            if self.recording:
                self.tallies[deployment].sent += 1
        return task_id

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if message is None:
                continue
            self._received(message)

    def _received(self, message: Mapping[str, Any]) -> None:
        task_id = message["channel"].decode().removeprefix(RESULT_CHANNEL)
        arrived = time.perf_counter()
        with self._lock:
            entry = self._pending.pop(task_id, None)
        if entry is None:
            return
        deployment, started, rows = entry
        meta = json.loads(message["data"])
        ok = meta.get("status") == "SUCCESS"
        passes = _forward_passes(meta.get("result")) if ok else []
        with self._lock:
            if self.recording:
                tally = self.tallies[deployment]
                if ok:
                    tally.done += 1
                    tally.rows += rows
                    tally.latencies_ms.append((arrived - started) * 1000)
                    tally.batch_rows += sum(passes)
                    tally.batches += len(passes)
                else:
                    tally.failed += 1
        if self.on_result is not None:
            self.on_result(deployment)

    def outstanding(self) -> int:
        with self._lock:
            return len(self._pending)

    def start_recording(self) -> None:
        with self._lock:
            self.tallies = defaultdict(Tally)
            self.recording = True

    def stop_recording(self) -> dict[str, Tally]:
        with self._lock:
            self.recording = False
            return dict(self.tallies)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait for every request sent to come back (True) or the timeout (False)."""
        deadline = time.monotonic() + timeout_s
        while self.outstanding() and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.outstanding()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._pubsub.close()
        self._producer.release()


def _forward_passes(result: Any) -> list[int]:
    """The rows of the forward passes a result's windows ran in: one per request, one per
    chunk of a pack."""
    if not isinstance(result, Mapping):
        return []
    chunks = result.get("chunks")
    if chunks:
        return [int(chunk[4]) for chunk in chunks]
    return [int(result.get("batch_rows") or 0)]


def closed_loop(
    client: LoadClient,
    deployment: str,
    encoded_inputs: list[Mapping[str, Any]],
    *,
    concurrency: int,
    warmup_s: float,
    seconds: float,
    packs: bool = False,
    on_recording: Callable[[bool], None] | None = None,
) -> Tally:
    """Keep ``concurrency`` requests in flight for ``warmup_s + seconds``; measure the last
    ``seconds``. Returns the tally with the measured interval in ``seconds``.

    ``packs``: ``encoded_inputs`` are packs (arrays of many rows, not encoded: ``send_pack``
    encodes them as any producer's call would), each sent as one message. ``on_recording``:
    called with True as the measured interval starts and False as it ends (to measure
    something else over exactly that interval)."""
    slots = threading.Semaphore(concurrency)
    client.on_result = lambda _: slots.release()
    end_warmup = time.monotonic() + warmup_s
    end = end_warmup + seconds
    i = 0
    recording = False
    while time.monotonic() < end:
        if not recording and time.monotonic() >= end_warmup:
            client.start_recording()
            recording = True
            if on_recording is not None:
                on_recording(True)
        if slots.acquire(timeout=0.5):
            request = encoded_inputs[i % len(encoded_inputs)]
            if packs:
                client.send_pack(deployment, request)
            else:
                client.send(deployment, request)
            i += 1
    if on_recording is not None:
        on_recording(False)
    tally = client.stop_recording().get(deployment, Tally())
    client.on_result = None
    client.wait_idle(30)
    return tally


def encoded_requests(inputs: Mapping[str, np.ndarray], count: int) -> list[dict[str, Any]]:
    """``count`` one-row requests cut from stacked inputs, encoded once."""
    rows = next(iter(inputs.values())).shape[0]
    return [
        encode_arrays({k: v[i % rows : i % rows + 1] for k, v in inputs.items()})
        for i in range(count)
    ]


def packed_requests(
    inputs: Mapping[str, np.ndarray], rows: int, count: int
) -> list[dict[str, np.ndarray]]:
    """``count`` packs of ``rows`` windows each, cut in turn from stacked inputs (wrapping)."""
    total = next(iter(inputs.values())).shape[0]
    packs = []
    for i in range(count):
        index = (np.arange(rows) + i * rows) % total
        packs.append({k: np.ascontiguousarray(v[index]) for k, v in inputs.items()})
    return packs
