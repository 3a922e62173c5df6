"""A pool on this machine for the tests: worker nodes and a scheduler as separate processes.

Each test gets a pool of its own (a Redis key prefix, uniquely named deployments and so queues),
real node processes (each starting its slice workers) and a real scheduler process, all talking
through the real RabbitMQ and Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inference.placement import Deployment
from inference.pool import PoolStore
from inference.worker import make_app, queue_name

ROOT = Path(__file__).resolve().parents[2]


class Cluster:
    """Nodes and a scheduler on one pool; ``close`` stops them and removes the pool's keys and
    queues."""

    def __init__(self, log_dir: Path, broker: str, backend: str, tick_s: float = 0.2) -> None:
        self.prefix = f"haulmind:test-pool:{uuid.uuid4().hex[:8]}"
        self.tag = uuid.uuid4().hex[:6]
        self.store = PoolStore(prefix=self.prefix)
        self.app = make_app(broker, backend)
        self.log_dir = log_dir
        self.env = {
            **os.environ,
            "HAULMIND_POOL_PREFIX": self.prefix,
            "CELERY_BROKER_URL": broker,
            "CELERY_RESULT_BACKEND": backend,
        }
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []
        self.scheduler = self._spawn(
            "scheduler", ["-m", "inference.scheduler", "--tick", str(tick_s)]
        )
        self.deployments: list[str] = []

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        self._logs.append(log)
        # A session of its own, so killing a node kills its slice workers with it.
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def name(self, deployment: str) -> str:
        """A deployment name unique to this test (queues are shared by the whole broker)."""
        return f"{deployment}-{self.tag}"

    def deploy(self, deployment: Deployment) -> None:
        self.store.put_deployment(deployment)
        self.deployments.append(deployment.name)

    def start_node(self, name: str, slices: str = "cpu=2") -> None:
        self.nodes[name] = self._spawn(
            name,
            [
                "-m",
                "inference.node",
                "--name",
                name,
                "--slices",
                slices,
                "--no-cgroup",
                "--log-dir",
                str(self.log_dir),
            ],
        )

    def kill_node(self, name: str) -> None:
        """SIGKILL the node and its workers at once: no clean shutdown, no goodbye."""
        process = self.nodes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def wait_for(self, what: str, check: Callable[[], Any], timeout_s: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{self.logs()}")

    def replicas(self, deployment: str) -> tuple[str, ...]:
        record = self.store.read_plan()
        return tuple(record.plan.replicas.get(deployment, ())) if record else ()

    def serving(self, deployment: str) -> set[str]:
        """Slice keys whose workers report consuming the deployment's queue now."""
        return {
            f"{r['node']}/{r['name']}"
            for r in self.store.slice_records()
            if deployment in r.get("serving", ())
        }

    def logs(self, tail: int = 3000) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    def close(self) -> None:
        for process in [self.scheduler, *self.nodes.values()]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in [self.scheduler, *self.nodes.values()]:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        with self.app.connection_for_write() as connection:
            channel = connection.channel()
            for name in self.deployments:
                channel.queue_delete(queue_name(name))
        self.store.clear()
        for log in self._logs:
            log.close()
