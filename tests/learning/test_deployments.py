"""Champion heads as pool deployments: built from the registry, put into the pool's store, and
moved when a champion alias moves."""

from __future__ import annotations

import json
import shutil
import uuid
from io import StringIO

import pytest
from django.core.management import call_command

from fleet.learning import services
from fleet.learning.deployments import (
    MAX_BATCH_SIZE,
    RUNTIME_OVERHEAD_BYTES,
    champion_deployments,
    deploy_champions,
    weights_bytes,
)
from fleet.learning.pipeline.training import HEADS, TrainingRun
from fleet.learning.runs import register_run
from inference.batching import BatchingConfig
from inference.pool import PoolStore


# The smallest budgets that still make every checkpoint (quality is not tested here).
@pytest.fixture
def champions(db, trained) -> TrainingRun:
    register_run(trained)
    return trained


@pytest.fixture
def store(monkeypatch) -> PoolStore:
    """The pool's store under a prefix of this test's own (never the demo's pool)."""
    prefix = f"haulmind-test-pool-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("HAULMIND_POOL_PREFIX", prefix)
    store = PoolStore(prefix=prefix)
    yield store
    store.clear()


def test_there_is_one_deployment_per_champion_head_with_the_products_priorities(champions):
    deployments = {d.name: d for d in champion_deployments()}

    assert set(deployments) == set(HEADS)  # the backbones are loaded by their heads
    for name, d in deployments.items():
        version = services.resolve(name)
        assert d.checkpoint == version.path and d.model == name
        assert d.model_id == f"{name}@{version.version}"
        assert d.batching["max_batch_size"] == MAX_BATCH_SIZE
        assert BatchingConfig.from_dict(d.batching).bytes_per_row > 0
    assert (deployments["trajectory"].priority, deployments["trajectory"].slo_ms) == (
        "critical",
        50.0,
    )
    for name in ("fault", "eta", "payload"):
        assert (deployments[name].priority, deployments[name].slo_ms) == ("best-effort", 500.0)
        assert 2 <= deployments[name].batching["max_queue_delay_ms"] <= 5


def test_memory_covers_the_weights_the_overhead_and_a_full_batch(champions):
    d = next(d for d in champion_deployments() if d.name == "fault")
    _, manifest = services.read_manifest(d.checkpoint)
    weights = weights_bytes(services.read_manifest(d.checkpoint)[0], manifest)

    # The head's own file and its backbone's: a head checkpoint names its parent.
    assert weights > manifest["size_bytes"]
    assert d.memory_bytes == (
        2 * weights + RUNTIME_OVERHEAD_BYTES + MAX_BATCH_SIZE * d.batching["bytes_per_row"]
    )


def test_deploying_twice_changes_nothing(champions, store):
    first = deploy_champions(store)
    raw = store.redis.hgetall(store.key("deployments"))

    assert deploy_champions(store) == first
    assert store.redis.hgetall(store.key("deployments")) == raw
    assert [d.name for d in store.deployments()] == sorted(HEADS)


def test_a_promotion_and_a_roll_back_move_the_deployment_after_their_commit(
    champions, store, django_capture_on_commit_callbacks
):
    deploy_champions(store)
    second = _second_version(champions, "fault")

    with django_capture_on_commit_callbacks(execute=True):
        services.promote("fault", second.version)
    assert store.deployment("fault").model_id == "fault@2"
    assert store.deployment("fault").checkpoint == second.path

    with django_capture_on_commit_callbacks(execute=True):
        services.roll_back("fault")
    assert store.deployment("fault").model_id == "fault@1"


def test_deploy_models_prints_what_it_deployed_as_json(champions, store):
    out = StringIO()
    call_command("deploy_models", "--json", stdout=out)

    printed = json.loads(out.getvalue().strip().splitlines()[-1])
    assert sorted(d["name"] for d in printed) == sorted(HEADS)
    assert {d.name for d in store.deployments()} == set(HEADS)


def _second_version(run: TrainingRun, name: str):
    """The same weights registered again as version 2 (a new checkpoint directory)."""
    source = run.manifests[name].parent
    target = source.parent / "2"
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    # A sibling directory: the manifest's relative path to its backbone still holds.
    manifest |= {"version": "2", "id": f"{name}@2"}
    (target / "manifest.json").write_text(json.dumps(manifest))
    return services.register_version(target / "manifest.json")
