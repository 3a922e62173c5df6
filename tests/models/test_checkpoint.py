"""Checkpoints: safetensors + manifest round trips, and refusal of anything doubtful."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from models import (
    BackboneConfig,
    CheckpointError,
    PatchBackbone,
    checkpoint_dir,
    fit_head,
    load_backbone,
    load_head,
    read_manifest,
    save_backbone,
    save_head,
    verify,
    weights_sha256,
)
from models.export import example_inputs, torch_outputs
from tests.models.conftest import TINY, sine_windows


@pytest.fixture(scope="module")
def eta_head(backbone, saved_root):
    rng = np.random.default_rng(0)
    windows = sine_windows(200, seed=20)
    features = rng.uniform(0, 1, (200, 4)).astype(np.float32)
    seconds = (100 + 200 * features[:, 0]).astype(np.float32)
    trained = fit_head(backbone, "eta", windows, seconds, features, epochs=3, progress=False)
    save_head(trained, saved_root, name="eta", version="1")
    return trained


@pytest.fixture
def l0_dir(backbone, saved_root):
    return checkpoint_dir(saved_root, "l0", "1")


@pytest.fixture
def scratch_copy(l0_dir, tmp_path):
    """A private copy of the l0@1 checkpoint directory, free to damage."""
    return shutil.copytree(l0_dir, tmp_path / "b" / "1")


def _flip_a_byte(path, offset: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_manifest(directory, edit) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_a_backbone_round_trips_with_its_manifest(backbone, saved_root):
    directory = checkpoint_dir(saved_root, "l0", "1")
    manifest = read_manifest(directory)
    assert manifest["kind"] == "backbone" and manifest["id"] == "l0@1"
    assert manifest["sha256"] == weights_sha256(backbone)
    assert manifest["config"] == TINY.to_dict()
    assert manifest["metrics"] == {"val_loss": 0.5}
    assert {"created_at", "torch_version", "lineage", "data_hash", "format_version"} <= set(
        manifest
    )

    loaded = load_backbone(directory)
    x = torch.from_numpy(sine_windows(4, seed=21))
    with torch.no_grad():
        assert torch.equal(loaded(x).pooled, backbone.eval()(x).pooled)
    assert loaded.checkpoint_id == "l0@1"


def test_a_head_round_trips_onto_its_recorded_backbone_with_lineage(eta_head, saved_root):
    directory = checkpoint_dir(saved_root, "eta", "1")
    manifest = read_manifest(directory)
    assert manifest["kind"] == "head" and manifest["level"] == "L2"
    assert manifest["lineage"] == ["l0@1"]
    assert manifest["parent"]["path"] == "../../l0/1"
    model = load_head(directory)  # finds its backbone through the manifest
    inputs = example_inputs(model, 5)
    expected = torch_outputs(eta_head.model, inputs)
    assert np.array_equal(torch_outputs(model, inputs)["eta_s"], expected["eta_s"])


def test_the_lineage_runs_from_l0_through_l1_to_the_head(l0_dir, tmp_path):
    from models import adapt

    l0 = load_backbone(l0_dir)
    l1 = adapt(l0, sine_windows(64, seed=22), epochs=1, progress=False).backbone
    save_backbone(l1, tmp_path, name="l1-site3", version="1")
    trained = fit_head(
        l1, "payload", sine_windows(64, seed=23), np.linspace(0, 90, 64), epochs=1, progress=False
    )
    manifest = save_head(trained, tmp_path, name="payload", version="1")
    assert manifest["lineage"] == ["l0@1", "l1-site3@1"]
    assert read_manifest(checkpoint_dir(tmp_path, "l1-site3", "1"))["level"] == "L1"


def test_a_flipped_byte_in_the_weights_is_refused_before_loading(scratch_copy):
    weights = scratch_copy / "weights.safetensors"
    _flip_a_byte(weights)
    with pytest.raises(CheckpointError, match="sha256 mismatch") as caught:
        load_backbone(scratch_copy)
    assert str(weights) in str(caught.value)


def test_a_manifest_whose_config_differs_from_the_sealed_weights_is_refused(scratch_copy):
    _edit_manifest(scratch_copy, lambda m: m["config"].update(n_heads=2))
    with pytest.raises(CheckpointError, match=r"n_heads: weights have 4, manifest says 2"):
        load_backbone(scratch_copy)


def test_a_head_is_refused_on_a_backbone_with_another_interface(eta_head, saved_root):
    other = PatchBackbone(
        BackboneConfig(**{**TINY.to_dict(), "channel_names": (), "d_model": 16, "n_heads": 2})
    )
    with pytest.raises(
        CheckpointError,
        match=r"incompatible with the backbone: d_model: head needs 32, backbone has 16",
    ):
        load_head(checkpoint_dir(saved_root, "eta", "1"), other)


def test_a_head_is_refused_on_a_backbone_with_other_weights(eta_head, saved_root):
    stranger = PatchBackbone(TINY)  # same interface, different (random) weights
    with pytest.raises(CheckpointError, match=r"trained on backbone l0@1"):
        load_head(checkpoint_dir(saved_root, "eta", "1"), stranger)
    model = load_head(checkpoint_dir(saved_root, "eta", "1"), stranger, require_same_parent=False)
    assert model.backbone is stranger


def test_a_head_manifest_loaded_as_a_backbone_is_refused(eta_head, saved_root):
    with pytest.raises(CheckpointError, match="not a backbone"):
        load_backbone(checkpoint_dir(saved_root, "eta", "1"))


def test_versions_are_immutable_and_names_cannot_escape_the_root(backbone, saved_root):
    with pytest.raises(CheckpointError, match="immutable"):
        save_backbone(backbone, saved_root, name="l0", version="1")
    with pytest.raises(ValueError, match="not a safe checkpoint name"):
        save_backbone(backbone, saved_root, name="../evil", version="1")


def test_verify_reads_no_tensors_and_reports_a_missing_file(scratch_copy):
    manifest, data = verify(scratch_copy)
    assert len(data) == manifest["size_bytes"]
    (scratch_copy / "weights.safetensors").unlink()
    with pytest.raises(CheckpointError, match="weights unreadable"):
        verify(scratch_copy)


def test_a_truncated_manifest_is_refused_with_its_path(scratch_copy):
    (scratch_copy / "manifest.json").write_text("{")
    with pytest.raises(CheckpointError, match="unreadable manifest") as caught:
        load_backbone(scratch_copy)
    assert caught.value.path == scratch_copy / "manifest.json"


def test_a_fine_tuned_head_saves_its_own_backbone_and_loads_back_whole(l0_dir, tmp_path):
    l0 = load_backbone(l0_dir)
    save_backbone(l0, tmp_path, name="l0", version="1")
    windows = sine_windows(64, seed=24)
    trained = fit_head(
        l0,
        "payload",
        windows,
        np.linspace(0, 90, 64),
        epochs=1,
        fine_tune_last_layer=True,
        progress=False,
    )
    manifest = save_head(trained, tmp_path, name="payload", version="2")
    assert manifest["parent"]["id"] == "payload-backbone@2"
    assert manifest["lineage"] == ["l0@1", "payload-backbone@2"]
    model = load_head(checkpoint_dir(tmp_path, "payload", "2"))
    expected = trained.predict(windows[:3])["payload_t"]
    assert np.allclose(model.predict(windows[:3])["payload_t"], expected, atol=1e-5)
