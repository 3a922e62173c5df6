"""The pool's benchmarks, run by ``manage.py bench batching|pool`` (fleet supplies the models).

``batching``: one slice worker serving one deployment, first with batches of one request (each
request its own forward pass, as one Celery task per request would run), then with dynamic
batching; the same slice, the same closed-loop clients, the same requests. The figure is the
ratio of throughputs, with both p99 latencies beside it. With ``pack`` a third run sends the
same windows as packs (``inference.client.send_pack``: many windows, one message).

Each run's ``efficiency`` is the worker's windows per second against the same network's
throughput in-process at the same batch size, on the same engine, threads and cores, measured
in the same bench run (``inprocess_throughput``): what serving over the broker costs beside the
forward passes themselves.

Both benches start real worker processes and talk to them through the real broker (RabbitMQ)
and result backend (Redis); nothing here is simulated.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from celery import Celery

from inference import config
from inference.devices import cpu_info
from inference.loadgen import LoadClient, Tally, closed_loop, encoded_requests, packed_requests
from inference.placement import Deployment
from inference.pool import PoolStore
from inference.slices import SliceSpec, apply_slice, process_cpu_seconds, split_device
from inference.worker import make_app, queue_name
from models import load_runtime
from models.artifacts import resolve_checkpoint

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


def _closed_loop_client(
    deployment: str,
    requests: list[dict[str, Any]],
    redis_url: str,
    concurrency: int,
    warmup_s: float,
    seconds: float,
    cores: list[int],
    results: Any,
    packs: bool = False,
    watch_pid: int | None = None,
) -> None:
    """One client process of the batching bench, kept off the slice's cores when it can be.
    ``watch_pid``: the worker, whose CPU time this client reads over the measured interval."""
    if cores:
        os.sched_setaffinity(0, cores)
    client = LoadClient(make_app(), redis_url, id_prefix=f"{os.getpid()}-")
    marks: list[tuple[float, float]] = []

    def mark(_: bool) -> None:
        if watch_pid is not None:
            marks.append((time.perf_counter(), process_cpu_seconds(watch_pid)))

    try:
        tally = closed_loop(
            client,
            deployment,
            requests,
            concurrency=concurrency,
            warmup_s=warmup_s,
            seconds=seconds,
            packs=packs,
            on_recording=mark,
        )
    finally:
        client.close()
    (t0, cpu0), (t1, cpu1) = marks if len(marks) == 2 else ((0.0, 0.0), (0.0, 0.0))
    results.put(
        {
            "worker_cpu_s": cpu1 - cpu0,
            "worker_wall_s": t1 - t0,
            "done": tally.done,
            "failed": tally.failed,
            "latencies_ms": tally.latencies_ms,
            "rows": tally.rows,
            "batch_rows": tally.batch_rows,
            "batches": tally.batches,
        }
    )


def _closed_loop(
    deployment: str,
    requests: list[dict[str, Any]],
    *,
    redis_url: str,
    concurrency: int,
    processes: int,
    warmup_s: float,
    seconds: float,
    cores: list[int],
    packs: bool = False,
    watch_pid: int | None = None,
) -> tuple[Tally, float | None]:
    """``concurrency`` requests kept in flight by ``processes`` client processes (one Python
    process sends and reads about 800 requests/s: alone it would measure itself). ``packs``:
    the requests are packs, sent with ``send_pack``. Also returns the share of a core the
    process ``watch_pid`` (the worker) used over the measured interval, if given."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    share, extra = divmod(concurrency, processes)
    workers = [
        ctx.Process(
            target=_closed_loop_client,
            args=(
                deployment,
                requests,
                redis_url,
                share + (i < extra),
                warmup_s,
                seconds,
                cores,
                results,
                packs,
                watch_pid if i == 0 else None,
            ),
            daemon=True,
        )
        for i in range(processes)
    ]
    for process in workers:
        process.start()
    merged = Tally()
    cpu_share = None
    for _ in workers:
        part = results.get(timeout=warmup_s + seconds + 120)
        if part["worker_wall_s"] > 0:
            cpu_share = part["worker_cpu_s"] / part["worker_wall_s"]
        merged.done += part["done"]
        merged.failed += part["failed"]
        merged.latencies_ms += part["latencies_ms"]
        merged.rows += part["rows"]
        merged.batch_rows += part["batch_rows"]
        merged.batches += part["batches"]
    for process in workers:
        process.join(10)
    return merged, cpu_share


