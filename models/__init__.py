"""Haulmind's domain networks (PyTorch only): the telemetry backbone, the mining model and the
task heads, their training and checkpoints. Never imports Django (an import-linter contract).

API overview (everything below is importable from ``models``)
==============================================================

Data: a window is float32 ``[C, L]``: C telemetry channels (in a fixed order, named in
``BackboneConfig.channel_names``) of L samples at ``sample_rate_hz``, in raw units. Batches are
``[N, C, L]`` numpy arrays. Extra per-window features (route, speed...) are ``[N, F]``.

Configs (``models.config``; frozen dataclasses, ``to_dict()`` / ``from_dict()`` JSON-safe)::

    BackboneConfig(n_channels=8, window=64, patch_len=8, stride=8, d_model=64, n_heads=4,
                   n_layers=2, d_ff=128, dropout=0.1, channel_mixing=True, score_passes=3,
                   sample_rate_hz=1.0, channel_names=())
    FaultHeadConfig / EtaHeadConfig / TrajectoryHeadConfig / PayloadHeadConfig /
    RegressionHeadConfig / ClassificationHeadConfig / AnomalyHeadConfig
    head_config_from_dict(d) -> HeadConfig

L0 backbone and L1 adaptation (``models.backbone``)::

    backbone = PatchBackbone(BackboneConfig(n_channels=C, window=L, channel_names=names))
    result = pretrain(backbone, windows, epochs=20, mask_ratio=0.4, val_windows=None,
                      device="cpu", max_seconds=None, progress=True)   # trains in place
    result.history      # [{"epoch", "train_loss", "val_loss", "seconds"}, ...]
    l1 = adapt(backbone, site3_windows, epochs=10, lr=3e-4, freeze_layers=1).backbone
    l1.level, l1.lineage    # "L1", (id of its L0,)
    out = backbone(torch_windows)   # BackboneOutput(tokens [B,C,P,d], pooled [B,d], recon,
                                    #                patches, mean [B,C], std [B,C])
    backbone.masked_error(torch_windows)   # [B, C] masked reconstruction error

L2 heads (``models.heads``, ``models.training``)::

    trained = fit_head(backbone, kind, X, y=None, extra_features=None, config=None,
                       epochs=60, val=(Xv, yv, Fv), device="cpu", fine_tune_last_layer=False)
    #   kind: "fault" | "eta" | "trajectory" | "payload"        (the mining heads)
    #         "regression" | "classification" | "anomaly"      (any multivariate series)
    trained = train_head(backbone, build_head(config, backbone.config), X, y, features, ...)
    trained.metrics, trained.history, trained.predict(X, features) -> dict[str, np.ndarray]

    outputs: fault          logits/probs [N,5], label [N], channel_scores [N,C],
                            anomaly_score [N], top_channel [N], anomalous [N] (bool)
             eta            eta_s [N,3] = P10, P50, P90 seconds (features: distance_left_m,
                            grade_mean_pct, grade_max_pct, payload_t)
             trajectory     positions_m [N,3,2] at 1, 3, 5 s, (x forward, y left) truck frame
                            (features: speed_mps, yaw_rate_rps first)
             payload        payload_t [N]
             regression     value [N,T];  classification logits/probs/label;  anomaly as fault's
                            scores (channel_scores, anomaly_score, top_channel, anomalous)

Checkpoints (``models.checkpoint``): ``<root>/<name>/<version>/{weights.safetensors,
manifest.json}``; sha256 verified before loading; ``CheckpointError`` on any mismatch::

    save_backbone(backbone, root, name="l0", version="1", metrics=..., data_hash=...)
    save_head(trained, root, name="fault", version="1")      # lineage L0 -> L1 -> L2
    load_backbone(path, device="cpu"); load_head(path, backbone=None) -> TaskModel
    verify(path) -> (manifest, bytes)      # integrity only, deserialises nothing
    data_hash(*arrays) -> str

Portability (``models.export``, ``models.runtime``, ``models.devices``)::

    export_onnx(model, "model.onnx") ; parity(model, "model.onnx", inputs) -> max abs diff
    export_checkpoint_onnx(path)     # model.onnx beside the weights, recorded in the manifest
    rt = load_runtime(path, device="cuda:0", engine="auto")   # "torch" | "onnx" | "auto"
    rt.run({"window": X, "features": F}) -> dict[str, np.ndarray]
    rt.device, rt.engine, rt.fallback_reason, rt.describe()
    resolve_device("npu:0") -> "cpu" here (logged);  choose_device(...) -> DeviceChoice
"""

import importlib
from typing import Any

# Names resolve on first use (PEP 562), so ``import models.manifest`` (the registry, serving)
# does not load PyTorch; ``from models import X`` works as before.
_EXPORTS = {
    "BackboneOutput": "models.backbone",
    "PatchBackbone": "models.backbone",
    "PretrainResult": "models.backbone",
    "adapt": "models.backbone",
    "pretrain": "models.backbone",
    "checkpoint_dir": "models.checkpoint",
    "load_backbone": "models.checkpoint",
    "load_checkpoint": "models.checkpoint",
    "load_head": "models.checkpoint",
    "save_backbone": "models.checkpoint",
    "save_head": "models.checkpoint",
    "AnomalyHeadConfig": "models.config",
    "BackboneConfig": "models.config",
    "ClassificationHeadConfig": "models.config",
    "ConfigError": "models.config",
    "EtaHeadConfig": "models.config",
    "FAULT_CLASSES": "models.config",
    "FaultHeadConfig": "models.config",
    "HeadConfig": "models.config",
    "PayloadHeadConfig": "models.config",
    "RegressionHeadConfig": "models.config",
    "TrajectoryHeadConfig": "models.config",
    "head_config_from_dict": "models.config",
    "DeviceChoice": "models.devices",
    "available_devices": "models.devices",
    "choose_device": "models.devices",
    "resolve_device": "models.devices",
    "export_checkpoint_onnx": "models.export",
    "export_onnx": "models.export",
    "parity": "models.export",
    "Head": "models.heads",
    "TaskModel": "models.heads",
    "build_head": "models.heads",
    "constant_turn_positions": "models.heads",
    "CheckpointError": "models.manifest",
    "read_manifest": "models.manifest",
    "verify": "models.manifest",
    "Runtime": "models.runtime",
    "load_runtime": "models.runtime",
    "TrainedHead": "models.training",
    "fit_head": "models.training",
    "train_head": "models.training",
    "data_hash": "models.weights",
    "model_id": "models.weights",
    "weights_sha256": "models.weights",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "FAULT_CLASSES",
    "AnomalyHeadConfig",
    "BackboneConfig",
    "BackboneOutput",
    "CheckpointError",
    "ClassificationHeadConfig",
    "ConfigError",
    "DeviceChoice",
    "EtaHeadConfig",
    "FaultHeadConfig",
    "Head",
    "HeadConfig",
    "PatchBackbone",
    "PayloadHeadConfig",
    "PretrainResult",
    "RegressionHeadConfig",
    "Runtime",
    "TaskModel",
    "TrainedHead",
    "TrajectoryHeadConfig",
    "adapt",
    "available_devices",
    "build_head",
    "checkpoint_dir",
    "choose_device",
    "constant_turn_positions",
    "data_hash",
    "export_checkpoint_onnx",
    "export_onnx",
    "fit_head",
    "head_config_from_dict",
    "load_backbone",
    "load_checkpoint",
    "load_head",
    "load_runtime",
    "model_id",
    "parity",
    "pretrain",
    "read_manifest",
    "resolve_device",
    "save_backbone",
    "save_head",
    "train_head",
    "verify",
    "weights_sha256",
]
