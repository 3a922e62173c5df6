"""Dynamic batching per replica: many small requests, one forward pass.

A transformer over one telemetry window costs nearly the same as over sixteen, so a replica that
runs requests one by one wastes most of its slice. The batcher (after Triton's dynamic batcher)
holds requests for at most ``max_queue_delay_ms``, stacks the ones whose inputs agree into one
batch of at most ``max_batch_size`` rows, runs it once, and hands each request its own rows back:

- a batch leaves as soon as it is full, or reaches one of ``preferred_batch_sizes``, or its
  oldest request has waited ``max_queue_delay_ms`` (so the delay bounds the latency it adds);
- a request may carry several rows; it is never split across batches, and one larger than
  ``max_batch_size`` (or than the slice's memory at ``bytes_per_row``) is refused at once with
  ``RequestTooLarge``, rather than queued to fail later;
- a pack (``submit_pack``: many windows in one message, ``inference.client``) is the exception:
  its rows are batch members, run in chunks of ``max_batch_size`` rows, each chunk a request;
- requests that do not fit wait their turn (bounded by ``max_queue_size`` if set, and each by
  its own timeout); an out-of-memory or any other error in a batch is narrowed by splitting the
  batch in halves and retrying, so only the request that really fails gets the error;
- queue time (arrival to the forward pass) and compute time (the forward pass) are measured
  apart for every request, and the replica's busy time is kept for its utilisation.

It is plain Python (threads and a condition variable) so it can be fed from anywhere: a test,
an HTTP handler, or the Celery consumer of a model deployment's queue, whose thread pool hands
each prefetched message to ``submit`` and waits on the returned future (see
``docs/inference.md``). ``instances`` > 1 runs several forward passes at once on one model
(Triton's instance groups): worth it when one pass leaves the slice idle part of the time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from inference.client import Response
from inference.slices import is_out_of_memory, release_memory

logger = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
ModelFn = Callable[[Arrays], Mapping[str, np.ndarray]]


@runtime_checkable
class RuntimeLike(Protocol):
    """What the batcher needs of ``models.Runtime``: ``run``, its inputs and its device."""

    device: str
    input_names: tuple[str, ...]
    manifest: dict[str, Any]

    def run(self, batch: Arrays) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class BatchingConfig:
    """How one replica batches. Defaults suit the CPU: a 2 ms wait costs little against a
    ~10 ms forward pass and fills batches under load.

    ``max_queue_size``: requests allowed to wait (None: unbounded) before ``QueueFull``.
    ``default_timeout_ms``: a request not started within it fails with ``QueueTimeout``
    (a stale trajectory prediction is worse than none). ``memory_budget_bytes`` and
    ``bytes_per_row``: the slice's memory and one row's working memory in a forward pass, to
    refuse a request that cannot fit the slice even alone.
    """

    max_batch_size: int = 32
    max_queue_delay_ms: float = 2.0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int | None = None
    default_timeout_ms: float | None = None
    instances: int = 1
    memory_budget_bytes: int | None = None
    bytes_per_row: int | None = None

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {self.max_batch_size}")
        if self.max_queue_delay_ms < 0:
            raise ValueError("max_queue_delay_ms must not be negative")
        bad = [p for p in self.preferred_batch_sizes if not 1 <= p <= self.max_batch_size]
        if bad:
            raise ValueError(f"preferred_batch_sizes {bad} outside 1..{self.max_batch_size}")
        if self.instances < 1:
            raise ValueError("instances must be at least 1")
        if self.max_queue_size is not None and self.max_queue_size < 1:
            raise ValueError("max_queue_size must be at least 1 (or None)")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["preferred_batch_sizes"] = list(self.preferred_batch_sizes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchingConfig:
        values = dict(data)
        values["preferred_batch_sizes"] = tuple(values.get("preferred_batch_sizes") or ())
        return cls(**values)


class BatchingError(Exception):
    """Base of the errors a replica gives a request instead of outputs."""


class RequestTooLarge(BatchingError, ValueError):
    """The request can never run on this replica's slice (too many rows, or too much memory)."""