def _inprocess_child(
    spec: dict[str, Any],
    checkpoint: str,
    inputs: Mapping[str, np.ndarray],
    batch_sizes: list[int],
    engine: str,
    seconds: float,
    results: Any,
) -> None:
    """The worker's runtime, loaded and limited as ``inference.worker`` does (the slice's
    affinity, threads and CPU quota first, then ``load_runtime`` with the slice's threads), its
    forward passes timed back to back at each batch size."""
    try:
        slice_spec = SliceSpec.from_dict(spec)
        apply_slice(slice_spec)
        directory = resolve_checkpoint(
            checkpoint,
            root=config.artifact_root(),
            cache=config.artifact_cache(),
            endpoint_url=config.artifact_endpoint(),
        )
        runtime = load_runtime(
            directory, device=slice_spec.device, engine=engine, threads=slice_spec.threads
        )
        per_s, per_cpu_s = {}, {}
        for batch in batch_sizes:
            rows = packed_requests(inputs, batch, 8)  # a few distinct batches, cut once
            for request in rows[:3]:
                runtime.run(request)  # warm: the first passes allocate
            done, i = 0, 0
            started, cpu = time.perf_counter(), process_cpu_seconds()
            deadline = started + seconds
            while (now := time.perf_counter()) < deadline or done == 0:
                runtime.run(rows[i % len(rows)])
                done += batch
                i += 1
            per_s[batch] = done / (now - started)
            per_cpu_s[batch] = done / max(process_cpu_seconds() - cpu, 1e-3)
        engine_used = runtime.describe().get("engine")
        results.put({"per_s": per_s, "per_cpu_s": per_cpu_s, "engine": engine_used})
    except Exception as exc:  # reported to the parent, which fails the bench with it
        results.put({"error": f"{type(exc).__name__}: {exc}"})


def inprocess_throughput(
    spec: SliceSpec,
    deployment: Deployment,
    inputs: Mapping[str, np.ndarray],
    batch_sizes: Sequence[int],
    *,
    engine: str = "auto",
    seconds: float = 3.0,
) -> tuple[dict[int, float], dict[int, float], str | None]:
    """Windows per second of the deployment's network run in-process on ``spec``'s slice at
    each batch size, windows per CPU second, and the engine it ran on: what the slice worker
    would reach if serving cost nothing beside the forward passes.

    A process of its own (spawned, so nothing of the caller's threads or affinity leaks in)
    applies the slice as the worker does, so the figure is on the same cores, thread count,
    CPU quota and engine as the worker's.
    """
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    process = ctx.Process(
        target=_inprocess_child,
        args=(
            spec.to_dict(),
            str(deployment.checkpoint),
            dict(inputs),
            list(batch_sizes),
            engine,
            seconds,
            results,
        ),
        daemon=True,
    )
    process.start()
    try:
        outcome = results.get(timeout=120 + seconds * len(batch_sizes))
    finally:
        process.join(30)
        if process.is_alive():
            process.terminate()
    if "error" in outcome:
        raise RuntimeError(f"in-process throughput: {outcome['error']}")
    return (
        {int(k): float(v) for k, v in outcome["per_s"].items()},
        {int(k): float(v) for k, v in outcome["per_cpu_s"].items()},
        outcome["engine"],
    )


