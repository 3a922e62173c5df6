"""A worker node: discovers its devices, cuts them into slices, runs one worker per slice.

    python -m inference.node --name node-a --slices "cpu=2; cuda:0=0.5,0.25,0.25"

The node is the supervisor of its slice workers (``python -m inference.worker --follow-plan``):
it starts one per slice, restarts one that exits (with a growing pause, so a worker that cannot
start does not spin), and beats the node's record into the pool's Redis every second. The
scheduler counts a node only while it beats; a node that is killed simply stops, its record
expires, and the scheduler places its work elsewhere, while RabbitMQ hands its workers'
unacknowledged requests to the replicas that remain. A clean stop (SIGTERM, SIGINT) stops the
workers first and removes the node's record at once.

Slice workers are separate processes started with their own interpreter (never forked from a
process that may have touched CUDA), each applying its slice's limits before it loads a model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.devices import DeviceInfo, discover_devices
from inference.health import HealthFile
from inference.pool import HEARTBEAT_S, PoolStore
from inference.slices import SliceSpec, parse_slice_plan

logger = logging.getLogger(__name__)

DEFAULT_PLAN = "cpu=1"
MAX_RESTART_PAUSE_S = 30.0


@dataclass
class _Child:
    spec: SliceSpec
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started: float = field(default_factory=time.time)


class Node:
    """One node's supervisor: its slices' worker processes and its heartbeat."""

    def __init__(
        self,
        name: str,
        slices: Sequence[SliceSpec],
        *,
        store: PoolStore | None = None,
        devices: Sequence[DeviceInfo] = (),
        worker_args: Sequence[str] = (),
        log_dir: Path | None = None,
    ) -> None:
        if not slices:
            raise ValueError(f"node {name}: no slices to serve")
        self.name = name
        self.store = store or PoolStore()
        self.devices = list(devices)
        self.worker_args = list(worker_args)
        self.log_dir = log_dir
        self.children = [_Child(spec) for spec in slices]
        self.started = time.time()
        # Touched after each beat the pool took (an orchestrator's liveness probe).
        self.health = HealthFile()
        self._stop = threading.Event()

    def worker_command(self, spec: SliceSpec) -> list[str]:
        return [
            sys.executable,
            "-m",
            "inference.worker",
            "--node",
            self.name,
            "--slice",
            json.dumps(spec.to_dict()),
            "--follow-plan",
            *self.worker_args,
        ]

    def _start(self, child: _Child) -> None:
        output: Any = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            safe = child.spec.name.replace("/", "-").replace(":", "")
            output = (self.log_dir / f"{self.name}-{safe}.log").open("ab")
        child.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self.worker_command(child.spec),
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HAULMIND_NODE": self.name},
        )
        child.started = time.time()
        logger.info(
            "%s: started worker for %s (pid %d)", self.name, child.spec.name, child.process.pid
        )

    def supervise(self) -> None:
        """Start workers that are not running (after their pause), restart those that exited."""
        now = time.monotonic()
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                continue
            if child.process is not None:
                code = child.process.returncode
                child.process = None
                child.restarts += 1
                pause = min(MAX_RESTART_PAUSE_S, 2 ** min(child.restarts, 5) / 2)
                child.next_start = now + pause
                logger.warning(
                    "%s: worker for %s exited (%s); restarting in %.1f s",
                    self.name,
                    child.spec.name,
                    code,
                    pause,
                )
            if now >= child.next_start:
                self._start(child)

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": self.started,
            "devices": [d.to_dict() for d in self.devices],
            "slices": [
                {
                    "name": c.spec.name,
                    "spec": c.spec.to_dict(),
                    "pid": c.process.pid if c.process else None,
                    "restarts": c.restarts,
                }
                for c in self.children
            ],
        }

    def run(self) -> None:
        """Supervise and beat until stopped."""
        while not self._stop.is_set():
            try:
                self.supervise()
                self.store.beat_node(self.record())
                self.health.touch()
            except Exception:
                logger.exception("%s: supervision failed; trying again", self.name)
            self._stop.wait(HEARTBEAT_S)
        self.shutdown()

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def shutdown(self, timeout_s: float = 20.0) -> None:
        """Stop the workers (they finish what they hold), then leave the pool."""
        self.health.clear()
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + timeout_s
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        try:
            self.store.forget_node(self.name)
        except Exception:
            logger.exception("%s: could not remove the node's record", self.name)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=os.environ.get("HAULMIND_NODE") or socket.gethostname())
    parser.add_argument(
        "--slices",
        default=os.environ.get("HAULMIND_SLICES") or DEFAULT_PLAN,
        help='slice plan, e.g. "cpu=2; cuda:0=4" (default $HAULMIND_SLICES or cpu=1)',
    )
    parser.add_argument("--no-cgroup", action="store_true", help="workers set no CPU quota")
    parser.add_argument("--log-dir", type=Path, help="one log file per slice worker")
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.loglevel, format="%(asctime)s %(name)s %(message)s")
    devices = discover_devices()
    try:
        slices = parse_slice_plan(args.slices, devices)
    except ValueError as exc:
        parser.error(f"--slices {args.slices!r}: {exc}")
    worker_args = ["--loglevel", args.loglevel] + (["--no-cgroup"] if args.no_cgroup else [])
    node = Node(args.name, slices, devices=devices, worker_args=worker_args, log_dir=args.log_dir)
    signal.signal(signal.SIGTERM, node.stop)
    signal.signal(signal.SIGINT, node.stop)
    logger.info("node %s: %s", node.name, ", ".join(s.name for s in slices))
    node.run()


if __name__ == "__main__":
    main()
