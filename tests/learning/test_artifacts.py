"""Registered versions live in the artifact store, not in a checkout: the registry holds paths
relative to its root, a second host fetches a version by hash into its own cache and serves it
through a real slice worker, and versions registered at absolute paths are published by the
migration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings

from fleet.learning import services
from fleet.learning.deployments import deployment_for
from fleet.learning.models import ModelVersion
from inference.devices import cpu_info
from inference.placement import Deployment
from inference.slices import split_device
from inference.worker import Replica, make_app, queue_name, read_response, send_request
from models import load_runtime
from models.artifacts import is_ref
from models.manifest import CheckpointError
from tests.inference.conftest import features, windows
from tests.models.test_artifacts import make_checkout

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkout_a(tmp_path) -> Path:
    """Checkout A's var/models: the ETA head saved by models.checkpoint, and its backbone."""
    return make_checkout(tmp_path / "checkout-a" / "var" / "models")


def register(head: Path) -> ModelVersion:
    services.register_version(head.parents[1] / "eta-backbone" / "1")
    return services.register_version(head)


def test_the_registry_holds_store_references_not_absolute_paths(checkout_a):
    head = register(checkout_a)
    backbone = head.parent

    for row in (head, backbone):
        assert is_ref(row.path) and not Path(row.path).is_absolute()
        assert (Path(settings.ARTIFACT_ROOT) / row.path / "manifest.json").is_file()
    shutil.rmtree(checkout_a.parents[1])  # A's var/models gone: the registry does not care
    services.promote("eta", 1)
    assert services.resolve("eta") == head
    assert deployment_for(head).checkpoint == head.path


@pytest.mark.services
def test_a_worker_on_another_host_fetches_the_version_by_hash_and_serves_it(checkout_a, tmp_path):
    expected = load_runtime(checkout_a, engine="torch")
    head = register(checkout_a)
    shutil.rmtree(checkout_a.parents[1])
    services.promote("eta", 1)
    deployment = replace(deployment_for(head), name=f"test-eta-{uuid.uuid4().hex[:8]}")
    cache = tmp_path / "host-b-cache"  # the worker's own: nothing of checkout A's
    spec = split_device(cpu_info(), 1)[0]
    command = [
        sys.executable,
        "-m",
        "inference.worker",
        "--no-cgroup",
        "--node",
        f"host-b-{uuid.uuid4().hex[:8]}",
    ]
    command += ["--slice", json.dumps(spec.to_dict())]
    command += ["--deployment", json.dumps(deployment.to_dict())]
    env = {
        **os.environ,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND,
        "HAULMIND_ARTIFACT_ROOT": str(settings.ARTIFACT_ROOT),
        "HAULMIND_ARTIFACT_CACHE": str(cache),
    }
    log = tmp_path / "worker.log"
    client = make_app(settings.CELERY_BROKER_URL, settings.CELERY_RESULT_BACKEND)
    X, F = windows(3, seed=7), features(3, seed=7)
    worker = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    try:
        result = send_request(client, deployment.name, {"window": X, "features": F})
        response = read_response(result.get(timeout=120))
    except Exception:
        print(log.read_text()[-4000:])
        raise
    finally:
        worker.terminate()
        worker.wait(30)
        with client.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue_name(deployment.name))
    assert (cache / head.path / "weights.safetensors").is_file()
    alone = expected.run({"window": X, "features": F})
    np.testing.assert_allclose(response.outputs["eta_s"], alone["eta_s"], rtol=1e-4, atol=1e-4)


def test_a_worker_refuses_a_corrupted_artifact_from_the_store(checkout_a, tmp_path, monkeypatch):
    head = register(checkout_a)
    weights = Path(settings.ARTIFACT_ROOT) / head.path / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    monkeypatch.setenv("HAULMIND_ARTIFACT_ROOT", str(settings.ARTIFACT_ROOT))
    monkeypatch.setenv("HAULMIND_ARTIFACT_CACHE", str(tmp_path / "host-b-cache"))
    deployment = Deployment(name="eta", checkpoint=head.path, model="eta", model_id="eta@1")

    with pytest.raises(CheckpointError, match="corrupt or was altered; refused"):
        Replica(deployment, split_device(cpu_info(), 1)[0])
    assert not (tmp_path / "host-b-cache" / head.path).exists()


def test_versions_at_absolute_paths_are_published_and_the_missing_named(checkout_a, tmp_path):
    # As a registry of before the store held them: rows pointing into a checkout.
    models = checkout_a.parents[1]
    rows = [
        ModelVersion.objects.create(
            name=name,
            version=1,
            kind=kind,
            level=level,
            path=str(models / name / "1"),
            sha256=json.loads((models / name / "1" / "manifest.json").read_text())["sha256"],
            config={},
            created_at="2026-12-01T00:00:00Z",
        )
        for name, kind, level in (("eta-backbone", "backbone", "L0"), ("eta", "head", "L2"))
    ]
    gone = ModelVersion.objects.create(
        name="fault",
        version=1,
        kind="head",
        level="L2",
        path=str(tmp_path / "checkout-b" / "var" / "models" / "fault" / "1"),
        sha256="0" * 64,
        config={},
        created_at="2026-12-01T00:00:00Z",
    )

    published, missing = services.publish_local_versions()

    assert published == 2 and missing == [f"fault@1 ({gone.path})"]
    for row in rows:
        row.refresh_from_db()
        assert is_ref(row.path)
    shutil.rmtree(models)
    services.promote("eta", 1)  # verified in the store
    _, manifest = services.read_manifest(rows[1].path)
    assert manifest["id"] == "eta@1"