class QueueFull(BatchingError):
    """Back-pressure: the replica's queue is at ``max_queue_size``; try another replica."""


class QueueTimeout(BatchingError, TimeoutError):
    """The request waited past its timeout without starting; it was not run."""


class BatcherClosed(BatchingError):
    """The replica is shutting down and takes no new requests."""


class SliceOutOfMemory(BatchingError, MemoryError):
    """The request alone ran out of its slice's memory (others in its batch were rerun)."""


@dataclass(eq=False)
class _Request:
    inputs: Arrays
    rows: int
    signature: tuple[Any, ...]
    future: Future[Response]
    enqueued: float
    deadline: float | None
    queue_ms: float = 0.0


@dataclass(frozen=True)
class PackResponse:
    """A pack's outputs (every row, in order) and per chunk ``(start, end, queue_ms,
    compute_ms, batch_rows, batch_requests)``: where each row's time went."""

    outputs: dict[str, np.ndarray]
    chunks: list[tuple[int, int, float, float, int, int]]

    @property
    def rows(self) -> int:
        return self.chunks[-1][1] if self.chunks else 0


def _gathered(futures: list[Future[Response]], sizes: list[int]) -> Future[PackResponse]:
    """One future for a pack's chunks: their outputs concatenated once all are done."""
    pack: Future[PackResponse] = Future()
    pack.set_running_or_notify_cancel()
    left = [len(futures)]
    lock = threading.Lock()

    def one_done(_: Future[Response]) -> None:
        with lock:
            left[0] -= 1
            if left[0]:
                return
        failed = next((f.exception() for f in futures if f.exception() is not None), None)
        if failed is not None:
            pack.set_exception(failed)
            return
        responses = [f.result() for f in futures]
        chunks, start = [], 0
        for response, size in zip(responses, sizes, strict=True):
            chunks.append(
                (
                    start,
                    start + size,
                    response.queue_ms,
                    response.compute_ms,
                    response.batch_rows,
                    response.batch_requests,
                )
            )
            start += size
        outputs = {
            k: responses[0].outputs[k]
            if len(responses) == 1
            else np.concatenate([r.outputs[k] for r in responses])
            for k in responses[0].outputs
        }
        pack.set_result(PackResponse(outputs, chunks))

    for future in futures:
        future.add_done_callback(one_done)
    return pack


@dataclass
class _Stats:
    """Counters and recent timings of one replica (read through ``DynamicBatcher.stats``)."""

    window: int
    started: float = field(default_factory=time.perf_counter)
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    timed_out: int = 0
    cancelled: int = 0
    batches: int = 0
    rows: int = 0
    splits: int = 0
    oom: int = 0
    busy_s: float = 0.0
    batch_rows: Counter[int] = field(default_factory=Counter)
    queue_ms: deque[float] = field(init=False)
    compute_ms: deque[float] = field(init=False)
    latency_ms: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        self.queue_ms, self.compute_ms, self.latency_ms = (
            deque(maxlen=self.window),
            deque(maxlen=self.window),
            deque(maxlen=self.window),
        )


