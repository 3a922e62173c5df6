"""The pool as the control room sees it: one reading of the pool's Redis turned into nodes (with
their slices and replicas), deployments and the plan; drains, audited. The REST views, the admin
page and ``/metrics`` all come through here.

The state is written by the nodes, their slice workers and the scheduler (``inference.pool``);
this side only reads it, except for the drain flag, which the scheduler and the workers obey.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from prometheus_client import REGISTRY, CollectorRegistry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from fleet.pool.models import DrainChange, UtilisationSample
from inference.metrics import PoolCollector, PoolReading
from inference.pool import PoolStore

logger = logging.getLogger(__name__)

RECENT_DECISIONS = 20
# The API and a scrape answer quickly when Redis is away, rather than hang on it.
CONNECT_TIMEOUT_S = 1.0
SOCKET_TIMEOUT_S = 2.0


class PoolUnavailable(Exception):
    """The pool's Redis could not be read."""


class UnknownNode(LookupError):
    """No node of that name beats in the pool, nor is one drained under that name."""


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        retry=Retry(ExponentialBackoff(cap=0.2), 1),
    )


def pool_store() -> PoolStore:
    """The pool named by ``POOL_REDIS_URL`` and ``POOL_PREFIX`` (read at each call, so a test
    can point the views at a pool of its own)."""
    return PoolStore(_client(settings.POOL_REDIS_URL), prefix=settings.POOL_PREFIX)


def read_pool(store: PoolStore | None = None) -> PoolReading:
    """One consistent-enough reading of everything (five round trips)."""
    try:
        return PoolReading.read(store or pool_store())
    except (redis.RedisError, OSError) as exc:
        raise PoolUnavailable(f"the pool's Redis cannot be read: {exc}") from exc


def _when(epoch: Any) -> str | None:
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(float(epoch), UTC).isoformat()
    except (TypeError, ValueError, OverflowError):
        return None


# --- what one reading shows --------------------------------------------------------------------

BATCHING_FIELDS = (
    "submitted",
    "completed",
    "failed",
    "rejected",
    "timed_out",
    "cancelled",
    "batches",
    "rows",
    "mean_batch_rows",
    "batch_rows",
    "queue_requests",
    "queue_rows",
    "queue_ms",
    "compute_ms",
    "latency_ms",
    "busy_s",
    "utilisation",
    "uptime_s",
)
SHARE_FIELDS = (
    "configured_share",
    "delivered_share",
    "of_allocation",
    "busy_s",
    "memory_bytes",
    "source",
)


def replica_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    stats = record.get("batching") or {}
    return {
        "deployment": record.get("deployment", ""),
        "model_id": record.get("model_id") or "",
        "engine": record.get("engine") or "",
        "consuming": bool(record.get("consuming")),
        "served_per_s": record.get("served_per_s"),
        **{name: stats.get(name) for name in BATCHING_FIELDS},
        "rejected_total": sum((stats.get("rejected") or {}).values()),
    }


def slice_summary(
    node: str,
    name: str,
    heartbeat: Mapping[str, Any] | None,
    child: Mapping[str, Any] | None,
    assigned: tuple[str, ...],
) -> dict[str, Any]:
    """A slice from its worker's heartbeat (``live``) and its node's record of the worker
    process (pid, restarts); a slice whose worker is not beating shows its configuration only."""
    beat = heartbeat or {}
    spec = (child or {}).get("spec") or {}
    device = beat.get("device") or spec.get("device") or ""
    share = beat.get("share")
    enforcement = beat.get("enforcement") or {}
    return {
        "key": f"{node}/{name}",
        "name": name,
        "device": device,
        "kind": beat.get("kind") or device.split(":")[0],
        "live": heartbeat is not None,
        "pid": beat.get("pid") or (child or {}).get("pid"),
        "restarts": (child or {}).get("restarts"),
        "compute_share": beat.get("compute_share", spec.get("compute_share")),
        "memory_bytes": beat.get("memory_bytes", spec.get("memory_bytes")),
        "busy": beat.get("busy"),
        "serving": list(beat.get("serving") or ()),
        "assigned": list(assigned),
        "plan_version": beat.get("plan_version"),
        "heartbeat_at": _when(beat.get("at")),
        "share": {k: share.get(k) for k in SHARE_FIELDS} if share else None,
        "enforcement": list(enforcement.get("steps") or ()),
        "replicas": [replica_summary(r) for r in beat.get("replicas") or ()],
    }


