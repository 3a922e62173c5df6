"""Dynamic batching: requests gathered into one forward pass through a real runtime, results
split back per request, delays and sizes honoured, and failures kept to their own request."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from inference.batching import (
    BatcherClosed,
    BatchingConfig,
    DynamicBatcher,
    QueueFull,
    QueueTimeout,
    RequestTooLarge,
    SliceOutOfMemory,
)
from models import load_runtime
from tests.inference.conftest import features, windows


class Recorder:
    """A stand-in model that records each batch's rows and answers 2 * x after ``delay_s``."""

    def __init__(self, delay_s: float = 0.0, fail_on: float | None = None, oom: bool = True):
        self.delay_s, self.fail_on, self.oom = delay_s, fail_on, oom
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = batch["x"]
        with self.lock:
            self.batches.append(len(x))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_on is not None and (x == self.fail_on).any():
            if self.oom:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            raise RuntimeError("the kernel refused this input")
        return {"y": 2 * x, "total": x.reshape(len(x), -1).sum(axis=1)}


def rows(n: int, value: float = 1.0, width: int = 3) -> dict[str, np.ndarray]:
    return {"x": np.full((n, width), value, dtype=np.float32)}


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_batched_outputs_equal_batch_one_outputs_of_a_real_model(checkpoints, engine):
    runtime = load_runtime(checkpoints["eta"], device="cpu", engine=engine)
    X, F = windows(12, seed=1), features(12, seed=1)
    requests = [{"window": X[i : i + 1], "features": F[i : i + 1]} for i in range(10)]
    requests.append({"window": X[10:12], "features": F[10:12]})  # one request of two rows
    config = BatchingConfig(max_batch_size=16, max_queue_delay_ms=200)
    with DynamicBatcher(runtime, config, name="eta") as batcher:
        futures = [batcher.submit(r) for r in requests]
        responses = [f.result(timeout=30) for f in futures]
        stats = batcher.stats()
    assert stats["batches"] < len(requests) and max(stats["batch_rows"]) > 1
    for request, response in zip(requests, responses, strict=True):
        alone = runtime.run(request)
        assert response.outputs.keys() == alone.keys()
        for key, value in alone.items():
            assert response.outputs[key].shape == value.shape
            np.testing.assert_allclose(response.outputs[key], value, rtol=1e-5, atol=1e-5)
    assert responses[-1].outputs["eta_s"].shape == (2, 3)


def test_a_runtime_declares_the_row_shapes_a_request_must_have(checkpoints):
    runtime = load_runtime(checkpoints["payload"], device="cpu", engine="torch")
    with DynamicBatcher(runtime, name="payload") as batcher:
        assert batcher.input_shapes == {"window": (3, 16)}
        with pytest.raises(ValueError, match=r"window rows must be \[3, 16\], got \[3, 8\]"):
            batcher.submit({"window": np.zeros((1, 3, 8))})
        with pytest.raises(ValueError, match="missing inputs"):
            batcher.submit({"features": np.zeros((1, 4))})
        out = batcher.infer({"window": windows(1).astype(np.float64)})  # cast to float32
        assert out.outputs["payload_t"].shape == (1,)


def test_a_lone_request_waits_the_maximum_delay_and_no_longer():
    model = Recorder()
    with DynamicBatcher(model, BatchingConfig(max_batch_size=8, max_queue_delay_ms=40)) as b:
        started = time.perf_counter()
        response = b.infer(rows(1))
        waited_ms = (time.perf_counter() - started) * 1000
    assert 38 <= response.queue_ms <= waited_ms < 40 + 150  # loose top: a shared machine
    assert model.batches == [1]


def test_a_full_batch_leaves_without_waiting_out_the_delay():
    model = Recorder()
    with DynamicBatcher(model, BatchingConfig(max_batch_size=4, max_queue_delay_ms=5000)) as b:
        started = time.perf_counter()
        futures = [b.submit(rows(1, value=i)) for i in range(4)]
        results = [f.result(timeout=2) for f in futures]
        assert time.perf_counter() - started < 1.0
    assert model.batches == [4]
    assert [float(r.outputs["y"][0, 0]) for r in results] == [0.0, 2.0, 4.0, 6.0]
    assert all(r.batch_rows == 4 and r.batch_requests == 4 for r in results)


def test_a_preferred_batch_size_leaves_at_once():
    model = Recorder()
    config = BatchingConfig(max_batch_size=8, max_queue_delay_ms=5000, preferred_batch_sizes=(2,))
    with DynamicBatcher(model, config) as b:
        started = time.perf_counter()
        first, second = b.submit(rows(1)), b.submit(rows(1))
        first.result(timeout=2), second.result(timeout=2)
        assert time.perf_counter() - started < 1.0
    assert model.batches == [2]


