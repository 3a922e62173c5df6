"""The Celery wiring of a slice worker: a worker process consuming its deployments' queues on
RabbitMQ, handing messages to the batcher as they arrive, storing results per batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from inference.client import read_pack, send_pack
from inference.devices import cpu_info
from inference.placement import Deployment
from inference.slices import split_device
from inference.worker import make_app, queue_name, read_response, send_request, slice_hostname
from models import load_runtime
from tests.inference.conftest import features, windows

ROOT = Path(__file__).resolve().parents[2]


def test_a_slice_worker_is_named_after_its_slice_and_node():
    spec = split_device(cpu_info(), 1)[0]
    assert slice_hostname(spec, "node-a") == "cpu-0@node-a"


def test_a_deployment_name_that_cannot_be_a_queue_is_refused():
    with pytest.raises(ValueError, match="bad deployment name"):
        queue_name("eta champion; rm")


@pytest.fixture
def broker(settings):
    # The session's service check has made sure this is a RabbitMQ that answers.
    return settings.CELERY_BROKER_URL, settings.CELERY_RESULT_BACKEND


def start_worker(deployments: list[Deployment], broker, log: Path) -> subprocess.Popen[bytes]:
    spec = split_device(cpu_info(), 1)[0]
    command = [sys.executable, "-m", "inference.worker", "--no-cgroup", "--node", "test"]
    command += ["--slice", json.dumps(spec.to_dict())]
    for deployment in deployments:
        command += ["--deployment", json.dumps(deployment.to_dict())]
    env = {**os.environ, "CELERY_BROKER_URL": broker[0], "CELERY_RESULT_BACKEND": broker[1]}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def stop(worker: subprocess.Popen[bytes], client, names: list[str]) -> None:
    worker.terminate()
    worker.wait(30)
    with client.connection_for_write() as conn:
        for name in names:
            conn.default_channel.queue_delete(queue_name(name))


@pytest.mark.services
def test_a_worker_serves_a_burst_from_rabbitmq_in_batched_forward_passes(
    checkpoints, broker, tmp_path
):
    name = f"test-eta-{uuid.uuid4().hex[:8]}"
    eta = Deployment(
        name=name,
        checkpoint=str(checkpoints["eta"]),
        batching={"max_batch_size": 8, "max_queue_delay_ms": 20},
    )
    client = make_app(*broker)
    X, F = windows(16, seed=5), features(16, seed=5)
    # Sent before the worker starts: it finds a queue of 16 and takes a batch's worth at once.
    results = [
        send_request(client, name, {"window": X[i : i + 1], "features": F[i : i + 1]})
        for i in range(16)
    ]
    worker = start_worker([eta], broker, tmp_path / "worker.log")
    try:
        responses = [read_response(r.get(timeout=120)) for r in results]
    except Exception:
        print((tmp_path / "worker.log").read_text()[-4000:])
        raise
    finally:
        stop(worker, client, [name])
    runtime = load_runtime(checkpoints["eta"], device="cpu", engine="torch")
    for i, response in enumerate(responses):
        alone = runtime.run({"window": X[i : i + 1], "features": F[i : i + 1]})
        np.testing.assert_allclose(response.outputs["eta_s"], alone["eta_s"], rtol=1e-4, atol=1e-4)
    assert max(r.batch_requests for r in responses) > 1
    assert all(r.batch_requests <= 8 for r in responses)


@pytest.mark.services
def test_one_worker_serves_two_deployments_and_refuses_bad_requests_alone(
    checkpoints, broker, tmp_path
):
    tag = uuid.uuid4().hex[:6]
    eta = Deployment(name=f"test-eta-{tag}", checkpoint=str(checkpoints["eta"]))
    payload = Deployment(name=f"test-payload-{tag}", checkpoint=str(checkpoints["payload"]))
    client = make_app(*broker)
    worker = start_worker([eta, payload], broker, tmp_path / "worker.log")
    try:
        X, F = windows(3, seed=1), features(3, seed=1)
        good_eta = send_request(client, eta.name, {"window": X[:1], "features": F[:1]})
        missing_input = send_request(client, eta.name, {"window": X[1:2]})
        good_payload = send_request(client, payload.name, {"window": X[2:3]})
        expired = send_request(
            client,
            payload.name,
            {"window": X[:1]},
            expires=datetime.now(UTC) - timedelta(seconds=1),
        )
        assert read_response(good_eta.get(timeout=120)).outputs["eta_s"].shape[0] == 1
        assert read_response(good_payload.get(timeout=60)).outputs["payload_t"].shape == (1,)
        with pytest.raises(Exception, match="missing inputs"):
            missing_input.get(timeout=60)
        # Never served: RabbitMQ drops it on its TTL, or the worker refuses it as expired.
        with pytest.raises(Exception, match=r"expired|timed out"):
            expired.get(timeout=5)
    finally:
        stop(worker, client, [eta.name, payload.name])


@pytest.mark.services
def test_a_pack_of_windows_returns_per_row_results_equal_to_single_requests(
    checkpoints, broker, tmp_path
):
    name = f"test-eta-{uuid.uuid4().hex[:8]}"
    eta = Deployment(
        name=name,
        checkpoint=str(checkpoints["eta"]),
        batching={"max_batch_size": 8, "max_queue_delay_ms": 5},
    )
    client = make_app(*broker)
    n = 21  # three chunks of at most 8 rows in one message
    X, F = windows(n, seed=11), features(n, seed=11)
    keys = [f"truck-{i}" for i in range(n)]
    worker = start_worker([eta], broker, tmp_path / "worker.log")
    try:
        pack = send_pack(client, name, {"window": X, "features": F}, keys=keys)
        singles = [
            send_request(client, name, {"window": X[i : i + 1], "features": F[i : i + 1]})
            for i in range(n)
        ]
        wrong_keys = send_pack(client, name, {"window": X[:2], "features": F[:2]})
        packed = pack.get(timeout=120)
        alone = [read_response(r.get(timeout=60)) for r in singles]
        assert wrong_keys.get(timeout=60)["keys"] is None  # keys are optional
    except Exception:
        print((tmp_path / "worker.log").read_text()[-4000:])
        raise
    finally:
        stop(worker, client, [name])
    rows = read_pack(packed)
    assert packed["keys"] == keys and len(rows) == n
    assert [c[1] - c[0] for c in packed["chunks"]] == [8, 8, 5]
    for row, single in zip(rows, alone, strict=True):
        # Batch composition differs (a pack's chunk against batched singles): float tolerance.
        np.testing.assert_allclose(
            row.outputs["eta_s"], single.outputs["eta_s"], rtol=1e-5, atol=1e-5
        )
        assert row.outputs["eta_s"].shape == single.outputs["eta_s"].shape == (1, 3)


class RecordedMessage:
    """Stands in for the broker's message object: records what the writer did with it."""

    def __init__(self) -> None:
        self.outcome: str | None = None

    def ack(self) -> None:
        self.outcome = "acked"

    def reject(self, requeue: bool = False) -> None:
        self.outcome = "requeued" if requeue else "rejected"