def node_summaries(reading: PoolReading) -> list[dict[str, Any]]:
    """Every node the pool knows: beating (``up``), or drained while away, or whose slice
    workers still beat after the node's own record lapsed (``up`` false)."""
    records = {r["name"]: r for r in reading.nodes if r.get("name")}
    heartbeats: dict[str, dict[str, Mapping[str, Any]]] = {}
    for beat in reading.slices:
        if beat.get("node") and beat.get("name"):
            heartbeats.setdefault(beat["node"], {})[beat["name"]] = beat
    assignment = reading.plan.plan.assignment if reading.plan else {}
    names = sorted(set(records) | set(heartbeats) | set(reading.draining))
    nodes = []
    for name in names:
        record = records.get(name) or {}
        children = {c["name"]: c for c in record.get("slices") or () if c.get("name")}
        beats = heartbeats.get(name, {})
        drain = reading.draining.get(name)
        nodes.append(
            {
                "name": name,
                "up": name in records,
                "host": record.get("host") or "",
                "pid": record.get("pid"),
                "started": _when(record.get("started")),
                "heartbeat_at": _when(record.get("at")),
                "draining": drain is not None,
                "drained_by": (drain or {}).get("by") or None,
                "drained_at": _when((drain or {}).get("at")),
                "devices": list(record.get("devices") or ()),
                "slices": [
                    slice_summary(
                        name,
                        slice_name,
                        beats.get(slice_name),
                        children.get(slice_name),
                        tuple(assignment.get(f"{name}/{slice_name}", ())),
                    )
                    for slice_name in sorted(set(children) | set(beats))
                ],
            }
        )
    return nodes


def node_summary(reading: PoolReading, name: str) -> dict[str, Any]:
    for node in node_summaries(reading):
        if node["name"] == name:
            return node
    raise UnknownNode(name)


def deployment_summaries(reading: PoolReading) -> list[dict[str, Any]]:
    """Each deployment: what it asks for, the replicas the plan gives it, its route (absent
    while nothing serves it), why it is not fully placed, and what its replicas report."""
    plan = reading.plan.plan if reading.plan else None
    routes = reading.plan.routes if reading.plan else {}
    live: dict[str, list[dict[str, Any]]] = {}
    for beat in reading.slices:
        for replica in beat.get("replicas") or ():
            live.setdefault(replica.get("deployment", ""), []).append(
                {"slice": f"{beat.get('node')}/{beat.get('name')}", **replica_summary(replica)}
            )
    result = []
    for deployment in reading.deployments:
        running = live.get(deployment.name, [])
        result.append(
            {
                **deployment.to_dict(),
                "replicas": list(plan.replicas.get(deployment.name, ())) if plan else [],
                "serving": sorted(r["slice"] for r in running if r["consuming"]),
                "route": routes.get(deployment.name),
                "unplaced": plan.unplaced.get(deployment.name) if plan else None,
                "queue_requests": sum(r["queue_requests"] or 0 for r in running),
                "served_per_s": sum(r["served_per_s"] or 0.0 for r in running),
            }
        )
    return result


def plan_summary(reading: PoolReading, decisions: int = RECENT_DECISIONS) -> dict[str, Any] | None:
    if reading.plan is None:
        return None
    plan = reading.plan.plan
    return {
        "version": reading.plan.version,
        "at": _when(reading.plan.at),
        "decisions": list(plan.decisions[-decisions:]) if decisions else [],
        "unplaced": dict(plan.unplaced),
        "assignment": {k: list(v) for k, v in sorted(plan.assignment.items())},
    }


def summary(reading: PoolReading) -> dict[str, Any]:
    """The whole pool in one document: what the dashboard draws."""
    return {
        "at": _when(reading.at),
        "plan": plan_summary(reading),
        "nodes": node_summaries(reading),
        "deployments": deployment_summaries(reading),
    }


# --- drains ------------------------------------------------------------------------------------


def set_draining(
    name: str,
    draining: bool,
    *,
    by: User | AnonymousUser | None,
    reason: str = "",
    store: PoolStore | None = None,
) -> DrainChange:
    """Drain a node (the scheduler moves its replicas elsewhere; its workers stop taking work)
    or put it back in service. Audited in ``DrainChange`` with the user; the flag in Redis names
    them too. A node the pool does not know is refused (``UnknownNode``): draining a name that
    is misspelt would silently do nothing."""
    store = store or pool_store()
    reading = read_pool(store)
    if not any(n["name"] == name for n in node_summaries(reading)):
        raise UnknownNode(name)
    user = by if isinstance(by, User) else None
    username = user.get_username() if user is not None else ""
    with transaction.atomic():
        change = DrainChange.objects.create(
            node=name,
            draining=draining,
            by=user,
            by_name=username,
            reason=reason,
        )
        try:
            store.set_draining(name, draining, by=username)
        except (redis.RedisError, OSError) as exc:
            raise PoolUnavailable(f"the pool's Redis cannot be written: {exc}") from exc
    logger.info(
        "pool: node %s %s by %s%s",
        name,
        "drained" if draining else "put back in service",
        username or "?",
        f" ({reason})" if reason else "",
    )
    return change