def test_requests_are_never_split_across_batches():
    model = Recorder()
    with DynamicBatcher(model, BatchingConfig(max_batch_size=4, max_queue_delay_ms=50)) as b:
        futures = [b.submit(rows(n, value=n)) for n in (3, 2, 2)]
        results = [f.result(timeout=2) for f in futures]
    assert model.batches == [3, 4]
    assert [r.outputs["y"].shape for r in results] == [(3, 3), (2, 3), (2, 3)]
    assert float(results[0].outputs["total"][0]) == 9.0


def test_a_request_larger_than_the_slice_is_refused_with_a_clear_error():
    config = BatchingConfig(max_batch_size=4, memory_budget_bytes=1000, bytes_per_row=300)
    with DynamicBatcher(Recorder(), config, name="traj") as b:
        with pytest.raises(RequestTooLarge, match="5 rows exceeds replica traj's max_batch_size 4"):
            b.submit(rows(5))
        with pytest.raises(RequestTooLarge, match=r"needs about 1200 bytes.*slice has 1000"):
            b.submit(rows(4))
        assert b.infer(rows(3)).outputs["y"].shape == (3, 3)
        assert b.stats()["rejected"] == {"RequestTooLarge": 2}


def test_out_of_memory_fails_only_the_request_that_does_not_fit():
    model = Recorder(fail_on=13.0)
    with DynamicBatcher(model, BatchingConfig(max_batch_size=8, max_queue_delay_ms=100)) as b:
        futures = [b.submit(rows(1, value=v)) for v in (1, 2, 13, 4, 5)]
        with pytest.raises(SliceOutOfMemory, match="ran out of replica"):
            futures[2].result(timeout=5)
        others = [f.result(timeout=5) for i, f in enumerate(futures) if i != 2]
        stats = b.stats()
    assert [float(r.outputs["y"][0, 0]) for r in others] == [2.0, 4.0, 8.0, 10.0]
    assert model.batches[0] == 5 and stats["splits"] >= 1 and stats["out_of_memory"] >= 1
    assert stats["failed"] == 1 and stats["completed"] == 4


def test_any_model_error_is_narrowed_to_its_own_request():
    model = Recorder(fail_on=7.0, oom=False)
    with DynamicBatcher(model, BatchingConfig(max_batch_size=8, max_queue_delay_ms=100)) as b:
        good, bad = b.submit(rows(1, value=1)), b.submit(rows(1, value=7))
        with pytest.raises(RuntimeError, match="refused this input"):
            bad.result(timeout=5)
        assert good.result(timeout=5).outputs["y"][0, 0] == 2.0


def test_requests_whose_inputs_do_not_stack_run_in_separate_batches():
    model = Recorder()
    with DynamicBatcher(model, BatchingConfig(max_batch_size=8, max_queue_delay_ms=50)) as b:
        futures = [b.submit(rows(1, width=w)) for w in (3, 5, 3, 5)]
        shapes = [f.result(timeout=2).outputs["y"].shape for f in futures]
    assert shapes == [(1, 3), (1, 5), (1, 3), (1, 5)]
    assert sorted(model.batches) == [2, 2]


def test_queue_time_and_compute_time_are_measured_apart():
    model = Recorder(delay_s=0.05)
    with DynamicBatcher(model, BatchingConfig(max_batch_size=8, max_queue_delay_ms=30)) as b:
        response = b.infer(rows(1))
        stats = b.stats()
    assert 28 <= response.queue_ms < 200 and 48 <= response.compute_ms < 300
    assert response.latency_ms == pytest.approx(response.queue_ms + response.compute_ms)
    assert stats["queue_ms"]["p50"] == pytest.approx(response.queue_ms)
    assert stats["compute_ms"]["p99"] == pytest.approx(response.compute_ms)
    assert stats["busy_s"] >= 0.048 and 0 < stats["utilisation"] <= 1


def test_a_request_that_waits_past_its_timeout_is_not_run():
    model = Recorder(delay_s=0.3)
    with DynamicBatcher(model, BatchingConfig(max_batch_size=1, max_queue_delay_ms=0)) as b:
        first = b.submit(rows(1))
        late = b.submit(rows(1, value=9), timeout_ms=50)
        with pytest.raises(QueueTimeout, match="not started within"):
            late.result(timeout=5)
        first.result(timeout=5)
        assert b.stats()["timed_out"] == 1
    assert model.batches == [1]


