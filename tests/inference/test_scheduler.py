"""The scheduler's loop around the policy: demand measured from the broker and the heartbeats,
one scheduler leading at a time, a standby taking over from the stored plan."""

from __future__ import annotations

import uuid

import pytest
from kombu import Connection, Exchange, Producer, Queue

from inference.placement import Deployment
from inference.pool import PoolStore
from inference.scheduler import QueueDepths, SchedulerService, measure_loads
from inference.worker import make_app, queue_name


def replica(deployment: str, *, submitted: int, completed: int, p99: float | None) -> dict:
    return {
        "deployment": deployment,
        "served_per_s": 10.0,
        "batching": {
            "submitted": submitted,
            "completed": completed,
            "failed": 1,
            "timed_out": 0,
            "cancelled": 0,
            "latency_ms": {"p50": None, "p99": p99},
        },
    }


def test_demand_is_the_broker_queue_plus_what_the_replicas_hold():
    records = [
        {"replicas": [replica("eta", submitted=50, completed=30, p99=120.0)]},
        {"replicas": [replica("eta", submitted=10, completed=9, p99=300.0)]},
        {"replicas": [replica("fault", submitted=5, completed=4, p99=None)]},
    ]
    deployments = [Deployment("eta", "x"), Deployment("fault", "x"), Deployment("payload", "x")]
    loads = measure_loads(deployments, {"eta": 7}, records)
    assert loads["eta"].queued == 7
    assert loads["eta"].in_flight == (50 - 30 - 1) + (10 - 9 - 1)
    assert loads["eta"].p99_ms == 300.0
    assert loads["eta"].served_per_s == 20.0
    assert loads["fault"].in_flight == 0 and loads["fault"].p99_ms is None
    assert loads["payload"].backlog == 0


@pytest.mark.services
def test_queue_depth_is_read_from_rabbitmq_and_a_missing_queue_holds_nothing(settings):
    name = f"test-depth-{uuid.uuid4().hex[:8]}"
    queue = Queue(queue_name(name), Exchange(queue_name(name)), routing_key=queue_name(name))
    app = make_app(settings.CELERY_BROKER_URL, settings.CELERY_RESULT_BACKEND)
    depths = QueueDepths(app)
    with Connection(settings.CELERY_BROKER_URL) as connection:
        producer = Producer(connection)
        for i in range(5):
            producer.publish(
                {"i": i}, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue]
            )
        try:
            assert depths.depth(queue_name(f"missing-{uuid.uuid4().hex}")) == 0
            assert depths.depths([Deployment(name, "x")]) == {name: 5}
        finally:
            queue(connection.default_channel).delete()
            depths.close()


@pytest.fixture
def store():
    pool = PoolStore(prefix=f"haulmind:test-sched:{uuid.uuid4().hex[:8]}")
    yield pool
    pool.clear()


def beat(store: PoolStore, node: str, slices: int) -> None:
    store.beat_node({"name": node, "slices": [f"cpu/{i}" for i in range(slices)]})
    for i in range(slices):
        store.beat_slice(
            {
                "node": node,
                "name": f"cpu/{i}",
                "device": "cpu",
                "kind": "cpu",
                "compute_share": 0.5,
                "memory_bytes": 1 << 30,
                "replicas": [],
            }
        )


@pytest.mark.services
def test_one_scheduler_leads_and_a_standby_takes_over_from_the_stored_plan(settings, store):
    app = make_app(settings.CELERY_BROKER_URL, settings.CELERY_RESULT_BACKEND)
    store.put_deployment(Deployment(f"eta-{uuid.uuid4().hex[:6]}", "x", compute_share=0.5))
    beat(store, "node-a", 2)
    first, standby = SchedulerService(store, app), SchedulerService(store, app)
    try:
        plan = first.tick(now=0.0)
        assert plan is not None and first.leading
        assert standby.tick(now=0.0) is None and not standby.leading
        version = store.read_plan().version

        first.store.release_leadership(first.owner)  # the leader goes away
        assert standby.tick(now=1.0) is None, "same inputs: the standby changes nothing"
        assert standby.leading and store.read_plan().version == version

        beat(store, "node-b", 1)
        store.set_draining("node-a")
        moved = standby.tick(now=2.0)
        assert moved is not None and any("draining" in d for d in moved.decisions)
        assert all(key.startswith("node-b/") for key in moved.replicas[store.deployments()[0].name])
    finally:
        first.queues.close()
        standby.queues.close()