def recent_drains(name: str | None = None, limit: int = 20) -> list[DrainChange]:
    rows = DrainChange.objects.select_related("by")
    if name is not None:
        rows = rows.filter(node=name)
    return list(rows[:limit])


# --- /metrics ----------------------------------------------------------------------------------

_installed: set[int] = set()
_install_lock = threading.Lock()


def install_collector(registry: CollectorRegistry = REGISTRY) -> bool:
    """Add the pool's collector to ``registry`` (the web process's default one, which
    ``/metrics`` serves), once per process. True when this call added it."""
    with _install_lock:
        if id(registry) in _installed:
            return False
        registry.register(PoolCollector(pool_store))
        _installed.add(id(registry))
        return True


# --- utilisation over time ---------------------------------------------------------------------


def sample_utilisation(reading: PoolReading | None = None) -> int:
    """One minute's sample of the pool into PostgreSQL: a row per beating slice and replica
    (busy fraction, served rate, batch size, latency), and rows older than the retention
    deleted. Returns the rows written."""
    reading = reading or read_pool()
    at = datetime.now(UTC)
    rows = [
        UtilisationSample(at=at, **fields)
        for node in node_summaries(reading)
        for slice_ in node["slices"]
        if slice_["live"]
        for fields in _sample_fields(node["name"], slice_)
    ]
    with transaction.atomic():
        UtilisationSample.objects.bulk_create(rows)
        UtilisationSample.objects.filter(
            at__lt=at - timedelta(days=settings.POOL_SAMPLE_RETENTION_DAYS)
        ).delete()
    return len(rows)


def _sample_fields(node: str, slice_: Mapping[str, Any]) -> list[dict[str, Any]]:
    base = {
        "node": node,
        "slice_name": slice_["name"],
        "device": slice_["device"] or "",
        "busy": slice_["busy"],
    }
    if not slice_["replicas"]:
        return [base]
    return [
        {
            **base,
            "deployment": replica["deployment"],
            "model_id": replica["model_id"],
            "served_per_s": replica["served_per_s"],
            "mean_batch_rows": replica["mean_batch_rows"],
            "latency_p50_ms": (replica["latency_ms"] or {}).get("p50"),
            "latency_p99_ms": (replica["latency_ms"] or {}).get("p99"),
            "queue_requests": replica["queue_requests"],
        }
        for replica in slice_["replicas"]
    ]


def utilisation_series(start: datetime, end: datetime) -> dict[str, Any]:
    """The samples in [start, end] as series: per slice (busy), per deployment (served rate,
    batch size, latency, summed or averaged over its replicas at each minute)."""
    slices: dict[str, list[list[Any]]] = {}
    deployments: dict[str, dict[datetime, list[UtilisationSample]]] = {}
    for sample in UtilisationSample.objects.filter(at__gte=start, at__lte=end).order_by("at"):
        key = f"{sample.node}/{sample.slice_name}"
        series = slices.setdefault(key, [])
        if not series or series[-1][0] != sample.at:
            series.append([sample.at, sample.busy])
        if sample.deployment:
            deployments.setdefault(sample.deployment, {}).setdefault(sample.at, []).append(sample)
    return {
        "from": start,
        "to": end,
        "slices": slices,
        "deployments": {
            name: [_deployment_point(at, samples) for at, samples in by_minute.items()]
            for name, by_minute in deployments.items()
        },
    }


def _deployment_point(at: datetime, samples: list[UtilisationSample]) -> dict[str, Any]:
    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known else None

    return {
        "at": at,
        "replicas": len(samples),
        "served_per_s": sum(s.served_per_s or 0.0 for s in samples),
        "mean_batch_rows": mean([s.mean_batch_rows for s in samples]),
        "latency_p50_ms": mean([s.latency_p50_ms for s in samples]),
        "latency_p99_ms": max(
            (s.latency_p99_ms for s in samples if s.latency_p99_ms is not None), default=None
        ),
        "queue_requests": sum(s.queue_requests or 0 for s in samples),
    }