def test_a_bounded_queue_pushes_back_when_full():
    model = Recorder(delay_s=0.2)
    config = BatchingConfig(max_batch_size=1, max_queue_delay_ms=0, max_queue_size=1)
    with DynamicBatcher(model, config) as b:
        running = b.submit(rows(1))
        time.sleep(0.05)  # the first is in its forward pass; the queue is empty again
        waiting = b.submit(rows(1))
        with pytest.raises(QueueFull):
            b.submit(rows(1))
        running.result(timeout=5), waiting.result(timeout=5)


def test_closing_drains_the_queue_or_fails_it():
    model = Recorder()
    batcher = DynamicBatcher(model, BatchingConfig(max_batch_size=8, max_queue_delay_ms=10_000))
    pending = batcher.submit(rows(1))
    batcher.close()  # drains without waiting out the 10 s delay
    assert pending.result(timeout=1).outputs["y"][0, 0] == 2.0
    with pytest.raises(BatcherClosed):
        batcher.submit(rows(1))
    slow = DynamicBatcher(Recorder(), BatchingConfig(max_batch_size=8, max_queue_delay_ms=10_000))
    dropped = slow.submit(rows(1))
    slow.close(drain=False)
    with pytest.raises(BatcherClosed):
        dropped.result(timeout=1)


def test_two_instances_run_two_forward_passes_at_once():
    model = Recorder(delay_s=0.2)
    config = BatchingConfig(max_batch_size=1, max_queue_delay_ms=0, instances=2)
    with DynamicBatcher(model, config) as b:
        started = time.perf_counter()
        futures = [b.submit(rows(1)) for _ in range(2)]
        [f.result(timeout=5) for f in futures]
        assert time.perf_counter() - started < 0.35


def test_a_model_that_loses_rows_fails_the_batch_loudly():
    with DynamicBatcher(lambda batch: {"y": batch["x"][:1]}, BatchingConfig(8, 20)) as b:
        futures = [b.submit(rows(1)) for _ in range(3)]
        for future in futures:
            with pytest.raises(RuntimeError, match="for a batch of 3 rows"):
                future.result(timeout=2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_batch_size": 0},
        {"max_batch_size": 4, "preferred_batch_sizes": (8,)},
        {"max_queue_delay_ms": -1},
        {"instances": 0},
    ],
)
def test_an_impossible_configuration_is_refused(kwargs):
    with pytest.raises(ValueError):
        BatchingConfig(**kwargs)


def test_the_configuration_round_trips_as_plain_data():
    config = BatchingConfig(16, 5.0, (4, 8), max_queue_size=100)
    assert BatchingConfig.from_dict(config.to_dict()) == config


def test_the_queue_depth_the_scheduler_scales_on_counts_requests_and_rows():
    batcher = DynamicBatcher(
        Recorder(), BatchingConfig(max_batch_size=8, max_queue_delay_ms=10_000)
    )
    futures = [batcher.submit(rows(n)) for n in (1, 2, 3)]
    assert batcher.queue_depth() == (3, 6)
    assert batcher.stats()["queue_rows"] == 6
    batcher.close()
    assert batcher.queue_depth() == (0, 0) and all(f.done() for f in futures)


def test_a_pack_larger_than_the_batch_cap_runs_in_full_chunks_and_comes_back_in_order():
    model = Recorder()
    x = np.arange(70 * 3, dtype=np.float32).reshape(70, 3)
    with DynamicBatcher(model, BatchingConfig(max_batch_size=32, max_queue_delay_ms=5)) as b:
        pack = b.submit_pack({"x": x}).result(timeout=10)
        with pytest.raises(RequestTooLarge):
            b.submit({"x": x})  # a plain request is still never split
    assert sorted(model.batches) == [6, 32, 32]
    np.testing.assert_array_equal(pack.outputs["y"], 2 * x)
    assert [(c[0], c[1]) for c in pack.chunks] == [(0, 32), (32, 64), (64, 70)]
    assert pack.rows == 70


def test_a_pack_chunk_is_batched_with_other_requests_and_a_failing_chunk_fails_the_pack():
    model = Recorder(delay_s=0.05, fail_on=-1.0, oom=False)
    config = BatchingConfig(max_batch_size=8, max_queue_delay_ms=50)
    with DynamicBatcher(model, config) as b:
        first = b.submit(rows(1, 3.0))
        pack = b.submit_pack(rows(5, 1.0))
        assert first.result(timeout=10).batch_requests == 2  # one request + the pack's chunk
        assert pack.result(timeout=10).chunks[0][5] == 2
        bad = b.submit_pack({"x": np.concatenate([rows(8)["x"], rows(2, -1.0)["x"]])})
        with pytest.raises(RuntimeError, match="refused"):
            bad.result(timeout=10)
