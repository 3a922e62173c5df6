"""The pool as Prometheus metrics, read from the pool's Redis at scrape time.

``PoolCollector`` is a custom collector: it keeps no state of its own and never runs in the slice
workers' hot path. Each scrape reads the heartbeats, the deployments, the drains and the plan
(``inference.pool.PoolStore``) and turns them into ``haulmind_pool_*`` families:

- the pool: ``up`` (0 when Redis cannot be read: the scrape still answers), ``plan_version``,
  ``plan_age_seconds``, ``scrape_duration_seconds``;
- per node (``node``): ``node_up``, ``node_draining``, ``node_worker_restarts_total`` (per slice);
- per slice (``node``, ``slice``, ``device``): ``busy_ratio``, configured and delivered share,
  memory limit and use, the plan version the worker follows, its replicas;
- per replica (the slice's labels and ``deployment``): utilisation, queue depth, mean batch rows,
  p50 / p99 of latency, queue and compute time (in seconds, as a ``quantile`` label), requests
  by outcome, rejections by reason, batches, rows, busy seconds, served rate, and an ``info``
  series carrying the model id and engine;
- per deployment (``deployment``): replicas in the plan, minimum and maximum, the SLO, unplaced.

Counters come from the workers' own running counts, so they restart from zero with a worker;
``rate()`` and ``increase()`` treat that as a counter reset. What waits in the broker queue is
not in Redis (the scheduler reads it from RabbitMQ each tick and keeps it), so it is not here.

Registration is the caller's: a web process adds one collector to its registry, e.g.
``REGISTRY.register(PoolCollector(lambda: PoolStore(prefix=...)))``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from inference.placement import Deployment
from inference.pool import PlanRecord, PoolStore

logger = logging.getLogger(__name__)

PREFIX = "haulmind_pool"
SLICE_LABELS = ("node", "slice", "device")
REPLICA_LABELS = (*SLICE_LABELS, "deployment")
QUANTILES = (("p50", "0.5"), ("p99", "0.99"))
OUTCOMES = ("completed", "failed", "timed_out", "cancelled")


@dataclass
class PoolReading:
    """Everything one scrape reads from Redis, read before any family is built."""

    nodes: list[dict[str, Any]]
    slices: list[dict[str, Any]]
    deployments: list[Deployment]
    draining: dict[str, dict[str, Any]]
    plan: PlanRecord | None
    at: float = field(default_factory=time.time)

    @classmethod
    def read(cls, store: PoolStore) -> PoolReading:
        return cls(
            nodes=store.node_records(),
            slices=store.slice_records(),
            deployments=store.deployments(),
            draining=store.draining(),
            plan=store.read_plan(),
        )


def _families() -> dict[str, Metric]:
    """Every family this collector exports, empty (``describe`` yields them as they are)."""

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))

    def counter(name: str, doc: str, labels: tuple[str, ...]) -> CounterMetricFamily:
        return CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))

    replica_q = (*REPLICA_LABELS, "quantile")
    families: list[Metric] = [
        gauge("up", "1 when the pool's Redis answered this scrape, 0 when it could not be read."),
        gauge("scrape_duration_seconds", "Time this scrape took to read the pool's state."),
        gauge("plan_version", "Version of the scheduler's current plan (0: no plan yet)."),
        gauge("plan_age_seconds", "Seconds since the scheduler last changed the plan."),
        gauge("node_up", "1 while the node's agent beats into the pool.", ("node",)),
        gauge("node_draining", "1 while the node is drained (gets no new work).", ("node",)),
        counter(
            "node_worker_restarts",
            "Times the node restarted a slice's worker process since the node started.",
            ("node", "slice"),
        ),
        gauge(
            "slice_busy_ratio",
            "Delivered over configured compute share, capped at 1.",
            SLICE_LABELS,
        ),
        gauge(
            "slice_configured_share_ratio",
            "Fraction of the whole device configured for the slice.",
            SLICE_LABELS,
        ),
        gauge(
            "slice_delivered_share_ratio",
            "Fraction of the whole device the slice's worker used over its last interval.",
            SLICE_LABELS,
        ),
        gauge("slice_memory_limit_bytes", "Memory configured for the slice.", SLICE_LABELS),
        gauge(
            "slice_memory_used_bytes",
            "Memory the slice's worker holds (RSS or CUDA reserved).",
            SLICE_LABELS,
        ),
        gauge("slice_plan_version", "Plan version the slice's worker last applied.", SLICE_LABELS),
        gauge("slice_replicas", "Replicas loaded on the slice.", SLICE_LABELS),
        gauge(
            "replica_info",
            "1 per replica, with the model version and the engine it runs.",
            (*REPLICA_LABELS, "model_id", "engine"),
        ),
        gauge(
            "replica_consuming",
            "1 while the replica takes requests from its queue.",
            REPLICA_LABELS,
        ),
        gauge(
            "replica_utilisation_ratio",
            "Busy time of the replica's model instances over their uptime.",
            REPLICA_LABELS,
        ),
        gauge(
            "replica_queue_requests", "Requests waiting in the replica's batcher.", REPLICA_LABELS
        ),
        gauge("replica_queue_rows", "Rows waiting in the replica's batcher.", REPLICA_LABELS),
        gauge("replica_mean_batch_rows", "Mean rows per forward pass.", REPLICA_LABELS),
        gauge(
            "replica_served_per_second",
            "Requests finished per second at the last heartbeat.",
            REPLICA_LABELS,
        ),
        gauge(
            "replica_latency_seconds",
            "Request latency (queue + compute) quantiles over the replica's recent requests.",
            replica_q,
        ),
        gauge("replica_queue_seconds", "Time waiting for a batch, quantiles.", replica_q),
        gauge("replica_compute_seconds", "Time in the forward pass, quantiles.", replica_q),
        counter(
            "replica_requests",
            "Requests the replica finished, by outcome (completed, failed, timed_out, cancelled).",
            (*REPLICA_LABELS, "outcome"),
        ),
        counter(
            "replica_rejected",
            "Requests the replica refused at submission, by reason.",
            (*REPLICA_LABELS, "reason"),
        ),
        counter("replica_batches", "Forward passes run.", REPLICA_LABELS),
        counter("replica_rows", "Rows run through the model.", REPLICA_LABELS),
        counter(
            "replica_busy_seconds", "Seconds the model instances spent computing.", REPLICA_LABELS
        ),
        gauge(
            "deployment_replicas",
            "Replicas the current plan gives the deployment.",
            ("deployment",),
        ),
        gauge("deployment_min_replicas", "The deployment's minimum replicas.", ("deployment",)),
        gauge("deployment_max_replicas", "The deployment's maximum replicas.", ("deployment",)),
        gauge("deployment_slo_seconds", "The deployment's latency objective.", ("deployment",)),
        gauge(
            "deployment_unplaced",
            "1 when the plan could not place all the replicas the deployment needs.",
            ("deployment",),
        ),
    ]
    return {f.name.removeprefix(f"{PREFIX}_"): f for f in families}


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _set(family: Metric, labels: list[str], value: Any) -> None:
    """Add one sample when the value is a number (a figure not measured yet is left out)."""
    number = _number(value)
    if number is not None:
        family.add_metric(labels, number)  # type: ignore[attr-defined]


class PoolCollector(Collector):
    """Exports the pool's state at each scrape. ``store``: a ``PoolStore``, or a function that
    returns one (read at every scrape, so the caller can change its settings between scrapes)."""

    def __init__(self, store: PoolStore | Callable[[], PoolStore]) -> None:
        self._store = store

    def store(self) -> PoolStore:
        return self._store if isinstance(self._store, PoolStore) else self._store()

    def describe(self) -> Iterator[Metric]:
        # Registration checks names with describe(), so registering never touches Redis.
        yield from _families().values()

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        families = _families()
        try:
            reading = PoolReading.read(self.store())
        except (redis.RedisError, OSError, ValueError) as exc:
            logger.warning("pool metrics: cannot read the pool's state: %s", exc)
            families["up"].add_metric([], 0.0)  # type: ignore[attr-defined]
        else:
            families["up"].add_metric([], 1.0)  # type: ignore[attr-defined]
            fill(families, reading)
        families["scrape_duration_seconds"].add_metric(  # type: ignore[attr-defined]
            [], time.perf_counter() - started
        )
        yield from families.values()


def fill(families: Mapping[str, Metric], reading: PoolReading) -> None:
    """Turn one reading into samples. A malformed record is skipped, never the whole scrape."""
    f = families
    plan = reading.plan
    _set(f["plan_version"], [], plan.version if plan else 0)
    if plan is not None:
        _set(f["plan_age_seconds"], [], max(0.0, reading.at - plan.at))
    live = set()
    for node in reading.nodes:
        name = str(node.get("name", ""))
        if not name:
            continue
        live.add(name)
        _set(f["node_up"], [name], 1)
        for child in node.get("slices") or ():
            if isinstance(child, Mapping) and child.get("name"):
                _set(
                    f["node_worker_restarts"],
                    [name, str(child["name"])],
                    child.get("restarts") or 0,
                )
    for name in sorted(live | set(reading.draining)):
        _set(f["node_draining"], [name], 1 if name in reading.draining else 0)
    for record in reading.slices:
        try:
            _fill_slice(f, record)
        except (KeyError, TypeError, AttributeError) as exc:
            logger.warning(
                "pool metrics: skipping a malformed slice record (%r): %s", exc, record.get("name")
            )
    for deployment in reading.deployments:
        labels = [deployment.name]
        replicas = plan.plan.replicas.get(deployment.name, ()) if plan else ()
        _set(f["deployment_replicas"], labels, len(replicas))
        _set(f["deployment_min_replicas"], labels, deployment.min_replicas)
        _set(f["deployment_max_replicas"], labels, deployment.max_replicas)
        _set(f["deployment_slo_seconds"], labels, deployment.slo_ms / 1000.0)
        unplaced = plan is not None and deployment.name in plan.plan.unplaced
        _set(f["deployment_unplaced"], labels, 1 if unplaced else 0)


def _fill_slice(f: Mapping[str, Metric], record: Mapping[str, Any]) -> None:
    labels = [str(record["node"]), str(record["name"]), str(record["device"])]
    share = record.get("share") or {}
    replicas = record.get("replicas") or []
    _set(f["slice_busy_ratio"], labels, record.get("busy"))
    configured = share.get("configured_share", record.get("compute_share"))
    _set(f["slice_configured_share_ratio"], labels, configured)
    _set(f["slice_delivered_share_ratio"], labels, share.get("delivered_share"))
    _set(f["slice_memory_limit_bytes"], labels, record.get("memory_bytes"))
    _set(f["slice_memory_used_bytes"], labels, share.get("memory_bytes"))
    _set(f["slice_plan_version"], labels, record.get("plan_version"))
    _set(f["slice_replicas"], labels, len(replicas))
    for replica in replicas:
        _fill_replica(f, [*labels, str(replica["deployment"])], replica)


def _fill_replica(f: Mapping[str, Metric], labels: list[str], replica: Mapping[str, Any]) -> None:
    stats = replica.get("batching") or {}
    info = [*labels, str(replica.get("model_id") or ""), str(replica.get("engine") or "")]
    _set(f["replica_info"], info, 1)
    _set(f["replica_consuming"], labels, 1 if replica.get("consuming") else 0)
    _set(f["replica_utilisation_ratio"], labels, stats.get("utilisation"))
    _set(f["replica_queue_requests"], labels, stats.get("queue_requests"))
    _set(f["replica_queue_rows"], labels, stats.get("queue_rows"))
    _set(f["replica_mean_batch_rows"], labels, stats.get("mean_batch_rows"))
    _set(f["replica_served_per_second"], labels, replica.get("served_per_s"))
    for family, key in (
        ("replica_latency_seconds", "latency_ms"),
        ("replica_queue_seconds", "queue_ms"),
        ("replica_compute_seconds", "compute_ms"),
    ):
        figures = stats.get(key) or {}
        for field_name, quantile in QUANTILES:
            milliseconds = _number(figures.get(field_name))
            if milliseconds is not None:
                _set(f[family], [*labels, quantile], milliseconds / 1000.0)
    for outcome in OUTCOMES:
        _set(f["replica_requests"], [*labels, outcome], stats.get(outcome))
    for reason, count in sorted((stats.get("rejected") or {}).items()):
        _set(f["replica_rejected"], [*labels, str(reason)], count)
    _set(f["replica_batches"], labels, stats.get("batches"))
    _set(f["replica_rows"], labels, stats.get("rows"))
    _set(f["replica_busy_seconds"], labels, stats.get("busy_s"))
