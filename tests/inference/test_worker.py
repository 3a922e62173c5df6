"""The Celery wiring: a replica worker process consuming its deployment's queue on RabbitMQ,
prefetching requests and running them as batched forward passes."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from inference.batching import BatchingConfig
from inference.devices import cpu_info
from inference.slices import split_device
from inference.wire import encode_arrays
from inference.worker import (
    ReplicaConfig,
    make_app,
    queue_name,
    read_response,
    send_request,
    worker_argv,
    worker_concurrency,
)
from models import load_runtime
from tests.inference.conftest import features, windows
from tests.inference.workers import serve_in_replica

ROOT = Path(__file__).resolve().parents[2]


def replica_config(checkpoint: Path, deployment: str) -> ReplicaConfig:
    whole_cpu = split_device(cpu_info(), 1)[0]
    return ReplicaConfig(
        deployment=deployment,
        checkpoint=str(checkpoint),
        slice=whole_cpu,
        batching=BatchingConfig(max_batch_size=8, max_queue_delay_ms=20),
        engine="torch",
    )


def test_a_replica_config_travels_as_json_and_names_its_worker(checkpoints):
    config = replica_config(checkpoints["eta"], "eta-champion")
    again = ReplicaConfig.from_text(json.dumps(config.to_dict()))
    assert again == config
    assert config.hostname == f"eta-champion-cpu-0@{config.node}"
    argv = worker_argv(config)
    assert "--pool=threads" in argv and "--queues=inference.eta-champion" in argv
    assert "--concurrency=16" in argv and worker_concurrency(config.batching) == 16


def test_a_deployment_name_that_cannot_be_a_queue_is_refused():
    with pytest.raises(ValueError, match="bad deployment name"):
        queue_name("eta champion; rm")


@pytest.mark.services
def test_a_worker_serves_a_burst_from_rabbitmq_in_batched_forward_passes(
    checkpoints, settings, tmp_path
):
    broker, backend = settings.CELERY_BROKER_URL, settings.CELERY_RESULT_BACKEND
    if not broker.startswith("amqp"):
        pytest.skip(f"needs RabbitMQ, broker is {broker}")
    deployment = f"test-eta-{uuid.uuid4().hex[:8]}"
    config = replica_config(checkpoints["eta"], deployment)
    client = make_app(broker, backend)
    X, F = windows(16, seed=5), features(16, seed=5)
    # Sent before the worker starts: it finds a queue of 16 and takes a batch's worth at once.
    results = [
        send_request(client, deployment, {"window": X[i : i + 1], "features": F[i : i + 1]})
        for i in range(16)
    ]
    log = (tmp_path / "worker.log").open("w")
    env = {**os.environ, "CELERY_BROKER_URL": broker, "CELERY_RESULT_BACKEND": backend}
    worker = subprocess.Popen(
        [sys.executable, "-m", "inference.worker", "--no-cgroup", "--replica", config_json(config)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        responses = [read_response(r.get(timeout=120)) for r in results]
    except Exception:
        log.flush()
        print((tmp_path / "worker.log").read_text()[-4000:])
        raise
    finally:
        worker.terminate()
        worker.wait(30)
        with client.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue_name(deployment))
    runtime = load_runtime(checkpoints["eta"], device="cpu", engine="torch")
    for i, response in enumerate(responses):
        alone = runtime.run({"window": X[i : i + 1], "features": F[i : i + 1]})
        np.testing.assert_allclose(response.outputs["eta_s"], alone["eta_s"], rtol=1e-5, atol=1e-5)
    assert max(r.batch_requests for r in responses) > 1
    assert all(r.batch_requests <= 8 for r in responses)


def config_json(config: ReplicaConfig) -> str:
    return json.dumps(config.to_dict())


def test_a_replica_applies_its_slice_batches_and_reports_what_it_got(checkpoints):
    config = replica_config(checkpoints["payload"], "payload")
    requests = [encode_arrays({"window": windows(1, seed=i)}) for i in range(6)]
    with mp.get_context("spawn").Pool(1) as pool:
        got = pool.apply(serve_in_replica, (config.to_dict(), requests))
    assert all(r["model_id"] and r["replica"] == config.hostname for r in got["results"])
    described = got["describe"]
    steps = {s["mechanism"]: s["applied"] for s in described["enforcement"]["steps"]}
    assert steps["cpu_affinity"] and steps["torch_threads"]
    assert described["batching"]["completed"] == 6
    assert described["batching"]["config"]["memory_budget_bytes"] == config.slice.memory_bytes
    share = described["share"]
    assert share["configured_share"] == 1.0 and share["delivered_share"] > 0
    assert share["source"] == "os.times"
