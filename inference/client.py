"""The request client of the pool: sending requests and packs, reading their results.

Importable without PyTorch (an import-linter contract): a producer (fleet's live serving, a
benchmark's client process, another service) needs Celery, NumPy and the wire format, never
the runtime that serves the request.

**One request**: ``send_request`` sends ``inference.infer(deployment, inputs, timeout_ms)``,
inputs of one or a few rows (at most the deployment's ``max_batch_size``), and
``read_response`` reads its result.

**A pack**: many windows of one deployment in one message (``send_pack``): the inputs stacked,
``[N, C, L]`` and the like, with a key per row (a truck id). The broker, the consumer and the
result write are paid once per message instead of once per window. The slice worker runs the
pack's rows as batch members (a pack larger than the batch cap in chunks, each chunk a full
batch) and stores one result: the outputs of every row, and per chunk where its time went.
``read_pack`` gives the per-row results back, each a ``Response`` of one row as a single
request would have had it.

**How big a pack**: ``pack_sizes`` cuts a tick's windows for one deployment into packs that
each finish within a share of the deployment's SLO at the measured cost per window (1,000
windows at 0.28 ms would hold one replica 280 ms, against the trajectory head's 50 ms), and
into at least as many packs as the deployment has replicas when there is work enough for each:
the packs go to the deployment's one queue, and its replicas take them side by side.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from celery import Celery
from celery.result import AsyncResult

from inference.wire import decode_arrays, encode_arrays

TASK_NAME = "inference.infer"
QUEUE_PREFIX = "inference."
# One pack's compute may take this share of its deployment's p99 SLO: the rest is for the
# broker, the queue ahead of it and the result's way back.
PACK_SLO_SHARE = 0.5


def queue_name(deployment: str) -> str:
    """The one queue all replicas of a deployment consume (never one queue per slice: a dead
    node's slice queue would strand its work)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]*", deployment):
        raise ValueError(f"bad deployment name {deployment!r}")
    return QUEUE_PREFIX + deployment


@dataclass(frozen=True)
class Response:
    """One request's outputs (its own rows only) and where its time went."""

    outputs: dict[str, np.ndarray]
    queue_ms: float
    compute_ms: float
    batch_rows: int
    batch_requests: int

    @property
    def latency_ms(self) -> float:
        return self.queue_ms + self.compute_ms


# --- one request --------------------------------------------------------------------------------


def send_request(
    app: Celery,
    deployment: str,
    inputs: Mapping[str, np.ndarray],
    *,
    timeout_ms: float | None = None,
    queue: str | None = None,
    **options: Any,
) -> AsyncResult:
    """Send one request to the deployment's queue through the caller's own Celery app.

    ``queue`` comes from the routing table when the caller has one (``PoolStore.routes``);
    ``options`` go to ``send_task`` (``link`` for a callback task the caller owns, ``expires``).
    """
    return app.send_task(
        TASK_NAME,
        args=[deployment, encode_arrays(inputs), timeout_ms],
        queue=queue or queue_name(deployment),
        **options,
    )


def read_response(result: Mapping[str, Any]) -> Response:
    """A task's result back as a ``Response`` (outputs decoded)."""
    return Response(
        outputs=decode_arrays(result["outputs"]),
        queue_ms=float(result["queue_ms"]),
        compute_ms=float(result["compute_ms"]),
        batch_rows=int(result["batch_rows"]),
        batch_requests=int(result["batch_requests"]),
    )


# --- packs --------------------------------------------------------------------------------------


def pack_kwargs(keys: Sequence[str] | None) -> dict[str, Any]:
    """The task kwargs that make a request a pack (``keys``: one per row, echoed back)."""
    return {"pack": True, "keys": list(keys) if keys is not None else None}


def send_pack(
    app: Celery,
    deployment: str,
    inputs: Mapping[str, np.ndarray],
    *,
    keys: Sequence[str] | None = None,
    timeout_ms: float | None = None,
    queue: str | None = None,
    **options: Any,
) -> AsyncResult:
    """Send many windows of one deployment as one message; its result reads with ``read_pack``.

    ``inputs``: arrays with the rows first, all the same number of rows N; ``keys``: N strings
    naming the rows (truck ids), returned in the result. ``options`` as for ``send_request``.
    """
    rows = {int(np.shape(v)[0]) for v in inputs.values()}
    if len(rows) != 1:
        raise ValueError(f"a pack's inputs must have one row count, got {sorted(rows)}")
    if keys is not None and len(keys) != next(iter(rows)):
        raise ValueError(f"{len(keys)} keys for a pack of {next(iter(rows))} rows")
    return app.send_task(
        TASK_NAME,
        args=[deployment, encode_arrays(inputs), timeout_ms],
        kwargs=pack_kwargs(keys),
        queue=queue or queue_name(deployment),
        **options,
    )


def read_pack(result: Mapping[str, Any]) -> list[Response]:
    """A pack's result as one ``Response`` per row, in the order the rows were sent. Each has
    its own row's outputs (a batch of one) and the timings of the chunk it ran in."""
    outputs = decode_arrays(result["outputs"])
    chunks = result.get("chunks")
    if chunks is None:  # a plain request's result: every row shares its timings
        rows = len(next(iter(outputs.values()))) if outputs else 0
        timings = [result[k] for k in ("queue_ms", "compute_ms", "batch_rows", "batch_requests")]
        chunks = [[0, rows, *timings]]
    out: list[Response] = []
    for start, end, queue_ms, compute_ms, batch_rows, batch_requests in chunks:
        for row in range(int(start), int(end)):
            out.append(
                Response(
                    outputs={k: v[row : row + 1] for k, v in outputs.items()},
                    queue_ms=float(queue_ms),
                    compute_ms=float(compute_ms),
                    batch_rows=int(batch_rows),
                    batch_requests=int(batch_requests),
                )
            )
    return out


def pack_cap(
    slo_ms: float,
    ms_per_row: float | None,
    *,
    default_rows: int,
    share: float = PACK_SLO_SHARE,
) -> int:
    """The most windows one pack may hold: its compute at ``ms_per_row`` (measured on the
    deployment's replicas) within ``share`` of the SLO. Unmeasured: ``default_rows`` (one
    forward pass, the deployment's ``max_batch_size``)."""
    if not ms_per_row or ms_per_row <= 0:
        return max(1, int(default_rows))
    return max(1, int(slo_ms * share / ms_per_row))


def pack_sizes(rows: int, cap: int, *, replicas: int = 1, min_rows: int = 1) -> list[int]:
    """How to cut ``rows`` windows into packs: none over ``cap``, at least one per replica
    while each still gets ``min_rows`` (a full forward pass), as even as can be."""
    if rows <= 0:
        return []
    parts = max(math.ceil(rows / max(1, cap)), min(max(1, replicas), rows // max(1, min_rows)))
    parts = max(1, min(parts, rows))
    base, extra = divmod(rows, parts)
    return [base + (i < extra) for i in range(parts)]