def _percentiles(values: deque[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "mean": None}
    data = np.fromiter(values, dtype=np.float64)
    return {
        "p50": float(np.percentile(data, 50)),
        "p99": float(np.percentile(data, 99)),
        "mean": float(data.mean()),
    }


class DynamicBatcher:
    """One replica's request queue and its batching thread(s) in front of one model.

    ``model``: a ``models.Runtime`` (its declared input shapes are then checked at submit, and
    inputs cast to float32), or any callable taking a dict of stacked arrays and returning a
    dict of arrays with the batch first. ``input_shapes`` overrides the per-row shapes checked.
    ``device``: where the model runs, to release cached memory after an out-of-memory (taken
    from the runtime when it has one).

    Use it as a context manager, or call ``close``: its threads are daemons, but ``close``
    lets queued requests finish first.
    """

    def __init__(
        self,
        model: RuntimeLike | ModelFn,
        config: BatchingConfig | None = None,
        *,
        name: str = "replica",
        input_shapes: Mapping[str, tuple[int, ...]] | None = None,
        device: str | None = None,
        stats_window: int = 10_000,
    ) -> None:
        self.config = config or BatchingConfig()
        self.name = name
        if isinstance(model, RuntimeLike):
            self._call: ModelFn = model.run
            self.device = device or model.device
            shapes = input_shapes or {
                n: tuple(model.manifest["inputs"][n][1:]) for n in model.input_names
            }
            self._dtype: np.dtype[Any] | None = np.dtype(np.float32)
        else:
            self._call = model
            self.device = device or "cpu"
            shapes = input_shapes or {}
            self._dtype = None
        self.input_shapes: dict[str, tuple[int, ...]] = {k: tuple(v) for k, v in shapes.items()}
        self._queue: deque[_Request] = deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._closed = False
        self._stats = _Stats(stats_window)
        self._preferred = frozenset(self.config.preferred_batch_sizes)
        self._threads = [
            threading.Thread(target=self._serve, name=f"batcher-{name}-{i}", daemon=True)
            for i in range(self.config.instances)
        ]
        for thread in self._threads:
            thread.start()

    # --- the caller's side ---------------------------------------------------------------------

    def submit(
        self, inputs: Mapping[str, Any], *, timeout_ms: float | None = None
    ) -> Future[Response]:
        """Queue one request (arrays with the batch first; one or more rows) for the next batch.

        Refuses at once, raising, what can never run here: ``ValueError`` for inputs of the
        wrong names or shapes, ``RequestTooLarge``, ``QueueFull``, ``BatcherClosed``. Errors that
        happen later (``QueueTimeout``, ``SliceOutOfMemory``, the model's own) are set on the
        returned future.
        """
        arrays, rows = self._checked(inputs, whole=True)
        return self._enqueue([(arrays, rows)], timeout_ms)[0]

    def submit_pack(
        self, inputs: Mapping[str, Any], *, timeout_ms: float | None = None
    ) -> Future[PackResponse]:
        """Queue a pack: many rows (windows of many trucks) whose rows are batch members.

        A pack of at most ``max_batch_size`` rows is one request; a larger one runs in chunks
        of ``max_batch_size`` rows (fewer where the slice's memory allows fewer), each a
        request of its own that fills a forward pass, the last one batched with whatever else
        waits. The future gives every row's outputs in order, and each chunk's timings; it
        fails if any chunk does. Refusals as ``submit``, except that size alone is none.
        """
        arrays, rows = self._checked(inputs, whole=False)
        step = self._chunk_rows()
        parts = [
            ({k: v[start : start + step] for k, v in arrays.items()}, min(step, rows - start))
            for start in range(0, rows, step)
        ]
        futures = self._enqueue(parts, timeout_ms)
        return _gathered(futures, [n for _, n in parts])

    def infer_pack(
        self, inputs: Mapping[str, Any], *, timeout_ms: float | None = None
    ) -> PackResponse:
        """``submit_pack`` and wait for the pack's outputs."""
        return self.submit_pack(inputs, timeout_ms=timeout_ms).result()

    def _chunk_rows(self) -> int:
        config = self.config
        step = config.max_batch_size
        if config.memory_budget_bytes is not None and config.bytes_per_row:
            step = min(step, max(1, config.memory_budget_bytes // config.bytes_per_row))
        return step

    def _checked(self, inputs: Mapping[str, Any], *, whole: bool) -> tuple[Arrays, int]:
        try:
            return self._validated(inputs, whole=whole)
        except BatchingError as exc:
            with self._cond:
                self._stats.rejected[type(exc).__name__] += 1
            raise

    def _enqueue(
        self, parts: list[tuple[Arrays, int]], timeout_ms: float | None
    ) -> list[Future[Response]]:
        """Queue requests (one, or a pack's chunks) under one lock, waking the batcher once."""
        timeout_ms = timeout_ms if timeout_ms is not None else self.config.default_timeout_ms
        now = time.perf_counter()
        deadline = None if timeout_ms is None else now + timeout_ms / 1000
        requests = [
            _Request(
                inputs=arrays,
                rows=rows,
                signature=tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(arrays.items())),
                future=Future(),
                enqueued=now,
                deadline=deadline,
            )
            for arrays, rows in parts
        ]
        with self._cond:
            if self._closed:
                self._stats.rejected["BatcherClosed"] += 1
                raise BatcherClosed(f"replica {self.name} is closed")
            limit = self.config.max_queue_size
            if limit is not None and len(self._queue) >= limit:
                self._stats.rejected["QueueFull"] += 1
                raise QueueFull(f"replica {self.name}: {limit} requests already waiting")
            was_empty = not self._queue
            self._queue.extend(requests)
            self._queued_rows += sum(r.rows for r in requests)
            self._stats.submitted += len(requests)
            # Wake the batcher only when its decision may change: the first request starts the
            # delay, a full batch ends it (a preferred size or a deadline may too). Waking it on
            # every arrival would cost a context switch per request for nothing.
            if (
                was_empty
                or self._queued_rows >= self.config.max_batch_size
                or self._preferred
                or deadline is not None
                or self.config.instances > 1
            ):
                self._cond.notify()
        return [r.future for r in requests]

    def infer(self, inputs: Mapping[str, Any], *, timeout_ms: float | None = None) -> Response:
        """``submit`` and wait for the response (raises what the request failed with)."""
        return self.submit(inputs, timeout_ms=timeout_ms).result()

    def _validated(self, inputs: Mapping[str, Any], *, whole: bool = True) -> tuple[Arrays, int]:
        if not inputs:
            raise ValueError(f"replica {self.name}: a request needs at least one input")
        if self.input_shapes:
            missing = sorted(set(self.input_shapes) - set(inputs))
            if missing:
                raise ValueError(
                    f"replica {self.name}: missing inputs {missing} (needs {sorted(self.input_shapes)})"
                )
            names = list(self.input_shapes)
        else:
            names = list(inputs)
        arrays: Arrays = {}
        for name in names:
            # A copy: the caller may reuse its buffer before the batch leaves.
            array = np.array(inputs[name], dtype=self._dtype, copy=True)
            if array.ndim == 0:
                raise ValueError(f"replica {self.name}: {name} needs a batch dimension")
            expected = self.input_shapes.get(name)
            if expected is not None and array.shape[1:] != expected:
                raise ValueError(
                    f"replica {self.name}: {name} rows must be {list(expected)}, "
                    f"got {list(array.shape[1:])}"
                )
            arrays[name] = array
        sizes = {a.shape[0] for a in arrays.values()}
        if len(sizes) != 1:
            raise ValueError(
                f"replica {self.name}: inputs have different row counts {sorted(sizes)}"
            )
        rows = sizes.pop()
        if rows < 1:
            raise ValueError(f"replica {self.name}: a request needs at least one row")
        config = self.config
        if not whole:
            return arrays, rows  # a pack: run in chunks that fit
        if rows > config.max_batch_size:
            raise RequestTooLarge(
                f"request of {rows} rows exceeds replica {self.name}'s max_batch_size "
                f"{config.max_batch_size}: split it, or send it to a deployment with larger slices"
            )
        if config.memory_budget_bytes is not None and config.bytes_per_row is not None:
            need = rows * config.bytes_per_row
            if need > config.memory_budget_bytes:
                raise RequestTooLarge(
                    f"request of {rows} rows needs about {need} bytes, replica {self.name}'s "
                    f"slice has {config.memory_budget_bytes}: split it, or send it to a "
                    f"deployment with larger slices"
                )
        return arrays, rows

    # --- the replica's side --------------------------------------------------------------------

    def _serve(self) -> None:
        while (batch := self._next_batch()) is not None:
            started = time.perf_counter()
            live = [r for r in batch if r.future.set_running_or_notify_cancel()]
            with self._cond:
                self._stats.cancelled += len(batch) - len(live)
            for request in live:
                request.queue_ms = (started - request.enqueued) * 1000
            if live:
                self._run(live)

    def _next_batch(self) -> list[_Request] | None:
        with self._cond:
            while True:
                now = time.perf_counter()
                self._drop_expired(now)
                if not self._queue:
                    if self._closed:
                        return None
                    self._cond.wait()
                    continue
                batch, wait = self._form(now)
                if batch:
                    taken = {id(r) for r in batch}
                    self._queue = deque(r for r in self._queue if id(r) not in taken)
                    self._queued_rows -= sum(r.rows for r in batch)
                    if self._queue:
                        self._cond.notify()  # another instance may start on the rest
                    return batch
                deadlines = [r.deadline for r in self._queue if r.deadline is not None]
                if deadlines:
                    wait = min(wait, max(0.0, min(deadlines) - now))
                self._cond.wait(timeout=wait)

    def _form(self, now: float) -> tuple[list[_Request], float]:
        """The batch to run now (empty: wait that many seconds for more requests).

        Requests are taken in arrival order among those whose inputs stack with the oldest's;
        a request is never split, so a batch is full when the next one would not fit.
        """
        head = self._queue[0]
        limit = self.config.max_batch_size
        picked: list[_Request] = []
        rows, full = 0, False
        for request in self._queue:
            if request.signature != head.signature:
                continue
            if rows + request.rows > limit:
                full = True
                break
            picked.append(request)
            rows += request.rows
            if rows == limit:
                full = True
                break
        if full:
            return picked, 0.0
        if self._preferred:
            acc, best = 0, 0
            for i, request in enumerate(picked, start=1):
                acc += request.rows
                if acc in self._preferred:
                    best = i
            if best:
                return picked[:best], 0.0
        due = head.enqueued + self.config.max_queue_delay_ms / 1000
        if now >= due or self._closed:
            return picked, 0.0
        return [], due - now

    def _drop_expired(self, now: float) -> None:
        expired = [
            r
            for r in self._queue
            if r.future.cancelled() or (r.deadline is not None and now >= r.deadline)
        ]
        if not expired:
            return
        gone = {id(r) for r in expired}
        self._queue = deque(r for r in self._queue if id(r) not in gone)
        self._queued_rows -= sum(r.rows for r in expired)
        for request in expired:
            if request.future.cancelled():
                self._stats.cancelled += 1
                continue
            waited = (now - request.enqueued) * 1000
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(
                    QueueTimeout(f"replica {self.name}: not started within {waited:.1f} ms")
                )
                self._stats.timed_out += 1

    def _run(self, batch: list[_Request]) -> None:
        """One forward pass for ``batch``; on failure, halves until only the culprits fail."""
        total = sum(r.rows for r in batch)
        stacked = {
            name: (
                batch[0].inputs[name]
                if len(batch) == 1
                else np.concatenate([r.inputs[name] for r in batch])
            )
            for name in batch[0].inputs
        }
        t0 = time.perf_counter()
        try:
            outputs = self._call(stacked)
        except Exception as exc:
            elapsed = time.perf_counter() - t0
            oom = is_out_of_memory(exc)
            with self._cond:
                self._stats.busy_s += elapsed
                self._stats.oom += oom
            if oom:
                release_memory(self.device)
            if len(batch) == 1:
                error: BaseException = exc
                if oom:
                    error = SliceOutOfMemory(
                        f"request of {total} rows ran out of replica {self.name}'s slice memory "
                        f"on {self.device}: {exc}"
                    )
                    error.__cause__ = exc
                self._fail(batch, error)
                return
            logger.info(
                "replica %s: batch of %d requests failed (%s); retrying in halves",
                self.name,
                len(batch),
                type(exc).__name__,
            )
            with self._cond:
                self._stats.splits += 1
            mid = len(batch) // 2
            self._run(batch[:mid])
            self._run(batch[mid:])
            return
        elapsed = time.perf_counter() - t0
        compute_ms = elapsed * 1000
        bad = {k: np.shape(v) for k, v in outputs.items() if np.ndim(v) == 0 or len(v) != total}
        if bad:
            self._fail(
                batch,
                RuntimeError(
                    f"replica {self.name}: the model returned {bad} for a batch of {total} rows"
                ),
            )
            return
        with self._cond:
            stats = self._stats
            stats.busy_s += elapsed
            stats.batches += 1
            stats.rows += total
            stats.batch_rows[total] += 1
            stats.completed += len(batch)
            for request in batch:
                stats.queue_ms.append(request.queue_ms)
                stats.compute_ms.append(compute_ms)
                stats.latency_ms.append(request.queue_ms + compute_ms)
        start = 0
        for request in batch:
            end = start + request.rows
            own = {k: np.array(v[start:end]) for k, v in outputs.items()}
            request.future.set_result(
                Response(own, request.queue_ms, compute_ms, total, len(batch))
            )
            start = end

    def _fail(self, batch: list[_Request], error: BaseException) -> None:
        with self._cond:
            self._stats.failed += len(batch)
        for request in batch:
            request.future.set_exception(error)

    # --- lifecycle and figures -----------------------------------------------------------------

    def queue_depth(self) -> tuple[int, int]:
        """Requests and rows waiting (what the scheduler scales on)."""
        with self._cond:
            return len(self._queue), self._queued_rows

    def stats(self) -> dict[str, Any]:
        """The replica's figures: counts, batch sizes, queue / compute / total latency
        percentiles (ms) over the last ``stats_window`` requests, busy time and utilisation."""
        with self._cond:
            s = self._stats
            elapsed = max(time.perf_counter() - s.started, 1e-9)
            depth = len(self._queue), self._queued_rows
            return {
                "name": self.name,
                "device": self.device,
                "config": self.config.to_dict(),
                "submitted": s.submitted,
                "completed": s.completed,
                "failed": s.failed,
                "rejected": dict(s.rejected),
                "timed_out": s.timed_out,
                "cancelled": s.cancelled,
                "batches": s.batches,
                "rows": s.rows,
                "mean_batch_rows": s.rows / s.batches if s.batches else None,
                "batch_rows": dict(sorted(s.batch_rows.items())),
                "splits": s.splits,
                "out_of_memory": s.oom,
                "queue_requests": depth[0],
                "queue_rows": depth[1],
                "queue_ms": _percentiles(s.queue_ms),
                "compute_ms": _percentiles(s.compute_ms),
                "latency_ms": _percentiles(s.latency_ms),
                "busy_s": s.busy_s,
                "utilisation": s.busy_s / (elapsed * self.config.instances),
                "uptime_s": elapsed,
            }

    def close(self, *, drain: bool = True, timeout: float | None = 30.0) -> None:
        """Stop taking requests; with ``drain`` run what is queued (without waiting out the
        delay), else fail it with ``BatcherClosed``. Waits for the threads to finish."""
        with self._cond:
            self._closed = True
            if not drain:
                pending, self._queue, self._queued_rows = list(self._queue), deque(), 0
                for request in pending:
                    if request.future.set_running_or_notify_cancel():
                        request.future.set_exception(
                            BatcherClosed(f"replica {self.name} closed before running it")
                        )
            self._cond.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> DynamicBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
