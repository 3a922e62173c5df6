"""Checkpoints: safetensors weights plus a JSON manifest, verified before anything is loaded.

Layout: one directory per version, ``<root>/<name>/<version>/`` holding ``weights.safetensors``
and ``manifest.json`` (and, once exported, ``model.onnx``). Versions are immutable: saving over
an existing one is refused unless ``overwrite=True``. A head's directory holds the head's
weights only; its manifest names its backbone (id, sha256, relative path, config), so one
backbone serves many heads.

Manifest keys: ``format_version``, ``id`` ("name@version"), ``name``, ``version``, ``kind``
("backbone" | "head"), ``level`` ("L0", "L1", "L2"...), ``head_kind``, ``config`` (the config
sealed in the weights file), ``weights``, ``sha256``, ``size_bytes``, ``metrics``,
``data_hash``, ``lineage`` (ancestor ids, root first: L0 -> L1 for an L2 head), ``parent``,
``inputs`` / ``outputs`` (names and shapes, batch as null), ``channel_names``, ``created_at``
(UTC ISO 8601), ``torch_version``, ``artifacts`` and ``extra`` (free-form, JSON).

Loading reads the weights as bytes, checks their sha256 against the manifest BEFORE
deserialising them, checks the manifest's config against the config sealed inside the file,
and for a head checks that the backbone it is attached to has the same interface and the
exact weights it was trained on. Any failure raises ``CheckpointError`` naming the file and the
mismatch. Nothing is ever unpickled (no ``torch.load``) and nothing is downloaded.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as safetensors_load

from models.backbone import PatchBackbone
from models.config import BackboneConfig, ConfigError, head_config_from_dict
from models.devices import resolve_device
from models.heads import Head, TaskModel, build_head
from models.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    WEIGHTS,
    CheckpointError,
    atomic_write,
    manifest_path,
    read_manifest,
    sha256_hex,
    verify,
    write_manifest,
)
from models.training import TrainedHead
from models.weights import state_bytes, weights_sha256

_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def checkpoint_dir(root: Path | str, name: str, version: str) -> Path:
    """``<root>/<name>/<version>``, refusing names that could escape ``root``."""
    for segment in (name, version):
        if not _SAFE_SEGMENT.match(segment) or ".." in segment:
            raise ValueError(f"{segment!r} is not a safe checkpoint name or version")
    return Path(root) / name / version


def save_backbone(
    backbone: PatchBackbone,
    root: Path | str,
    *,
    name: str,
    version: str,
    metrics: dict[str, float] | None = None,
    data_hash: str = "",
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write an L0/L1 backbone; returns its manifest. Sets ``backbone.checkpoint_id``."""
    directory = checkpoint_dir(root, name, version)
    c = backbone.config
    manifest = _base_manifest(name, version, "backbone", backbone.level, backbone.sealed_config())
    manifest.update(
        lineage=list(backbone.lineage),
        parent=None if not backbone.lineage else {"id": backbone.lineage[-1]},
        metrics=dict(metrics or {}),
        data_hash=data_hash,
        extra=dict(extra or {}),
        inputs={"window": [None, c.n_channels, c.window]},
        outputs={"embedding": [None, c.d_model], "recon_error": [None, c.n_channels]},
        channel_names=list(c.names),
    )
    _write(
        directory, manifest, state_bytes(backbone, "backbone", backbone.sealed_config()), overwrite
    )
    backbone.checkpoint_id = manifest["id"]
    return manifest


