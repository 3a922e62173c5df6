"""A replica worker: one process serving one model deployment on one slice, fed by Celery.

    HAULMIND_REPLICA='{"deployment": "fault", "checkpoint": "var/models/fault/3",
                       "slice": {...SliceSpec...}, "batching": {"max_batch_size": 32}}' \\
        python -m inference.worker

How one Celery task per request still becomes one forward pass per batch: the worker runs
Celery's ``threads`` pool with ``max_batch_size * (instances + 1)`` threads and a prefetch
multiplier of 1, so it holds at most that many unacknowledged messages from its deployment's
queue. Each thread hands its message's inputs to the replica's ``DynamicBatcher`` and waits on
the future; the batcher stacks whatever is waiting into one pass. One batch can fill while
another runs, and no more is taken off the shared queue than this replica can start soon, so a
replica that joins later (scale-up) finds work waiting in the broker, not stranded here.

Late acknowledgement (``acks_late``): a message is acknowledged after its result is stored, so
if the worker dies its unacknowledged messages go back to the queue. On RabbitMQ that happens
the moment the connection drops and another replica of the deployment serves them; on Redis only
after its visibility timeout (an hour by default), which is why RabbitMQ is the broker of choice.

The slice's limits are applied and the model loaded *before* the consumer starts, so no message
is taken by a process that cannot serve it. Messages and results are JSON (arrays as base64,
``inference.wire``), never pickle. Callers route with ``send_request`` and read results with
``read_response``; they pass their own Celery app (fleet's), so nothing here imports fleet.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from celery import Celery, shared_task
from celery.result import AsyncResult

from inference.batching import BatchingConfig, DynamicBatcher, Response
from inference.slices import EnforcementReport, ShareMeter, SliceSpec, apply_slice
from inference.wire import decode_arrays, encode_arrays
from models import Runtime, load_runtime

logger = logging.getLogger(__name__)

TASK_NAME = "inference.infer"
QUEUE_PREFIX = "inference."
ENV_VAR = "HAULMIND_REPLICA"


def queue_name(deployment: str) -> str:
    """The one queue all replicas of a deployment consume (never one queue per slice: a dead
    node's slice queue would strand its work)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]*", deployment):
        raise ValueError(f"bad deployment name {deployment!r}")
    return QUEUE_PREFIX + deployment


def worker_concurrency(batching: BatchingConfig) -> int:
    """Threads (and so unacknowledged messages) a replica holds: one batch per instance in its
    forward pass and one more filling behind them."""
    return batching.max_batch_size * (batching.instances + 1)


@dataclass(frozen=True)
class ReplicaConfig:
    """What one worker process serves: a deployment's model version on one slice."""

    deployment: str
    checkpoint: str
    slice: SliceSpec
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    engine: str = "auto"
    node: str = field(default_factory=socket.gethostname)

    def __post_init__(self) -> None:
        queue_name(self.deployment)

    @property
    def hostname(self) -> str:
        """Celery's worker name: unique per deployment, slice and node."""
        slice_part = re.sub(r"[^A-Za-z0-9]+", "-", self.slice.name)
        return f"{self.deployment}-{slice_part}@{self.node}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "checkpoint": self.checkpoint,
            "slice": self.slice.to_dict(),
            "batching": self.batching.to_dict(),
            "engine": self.engine,
            "node": self.node,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplicaConfig:
        values = dict(data)
        values["slice"] = SliceSpec.from_dict(values["slice"])
        values["batching"] = BatchingConfig.from_dict(values.get("batching") or {})
        values["checkpoint"] = str(values["checkpoint"])
        return cls(**values)

    @classmethod
    def from_text(cls, text: str) -> ReplicaConfig:
        """JSON, or ``@path`` to a JSON file."""
        if text.startswith("@"):
            text = Path(text[1:]).read_text()
        return cls.from_dict(json.loads(text))


class Replica:
    """The serving side of a worker process: slice limits, the loaded runtime, the batcher."""

    def __init__(self, config: ReplicaConfig, *, cgroup: bool | str = True) -> None:
        self.config = config
        self.report: EnforcementReport = apply_slice(config.slice, cgroup=cgroup)
        for step in self.report.steps:
            logger.info(
                "%s: %s %s (%s)",
                config.slice.name,
                step.mechanism,
                "applied" if step.applied else "not applied",
                step.detail,
            )
        self.runtime: Runtime = load_runtime(
            config.checkpoint,
            device=config.slice.device,
            engine=config.engine,
            threads=config.slice.threads,
        )
        batching = config.batching
        if batching.memory_budget_bytes is None:
            batching = replace(batching, memory_budget_bytes=config.slice.memory_bytes)
        self.batcher = DynamicBatcher(self.runtime, batching, name=config.hostname)
        self.meter = ShareMeter(config.slice)

    def infer(self, inputs: Mapping[str, Any], timeout_ms: float | None = None) -> dict[str, Any]:
        """One request as the task receives it (encoded arrays) -> the encoded response."""
        response = self.batcher.infer(decode_arrays(inputs), timeout_ms=timeout_ms)
        return {
            "outputs": encode_arrays(response.outputs),
            "queue_ms": response.queue_ms,
            "compute_ms": response.compute_ms,
            "batch_rows": response.batch_rows,
            "batch_requests": response.batch_requests,
            "replica": self.config.hostname,
            "model_id": self.runtime.model_id,
            "device": self.runtime.device,
        }

    def describe(self) -> dict[str, Any]:
        """What the pool reports for this replica: placement, enforcement, batching figures
        and the delivered share since the last call."""
        stats = self.batcher.stats()
        return {
            "replica": self.config.to_dict(),
            "runtime": self.runtime.describe(),
            "enforcement": self.report.to_dict(),
            "batching": stats,
            "share": self.meter.sample(busy_seconds_total=stats["busy_s"]).to_dict(),
        }

    def close(self) -> None:
        self.batcher.close()


_replica: Replica | None = None
_replica_lock = threading.Lock()


def install_replica(replica: Replica | None) -> None:
    """Make ``replica`` the one this process's ``infer`` tasks use (None to remove it)."""
    global _replica
    with _replica_lock:
        _replica = replica


def current_replica() -> Replica:
    if _replica is None:
        raise RuntimeError("no replica installed in this worker process")
    return _replica


class WrongDeployment(RuntimeError):
    """A message reached a replica of another deployment: a routing bug, never served."""


@shared_task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)
def infer(
    deployment: str, inputs: dict[str, Any], timeout_ms: float | None = None
) -> dict[str, Any]:
    """Serve one request through this worker's replica (batched with its neighbours)."""
    replica = current_replica()
    if replica.config.deployment != deployment:
        raise WrongDeployment(
            f"request for {deployment!r} reached a replica of {replica.config.deployment!r}"
        )
    return replica.infer(inputs, timeout_ms)