@pytest.mark.services
def test_results_are_stored_in_celerys_format_before_their_messages_are_acked(settings):
    from celery.result import AsyncResult

    from inference.worker import ResultWriter, _Done

    app = make_app(settings.CELERY_BROKER_URL, settings.CELERY_RESULT_BACKEND)
    writer = ResultWriter(app)
    ok, bad = RecordedMessage(), RecordedMessage()
    ok_id, bad_id = str(uuid.uuid4()), str(uuid.uuid4())
    writer.put(_Done(ok, ok_id, {}, {"outputs": {}, "replica": "r"}, None))
    writer.put(_Done(bad, bad_id, {}, None, ValueError("request of 9 rows exceeds")))
    writer.close()
    assert ok.outcome == bad.outcome == "acked"
    assert AsyncResult(ok_id, app=app).get(timeout=5) == {"outputs": {}, "replica": "r"}
    with pytest.raises(ValueError, match="9 rows"):
        AsyncResult(bad_id, app=app).get(timeout=5)


def test_results_that_cannot_be_stored_go_back_to_the_queue(monkeypatch):
    from inference import worker as worker_module

    monkeypatch.setattr(worker_module, "STORE_RETRIES_S", (0.0, 0.0))
    app = make_app(backend="redis://127.0.0.1:1/0")  # nothing listens on port 1
    app.conf.redis_backend_health_check_interval = None
    app.conf.result_backend_transport_options = {"retry_policy": {"max_retries": 0}}
    writer = worker_module.ResultWriter(app)
    message = RecordedMessage()
    writer.put(worker_module._Done(message, str(uuid.uuid4()), {}, {"outputs": {}}, None))
    writer.close()
    assert message.outcome == "requeued"
