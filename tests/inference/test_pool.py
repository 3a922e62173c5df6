"""Several worker nodes on one machine (separate processes, separate names) and the scheduler,
through the real RabbitMQ and Redis: placement across nodes, scale-up on a growing queue, a
killed node's requests served elsewhere, and requests or deployments too large refused."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import numpy as np
import pytest

from inference.placement import Deployment
from inference.worker import read_response, send_request
from tests.inference.cluster import Cluster
from tests.inference.conftest import features, windows

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]


@pytest.fixture
def cluster(settings, tmp_path):
    pool = Cluster(tmp_path, settings.CELERY_BROKER_URL, settings.CELERY_RESULT_BACKEND)
    yield pool
    pool.close()


def payload_deployment(cluster: Cluster, checkpoints, **changes) -> Deployment:
    values = {
        "name": cluster.name("payload"),
        "checkpoint": str(checkpoints["payload"]),
        "model": "payload",
        "memory_bytes": 64 << 20,
        "compute_share": 0.25,
        "batching": {"max_batch_size": 8, "max_queue_delay_ms": 5},
    }
    return Deployment(**{**values, **changes})


def send_many(cluster: Cluster, deployment: str, count: int) -> list:
    X = windows(count, seed=3)
    return [send_request(cluster.app, deployment, {"window": X[i : i + 1]}) for i in range(count)]


def nodes_of(slice_keys) -> set[str]:
    return {key.split("/", 1)[0] for key in slice_keys}


def test_replicas_spread_over_two_nodes_and_both_serve(cluster, checkpoints):
    deployment = payload_deployment(cluster, checkpoints, min_replicas=2, strategy="spread")
    cluster.deploy(deployment)
    cluster.start_node("node-a")
    cluster.start_node("node-b")

    placed = cluster.wait_for(
        "two replicas on two nodes",
        lambda: (
            len(nodes_of(cluster.replicas(deployment.name))) == 2
            and cluster.replicas(deployment.name)
        ),
    )
    cluster.wait_for(
        "both replicas consuming", lambda: cluster.serving(deployment.name) == set(placed)
    )
    responses = [read_response(r.get(timeout=60)) for r in send_many(cluster, deployment.name, 6)]
    assert all(r.outputs["payload_t"].shape == (1,) for r in responses)
    routes = cluster.store.routes()
    assert routes[deployment.name]["queue"] == f"inference.{deployment.name}"
    assert nodes_of(routes[deployment.name]["replicas"]) == {"node-a", "node-b"}


def test_a_growing_queue_gets_more_replicas_and_they_go_back_when_it_empties(cluster, checkpoints):
    deployment = payload_deployment(cluster, checkpoints, min_replicas=1, max_replicas=3)
    cluster.deploy(deployment)
    # The queue is long before the first replica starts: the scheduler sees it grow.
    results = send_many(cluster, deployment.name, 3000)
    cluster.start_node("node-a")
    cluster.start_node("node-b")

    grown = cluster.wait_for(
        "scale-up on queue depth",
        lambda: len(replicas := cluster.replicas(deployment.name)) > 1 and replicas,
        60,
    )
    assert len(grown) <= 3
    # On a loaded machine the first replica may drain the backlog before a new one has loaded
    # its model; once two consume, a second wave is shared between them.
    cluster.wait_for(
        "added replicas consuming", lambda: len(cluster.serving(deployment.name)) > 1, 90
    )
    results += send_many(cluster, deployment.name, 600)
    responses = [r.get(timeout=120) for r in results]
    served_by = {r["replica"] for r in responses}
    assert len(served_by) > 1, "the added replicas took part of the queue"
    cluster.wait_for(
        "scale-down once the queue is empty",
        lambda: len(cluster.replicas(deployment.name)) == 1,
        60,
    )
    decisions = " ".join(cluster.store.read_plan().plan.decisions)
    assert "no backlog" in decisions


def test_a_killed_nodes_requests_are_served_by_another_node(cluster, checkpoints):
    deployment = payload_deployment(cluster, checkpoints, min_replicas=1, max_replicas=1)
    cluster.deploy(deployment)
    cluster.start_node("node-a")
    cluster.start_node("node-b")
    (first,) = cluster.wait_for("one replica", lambda: cluster.serving(deployment.name))
    doomed = first.split("/", 1)[0]
    survivor = ({"node-a", "node-b"} - {doomed}).pop()

    results = send_many(cluster, deployment.name, 4000)
    # Kill the node while it holds prefetched, unacknowledged requests: as soon as its first
    # answers are back (the result store shows them at once; the slice records' heartbeat came
    # too late on a loaded machine, when the node had already answered all 4,000).
    cluster.wait_for("the doomed node to be serving", lambda: results[0].ready(), timeout_s=120)
    cluster.kill_node(doomed)
    killed_at = time.monotonic()

    responses = [r.get(timeout=120) for r in results]
    assert len(responses) == 4000, "every request answered, none lost"
    late = [r for r in responses if r["replica"].endswith("@" + survivor)]
    assert late, "the survivor served what the dead node left"
    cluster.wait_for(
        "the dead node to leave the plan",
        lambda: (
            cluster.replicas(deployment.name)
            and nodes_of(cluster.replicas(deployment.name)) == {survivor}
        ),
    )
    assert time.monotonic() - killed_at < 60


def test_a_request_larger_than_any_batch_is_refused_with_a_clear_error(cluster, checkpoints):
    deployment = payload_deployment(cluster, checkpoints)
    cluster.deploy(deployment)
    cluster.start_node("node-a", slices="cpu=1")
    cluster.wait_for("a replica", lambda: cluster.serving(deployment.name))

    too_many_rows = send_request(cluster.app, deployment.name, {"window": windows(9)})
    with pytest.raises(Exception, match=r"request of 9 rows exceeds .* max_batch_size 8"):
        too_many_rows.get(timeout=60)
    fine = send_request(cluster.app, deployment.name, {"window": windows(8)})
    assert read_response(fine.get(timeout=60)).outputs["payload_t"].shape == (8,)
    wrong_shape = send_request(
        cluster.app, deployment.name, {"window": np.zeros((1, 2, 16), np.float32)}
    )
    with pytest.raises(Exception, match="window"):
        wrong_shape.get(timeout=60)


def test_a_deployment_too_large_for_every_slice_is_left_unplaced_with_the_reason(
    cluster, checkpoints
):
    huge = payload_deployment(cluster, checkpoints, memory_bytes=1 << 50)
    cluster.deploy(huge)
    cluster.start_node("node-a", slices="cpu=1")
    # The first plans may come before the slice is up ("no live slice"); then the size speaks.
    plan = cluster.wait_for(
        "a plan with the slice up",
        lambda: (
            (r := cluster.store.read_plan()) and "MiB" in r.plan.unplaced.get(huge.name, "") and r
        ),
    )
    assert "largest slice has" in plan.plan.unplaced[huge.name]
    assert huge.name not in plan.routes


def test_a_node_restarts_a_slice_worker_that_dies_and_it_serves_again(cluster, checkpoints):
    deployment = payload_deployment(cluster, checkpoints)
    cluster.deploy(deployment)
    cluster.start_node("node-a", slices="cpu=1")
    cluster.wait_for("a replica", lambda: cluster.serving(deployment.name))
    (first,) = [r["pid"] for r in cluster.store.slice_records()]

    os.kill(first, signal.SIGKILL)
    cluster.wait_for(
        "the node to restart its worker",
        lambda: [
            s for n in cluster.store.node_records() for s in n["slices"] if s["restarts"] == 1
        ],
    )
    cluster.wait_for(
        "the new worker serving",
        lambda: [
            r
            for r in cluster.store.slice_records()
            if r["pid"] != first and deployment.name in r["serving"]
        ],
    )
    response = send_request(cluster.app, deployment.name, {"window": windows(1)}).get(timeout=60)
    assert read_response(response).outputs["payload_t"].shape == (1,)


def test_a_new_model_version_rolls_out_in_place_without_a_new_plan(cluster, checkpoints):
    deployment = payload_deployment(cluster, checkpoints)
    cluster.deploy(deployment)
    cluster.start_node("node-a", slices="cpu=1")
    cluster.wait_for("a replica", lambda: cluster.serving(deployment.name))
    version = cluster.store.read_plan().version

    # The deployment now serves another checkpoint (here another network, so it shows).
    cluster.store.put_deployment(replace(deployment, checkpoint=str(checkpoints["eta"])))
    cluster.wait_for(
        "the new version loaded",
        lambda: [
            r
            for s in cluster.store.slice_records()
            for r in s["replicas"]
            if r["deployment"] == deployment.name and r["model_id"].startswith("eta")
        ],
    )
    X, F = windows(1), features(1)
    response = send_request(cluster.app, deployment.name, {"window": X, "features": F})
    assert "eta_s" in read_response(response.get(timeout=60)).outputs
    assert cluster.store.read_plan().version == version
