"""The cluster scheduler: measures demand, runs the placement policy, publishes the plan.

    python -m inference.scheduler            # one per pool; a second one waits as a standby

Every tick (half a second by default) it reads the live nodes and slices from their heartbeats,
the deployments, and the demand on each deployment: messages waiting in its broker queue
(RabbitMQ's count, read with a passive declare) plus the requests its replicas hold. The policy
(``inference.placement.Scheduler``) turns that into a plan; when the assignment changes the plan
is stored with its routing table and announced, and the slice workers follow it.

One scheduler acts at a time: it holds a lease in Redis and renews it each tick; a standby takes
over when the lease lapses, starting from the stored plan so nothing moves for no reason.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from celery import Celery

from inference.health import HealthFile
from inference.placement import Deployment, Load, Plan, Policy, Scheduler
from inference.pool import PoolStore
from inference.worker import make_app, queue_name

logger = logging.getLogger(__name__)

TICK_S = 0.5
LEASE_S = 3.0


class QueueDepths:
    """Ready messages per deployment queue, read from the broker.

    RabbitMQ answers a passive declare with the queue's ready count (not counting messages
    delivered and unacknowledged, which the replicas report themselves). A queue that does not
    exist yet holds nothing; the broker closes the channel on that answer, so a fresh one is
    opened. On Redis the count is the list's length.
    """

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._connection: Any = None
        self._channel: Any = None

    def _fresh_channel(self) -> Any:
        if self._connection is None:
            self._connection = self.app.connection_for_read()
        if self._channel is None:
            self._channel = self._connection.channel()
        return self._channel

    def depth(self, queue: str) -> int:
        try:
            declared = self._fresh_channel().queue_declare(queue=queue, passive=True)
        except Exception as exc:  # not found, or the connection went: start again next time
            self._channel = None
            if "NOT_FOUND" not in str(exc) and "404" not in str(exc):
                self.close()
                logger.warning("cannot read the depth of %s: %s", queue, exc)
            return 0
        return int(declared.message_count)

    def depths(self, deployments: Iterable[Deployment]) -> dict[str, int]:
        return {d.name: self.depth(queue_name(d.name)) for d in deployments}

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:
                logger.debug("broker connection already gone", exc_info=True)
        self._connection = self._channel = None


def measure_loads(
    deployments: Sequence[Deployment],
    depths: Mapping[str, int],
    slice_records: Sequence[Mapping[str, Any]],
) -> dict[str, Load]:
    """Each deployment's demand: what waits in the broker plus what its replicas hold, with the
    replicas' served rate and worst p99 latency."""
    held: dict[str, int] = {}
    served: dict[str, float] = {}
    p99: dict[str, float] = {}
    for record in slice_records:
        for replica in record.get("replicas") or ():
            name, stats = replica["deployment"], replica["batching"]
            pending = (
                stats["submitted"]
                - stats["completed"]
                - stats["failed"]
                - stats["timed_out"]
                - stats["cancelled"]
            )
            held[name] = held.get(name, 0) + max(0, pending)
            served[name] = served.get(name, 0.0) + float(replica.get("served_per_s") or 0.0)
            latency = stats["latency_ms"]["p99"]
            if latency is not None:
                p99[name] = max(p99.get(name, 0.0), float(latency))
    return {
        d.name: Load(
            queued=int(depths.get(d.name, 0)),
            in_flight=held.get(d.name, 0),
            served_per_s=served.get(d.name, 0.0),
            p99_ms=p99.get(d.name),
        )
        for d in deployments
    }


class SchedulerService:
    """The loop around the policy: lease, measure, plan, publish."""

    def __init__(
        self,
        store: PoolStore | None = None,
        app: Celery | None = None,
        *,
        policy: Policy | None = None,
        tick_s: float = TICK_S,
    ) -> None:
        self.store = store or PoolStore()
        self.app = app or make_app()
        self.policy = Scheduler(policy or Policy())
        self.tick_s = tick_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.queues = QueueDepths(self.app)
        self.leading = False
        # Touched after each round that reached the pool's Redis, leading or standing by: a
        # standby is healthy while it can take over (an orchestrator's liveness probe).
        self.health = HealthFile()
        self._stop = threading.Event()

    def tick(self, now: float | None = None) -> Plan | None:
        """One round; returns the plan when it changed (None otherwise, or when standing by)."""
        if not self.store.hold_leadership(self.owner, LEASE_S):
            self.leading = False
            return None
        if not self.leading:
            stored = self.store.read_plan()
            if stored is not None:
                self.policy.restore(stored.plan)
            self.leading = True
            logger.info("scheduler %s is leading", self.owner)
        deployments = self.store.deployments()
        slice_records = self.store.slice_records()
        loads = measure_loads(deployments, self.queues.depths(deployments), slice_records)
        plan = self.policy.plan(
            self.store.node_views(), deployments, loads, time.monotonic() if now is None else now
        )
        stored = self.store.read_plan()
        unchanged = (
            stored is not None
            and stored.plan.assignment == plan.assignment
            and stored.routes == plan.routes(deployments)  # a new version changes the routes
        )
        if unchanged:
            return None
        record = self.store.write_plan(plan, deployments)
        for decision in plan.decisions:
            logger.info("plan %d: %s", record.version, decision)
        return plan

    def run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
                self.health.touch()
            except Exception:
                logger.exception("scheduler tick failed; trying again")
                self.queues.close()
            self._stop.wait(max(0.0, self.tick_s - (time.monotonic() - started)))
        self.health.clear()
        try:
            self.store.release_leadership(self.owner)
        except Exception:  # Redis gone: the lease lapses by itself within LEASE_S
            logger.warning("scheduler %s: lease not released", self.owner, exc_info=True)
        self.queues.close()

    def stop(self, *_: Any) -> None:
        self._stop.set()


def main(argv: Sequence[str] | None = None) -> None:
    import signal

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tick", type=float, default=TICK_S, help="seconds between rounds")
    defaults = Policy()
    parser.add_argument(
        "--backlog-per-replica",
        type=int,
        default=defaults.backlog_per_replica,
        help="scale up when a deployment's waiting requests per replica exceed this",
    )
    parser.add_argument(
        "--scale-down-after",
        type=float,
        default=defaults.scale_down_after_s,
        help="seconds without backlog before an added replica is given back",
    )
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.loglevel, format="%(asctime)s %(name)s %(message)s")
    policy = Policy(
        backlog_per_replica=args.backlog_per_replica, scale_down_after_s=args.scale_down_after
    )
    service = SchedulerService(policy=policy, tick_s=args.tick)
    signal.signal(signal.SIGTERM, service.stop)
    signal.signal(signal.SIGINT, service.stop)
    service.run()


if __name__ == "__main__":
    main()
