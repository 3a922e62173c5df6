"""L2 task heads on the backbone's embedding.

Every head reads the same ``HeadInputs`` (the pooled embedding, the per-channel window mean and
std that instance normalisation removed, optionally the per-channel masked reconstruction
error and the caller's extra features) and returns a dict of named tensors. A head standardises
its inputs and targets with statistics fitted on its training set (``Head.fit``), stored as
buffers in its weights, so callers always pass and receive raw units.

Heads (outputs, shapes for a batch of B windows):

- ``FaultHead``: ``logits``/``probs`` [B, K] over the fault classes, ``channel_scores`` [B, C],
  ``anomaly_score`` [B], ``top_channel`` [B] (int64), ``anomalous`` [B] (bool).
- ``EtaHead``: ``eta_s`` [B, 3] = P10, P50, P90 seconds to the next stop (never crossing).
- ``TrajectoryHead``: ``positions_m`` [B, H, 2] = (x forward, y left) at each horizon.
- ``PayloadHead``: ``payload_t`` [B].
- ``RegressionHead``: ``value`` [B, n_outputs].
- ``ClassificationHead``: ``logits``/``probs`` [B, K], ``label`` [B] (int64 index into classes).
- ``AnomalyHead``: ``channel_scores``, ``anomaly_score``, ``top_channel``, ``anomalous``.

Training lives in ``models.training`` (``train_head``, ``fit_head``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.backbone import PatchBackbone
from models.config import (
    AnomalyHeadConfig,
    BackboneConfig,
    ClassificationHeadConfig,
    EtaHeadConfig,
    FaultHeadConfig,
    HeadConfig,
    PayloadHeadConfig,
    TrajectoryHeadConfig,
)

# Floor of a masked reconstruction error before its log (normalised units squared).
ERROR_FLOOR = 1e-6


class HeadInputs(NamedTuple):
    """What a head sees of a batch of windows (all float32 on one device)."""

    pooled: Tensor  # [B, d] window embedding
    mean: Tensor  # [B, C] per-window channel mean, raw units
    std: Tensor  # [B, C] per-window channel std, raw units
    recon_error: Tensor | None  # [B, C] masked reconstruction MSE, normalised units
    features: Tensor | None  # [B, F] caller's extra features, raw units

    def map(self, fn: Callable[[Tensor], Tensor]) -> HeadInputs:
        """Apply ``fn`` to every tensor that is present."""
        recon, feats = self.recon_error, self.features
        return HeadInputs(
            fn(self.pooled),
            fn(self.mean),
            fn(self.std),
            None if recon is None else fn(recon),
            None if feats is None else fn(feats),
        )

    def rows(self, index: Tensor | np.ndarray | slice) -> HeadInputs:
        return self.map(lambda t: t[index])

    def to(self, device: str) -> HeadInputs:
        return self.map(lambda t: t.to(device))

    @staticmethod
    def concat(parts: list[HeadInputs]) -> HeadInputs:
        """Join chunks computed separately (row-wise)."""
        joined: dict[str, Any] = {}
        for name in HeadInputs._fields:
            tensors = [getattr(p, name) for p in parts]
            joined[name] = None if tensors[0] is None else torch.cat(tensors)
        return HeadInputs(**joined)


def head_inputs(
    backbone: PatchBackbone, window: Tensor, features: Tensor | None, with_recon_error: bool
) -> HeadInputs:
    """Run the backbone once (plus the masked passes when the head needs reconstruction
    errors, which are scores, never trained through)."""
    out = backbone(window)
    error = None
    if with_recon_error:
        with torch.no_grad():
            error = backbone.masked_error(window)
    return HeadInputs(out.pooled, out.mean, out.std, error, features)


class Standardiser(nn.Module):
    """(x - mean) / std with statistics fitted once on training rows (saved as buffers)."""

    mean: Tensor
    std: Tensor

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("std", torch.ones(size))

    def fit(self, x: Tensor) -> None:
        self.mean.copy_(x.mean(dim=0))
        std = x.std(dim=0, unbiased=False)
        # A constant input (std 0) carries no information: leave it at scale 1, not inf.
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def inverse(self, z: Tensor) -> Tensor:
        return z * self.std + self.mean


def mlp(d_in: int, d_hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, d_hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(d_hidden, d_hidden),
        nn.GELU(),
        nn.Linear(d_hidden, d_out),
    )


class Head(nn.Module):
    """Base of every L2 head: input assembly, standardisation, the training contract.

    Subclasses set ``output_names`` and implement ``forward``, ``loss``, ``metrics`` and,
    where targets are not plain floats, ``encode_targets``. ``fit`` is called once on the
    training rows before the first epoch.
    """

    checkpoint_kind: ClassVar[str] = "head"
    output_names: ClassVar[tuple[str, ...]] = ()
    trainable: ClassVar[bool] = True  # False: fitted by statistics alone (no gradient steps)

    def __init__(self, config: HeadConfig, backbone_config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone_config = backbone_config
        self.checkpoint_id: str | None = None
        c = backbone_config.n_channels
        self.n_side = config.n_features + (2 * c if config.use_stats else 0)
        self.n_side += c if config.use_recon_error else 0
        if not self.trainable:
            self.n_side = 0  # an unsupervised head scores the statistics without a network
        self.side_norm = Standardiser(self.n_side)

    def sealed_config(self) -> dict[str, Any]:
        """Head config and the backbone config it was built for, sealed in the weights file."""
        return {"head": self.config.to_dict(), "backbone": self.backbone_config.to_dict()}

    @property
    def d_in(self) -> int:
        return (self.backbone_config.d_model if self.config.use_embedding else 0) + self.n_side

    def side_features(self, inputs: HeadInputs) -> Tensor:
        """[B, S]: channel means, log stds, log recon errors, then the extra features."""
        parts: list[Tensor] = []
        if self.config.use_stats:
            parts += [inputs.mean, torch.log(inputs.std)]
        if self.config.use_recon_error:
            parts.append(torch.log(_required(inputs.recon_error, "recon_error") + ERROR_FLOOR))
        if self.config.n_features:
            parts.append(_required(inputs.features, "features"))
        if not parts:
            return inputs.pooled[:, :0]
        return torch.cat(parts, dim=-1)

    def joined(self, inputs: HeadInputs) -> Tensor:
        """[B, d + S]: the embedding beside the standardised side features ([B, S] without
        the embedding: ``use_embedding=False``)."""
        side = self.side_norm(self.side_features(inputs))
        if not self.config.use_embedding:
            return side
        return torch.cat([inputs.pooled, side], dim=-1)

    def fit(self, inputs: HeadInputs, targets: Tensor | None) -> None:
        """Fit input (and target) statistics on the training rows."""
        if self.n_side:
            self.side_norm.fit(self.side_features(inputs))

    def encode_targets(self, targets: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(targets, dtype=np.float32))

    def forward(self, inputs: HeadInputs) -> dict[str, Tensor]:
        raise NotImplementedError

    def loss(self, outputs: dict[str, Tensor], targets: Tensor) -> Tensor:
        raise NotImplementedError

    def metrics(self, outputs: dict[str, Tensor], targets: Tensor) -> dict[str, float]:
        raise NotImplementedError

    def calibration_metrics(self, outputs: dict[str, Tensor]) -> dict[str, float]:
        """Metrics of an unsupervised head on its own calibration windows (no targets)."""
        return {}


def _required(t: Tensor | None, name: str) -> Tensor:
    if t is None:
        raise ValueError(f"this head needs {name}, which were not given")
    return t


# -- anomaly scoring ------------------------------------------------------------------------


class AnomalyScorer(nn.Module):
    """Robust per-channel z-scores against a normal reference, and a calibrated threshold.

    Components, each per channel: ``recon`` (log masked reconstruction error; only high is
    abnormal), ``level`` (window mean) and ``spread`` (log window std; a stuck sensor is very
    low, a noisy one high). A channel's score is its largest component; the window's score is
    its largest channel; ``threshold`` is that score's quantile over the normal windows.
    """

    center: Tensor
    scale: Tensor
    threshold: Tensor
    one_sided: Tensor

    def __init__(self, n_channels: int, components: tuple[str, ...], quantile: float) -> None:
        super().__init__()
        self.components, self.quantile = components, quantile
        self.register_buffer("center", torch.zeros(len(components), n_channels))
        self.register_buffer("scale", torch.ones(len(components), n_channels))
        self.register_buffer("threshold", torch.tensor(math.inf))
        one_sided = torch.tensor([name == "recon" for name in components])
        self.register_buffer("one_sided", one_sided[:, None, None], persistent=False)

    def values(self, inputs: HeadInputs) -> Tensor:
        """[n_components, B, C] raw component values."""
        table = {
            "level": lambda: inputs.mean,
            "spread": lambda: torch.log(inputs.std),
            "recon": lambda: torch.log(_required(inputs.recon_error, "recon_error") + ERROR_FLOOR),
        }
        return torch.stack([table[name]() for name in self.components])

    def channel_scores(self, inputs: HeadInputs) -> Tensor:
        z = (self.values(inputs) - self.center[:, None]) / self.scale[:, None]
        z = torch.where(self.one_sided, z.clamp_min(0.0), z.abs())
        return z.amax(dim=0)  # [B, C]

    def fit(self, normal: HeadInputs) -> None:
        # Medians and quantiles in float64 on the CPU: exact, and available on every backend.
        v = self.values(normal).detach().to("cpu", torch.float64)  # [n_comp, N, C]
        center = v.median(dim=1).values
        mad = (v - center[:, None]).abs().median(dim=1).values * 1.4826  # MAD -> sigma (Gauss)
        # A channel that never moved in the normal data would divide by zero: floor the scale.
        self.center.copy_(center)
        self.scale.copy_(torch.maximum(mad, 1e-3 * center.abs() + 1e-6))
        scores = self.channel_scores(normal).amax(dim=1).detach().to("cpu", torch.float64)
        self.threshold.copy_(torch.quantile(scores, self.quantile))

    def forward(self, inputs: HeadInputs) -> dict[str, Tensor]:
        channel = self.channel_scores(inputs)
        score, top = channel.max(dim=1)
        return {
            "channel_scores": channel,
            "anomaly_score": score,
            "top_channel": top,
            "anomalous": score > self.threshold,
        }


class AnomalyHead(Head):
    """Unsupervised: calibrated on windows of normal operation, no labels, no gradient steps."""

    output_names: ClassVar[tuple[str, ...]] = (
        "channel_scores",
        "anomaly_score",
        "top_channel",
        "anomalous",
    )
    trainable = False

    def __init__(self, config: AnomalyHeadConfig, backbone_config: BackboneConfig) -> None:
        super().__init__(config, backbone_config)
        self.scorer = AnomalyScorer(backbone_config.n_channels, config.components, config.quantile)

    def fit(self, inputs: HeadInputs, targets: Tensor | None) -> None:
        self.scorer.fit(inputs)

    def forward(self, inputs: HeadInputs) -> dict[str, Tensor]:
        return self.scorer(inputs)

    def calibration_metrics(self, outputs: dict[str, Tensor]) -> dict[str, float]:
        """On the normal windows: the share flagged (the false-alarm rate, ~ 1 - quantile)."""
        return {"flag_rate": outputs["anomalous"].float().mean().item()}

    def metrics(self, outputs: dict[str, Tensor], targets: Tensor) -> dict[str, float]:
        """With 0/1 labels (1 = abnormal): precision, recall and the false-alarm rate."""
        flagged, truth = outputs["anomalous"], targets.bool()
        tp = (flagged & truth).sum().item()
        return {
            "precision": tp / max(int(flagged.sum().item()), 1),
            "recall": tp / max(int(truth.sum().item()), 1),
            "false_alarm_rate": (flagged & ~truth).sum().item()
            / max(int((~truth).sum().item()), 1),
        }


# -- classification -------------------------------------------------------------------------


class ClassificationHead(Head):
    """Class logits from the embedding and side features; balanced cross-entropy."""

    output_names: ClassVar[tuple[str, ...]] = ("logits", "probs", "label")
    class_weight: Tensor

    def __init__(
        self, config: ClassificationHeadConfig | FaultHeadConfig, backbone_config: BackboneConfig
    ) -> None:
        super().__init__(config, backbone_config)
        self.classes = tuple(config.classes)
        self.net = mlp(self.d_in, config.d_hidden, len(self.classes), config.dropout)
        self.register_buffer("class_weight", torch.ones(len(self.classes)))

    def encode_targets(self, targets: np.ndarray) -> Tensor:
        """Labels as class names (any type, matched by ``str``) or integer indices."""
        y = np.asarray(targets)
        if y.dtype.kind in "iu":
            if y.size and (y.min() < 0 or y.max() >= len(self.classes)):
                raise ValueError(f"label indices must be in [0, {len(self.classes)})")
            return torch.as_tensor(y, dtype=torch.long)
        index = {name: i for i, name in enumerate(self.classes)}
        unknown = sorted({str(v) for v in y.ravel()} - set(index))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {self.classes}")
        return torch.as_tensor([index[str(v)] for v in y.ravel()], dtype=torch.long)

    def fit(self, inputs: HeadInputs, targets: Tensor | None) -> None:
        super().fit(inputs, targets)
        # Inverse-frequency weights: faults are rare, and an unweighted loss learns "normal".
        labels = _required(targets, "targets").to("cpu")
        counts = torch.bincount(labels, minlength=len(self.classes)).float()
        weight = torch.where(
            counts > 0, counts.sum() / (len(self.classes) * counts.clamp_min(1)), 0.0
        )
        self.class_weight.copy_(weight)

    def forward(self, inputs: HeadInputs) -> dict[str, Tensor]:
        logits = self.net(self.joined(inputs))
        return {
            "logits": logits,
            "probs": torch.softmax(logits, dim=-1),
            "label": logits.argmax(dim=-1),
        }

    def loss(self, outputs: dict[str, Tensor], targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs["logits"], targets, weight=self.class_weight)

    def metrics(self, outputs: dict[str, Tensor], targets: Tensor) -> dict[str, float]:
        predicted = outputs["logits"].argmax(dim=-1)
        f1s = []
        for k in targets.unique():
            tp = ((predicted == k) & (targets == k)).sum().item()
            denominator = (predicted == k).sum().item() + (targets == k).sum().item()
            f1s.append(2 * tp / denominator if denominator else 0.0)
        return {
            "accuracy": (predicted == targets).float().mean().item(),
            "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        }


class FaultHead(ClassificationHead):
    """Fault class probabilities plus a per-channel anomaly score and its top channel.

    The classifier learns the labelled faults; the anomaly scorer (masked reconstruction
    error, window level and spread per channel, as ``AnomalyHead``) is calibrated on the
    training windows labelled ``normal_class``, so it also flags abnormal behaviour of a kind
    no label covered.
    """

    config: FaultHeadConfig

    output_names: ClassVar[tuple[str, ...]] = (
        "logits",
        "probs",
        "label",
        "channel_scores",
        "anomaly_score",
        "top_channel",
        "anomalous",
    )

    def __init__(self, config: FaultHeadConfig, backbone_config: BackboneConfig) -> None:
        super().__init__(config, backbone_config)
        self.scorer = AnomalyScorer(
            backbone_config.n_channels, config.anomaly_components, config.anomaly_quantile
        )

    def encode_targets(self, targets: np.ndarray) -> Tensor:
        """Class names or indices [N]; with ``multi_label`` also [N, K] active flags."""
        y = np.asarray(targets)
        if not self.config.multi_label:
            return super().encode_targets(y)
        if y.ndim == 1:  # one class per window: its flag alone
            index = super().encode_targets(y)
            return F.one_hot(index, len(self.classes)).float()
        if y.shape[1:] != (len(self.classes),):
            raise ValueError(f"multi-label targets must be [N, {len(self.classes)}], got {y.shape}")
        flags = torch.as_tensor(y.astype(bool))
        normal = self.classes.index(self.config.normal_class)
        flags[:, normal] = ~torch.cat([flags[:, :normal], flags[:, normal + 1 :]], dim=1).any(1)
        return flags.float()

    def _normal_rows(self, targets: Tensor) -> Tensor:
        normal = self.classes.index(self.config.normal_class)
        return targets[:, normal] > 0.5 if self.config.multi_label else targets == normal

    def fit(self, inputs: HeadInputs, targets: Tensor | None) -> None:
        labels = _required(targets, "targets")
        if self.config.multi_label:
            Head.fit(self, inputs, labels)
            # Positive weight per class: sqrt(negatives / positives). Rare faults count more,
            # but the full ratio made the head overconfident (validation loss rose from the
            # first epoch; held-out event F1 0.70 against 0.73 with the square root).
            positives = labels.to("cpu").sum(dim=0)
            weight = ((len(labels) - positives) / positives.clamp_min(1)).sqrt()
            self.class_weight.copy_(torch.where(positives > 0, weight, 1.0))
        else:
            super().fit(inputs, labels)
        normal = self._normal_rows(labels)
        if not bool(normal.any()):
            raise ValueError("the fault head needs normal windows in its training set")
        self.scorer.fit(inputs.rows(normal))

    def forward(self, inputs: HeadInputs) -> dict[str, Tensor]:
        out = super().forward(inputs)
        if self.config.multi_label:
            out["probs"] = torch.sigmoid(out["logits"])
        return {**out, **self.scorer(inputs)}

    def loss(self, outputs: dict[str, Tensor], targets: Tensor) -> Tensor:
        if not self.config.multi_label:
            return super().loss(outputs, targets)
        return F.binary_cross_entropy_with_logits(
            outputs["logits"], targets, pos_weight=self.class_weight
        )

    def metrics(self, outputs: dict[str, Tensor], targets: Tensor) -> dict[str, float]:
        if not self.config.multi_label:
            return super().metrics(outputs, targets)
        predicted, truth = outputs["probs"] > 0.5, targets > 0.5
        f1s = []
        for k in range(truth.shape[1]):
            tp = (predicted[:, k] & truth[:, k]).sum().item()
            denominator = predicted[:, k].sum().item() + truth[:, k].sum().item()
            if truth[:, k].any():
                f1s.append(2 * tp / denominator if denominator else 0.0)
        return {
            "accuracy": (predicted == truth).all(dim=1).float().mean().item(),
            "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        }


# -- regression -----------------------------------------------------------------------------


class RegressionHead(Head):
    """``n_outputs`` values in raw units (standardised targets, MSE loss)."""

    output_names: ClassVar[tuple[str, ...]] = ("value",)

    def __init__(
        self, config: HeadConfig, backbone_config: BackboneConfig, n_outputs: int | None = None
    ) -> None:
        super().__init__(config, backbone_config)
        self.n_outputs: int = n_outputs or int(getattr(config, "n_outputs", 1))
        self.net = mlp(self.d_in, config.d_hidden, self.n_outputs, config.dropout)
        self.target_norm = Standardiser(self.n_outputs)

    def encode_targets(self, targets: np.ndarray) -> Tensor:
        return torch.as_tensor(
            np.asarray(targets, dtype=np.float32).reshape(len(targets), self.n_outputs)
        )

    def fit(self, inputs: HeadInputs, targets: Tensor | None) -> None:
        super().fit(inputs, targets)
        self.target_norm.fit(_required(targets, "targets"))

    def standardised(self, inputs: HeadInputs) -> Tensor:
        return self.net(self.joined(inputs))

    def forward(self, inputs: HeadInputs) -> dict[str, Tensor]:
        return {"value": self.target_norm.inverse(self.standardised(inputs))}

    def loss(self, outputs: dict[str, Tensor], targets: Tensor) -> Tensor:
        # Compare in standardised units, so targets of any scale train at one learning rate.
        return F.mse_loss(self.target_norm(outputs["value"]), self.target_norm(targets))

    def metrics(self, outputs: dict[str, Tensor], targets: Tensor) -> dict[str, float]:
        err = outputs["value"] - targets
        return {"mae": err.abs().mean().item(), "rmse": err.pow(2).mean().sqrt().item()}


class PayloadHead(RegressionHead):
    """Payload (tonnes) from strut pressures and dynamics; absolute pressure levels matter, so
    the window means (``use_stats``) are part of the input."""

    output_names: ClassVar[tuple[str, ...]] = ("payload_t",)
    config: PayloadHeadConfig

    def __init__(self, config: PayloadHeadConfig, backbone_config: BackboneConfig) -> None:
        super().__init__(config, backbone_config, n_outputs=1)

    def encode_targets(self, targets: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(targets, dtype=np.float32).reshape(-1))

    def fit(self, inputs: HeadInputs, targets: Tensor | None) -> None:
        super().fit(inputs, _required(targets, "targets")[:, None])

    def forward(self, inputs: HeadInputs) -> dict[str, Tensor]:
        return {"payload_t": self.target_norm.inverse(self.standardised(inputs))[:, 0]}

    def loss(self, outputs: dict[str, Tensor], targets: Tensor) -> Tensor:
        z = self.target_norm(outputs["payload_t"][:, None])
        return F.smooth_l1_loss(z, self.target_norm(targets[:, None]), beta=0.5)

    def metrics(self, outputs: dict[str, Tensor], targets: Tensor) -> dict[str, float]:
        mae = (outputs["payload_t"] - targets).abs().mean().item()
        return {"mae_t": mae, "mae_pct": 100.0 * mae / self.config.capacity_t}


# -- ETA ------------------------------------------------------------------------------------


def pinball(pred: Tensor, target: Tensor, quantiles: Tensor) -> Tensor:
    """Quantile (pinball) loss; ``pred`` [B, Q], ``target`` [B], ``quantiles`` [Q]."""
    diff = target[:, None] - pred
    return torch.maximum(quantiles * diff, (quantiles - 1.0) * diff).mean()


class EtaHead(Head):
    """P10 / P50 / P90 of the seconds to the next stop.

    The network predicts P50 and two positive offsets (softplus), so P10 <= P50 <= P90 by
    construction, never by post-hoc sorting. Trained with the pinball loss in standardised
    seconds; outputs are clamped at 0 s (a monotone map, so the order holds).
    """

    output_names: ClassVar[tuple[str, ...]] = ("eta_s",)
    quantiles: Tensor
    interval_scale: Tensor

    def __init__(self, config: EtaHeadConfig, backbone_config: BackboneConfig) -> None:
        super().__init__(config, backbone_config)
        self.net = mlp(self.d_in, config.d_hidden, 3, config.dropout)
        self.target_norm = Standardiser(1)
        self.register_buffer("quantiles", torch.tensor(config.quantiles, dtype=torch.float32))
        # Conformal widening (or narrowing) of the P10-P90 offsets, set by ``calibrate``.
        self.register_buffer("interval_scale", torch.tensor(1.0))

    @torch.no_grad()
    def calibrate(self, inputs: HeadInputs, targets: Tensor) -> float:
        """Scale the P10 / P90 offsets so that the share of ``targets`` (seconds) inside
        [P10, P90] on held-apart windows is the nominal one (0.8 for 0.1 / 0.9): pinball
        training on one set of sites is not calibrated on another. Returns the scale."""
        self.interval_scale.fill_(1.0)
        eta = self.forward(inputs)["eta_s"]
        mid = eta[:, 1]
        low, high = mid - eta[:, 0], eta[:, 2] - mid
        nominal = float(self.quantiles[2] - self.quantiles[0])
        lo, hi = 0.05, 20.0
        for _ in range(40):  # bisection: coverage grows with the scale
            scale = (lo * hi) ** 0.5
            inside = (targets >= mid - scale * low) & (targets <= mid + scale * high)
            lo, hi = (scale, hi) if inside.float().mean().item() < nominal else (lo, scale)
        self.interval_scale.fill_((lo * hi) ** 0.5)
        return float(self.interval_scale)

    def encode_targets(self, targets: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(targets, dtype=np.float32).reshape(-1))

    def fit(self, inputs: HeadInputs, targets: Tensor | None) -> None:
        super().fit(inputs, targets)
        self.target_norm.fit(_required(targets, "targets")[:, None])

    def standardised(self, inputs: HeadInputs) -> Tensor:
        raw = self.net(self.joined(inputs))
        mid, low, high = raw[:, 0:1], F.softplus(raw[:, 1:2]), F.softplus(raw[:, 2:3])
        low, high = low * self.interval_scale, high * self.interval_scale
        return torch.cat([mid - low, mid, mid + high], dim=-1)  # [B, 3], non-crossing

    def forward(self, inputs: HeadInputs) -> dict[str, Tensor]:
        return {"eta_s": self.target_norm.inverse(self.standardised(inputs)).clamp_min(0.0)}

    def loss(self, outputs: dict[str, Tensor], targets: Tensor) -> Tensor:
        # Standardise the clamped outputs back: below 0 s the gradient vanishes, as it should.
        z = self.target_norm(outputs["eta_s"])
        return pinball(z, self.target_norm(targets[:, None])[:, 0], self.quantiles)

    def metrics(self, outputs: dict[str, Tensor], targets: Tensor) -> dict[str, float]:
        eta = outputs["eta_s"]
        inside = (targets >= eta[:, 0]) & (targets <= eta[:, 2])
        return {
            "mae_p50_s": (eta[:, 1] - targets).abs().mean().item(),
            "coverage": inside.float().mean().item(),
            "pinball_s": pinball(eta, targets, self.quantiles).item(),
        }


# -- trajectory -----------------------------------------------------------------------------


def constant_turn_positions(speed: Tensor, yaw_rate: Tensor, horizons: Tensor) -> Tensor:
    """Truck-frame positions [B, H, 2] after ``horizons`` seconds at constant speed (m/s) and
    yaw rate (rad/s): an arc, x = v sin(wt)/w, y = v (1 - cos(wt))/w; a straight line as w -> 0
    (the small-angle form is used there to avoid dividing by ~0)."""
    v, w, t = speed[:, None], yaw_rate[:, None], horizons[None, :]
    wt = w * t
    straight = w.abs() < 1e-4
    w_safe = torch.where(straight, torch.ones_like(w), w)
    x = torch.where(straight, v * t, v * torch.sin(wt) / w_safe)
    y = torch.where(straight, 0.5 * v * w * t * t, v * (1.0 - torch.cos(wt)) / w_safe)
    return torch.stack([x, y], dim=-1)


class TrajectoryHead(Head):
    """Positions (x forward, y left, metres, the truck's frame now) at each horizon.

    One small MLP per horizon; with ``physics_prior`` each predicts a standardised correction
    to the constant-turn-rate arc from the current speed and yaw rate (the first two extra
    features), so it starts from the baseline and learns what the road and the truck's state
    add (braking before a bend, speed limits, grade).
    """

    output_names: ClassVar[tuple[str, ...]] = ("positions_m",)
    config: TrajectoryHeadConfig
    horizons: Tensor
    residual_mean: Tensor
    residual_std: Tensor

    def __init__(self, config: TrajectoryHeadConfig, backbone_config: BackboneConfig) -> None:
        super().__init__(config, backbone_config)
        n_h = len(config.horizons_s)
        self.nets = nn.ModuleList(
            mlp(self.d_in, config.d_hidden, 2, config.dropout) for _ in range(n_h)
        )
        self.register_buffer("horizons", torch.tensor(config.horizons_s, dtype=torch.float32))
        self.register_buffer("residual_mean", torch.zeros(n_h, 2))
        self.register_buffer("residual_std", torch.ones(n_h, 2))

    def encode_targets(self, targets: np.ndarray) -> Tensor:
        y = np.asarray(targets, dtype=np.float32)
        if y.shape[1:] != (len(self.config.horizons_s), 2):
            raise ValueError(
                f"trajectory targets must be [N, {len(self.config.horizons_s)}, 2], got {y.shape}"
            )
        return torch.as_tensor(y)

    def prior(self, inputs: HeadInputs) -> Tensor:
        f = _required(inputs.features, "features (speed_mps, yaw_rate_rps first)")
        if not self.config.physics_prior:
            return (f[:, :1, None] * 0.0).expand(-1, len(self.config.horizons_s), 2)
        return constant_turn_positions(f[:, 0], f[:, 1], self.horizons)

    def fit(self, inputs: HeadInputs, targets: Tensor | None) -> None:
        super().fit(inputs, targets)
        residual = _required(targets, "targets") - self.prior(inputs)
        self.residual_mean.copy_(residual.mean(dim=0))
        self.residual_std.copy_(residual.std(dim=0, unbiased=False).clamp_min(1e-3))

    def forward(self, inputs: HeadInputs) -> dict[str, Tensor]:
        x = self.joined(inputs)
        z = torch.stack([net(x) for net in self.nets], dim=1)  # [B, H, 2] standardised
        return {"positions_m": self.prior(inputs) + z * self.residual_std + self.residual_mean}

    def loss(self, outputs: dict[str, Tensor], targets: Tensor) -> Tensor:
        # Per-horizon standardisation: the 5 s errors (metres) do not drown the 1 s ones.
        return (((outputs["positions_m"] - targets) / self.residual_std) ** 2).mean()

    def metrics(self, outputs: dict[str, Tensor], targets: Tensor) -> dict[str, float]:
        dist = (outputs["positions_m"] - targets).norm(dim=-1)  # [B, H]
        return {"ade_m": dist.mean().item(), "fde_m": dist[:, -1].mean().item()}


HEADS: dict[str, type[Head]] = {
    "fault": FaultHead,
    "eta": EtaHead,
    "trajectory": TrajectoryHead,
    "payload": PayloadHead,
    "regression": RegressionHead,
    "classification": ClassificationHead,
    "anomaly": AnomalyHead,
}


def build_head(config: HeadConfig, backbone_config: BackboneConfig) -> Head:
    """A fresh (unfitted) head of ``config.kind`` for a backbone of ``backbone_config``."""
    return HEADS[config.kind](config, backbone_config)  # type: ignore[arg-type]


class TaskModel(nn.Module):
    """A backbone and one head as one network: raw windows (+ features) in, named outputs out.

    ``input_names`` is ``("window",)`` or ``("window", "features")``; ``output_names`` is the
    head's. This is what is exported to ONNX and served by the runtime.
    """

    def __init__(self, backbone: PatchBackbone, head: Head) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    @property
    def input_names(self) -> tuple[str, ...]:
        return ("window", "features") if self.head.config.n_features else ("window",)

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.head.output_names

    def forward(self, window: Tensor, features: Tensor | None = None) -> dict[str, Tensor]:
        inputs = head_inputs(self.backbone, window, features, self.head.config.use_recon_error)
        return self.head(inputs)

    @torch.no_grad()
    def predict(
        self, window: np.ndarray, features: np.ndarray | None = None, batch_size: int = 512
    ) -> dict[str, np.ndarray]:
        """Numpy in, numpy out, in batches, on the network's current device, in eval mode."""
        self.eval()
        device = next(self.parameters()).device
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.output_names}
        for start in range(0, len(window), batch_size):
            w = torch.as_tensor(
                np.asarray(window[start : start + batch_size], dtype=np.float32), device=device
            )
            f = (
                None
                if features is None
                else torch.as_tensor(
                    np.asarray(features[start : start + batch_size], dtype=np.float32),
                    device=device,
                )
            )
            for name, value in self(w, f).items():
                parts[name].append(value.cpu().numpy())
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}
