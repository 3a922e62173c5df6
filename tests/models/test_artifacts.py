"""The artifact store: checkpoints published by sha256 with their backbone, fetched by hash into
a host's cache and verified there; a corrupt stored artifact is refused, a corrupt cached copy
fetched again (``models.artifacts``, no Django). Each test runs on a directory root and on an
S3-compatible object store (moto's server: a stand-in for MinIO or S3, over real HTTP)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from models import PatchBackbone, fit_head, load_runtime, save_head
from models.artifacts import (
    ArtifactStore,
    FileStore,
    S3Store,
    fetch,
    is_ref,
    publish,
    verify_stored,
)
from models.manifest import CheckpointError, file_sha256, read_manifest
from tests.conftest import free_port, wait_for_port
from tests.inference.conftest import TINY, features, windows


def make_checkout(root: Path) -> Path:
    """A checkout's var/models holding an ETA head (window + features) and its backbone."""
    torch.manual_seed(0)
    backbone = PatchBackbone(TINY)
    X, F = windows(32), features(32)
    eta = fit_head(backbone, "eta", X, 30 + F[:, 0] / 8, F, epochs=1, progress=False)
    save_head(eta, root, name="eta", version="1")
    return root / "eta" / "1"


@pytest.fixture
def checkout(tmp_path) -> Path:
    return make_checkout(tmp_path / "checkout-a" / "var" / "models")


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    """moto's S3 server on a free loopback port, for this module."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


@pytest.fixture(params=["directory", "s3"])
def store(request, tmp_path, monkeypatch) -> ArtifactStore:
    if request.param == "directory":
        return FileStore(tmp_path / "store")
    import boto3

    endpoint = request.getfixturevalue("s3_endpoint")
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "haulmind-test"),
        ("AWS_SECRET_ACCESS_KEY", "haulmind-test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    bucket = f"artifacts-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return S3Store(f"s3://{bucket}/haulmind/models", endpoint_url=endpoint)


def corrupt(store: ArtifactStore, key: str) -> None:
    data = store.read(key)
    store.write(key, data[:-64] + bytes(64 * [0xFF]))  # bit rot in the tensors


def test_a_head_is_published_with_its_backbone_and_loads_from_another_hosts_cache(
    checkout, store, tmp_path
):
    expected = load_runtime(checkout, engine="torch").run(
        {"window": windows(4, seed=3), "features": features(4, seed=3)}
    )
    ref = publish(checkout, store)
    assert is_ref(ref) and ref == publish(checkout, store)  # content-addressed: idempotent
    shutil.rmtree(checkout.parents[1])  # checkout A's var/models is gone

    local = fetch(ref, store, tmp_path / "host-b-cache")
    manifest = read_manifest(local)
    assert local == tmp_path / "host-b-cache" / ref
    assert manifest["parent"]["path"].startswith("../")  # the backbone, by its hash
    assert file_sha256(local / "manifest.json") == ref.rsplit("/", 1)[1]
    assert verify_stored(ref, store)["id"] == "eta@1"
    served = load_runtime(local, engine="torch").run(
        {"window": windows(4, seed=3), "features": features(4, seed=3)}
    )
    np.testing.assert_allclose(served["eta_s"], expected["eta_s"], rtol=1e-5, atol=1e-5)


def test_a_corrupted_artifact_in_the_store_is_refused_and_not_cached(checkout, store, tmp_path):
    ref = publish(checkout, store)
    corrupt(store, f"{ref}/weights.safetensors")

    with pytest.raises(CheckpointError, match=r"corrupt or was altered; refused.*sha256 mismatch"):
        fetch(ref, store, tmp_path / "cache")
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        verify_stored(ref, store)
    assert not (tmp_path / "cache" / ref).exists()


def test_a_head_whose_stored_backbone_is_corrupt_is_refused(checkout, store, tmp_path):
    ref = publish(checkout, store)
    parent = json.loads(store.read(f"{ref}/manifest.json"))["parent"]
    corrupt(store, f"checkpoints/{Path(parent['path']).name}/weights.safetensors")

    with pytest.raises(CheckpointError, match="corrupt or was altered"):
        fetch(ref, store, tmp_path / "cache")


def test_a_cached_copy_that_fails_its_check_is_fetched_again(checkout, store, tmp_path):
    cache = tmp_path / "cache"
    ref = publish(checkout, store)
    weights = fetch(ref, store, cache) / "weights.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:-64] + bytes(64))

    assert fetch(ref, store, cache) == cache / ref
    assert weights.read_bytes() == good


def test_a_corrupt_checkpoint_is_never_published_and_publishing_repairs_the_store(
    checkout, store, tmp_path
):
    ref = publish(checkout, store)
    corrupt(store, f"{ref}/weights.safetensors")
    assert publish(checkout, store) == ref  # the intact source rewrites the damaged file
    verify_stored(ref, store)

    corrupt(FileStore(checkout), "weights.safetensors")
    other = FileStore(tmp_path / "other-store")
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        publish(checkout, other)
    assert not (tmp_path / "other-store" / ref).exists()
