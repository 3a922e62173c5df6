"""``haulmind_pool_*``: the pool read from Redis at scrape time, on a registry of its own and on
the web process's ``/metrics``; a Redis outage answers ``haulmind_pool_up 0``, never a 500."""

from __future__ import annotations

import time

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleet.pool import services
from inference.metrics import PoolCollector
from inference.pool import PoolStore
from tests.pool.conftest import slice_heartbeat

A0 = {"node": "node-a", "slice": "cpu/0", "device": "cpu"}
FAULT_A0 = {**A0, "deployment": "fault"}


def scrape(collector: PoolCollector) -> dict[tuple[str, frozenset], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_the_collector_exports_nodes_slices_replicas_and_deployments(busy_pool):
    busy_pool.set_draining("node-b", by="sofia")
    samples = scrape(PoolCollector(busy_pool))

    assert value(samples, "haulmind_pool_up") == 1
    assert value(samples, "haulmind_pool_plan_version") == 1
    assert 0 <= value(samples, "haulmind_pool_plan_age_seconds") < 60
    assert value(samples, "haulmind_pool_node_up", node="node-a") == 1
    assert value(samples, "haulmind_pool_node_draining", node="node-a") == 0
    assert value(samples, "haulmind_pool_node_draining", node="node-b") == 1
    restarts = "haulmind_pool_node_worker_restarts_total"
    assert value(samples, restarts, node="node-b", slice="cpu/0") == 3

    assert value(samples, "haulmind_pool_slice_busy_ratio", **A0) == 0.8
    assert value(samples, "haulmind_pool_slice_configured_share_ratio", **A0) == 0.5
    assert value(samples, "haulmind_pool_slice_delivered_share_ratio", **A0) == 0.4
    assert value(samples, "haulmind_pool_slice_memory_limit_bytes", **A0) == 4 * 2**30
    assert value(samples, "haulmind_pool_slice_memory_used_bytes", **A0) == 2**30
    assert value(samples, "haulmind_pool_slice_replicas", **A0) == 1

    info = {**FAULT_A0, "model_id": "fault@3", "engine": "onnxruntime"}
    assert value(samples, "haulmind_pool_replica_info", **info) == 1
    assert value(samples, "haulmind_pool_replica_queue_requests", **FAULT_A0) == 7
    assert value(samples, "haulmind_pool_replica_mean_batch_rows", **FAULT_A0) == 16
    assert value(samples, "haulmind_pool_replica_utilisation_ratio", **FAULT_A0) == 0.45
    latency = "haulmind_pool_replica_latency_seconds"
    assert value(samples, latency, **FAULT_A0, quantile="0.5") == pytest.approx(0.012)
    assert value(samples, latency, **FAULT_A0, quantile="0.99") == pytest.approx(0.040)
    compute = "haulmind_pool_replica_compute_seconds"
    assert value(samples, compute, **FAULT_A0, quantile="0.99") == pytest.approx(0.031)
    requests = "haulmind_pool_replica_requests_total"
    assert value(samples, requests, **FAULT_A0, outcome="completed") == 100
    assert value(samples, requests, **FAULT_A0, outcome="failed") == 3
    assert value(samples, requests, **FAULT_A0, outcome="timed_out") == 2
    rejected = "haulmind_pool_replica_rejected_total"
    assert value(samples, rejected, **FAULT_A0, reason="queue_full") == 4
    assert value(samples, "haulmind_pool_replica_batches_total", **FAULT_A0) == 25

    assert value(samples, "haulmind_pool_deployment_replicas", deployment="fault") == 2
    assert value(samples, "haulmind_pool_deployment_unplaced", deployment="fault") == 0
    assert value(samples, "haulmind_pool_deployment_unplaced", deployment="eta") == 1
    assert value(samples, "haulmind_pool_deployment_min_replicas", deployment="fault") == 2
    assert value(samples, "haulmind_pool_deployment_slo_seconds", deployment="fault") == 0.2


def test_figures_not_measured_yet_are_left_out_not_zero(pool):
    fresh = slice_heartbeat("node-a", "cpu/0", [])
    fresh["share"] = None
    pool.beat_slice({**fresh, "replicas": []})
    samples = scrape(PoolCollector(pool))
    assert value(samples, "haulmind_pool_slice_configured_share_ratio", **A0) == 0.5
    assert ("haulmind_pool_slice_delivered_share_ratio", frozenset(A0.items())) not in samples
    assert value(samples, "haulmind_pool_plan_version") == 0


def test_a_malformed_heartbeat_is_skipped_not_the_scrape(busy_pool):
    busy_pool.beat_slice({"node": "node-x", "name": "cpu/9", "replicas": "oops"})  # no device
    samples = scrape(PoolCollector(busy_pool))
    assert value(samples, "haulmind_pool_up") == 1
    assert value(samples, "haulmind_pool_slice_busy_ratio", **A0) == 0.8


def test_a_redis_outage_scrapes_as_up_0_quickly():
    client = redis.Redis(port=1, socket_connect_timeout=0.5)
    started = time.monotonic()
    samples = scrape(PoolCollector(PoolStore(client, prefix="nowhere", node_ttl_s=1)))
    assert value(samples, "haulmind_pool_up") == 0
    assert not any(name.startswith("haulmind_pool_node") for name, _ in samples)
    assert time.monotonic() - started < 10


def test_a_collector_reads_its_store_at_each_scrape(busy_pool, settings):
    collector = PoolCollector(services.pool_store)
    assert value(scrape(collector), "haulmind_pool_node_up", node="node-a") == 1
    settings.POOL_REDIS_URL = "redis://127.0.0.1:1/0"
    assert value(scrape(collector), "haulmind_pool_up") == 0


def test_installing_the_collector_twice_registers_it_once(pool):
    registry = CollectorRegistry()
    assert services.install_collector(registry) is True
    assert services.install_collector(registry) is False
    assert "haulmind_pool_up 1.0" in generate_latest(registry).decode()


@pytest.mark.django_db
def test_the_web_processes_metrics_include_the_pool(client, busy_pool):
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert "haulmind_pool_up 1.0" in text
    assert 'haulmind_pool_node_up{node="node-a"} 1.0' in text
    assert "haulmind_ingest_batch_seconds" in text  # beside the process's own metrics


@pytest.mark.django_db
def test_the_metrics_page_answers_during_a_redis_outage(client, outage):
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    assert "haulmind_pool_up 0.0" in response.content.decode()