def save_head(
    trained: TrainedHead,
    root: Path | str,
    *,
    name: str,
    version: str,
    metrics: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write an L2 head; returns its manifest.

    A backbone that was never saved (a fine-tuned copy, say) is saved first as
    ``<name>-backbone@<version>`` under the same root, so the head always has a parent on disk.
    ``metrics`` defaults to the training run's validation metrics.
    """
    backbone, head = trained.backbone, trained.head
    if backbone.checkpoint_id is None:
        save_backbone(
            backbone,
            root,
            name=f"{name}-backbone",
            version=version,
            data_hash=trained.data_hash,
            overwrite=overwrite,
        )
    directory = checkpoint_dir(root, name, version)
    parent_dir = checkpoint_dir(root, *str(backbone.checkpoint_id).split("@", 1))
    manifest = _base_manifest(name, version, "head", "L2", head.sealed_config())
    model = TaskModel(backbone, head)
    c = backbone.config
    inputs: dict[str, Any] = {"window": [None, c.n_channels, c.window]}
    if head.config.n_features:
        inputs["features"] = [None, head.config.n_features]
    manifest.update(
        head_kind=head.config.kind,
        lineage=[*backbone.lineage, backbone.checkpoint_id],
        parent={
            "id": backbone.checkpoint_id,
            "sha256": weights_sha256(backbone),
            "path": os.path.relpath(parent_dir, directory),
            "config": backbone.sealed_config(),
        },
        metrics=dict(trained.metrics if metrics is None else metrics),
        data_hash=trained.data_hash,
        extra=dict(extra or {}),
        inputs=inputs,
        outputs=list(model.output_names),
        channel_names=list(c.names),
    )
    _write(directory, manifest, state_bytes(head, "head", head.sealed_config()), overwrite)
    head.checkpoint_id = manifest["id"]
    return manifest


def _base_manifest(
    name: str, version: str, kind: str, level: str, config: dict[str, Any]
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "id": f"{name}@{version}",
        "name": name,
        "version": version,
        "kind": kind,
        "level": level,
        "head_kind": None,
        "config": config,
        "weights": WEIGHTS,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "artifacts": {},
    }


def _write(directory: Path, manifest: dict[str, Any], weights: bytes, overwrite: bool) -> None:
    """Weights first, manifest last, each atomically: a reader never sees a manifest whose
    weights are missing or half written."""
    if (directory / MANIFEST).exists() and not overwrite:
        raise CheckpointError(directory, "this version exists already (versions are immutable)")
    directory.mkdir(parents=True, exist_ok=True)
    manifest.update(sha256=sha256_hex(weights), size_bytes=len(weights))
    atomic_write(directory / WEIGHTS, weights)
    write_manifest(directory, manifest)


def load_backbone(path: Path | str, *, device: str = "cpu") -> PatchBackbone:
    """A verified backbone in eval mode on ``device`` (resolved, with CPU fallback)."""
    manifest, data = verify(path)
    where = manifest_path(path)
    if manifest["kind"] != "backbone":
        raise CheckpointError(where, f"this is a {manifest['kind']}, not a backbone")
    try:
        backbone = PatchBackbone(BackboneConfig.from_dict(manifest["config"]))
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(where, f"invalid backbone config: {exc}") from exc
    _load_state(backbone, data, where)
    backbone.level, backbone.lineage = manifest.get("level", "L0"), tuple(manifest["lineage"])
    backbone.checkpoint_id = manifest["id"]
    return backbone.to(resolve_device(device)).eval()


def load_head(
    path: Path | str,
    backbone: PatchBackbone | None = None,
    *,
    device: str = "cpu",
    require_same_parent: bool = True,
) -> TaskModel:
    """A verified head attached to ``backbone`` (or to its recorded parent, loaded from disk).

    The backbone must have the interface the head was built for (channels, window, patching,
    d_model, channel names). With ``require_same_parent`` (the default) it must also have
    exactly the weights the head was trained on (sha256): another backbone's embedding means
    something else, even with the same shape.
    """
    manifest, data = verify(path)
    where = manifest_path(path)
    if manifest["kind"] != "head":
        raise CheckpointError(where, f"this is a {manifest['kind']}, not a head")
    if backbone is None:
        backbone = load_backbone(parent_path(where, manifest), device=device)
    head = _build_head(manifest, backbone, where, require_same_parent)
    _load_state(head, data, where)
    head.checkpoint_id = manifest["id"]
    return TaskModel(backbone, head).to(next(backbone.parameters()).device).eval()


def parent_path(where: Path, manifest: dict[str, Any]) -> Path:
    """The parent backbone's directory, from the head manifest's relative path."""
    parent = manifest.get("parent") or {}
    if "path" not in parent:
        raise CheckpointError(where, "head manifest names no parent backbone path")
    return (where.parent / parent["path"]).resolve()


def _build_head(
    manifest: dict[str, Any], backbone: PatchBackbone, where: Path, same_parent: bool
) -> Head:
    try:
        head_cfg = head_config_from_dict(manifest["config"]["head"])
        built_for = BackboneConfig.from_dict(manifest["config"]["backbone"])
    except (ConfigError, KeyError, TypeError) as exc:
        raise CheckpointError(where, f"invalid head config: {exc}") from exc
    ours, theirs = built_for.interface(), backbone.config.interface()
    diffs = [
        f"{k}: head needs {ours[k]!r}, backbone has {theirs[k]!r}"
        for k in ours
        if ours[k] != theirs[k]
    ]
    if diffs:
        raise CheckpointError(where, "incompatible with the backbone: " + "; ".join(diffs))
    expected = (manifest.get("parent") or {}).get("sha256")
    if same_parent and expected and expected != weights_sha256(backbone):
        raise CheckpointError(
            where,
            f"trained on backbone {manifest['parent'].get('id')} (sha256 {expected[:16]}...), "
            f"not on the given one (sha256 {weights_sha256(backbone)[:16]}...)",
        )
    return build_head(head_cfg, backbone.config)


def _load_state(module: torch.nn.Module, data: bytes, where: Path) -> None:
    try:
        module.load_state_dict(safetensors_load(data), strict=True)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(where, f"weights do not fit the config: {exc}") from exc


def load_checkpoint(path: Path | str, *, device: str = "cpu") -> PatchBackbone | TaskModel:
    """Whatever the manifest describes: a backbone, or a head on its recorded backbone."""
    kind = read_manifest(path)["kind"]
    return (
        load_backbone(path, device=device) if kind == "backbone" else load_head(path, device=device)
    )
