"""The pool over REST: everyone in the control room reads it; supervisors drain and undrain
nodes, with their name in Redis and in the audit."""

from __future__ import annotations

import pytest

from fleet.pool.models import DrainChange
from tests.pool.conftest import node_record

pytestmark = pytest.mark.django_db

POOL = "/api/v1/pool/"
NODES = "/api/v1/pool/nodes/"
DEPLOYMENTS = "/api/v1/pool/deployments/"


def test_the_summary_shows_nodes_slices_replicas_deployments_and_the_plan(
    api_client, viewer, busy_pool
):
    api_client.force_authenticate(viewer)
    body = api_client.get(POOL).json()

    assert body["plan"]["version"] == 1
    assert body["plan"]["decisions"][-1] == "fault: scaled to node-b/cpu/0"
    assert body["plan"]["unplaced"] == {"eta": "1 replica short: no slice with 4 GiB free"}
    assert [n["name"] for n in body["nodes"]] == ["node-a", "node-b"]

    node_a = body["nodes"][0]
    assert node_a["up"] and not node_a["draining"] and node_a["host"] == "node-a.mine.local"
    cpu0 = node_a["slices"][0]
    assert cpu0["key"] == "node-a/cpu/0" and cpu0["live"] and cpu0["assigned"] == ["fault"]
    assert cpu0["share"]["delivered_share"] == 0.4 and cpu0["busy"] == 0.8
    assert cpu0["enforcement"][0]["mechanism"] == "affinity"
    (fault,) = cpu0["replicas"]
    assert fault["deployment"] == "fault" and fault["model_id"] == "fault@3"
    assert fault["latency_ms"]["p99"] == 40.0 and fault["mean_batch_rows"] == 16.0
    assert fault["rejected"] == {"queue_full": 4, "too_large": 1} and fault["rejected_total"] == 5

    # node-b's worker is being restarted: its slice is known from the node's record only.
    (restarting,) = body["nodes"][1]["slices"]
    assert not restarting["live"] and restarting["restarts"] == 3 and restarting["replicas"] == []
    assert restarting["device"] == "cpu" and restarting["assigned"] == ["fault"]

    by_name = {d["name"]: d for d in body["deployments"]}
    assert by_name["fault"]["replicas"] == ["node-a/cpu/0", "node-b/cpu/0"]
    assert by_name["fault"]["serving"] == ["node-a/cpu/0"]
    assert by_name["fault"]["route"]["queue"] == "inference.fault"
    assert by_name["fault"]["unplaced"] is None and by_name["fault"]["priority"] == "critical"
    assert by_name["eta"]["unplaced"].startswith("1 replica short")
    assert by_name["eta"]["queue_requests"] == 2


def test_an_empty_pool_has_no_plan_yet(api_client, viewer, pool):
    api_client.force_authenticate(viewer)
    assert api_client.get(POOL).json()["plan"] is None
    assert api_client.get(NODES).json() == []
    assert api_client.get(DEPLOYMENTS).json() == []


def test_nodes_read_one_by_one_and_an_unknown_node_is_404(api_client, viewer, busy_pool):
    api_client.force_authenticate(viewer)
    assert [n["name"] for n in api_client.get(NODES).json()] == ["node-a", "node-b"]
    node = api_client.get(f"{NODES}node-a/").json()
    assert [s["name"] for s in node["slices"]] == ["cpu/0", "cpu/1"]
    assert api_client.get(f"{NODES}node-z/").status_code == 404
    assert {d["name"] for d in api_client.get(DEPLOYMENTS).json()} == {"fault", "eta"}


def test_slices_that_outlive_their_node_show_the_node_down(api_client, viewer, busy_pool):
    busy_pool.redis.delete(busy_pool.key("node", "node-a"))  # the agent died; workers still beat
    api_client.force_authenticate(viewer)
    node = api_client.get(f"{NODES}node-a/").json()
    assert not node["up"] and [s["live"] for s in node["slices"]] == [True, True]


def test_a_supervisor_drains_and_undrains_a_node_and_is_audited(api_client, supervisor, busy_pool):
    api_client.force_authenticate(supervisor)
    response = api_client.post(f"{NODES}node-b/drain/", {"reason": "fan replacement"})
    assert response.status_code == 200, response.content
    assert response.json()["by_name"] == "sofia-supervisor" and response.json()["draining"]

    assert busy_pool.draining()["node-b"]["by"] == "sofia-supervisor"
    assert [v.draining for v in busy_pool.node_views()] == [False, True]
    node = api_client.get(f"{NODES}node-b/").json()
    assert node["draining"] and node["drained_by"] == "sofia-supervisor"

    assert api_client.post(f"{NODES}node-b/undrain/").status_code == 200
    assert busy_pool.draining() == {}
    audit = list(
        DrainChange.objects.order_by("at", "pk").values_list("node", "draining", "by", "reason")
    )
    assert audit == [
        ("node-b", True, supervisor.pk, "fan replacement"),
        ("node-b", False, supervisor.pk, ""),
    ]


def test_a_drained_node_that_went_away_can_still_be_undrained(api_client, supervisor, pool):
    pool.beat_node(node_record("node-c", ["cpu/0"]))
    api_client.force_authenticate(supervisor)
    assert api_client.post(f"{NODES}node-c/drain/").status_code == 200
    pool.forget_node("node-c")
    assert api_client.get(f"{NODES}node-c/").json()["up"] is False
    assert api_client.post(f"{NODES}node-c/undrain/").status_code == 200
    assert pool.draining() == {}


def test_draining_an_unknown_node_is_404_and_changes_nothing(api_client, supervisor, busy_pool):
    api_client.force_authenticate(supervisor)
    assert api_client.post(f"{NODES}node-z/drain/").status_code == 404
    assert busy_pool.draining() == {} and not DrainChange.objects.exists()


def test_operators_read_the_pool_but_cannot_drain(api_client, operator, busy_pool):
    api_client.force_authenticate(operator)
    assert api_client.get(POOL).status_code == 200
    assert api_client.post(f"{NODES}node-a/drain/").status_code == 403
    assert busy_pool.draining() == {}


def test_without_a_role_the_pool_is_closed(api_client, busy_pool, django_user_model):
    assert api_client.get(POOL).status_code in (401, 403)
    outsider = django_user_model.objects.create_user("olaf-outsider")
    api_client.force_authenticate(outsider)
    assert api_client.get(POOL).status_code == 403
    assert api_client.get(NODES).status_code == 403


def test_a_redis_outage_answers_503_not_500(api_client, supervisor, outage):
    api_client.force_authenticate(supervisor)
    response = api_client.get(POOL)
    assert response.status_code == 503
    assert "cannot be read" in response.json()["detail"]
    assert api_client.post(f"{NODES}node-a/drain/").status_code == 503
    assert not DrainChange.objects.exists()


def test_the_schema_documents_the_pool(api_client):
    schema = api_client.get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    assert {
        "/api/v1/pool/",
        "/api/v1/pool/nodes/{name}/drain/",
        "/api/v1/pool/deployments/",
    } <= set(paths)
    pool_schema = paths["/api/v1/pool/"]["get"]["responses"]["200"]["content"]["application/json"]
    assert pool_schema["schema"]["$ref"].endswith("/Pool")
    assert "replicas" in schema["components"]["schemas"]["Slice"]["properties"]