# --- the caller's side -------------------------------------------------------------------------


def send_request(
    app: Celery,
    deployment: str,
    inputs: Mapping[str, np.ndarray],
    *,
    timeout_ms: float | None = None,
    **options: Any,
) -> AsyncResult:
    """Send one request to the deployment's queue through the caller's own Celery app.

    ``options`` go to ``send_task`` (``link`` for a callback task the caller owns, ``expires``,
    ``priority``...).
    """
    return app.send_task(
        TASK_NAME,
        args=[deployment, encode_arrays(inputs), timeout_ms],
        queue=queue_name(deployment),
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


# --- the worker process ------------------------------------------------------------------------


def make_app(broker: str | None = None, backend: str | None = None) -> Celery:
    """A Celery app for replica workers (and for tests' clients), configured like fleet's:
    JSON only, late acks, prefetch multiplier 1. Broker and backend come from the same
    environment variables as fleet's settings."""
    app = Celery(
        "haulmind-inference",
        broker=broker
        or os.environ.get("CELERY_BROKER_URL")
        or "amqp://guest:guest@127.0.0.1:5672//",
        backend=backend
        or os.environ.get("CELERY_RESULT_BACKEND")
        or os.environ.get("REDIS_URL")
        or "redis://127.0.0.1:6379/0",
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
    )
    return app


def worker_argv(config: ReplicaConfig, loglevel: str = "INFO") -> list[str]:
    """Celery worker arguments for a replica (threads pool, its queue, its concurrency)."""
    return [
        "worker",
        "--pool=threads",
        f"--concurrency={worker_concurrency(config.batching)}",
        f"--queues={queue_name(config.deployment)}",
        "--prefetch-multiplier=1",
        f"--hostname={config.hostname}",
        "--without-gossip",
        "--without-mingle",
        f"--loglevel={loglevel}",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m inference.worker [--replica JSON|@file]`` (default: ``$HAULMIND_REPLICA``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replica", default=os.environ.get(ENV_VAR))
    parser.add_argument("--no-cgroup", action="store_true", help="do not set a CPU quota")
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    if not args.replica:
        parser.error(f"give --replica or set {ENV_VAR}")
    logging.basicConfig(level=args.loglevel, format="%(asctime)s %(name)s %(message)s")
    config = ReplicaConfig.from_text(args.replica)
    replica = Replica(config, cgroup=not args.no_cgroup)
    install_replica(replica)
    logger.info("replica ready: %s", json.dumps(replica.runtime.describe()))
    app = make_app()
    try:
        app.worker_main(worker_argv(config, args.loglevel))
    finally:
        replica.close()
        if replica.report.cgroup:
            logger.info(
                "cgroup %s is removed by the node once this process exits", replica.report.cgroup
            )


if __name__ == "__main__":
    main()
