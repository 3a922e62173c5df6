"""The pool's benchmarks, run by ``manage.py bench batching|pool`` (fleet supplies the models).

``batching``: one slice worker serving one deployment, first with batches of one request (each
request its own forward pass, as one Celery task per request would run), then with dynamic
batching; the same slice, the same closed-loop clients, the same requests. The figure is the
ratio of throughputs, with both p99 latencies beside it.

Both benches start real worker processes and talk to them through the real broker (RabbitMQ)
and result backend (Redis); nothing here is simulated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from celery import Celery

from inference.devices import cpu_info
from inference.loadgen import LoadClient, closed_loop, encoded_requests
from inference.placement import Deployment
from inference.slices import SliceSpec, split_device
from inference.worker import make_app, queue_name

Log = Callable[[str], None]
ROOT = Path(__file__).resolve().parents[1]


def bench_slice(share: float) -> SliceSpec:
    """The CPU slice a benchmark's worker gets: ``share`` of this machine's CPU, from core 0."""
    cpu = cpu_info()
    return split_device(cpu, shares=[share])[0]


@contextmanager
def slice_worker(
    spec: SliceSpec,
    deployments: list[Deployment],
    *,
    node: str,
    log_path: Path | None = None,
    follow_plan: bool = False,
    env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A ``python -m inference.worker`` process for the duration of the block."""
    command = [
        sys.executable,
        "-m",
        "inference.worker",
        "--node",
        node,
        "--slice",
        json.dumps(spec.to_dict()),
        "--loglevel",
        "WARNING",
    ]
    for deployment in deployments:
        command += ["--deployment", json.dumps(deployment.to_dict())]
    if follow_plan:
        command.append("--follow-plan")
    output: Any = log_path.open("ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command,
        cwd=ROOT,
        stdout=output,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def delete_queues(app: Celery, names: list[str]) -> None:
    with app.connection_for_write() as connection:
        channel = connection.channel()
        for name in names:
            channel.queue_delete(queue_name(name))


def wait_served(
    client: LoadClient, deployment: str, request: Mapping[str, Any], timeout_s: float
) -> None:
    """Block until the deployment answers a request (its worker is up and consuming)."""
    client.send(deployment, request)
    if not client.wait_idle(timeout_s):
        raise RuntimeError(f"no worker served {deployment} within {timeout_s:.0f} s")


def run_batching(
    deployment: Deployment,
    inputs: Mapping[str, np.ndarray],
    *,
    redis_url: str,
    concurrency: int = 64,
    seconds: float = 10.0,
    warmup_s: float = 3.0,
    share: float = 0.5,
    max_batch_size: int = 32,
    log: Log = print,
) -> dict[str, Any]:
    """Batch-1 against dynamic batching on one slice; see the module docstring."""
    app = make_app()
    spec = bench_slice(share)
    requests = encoded_requests(inputs, 256)
    client = LoadClient(app, redis_url)
    figures: dict[str, Any] = {
        "deployment": deployment.model or deployment.name,
        "slice": f"{spec.compute_share:.2f} of the CPU (cores {list(spec.cores)})",
        "concurrency": concurrency,
        "seconds": seconds,
    }
    try:
        for label, batch in (("batch1", 1), ("batched", max_batch_size)):
            name = f"bench-{label}-{uuid.uuid4().hex[:6]}"
            config = {**deployment.batching, "max_batch_size": batch, "preferred_batch_sizes": []}
            served = replace(deployment, name=name, batching=config)
            log(f"{label}: worker on {spec.name}, max_batch_size {batch}, {concurrency} clients")
            try:
                with slice_worker(spec, [served], node=f"bench-{label}"):
                    wait_served(client, name, requests[0], timeout_s=120)
                    tally = closed_loop(
                        client,
                        name,
                        requests,
                        concurrency=concurrency,
                        warmup_s=warmup_s,
                        seconds=seconds,
                    )
            finally:
                delete_queues(app, [name])
            figures[f"{label}_per_s"] = round(tally.done / seconds, 1)
            figures[f"{label}_p50_ms"] = _round(tally.p50_ms())
            figures[f"{label}_p99_ms"] = _round(tally.p99_ms())
            figures[f"{label}_failed"] = tally.failed
            log(f"{label}: {figures[f'{label}_per_s']}/s, p99 {figures[f'{label}_p99_ms']} ms")
            time.sleep(1.0)
    finally:
        client.close()
    figures["speedup"] = round(figures["batched_per_s"] / max(figures["batch1_per_s"], 1e-9), 2)
    return figures


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
