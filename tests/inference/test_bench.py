"""The batching bench's packed mode and efficiency figure, on the tiny network: real slice
workers on RabbitMQ and Redis, a few seconds of load, sane figures back."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from inference.bench import (
    _Senders,
    bench_slice,
    delete_queues,
    inprocess_throughput,
    run_batching,
    slice_worker,
    wait_served,
)
from inference.loadgen import LoadClient, Tally, _forward_passes, encoded_requests, packed_requests
from inference.placement import Deployment
from inference.worker import make_app
from tests.inference.conftest import windows


def test_packs_are_cut_in_turn_from_the_inputs_and_wrap():
    inputs = {"window": np.arange(5, dtype=np.float32)[:, None]}
    packs = packed_requests(inputs, 3, 3)
    assert [p["window"][:, 0].tolist() for p in packs] == [[0, 1, 2], [3, 4, 0], [1, 2, 3]]


def test_a_results_forward_passes_are_its_batch_or_its_packs_chunks():
    assert _forward_passes({"batch_rows": 7}) == [7]
    assert _forward_passes(
        {"batch_rows": 40, "chunks": [[0, 32, 1, 2, 32, 1], [32, 40, 1, 2, 9, 2]]}
    ) == [32, 9]
    assert _forward_passes(None) == []
    tally = Tally(batch_rows=41, batches=2)
    assert tally.mean_batch_rows() == 20.5


def test_in_process_throughput_runs_the_network_on_the_benchs_slice(checkpoints):
    deployment = Deployment(name="payload", checkpoint=str(checkpoints["payload"]))
    per_s, per_cpu_s, engine = inprocess_throughput(
        bench_slice(0.5), deployment, {"window": windows(40)}, [1, 8], seconds=0.3
    )
    assert engine == "onnx"  # what a CPU worker's "auto" picks
    assert set(per_s) == {1, 8}
    assert all(v > 0 for v in per_s.values())
    # Windows per CPU second: at least per wall second, one thread at most a core.
    assert all(per_cpu_s[b] >= 0.9 * per_s[b] for b in per_s)


@pytest.mark.services
def test_the_batching_bench_reports_efficiency_for_single_windows_and_packs(checkpoints, settings):
    deployment = Deployment(
        name="payload",
        model="payload",
        checkpoint=str(checkpoints["payload"]),
        batching={"max_queue_delay_ms": 2.0},
    )
    logged: list[str] = []
    figures = run_batching(
        deployment,
        {"window": windows(64)},
        redis_url=settings.REDIS_URL,
        concurrency=8,
        clients=1,
        seconds=1.5,
        warmup_s=0.5,
        max_batch_size=8,
        pack=16,
        inprocess_s=0.3,
        log=logged.append,
    )
    for label in ("batch1", "batched", "packed"):
        assert figures[f"{label}_failed"] == 0
        assert figures[f"{label}_per_s"] > 0
        assert 0 < figures[f"{label}_efficiency"] < 5  # a ratio, not a count
        assert figures[f"{label}_mean_batch_rows"] >= 1
        assert 0 < figures[f"{label}_worker_cpu"] <= 1.2  # the worker, pinned to one core
        assert figures[f"{label}_cpu_efficiency"] > 0
    assert figures["inprocess_batched_per_s"] > 0 and figures["inprocess_batch1_per_s"] > 0
    # The efficiency is the windows served against the in-process rate at the same batch size.
    assert figures["batched_efficiency"] == pytest.approx(
        figures["batched_per_s"] / figures["inprocess_batched_per_s"], rel=0.01, abs=1e-3
    )
    assert figures["batch1_mean_batch_rows"] == 1
    # A pack of 16 on a batch cap of 8 runs as two full chunks of 8.
    assert figures["packed_mean_batch_rows"] == 8
    assert figures["efficiency"] == figures["packed_efficiency"]
    assert figures["pack"] == 16
    assert any("packs of 16" in line for line in logged)


@pytest.mark.services
def test_the_pool_benchs_senders_send_packs_at_the_offered_window_rate(checkpoints, settings):
    name = f"test-pack-{uuid.uuid4().hex[:6]}"
    deployment = Deployment(name=name, checkpoint=str(checkpoints["payload"]))
    packs = packed_requests({"window": windows(32)}, 4, 4)
    spec = bench_slice(0.5)
    with slice_worker(spec, [deployment], node="test-pack"):
        probe = LoadClient(make_app(), settings.REDIS_URL)
        try:
            wait_served(probe, name, encoded_requests(packs[0], 1)[0], timeout_s=120)
        finally:
            probe.close()
        senders = _Senders({name: packs}, settings.REDIS_URL, {name: 1}, pack=4)
        try:
            # 40 windows/s for 1 s in packs of 4: ten messages, each a pack answered whole.
            # A long grace: a half-core slice on a loaded machine answered 4 packs after 5 s.
            (tally,) = senders.run({name: ([(0.0, 1.0)], 40.0)}, grace_s=30.0, lead_s=0.5)
        finally:
            senders.close()
            delete_queues(make_app(), [name])
    assert (tally["sent"], tally["done"], tally["failed"], tally["late"]) == (10, 10, 0, 0)
