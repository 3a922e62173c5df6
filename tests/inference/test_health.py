"""Liveness files of the processes that serve no HTTP, the exec probe that reads them, and the
pool's processes touching theirs only while their work succeeds (real Redis)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import redis

from inference import config
from inference import pool as pool_module
from inference.health import HealthFile, problem
from inference.node import Node
from inference.pool import PoolStore
from inference.scheduler import SchedulerService
from inference.slices import SliceSpec
from tests.conftest import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def probe(path, max_age: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "inference.health", str(path), "--max-age", str(max_age)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_touched_file_is_healthy_and_an_old_one_is_stuck(tmp_path):
    health = HealthFile(tmp_path / "run" / "healthy")
    assert "does not exist" in problem(health.path, 10)
    health.touch()
    assert problem(health.path, 10) is None
    os.utime(health.path, (time.time() - 60, time.time() - 60))
    assert "last touched 60 s ago" in problem(health.path, 10)
    health.touch()  # within a second of the last touch: not written again
    assert problem(health.path, 10) is not None
    health.clear()
    assert not health.path.exists()


def test_without_the_variable_nothing_is_written(monkeypatch, tmp_path):
    monkeypatch.delenv("HAULMIND_HEALTH_FILE", raising=False)
    health = HealthFile()
    health.touch()
    assert not health.enabled and list(tmp_path.iterdir()) == []


def test_the_probe_exits_0_for_a_fresh_file_and_1_with_the_reason_otherwise(tmp_path):
    path = tmp_path / "healthy"
    missing = probe(path)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    path.touch()
    assert probe(path).returncode == 0
    os.utime(path, (time.time() - 100, time.time() - 100))
    stale = probe(path, max_age=30)
    assert stale.returncode == 1 and "stuck" in stale.stderr


def test_a_secret_variable_can_come_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "broker-url"
    secret.write_text("amqp://fleet:s3cret@rabbit:5672//\n")
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.setenv("CELERY_BROKER_URL_FILE", str(secret))
    assert config.broker_url() == "amqp://fleet:s3cret@rabbit:5672//"
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://direct//")
    assert config.broker_url() == "amqp://direct//", "the variable itself wins over its file"
    pool_file = tmp_path / "pool-redis"
    pool_file.write_text("redis://:pw@pool-redis:6379/2")
    monkeypatch.delenv("HAULMIND_POOL_REDIS_URL", raising=False)
    monkeypatch.setenv("HAULMIND_POOL_REDIS_URL_FILE", str(pool_file))
    assert pool_module.redis_url() == "redis://:pw@pool-redis:6379/2"


def test_an_unreadable_secret_file_is_named(monkeypatch, tmp_path):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_URL_FILE", str(tmp_path / "absent"))
    with pytest.raises(config.ConfigError, match=r"REDIS_URL_FILE=.*cannot be read"):
        config.redis_url()


@pytest.fixture
def store(settings):
    store = PoolStore(redis.Redis.from_url(settings.REDIS_URL), prefix=f"test-health-{os.getpid()}")
    yield store
    store.clear()


def run_in_thread(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


@pytest.mark.services
def test_a_scheduler_touches_its_file_each_round_and_removes_it_on_stop(
    settings, store, monkeypatch, tmp_path
):
    path = tmp_path / "scheduler-healthy"
    monkeypatch.setenv("HAULMIND_HEALTH_FILE", str(path))
    leader, standby = SchedulerService(store, tick_s=0.1), SchedulerService(store, tick_s=0.1)
    threads = [run_in_thread(leader.run), run_in_thread(standby.run)]
    try:
        wait_until(lambda: path.exists(), timeout=10, what="the health file")
        os.utime(path, (time.time() - 100, time.time() - 100))
        wait_until(lambda: problem(path, 5) is None, timeout=10, what="a fresh touch")
        assert leader.leading != standby.leading, "one leads, the other stands by, both healthy"
    finally:
        leader.stop()
        standby.stop()
        for thread in threads:
            thread.join(10)
    assert not path.exists()


def test_a_scheduler_that_cannot_reach_the_pool_never_touches_it(monkeypatch, tmp_path):
    path = tmp_path / "scheduler-healthy"
    monkeypatch.setenv("HAULMIND_HEALTH_FILE", str(path))
    dead = PoolStore(redis.Redis(port=1, socket_connect_timeout=0.2), prefix="nowhere")
    service = SchedulerService(dead, tick_s=0.05)
    thread = run_in_thread(service.run)
    time.sleep(1.0)
    service.stop()
    thread.join(10)
    assert not path.exists()


@pytest.mark.services
def test_a_node_touches_its_file_with_each_beat_the_pool_took(store, monkeypatch, tmp_path):
    path = tmp_path / "node-healthy"
    monkeypatch.setenv("HAULMIND_HEALTH_FILE", str(path))
    node = Node(
        "node-health",
        [SliceSpec(device="cpu", index=0, memory_bytes=1 << 30, compute_share=1.0)],
        store=store,
    )
    monkeypatch.setattr(node, "supervise", lambda: None)  # the beat, without starting workers
    thread = run_in_thread(node.run)
    try:
        wait_until(lambda: path.exists(), timeout=10, what="the node's health file")
        assert "node-health" in [r["name"] for r in store.node_records()]
    finally:
        node.stop()
        thread.join(30)
    assert not path.exists()


@pytest.mark.services
def test_the_schedulers_lease_is_held_renewed_and_released_by_its_owner_only(store):
    assert store.hold_leadership("a", 0.3)
    assert not store.hold_leadership("b", 0.3), "held by a"
    store.release_leadership("b")  # not b's to release
    assert not store.hold_leadership("b", 0.3)
    time.sleep(0.2)
    assert store.hold_leadership("a", 0.3), "a renews"
    time.sleep(0.2)
    assert not store.hold_leadership("b", 0.3), "renewed: still a's 0.4 s after it was taken"
    time.sleep(0.35)
    assert store.hold_leadership("b", 0.3), "lapsed: b takes it"
    assert not store.hold_leadership("a", 0.3), "a, late, renews nothing"
    store.release_leadership("b")
    assert store.hold_leadership("a", 0.3)
