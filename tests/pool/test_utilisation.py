"""The pool over time: every minute each beating slice and replica is sampled into PostgreSQL
(kept POOL_SAMPLE_RETENTION_DAYS), and read back as series per slice and per deployment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleet.pool import services, tasks
from fleet.pool.models import UtilisationSample


@pytest.mark.django_db
def test_a_sample_holds_each_beating_slice_and_replica_and_old_ones_go(busy_pool, settings):
    settings.POOL_SAMPLE_RETENTION_DAYS = 14
    old = UtilisationSample.objects.create(
        at=datetime.now(UTC) - timedelta(days=15), node="node-a", slice_name="cpu/0"
    )

    assert tasks.sample_utilisation() == 2  # node-b's worker is not beating: nothing to sample

    rows = {(s.node, s.slice_name, s.deployment): s for s in UtilisationSample.objects.all()}
    assert set(rows) == {("node-a", "cpu/0", "fault"), ("node-a", "cpu/1", "eta")}
    fault = rows[("node-a", "cpu/0", "fault")]
    assert fault.busy == 0.8 and fault.served_per_s == 9.5 and fault.model_id == "fault@3"
    assert fault.latency_p99_ms is not None and fault.mean_batch_rows is not None
    assert rows[("node-a", "cpu/1", "eta")].queue_requests == 2
    assert not UtilisationSample.objects.filter(pk=old.pk).exists()


@pytest.mark.django_db
def test_the_pool_away_is_a_gap_not_a_failure(outage):
    assert tasks.sample_utilisation() == 0
    assert not UtilisationSample.objects.exists()


def test_the_api_reads_the_series_per_slice_and_per_deployment(api_client, viewer, busy_pool):
    services.sample_utilisation()
    services.sample_utilisation()
    api_client.force_authenticate(viewer)
    start = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()

    body = api_client.get("/api/v1/pool/utilisation/", {"from": start}).json()

    assert set(body["slices"]) == {"node-a/cpu/0", "node-a/cpu/1"}
    assert [busy for _, busy in body["slices"]["node-a/cpu/0"]] == [0.8, 0.8]
    fault = body["deployments"]["fault"]
    assert len(fault) == 2 and fault[0]["replicas"] == 1 and fault[0]["served_per_s"] == 9.5
    missing = api_client.get("/api/v1/pool/utilisation/")
    assert missing.status_code == 400 and "from" in missing.json()


def test_the_pools_history_needs_a_role(api_client, outsider):
    api_client.force_authenticate(outsider)
    start = datetime.now(UTC).isoformat()
    assert api_client.get("/api/v1/pool/utilisation/", {"from": start}).status_code == 403