def run_batching(
    deployment: Deployment,
    inputs: Mapping[str, np.ndarray],
    *,
    redis_url: str,
    concurrency: int = 64,
    clients: int = 2,
    seconds: float = 10.0,
    warmup_s: float = 3.0,
    share: float = 0.5,
    max_batch_size: int = 32,
    pack: int = 0,
    inprocess_s: float = 3.0,
    engine: str = "auto",
    log: Log = print,
) -> dict[str, Any]:
    """Batch-1 against dynamic batching on one slice, and packs of ``pack`` windows if given;
    each run's efficiency against in-process throughput. See the module docstring.

    ``concurrency``: windows in flight; packs keep ``concurrency / pack`` in flight, at least
    two per client process, so the worker always has the next pack waiting.
    """
    app = make_app()
    spec = bench_slice(share)
    requests = encoded_requests(inputs, 256)
    # The clients run on the cores the slice does not have, where there are any.
    others = sorted(set(os.sched_getaffinity(0)) - set(spec.cores))
    probe = LoadClient(app, redis_url)
    figures: dict[str, Any] = {
        "deployment": deployment.model or deployment.name,
        "slice": f"{spec.compute_share:.2f} of the CPU (cores {list(spec.cores)})",
        "clients": f"{clients} processes on cores {others or 'all'}",
        "concurrency": concurrency,
        "seconds": seconds,
        "max_batch_size": max_batch_size,
    }
    log(f"in-process: {deployment.model or deployment.name} on {spec.name}, {spec.threads} threads")
    inprocess, inprocess_cpu, engine_used = inprocess_throughput(
        spec, deployment, inputs, [1, max_batch_size], engine=engine, seconds=inprocess_s
    )
    figures["engine"] = engine_used
    figures["inprocess_batch1_per_s"] = round(inprocess[1], 1)
    figures["inprocess_batched_per_s"] = round(inprocess[max_batch_size], 1)
    # Below 1: something else held the core during the in-process passes (a shared machine).
    figures["inprocess_cpu"] = round(inprocess[max_batch_size] / inprocess_cpu[max_batch_size], 3)
    log(
        f"in-process ({engine_used}): {inprocess[1]:.0f} windows/s at batch 1, "
        f"{inprocess[max_batch_size]:.0f} at batch {max_batch_size}"
    )
    runs: list[tuple[str, int, int]] = [("batch1", 1, 0), ("batched", max_batch_size, 0)]
    if pack:
        runs.append(("packed", max_batch_size, pack))
        figures["pack"] = pack
    try:
        for label, batch, rows in runs:
            name = f"bench-{label}-{uuid.uuid4().hex[:6]}"
            batching = {**deployment.batching, "max_batch_size": batch, "preferred_batch_sizes": []}
            served = replace(deployment, name=name, batching=batching)
            in_flight = max(2 * clients, -(-concurrency // rows)) if rows else concurrency
            load = packed_requests(inputs, rows, 16) if rows else requests
            what = f"{in_flight} packs of {rows}" if rows else f"{in_flight} requests"
            log(f"{label}: worker on {spec.name}, max_batch_size {batch}, {what} in flight")
            try:
                with slice_worker(spec, [served], node=f"bench-{label}") as worker:
                    wait_served(probe, name, requests[0], timeout_s=120)
                    tally, cpu_share = _closed_loop(
                        name,
                        load,
                        redis_url=redis_url,
                        concurrency=in_flight,
                        processes=clients,
                        warmup_s=warmup_s,
                        seconds=seconds,
                        cores=others,
                        packs=bool(rows),
                        watch_pid=worker.pid,
                    )
            finally:
                delete_queues(app, [name])
            baseline = inprocess[batch]
            figures[f"{label}_per_s"] = round(tally.rows / seconds, 1)
            figures[f"{label}_p50_ms"] = _round(tally.p50_ms())
            figures[f"{label}_p99_ms"] = _round(tally.p99_ms())
            figures[f"{label}_failed"] = tally.failed
            figures[f"{label}_mean_batch_rows"] = _round(tally.mean_batch_rows())
            efficiency = tally.rows / seconds / baseline
            figures[f"{label}_efficiency"] = round(efficiency, 3)
            # Where a shortfall is: a worker short of a core waited (for messages, or for a
            # core that others took); per CPU second, what it spends beside the passes.
            figures[f"{label}_worker_cpu"] = None if cpu_share is None else round(cpu_share, 3)
            figures[f"{label}_cpu_efficiency"] = (
                round(tally.rows / seconds / cpu_share / inprocess_cpu[batch], 3)
                if cpu_share
                else None
            )
            log(
                f"{label}: {figures[f'{label}_per_s']} windows/s, p99 "
                f"{figures[f'{label}_p99_ms']} ms, efficiency {figures[f'{label}_efficiency']}"
            )
            time.sleep(1.0)
    finally:
        probe.close()
    figures["speedup"] = round(figures["batched_per_s"] / max(figures["batch1_per_s"], 1e-9), 2)
    # The figure issue 14 asks for: the way live serving sends (packs) where they were run.
    figures["efficiency"] = figures["packed_efficiency" if pack else "batched_efficiency"]
    return figures


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# --- the pool bench ----------------------------------------------------------------------------

CYCLE_S = 20.0  # each best-effort deployment bursts 5 s in every 20, phases staggered by 5 s
BURST_S = 5.0
GRACE_S = 2.0  # a request still unanswered this long after its burst has missed any SLO here


def burst_windows(index: int, cycles: int) -> list[tuple[float, float]]:
    """When the ``index``-th best-effort deployment is on, in seconds from the step's start."""
    return [
        (c * CYCLE_S + index * BURST_S, c * CYCLE_S + index * BURST_S + BURST_S)
        for c in range(cycles)
    ]


def _paced_sender(
    deployment: str,
    requests: list[dict[str, Any]],
    redis_url: str,
    commands: Any,
    results: Any,
    pack: int = 0,
) -> None:
    """A sender process: for each command ``(start_at, windows, rate, grace_s)`` send at ``rate``
    during the windows (open loop: on schedule whatever the answers), then report its tally.

    ``pack``: the requests are packs of that many windows (sent with ``send_pack``), and
    ``rate`` still counts windows: a pack leaves every ``pack / rate`` seconds."""
    client = LoadClient(make_app(), redis_url)
    per_message = max(1, pack)
    try:
        while (command := commands.get()) is not None:
            start_at, windows, rate, grace_s = command
            client.start_recording()
            sent = 0
            for begin, end in windows:
                count = int((end - begin) * rate / per_message)
                for k in range(count):
                    due = start_at + begin + k * per_message / rate
                    pause = due - time.time()
                    if pause > 0:
                        time.sleep(pause)
                    if pack:
                        client.send_pack(deployment, requests[sent % len(requests)])
                    else:
                        client.send(deployment, requests[sent % len(requests)])
                    sent += 1
            last_end = start_at + max((w[1] for w in windows), default=0.0)
            client.wait_idle(max(0.0, last_end + grace_s - time.time()))
            tally = client.stop_recording().get(deployment)
            results.put(
                {
                    "deployment": deployment,
                    "sent": sent,
                    "done": tally.done if tally else 0,
                    "failed": tally.failed if tally else 0,
                    "latencies_ms": tally.latencies_ms if tally else [],
                    # Not answered within the grace after its window: late, whatever follows.
                    "late": client.outstanding(),
                }
            )
            client.wait_idle(60)  # stragglers must not count in the next step
    finally:
        client.close()


@dataclass
class PoolStep:
    """One offered load and how each deployment fared."""

    load_per_s: float
    burst_per_s: float
    ok: bool
    by_deployment: dict[str, dict[str, Any]]


def _judge(
    tallies: list[dict[str, Any]], slo_ms: Mapping[str, float]
) -> tuple[bool, dict[str, dict[str, Any]]]:
    outcome: dict[str, dict[str, Any]] = {}
    ok = True
    for tally in tallies:
        name = tally["deployment"]
        latencies = tally["latencies_ms"]
        p99 = float(np.percentile(latencies, 99)) if latencies else None
        met = (
            tally["failed"] == 0
            and tally["late"] == 0
            and tally["done"] == tally["sent"]
            and p99 is not None
            and p99 <= slo_ms[name]
        )
        ok = ok and met
        outcome[name] = {
            "sent": tally["sent"],
            "done": tally["done"],
            "failed": tally["failed"],
            "late": tally["late"],
            "p50_ms": _round(float(np.percentile(latencies, 50)) if latencies else None),
            "p99_ms": _round(p99),
            "slo_ms": slo_ms[name],
            "met": met,
        }
    return ok, outcome


class _Senders:
    """Sender processes, ``per_deployment`` for each deployment, started once per run."""

    def __init__(
        self,
        requests: Mapping[str, list[dict[str, Any]]],
        redis_url: str,
        per_deployment: Mapping[str, int],
        pack: int = 0,
    ) -> None:
        ctx = mp.get_context("spawn")
        self.results = ctx.Queue()
        self.commands: dict[str, list[Any]] = {}
        self.processes = []
        for name, encoded in requests.items():
            self.commands[name] = []
            for _ in range(per_deployment.get(name, 1)):
                commands = ctx.Queue()
                process = ctx.Process(
                    target=_paced_sender,
                    args=(name, encoded, redis_url, commands, self.results, pack),
                    daemon=True,
                )
                process.start()
                self.commands[name].append(commands)
                self.processes.append(process)

    def run(
        self,
        plan: Mapping[str, tuple[list[tuple[float, float]], float]],
        grace_s: float,
        lead_s: float = 2.0,
    ) -> list[dict[str, Any]]:
        """Send ``{deployment: (windows, rate)}`` from ``lead_s`` from now; merged tallies."""
        start_at = time.time() + lead_s
        expected = 0
        for name, (windows, rate) in plan.items():
            queues = self.commands[name]
            for queue in queues:
                queue.put((start_at, windows, rate / len(queues), grace_s))
                expected += 1
        merged: dict[str, dict[str, Any]] = {}
        for _ in range(expected):
            part = self.results.get(timeout=600)
            into = merged.setdefault(
                part["deployment"],
                {
                    "deployment": part["deployment"],
                    "sent": 0,
                    "done": 0,
                    "failed": 0,
                    "late": 0,
                    "latencies_ms": [],
                },
            )
            for key in ("sent", "done", "failed", "late"):
                into[key] += part[key]
            into["latencies_ms"] += part["latencies_ms"]
        return list(merged.values())

    def close(self) -> None:
        for queues in self.commands.values():
            for queue in queues:
                queue.put(None)
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.terminate()


@contextmanager
def _running_pool(
    mode: str,
    deployments: list[Deployment],
    *,
    slices: str,
    tick_s: float,
    log_dir: Path | None,
) -> Iterator[PoolStore]:
    """A node with ``slices`` and a scheduler, on a pool of their own, for one bench run."""
    prefix = f"haulmind:bench:{mode}:{uuid.uuid4().hex[:6]}"
    store = PoolStore(prefix=prefix)
    for deployment in deployments:
        store.put_deployment(deployment)
    env = {**os.environ, "HAULMIND_POOL_PREFIX": prefix}
    outputs = [
        (log_dir / f"pool-{mode}-{what}.log").open("ab") if log_dir else subprocess.DEVNULL
        for what in ("node", "scheduler")
    ]
    node_cmd = [
        sys.executable,
        "-m",
        "inference.node",
        "--name",
        f"bench-{mode}",
        "--slices",
        slices,
        "--loglevel",
        "WARNING",
    ]
    if log_dir:
        node_cmd += ["--log-dir", str(log_dir)]
    scheduler_cmd = [sys.executable, "-m", "inference.scheduler", "--tick", str(tick_s)]
    processes = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        for cmd, out in ((node_cmd, outputs[0]), (scheduler_cmd, outputs[1]))
    ]
    try:
        yield store
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        delete_queues(make_app(), [d.name for d in deployments])
        store.clear()


def run_pool(
    deployments: list[Deployment],
    inputs: Mapping[str, Mapping[str, np.ndarray]],
    *,
    redis_url: str,
    slices: str = "cpu=0.125,0.125,0.125,0.125",
    burst_rates: Sequence[float] = (100, 200, 300, 400, 500, 600, 700, 800, 1000, 1200),
    critical_rate: float = 20.0,
    cycles: int = 1,
    tick_s: float = 0.25,
    pooled_max_replicas: int = 3,
    grace_s: float = GRACE_S,
    pack: int = 0,
    log_dir: Path | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Exclusive slices against the pooled scheduler under the same bursty workload.

    ``deployments``: the three best-effort heads and the latency-critical one (by priority).
    Each step offers the critical deployment ``critical_rate`` steadily and each best-effort one
    a burst rate during its 5 s in every 20; a step passes when every request is served and
    every deployment's p99 is inside its SLO. Load is the mean offered rate over the cycle, in
    windows per second.

    ``pack``: every deployment's windows go as packs of that many (``send_pack``), as live
    serving sends them; a pack's latency is judged against the SLO as a request's is.
    """
    critical = [d for d in deployments if d.critical]
    bursty = sorted((d for d in deployments if not d.critical), key=lambda d: d.name)
    if len(critical) != 1 or not bursty:
        raise ValueError("the pool bench needs one critical deployment and best-effort ones")
    requests = {
        d.model or d.name: (
            packed_requests(inputs[d.model or d.name], pack, 16)
            if pack
            else encoded_requests(inputs[d.model or d.name], 128)
        )
        for d in deployments
    }
    figures: dict[str, Any] = {
        "slices": slices,
        "critical_rate": critical_rate,
        "cycles": cycles,
        "pack": pack,
    }
    runs: dict[str, list[PoolStep]] = {}
    for mode in ("exclusive", "pooled"):
        tag = uuid.uuid4().hex[:4]
        named = {
            d.model or d.name: replace(
                d,
                name=f"bench-{mode[:4]}-{d.model or d.name}-{tag}",
                min_replicas=1,
                max_replicas=1 if mode == "exclusive" or d.critical else pooled_max_replicas,
            )
            for d in deployments
        }
        served = {named[k].name: v for k, v in requests.items()}
        slo = {d.name: d.slo_ms for d in named.values()}
        log(f"{mode}: starting a node ({slices}) and the scheduler")
        with _running_pool(
            mode, list(named.values()), slices=slices, tick_s=tick_s, log_dir=log_dir
        ):
            senders = _Senders(
                served, redis_url, {named[d.model or d.name].name: 2 for d in bursty}, pack
            )
            try:
                probe = LoadClient(make_app(), redis_url)
                for d in deployments:
                    first = requests[d.model or d.name][0]
                    if pack:  # one window of the first pack, encoded as a single request
                        first = encoded_requests(first, 1)[0]
                    wait_served(probe, named[d.model or d.name].name, first, timeout_s=120)
                probe.close()
                runs[mode] = _steps(
                    mode,
                    senders,
                    named,
                    bursty,
                    critical[0],
                    slo,
                    burst_rates=burst_rates,
                    critical_rate=critical_rate,
                    cycles=cycles,
                    grace_s=grace_s,
                    log=log,
                )
            finally:
                senders.close()
    figures.update(_pool_figures(runs, critical[0], critical_rate))
    return figures


def _steps(
    mode: str,
    senders: _Senders,
    named: Mapping[str, Deployment],
    bursty: list[Deployment],
    critical: Deployment,
    slo: Mapping[str, float],
    *,
    burst_rates: Sequence[float],
    critical_rate: float,
    cycles: int,
    grace_s: float,
    log: Log,
) -> list[PoolStep]:
    """Step the burst rate up until a step misses an SLO. The first (unmeasured) step warms; a
    step that fails is run once more before the run ends (a shared machine has bad seconds)."""
    critical_name = named[critical.model or critical.name].name
    steps: list[PoolStep] = []

    def one_step(rate: float) -> PoolStep:
        plan = {
            named[d.model or d.name].name: (burst_windows(index, cycles), rate)
            for index, d in enumerate(bursty)
        }
        plan[critical_name] = ([(0.0, cycles * CYCLE_S)], critical_rate)
        ok, outcome = _judge(senders.run(plan, grace_s), slo)
        load = critical_rate + len(bursty) * rate * BURST_S / CYCLE_S
        return PoolStep(round(load, 1), rate, ok, outcome)

    one_step(burst_rates[0])
    log(f"{mode}: warm-up at burst {burst_rates[0]}/s done")
    for rate in burst_rates:
        step = one_step(rate)
        if not step.ok:
            _log_step(mode, step, log, "fails, once more")
            step = one_step(rate)
        _log_step(mode, step, log, "ok" if step.ok else "fails")
        steps.append(step)
        if not step.ok:
            break
    return steps


def _log_step(mode: str, step: PoolStep, log: Log, verdict: str) -> None:
    worst = ", ".join(
        f"{name.split('-')[2]} p99 {o['p99_ms']} ms{'' if o['met'] else ' MISSED'}"
        + (f" ({o['failed']} failed)" if o["failed"] else "")
        + (f" ({o['late']} unanswered {GRACE_S:g} s after the burst)" if o["late"] else "")
        for name, o in step.by_deployment.items()
    )
    log(f"{mode}: load {step.load_per_s:.0f}/s (bursts {step.burst_per_s}/s): {verdict}; {worst}")


def _pool_figures(
    runs: Mapping[str, list[PoolStep]], critical: Deployment, critical_rate: float
) -> dict[str, Any]:
    figures: dict[str, Any] = {"slo_ms": critical.slo_ms}
    for mode, steps in runs.items():
        passing = [s for s in steps if s.ok]
        best = passing[-1] if passing else None
        figures[f"{mode}_per_s"] = best.load_per_s if best else 0.0
        crit = next(
            (o for n, o in (best.by_deployment.items() if best else ()) if critical.model in n),
            None,
        )
        figures[f"{mode}_p99_ms"] = crit["p99_ms"] if crit else None
        figures[f"{mode}_steps"] = [
            {
                "load_per_s": s.load_per_s,
                "burst_per_s": s.burst_per_s,
                "ok": s.ok,
                "p99_ms": {n.split("-")[2]: o["p99_ms"] for n, o in s.by_deployment.items()},
            }
            for s in steps
        ]
    figures["gain"] = round(figures["pooled_per_s"] / max(figures["exclusive_per_s"], 1e-9), 2)
    return figures
