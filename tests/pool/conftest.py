"""A pool of its own per test (a unique Redis key prefix), filled with synthetic heartbeats
through the real ``PoolStore`` methods the nodes, slice workers and scheduler use."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fleet.pool import services
from inference.placement import Deployment, Plan
from inference.pool import PoolStore

FAULT = Deployment(
    name="fault",
    checkpoint="var/models/fault-head/3",
    model="fault-head",
    model_id="fault-head@3",
    priority="critical",
    min_replicas=2,
    max_replicas=4,
    slo_ms=200.0,
)
ETA = Deployment(name="eta", checkpoint="var/models/eta/1", model="eta", model_id="eta@1")


def batching(**overrides: Any) -> dict[str, Any]:
    """A replica's batcher figures, shaped like ``DynamicBatcher.stats()``."""
    stats: dict[str, Any] = {
        "name": "fault",
        "device": "cpu",
        "config": {"max_batch_size": 32},
        "submitted": 120,
        "completed": 100,
        "failed": 3,
        "rejected": {"queue_full": 4, "too_large": 1},
        "timed_out": 2,
        "cancelled": 0,
        "batches": 25,
        "rows": 400,
        "mean_batch_rows": 16.0,
        "batch_rows": {"8": 5, "16": 20},
        "splits": 0,
        "out_of_memory": 0,
        "queue_requests": 7,
        "queue_rows": 12,
        "queue_ms": {"p50": 2.0, "p99": 9.0, "mean": 3.0},
        "compute_ms": {"p50": 10.0, "p99": 31.0, "mean": 12.0},
        "latency_ms": {"p50": 12.0, "p99": 40.0, "mean": 15.0},
        "busy_s": 4.5,
        "utilisation": 0.45,
        "uptime_s": 10.0,
    }
    return {**stats, **overrides}


def slice_heartbeat(
    node: str, name: str, replicas: list[dict[str, Any]], **overrides: Any
) -> dict[str, Any]:
    """A slice worker's heartbeat, shaped like ``SliceWorker.heartbeat()``."""
    device = name.split("/")[0]
    record: dict[str, Any] = {
        "node": node,
        "name": name,
        "device": device,
        "kind": device.split(":")[0],
        "compute_share": 0.5,
        "memory_bytes": 4 * 2**30,
        "hostname": f"{node}.mine.local",
        "pid": 4242,
        "busy": 0.8,
        "serving": sorted(r["deployment"] for r in replicas if r["consuming"]),
        "plan_version": 1,
        "share": {
            "slice": name,
            "configured_share": 0.5,
            "delivered_share": 0.4,
            "of_allocation": 0.8,
            "wall_s": 1.0,
            "busy_s": 0.4,
            "source": "/proc/stat",
            "memory_bytes": 2**30,
        },
        "enforcement": {
            "slice": {},
            "pid": 4242,
            "cgroup": None,
            "steps": [{"mechanism": "affinity", "applied": True, "detail": "cores [0]"}],
        },
        "replicas": replicas,
    }
    return {**record, **overrides}


def replica(deployment: str, consuming: bool = True, **stats: Any) -> dict[str, Any]:
    return {
        "deployment": deployment,
        "model_id": f"{deployment}@3",
        "engine": "onnxruntime",
        "consuming": consuming,
        "served_per_s": 9.5,
        "batching": batching(name=deployment, **stats),
    }


def node_record(name: str, slices: list[str], restarts: int = 0) -> dict[str, Any]:
    """A node's heartbeat, shaped like ``Node.record()``."""
    return {
        "name": name,
        "host": f"{name}.mine.local",
        "pid": 100,
        "started": 1_700_000_000.0,
        "devices": [{"name": "cpu", "kind": "cpu", "cores": 2}],
        "slices": [
            {
                "name": s,
                "spec": {
                    "device": s.split("/")[0],
                    "index": 0,
                    "memory_bytes": 2**31,
                    "compute_share": 0.5,
                },
                "pid": 200 + i,
                "restarts": restarts,
            }
            for i, s in enumerate(slices)
        ],
    }


@pytest.fixture
def pool(settings) -> Iterator[PoolStore]:
    """An empty pool under a prefix of its own, which the views and ``/metrics`` read."""
    settings.POOL_PREFIX = f"haulmind-test-pool-{uuid.uuid4().hex[:12]}"
    store = services.pool_store()
    store.node_ttl_s = 60.0  # heartbeats outlive a slow test
    yield store
    store.clear()


@pytest.fixture
def busy_pool(pool: PoolStore) -> PoolStore:
    """Two nodes: node-a serves fault on cpu/0 and eta on cpu/1; node-b's worker for cpu/0 is
    not beating (restarting). The plan gives fault two replicas and cannot place eta's second."""
    pool.put_deployment(FAULT)
    pool.put_deployment(ETA)
    pool.beat_node(node_record("node-a", ["cpu/0", "cpu/1"]))
    pool.beat_node(node_record("node-b", ["cpu/0"], restarts=3))
    pool.beat_slice(slice_heartbeat("node-a", "cpu/0", [replica("fault")]))
    pool.beat_slice(slice_heartbeat("node-a", "cpu/1", [replica("eta", queue_requests=2)]))
    plan = Plan(
        assignment={
            "node-a/cpu/0": ("fault",),
            "node-a/cpu/1": ("eta",),
            "node-b/cpu/0": ("fault",),
        },
        replicas={"fault": ("node-a/cpu/0", "node-b/cpu/0"), "eta": ("node-a/cpu/1",)},
        unplaced={"eta": "1 replica short: no slice with 4 GiB free"},
        decisions=("fault: base replica on node-a/cpu/0", "fault: scaled to node-b/cpu/0"),
    )
    pool.write_plan(plan, [FAULT, ETA])
    return pool


@pytest.fixture
def outage(settings) -> None:
    """The pool's Redis is away (nothing listens on port 1)."""
    settings.POOL_REDIS_URL = "redis://127.0.0.1:1/0"
