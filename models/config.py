"""Frozen, JSON-serialisable configurations of the backbone and the task heads.

A config is the whole recipe of a network's shape: the same config plus the same weights gives
the same network on any device. Configs travel inside checkpoint manifests (``to_dict`` /
``from_dict``), so every field is a plain JSON value (tuples are written as lists).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Self

FAULT_CLASSES: tuple[str, ...] = (
    "normal",
    "overheating",
    "tyre_leak",
    "brake_fade",
    "stuck_sensor",
)

# Fields of the backbone a head's weights depend on: a head trained on one backbone can only be
# attached to another with the same values (dropout or depth may differ, the embedding may not).
BACKBONE_INTERFACE_FIELDS: tuple[str, ...] = (
    "n_channels",
    "window",
    "patch_len",
    "stride",
    "d_model",
    "channel_names",
    "pool",  # which tokens the embedding averages: a head reads that embedding
)


class ConfigError(ValueError):
    """A config with impossible or unknown values."""


def _tupled(value: Any) -> Any:
    """JSON has lists only; the frozen configs hold tuples so they stay hashable."""
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def _listed(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_listed(v) for v in value]
    return value


class _JsonConfig:
    """to_dict / from_dict shared by every config dataclass."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _listed(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names - {"kind"})
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown fields {unknown}")
        return cls(**{k: _tupled(v) for k, v in data.items() if k in names})


@dataclass(frozen=True)
class BackboneConfig(_JsonConfig):
    """Shape of the L0/L1 patch transformer.

    Windows are ``[C, L]``: ``n_channels`` telemetry channels of ``window`` samples taken at
    ``sample_rate_hz``. Each channel is cut into patches of ``patch_len`` samples every
    ``stride`` samples. The defaults (64 s at 1 Hz, 8 patches of 8 s, d_model 64, 2 layers,
    about 110k parameters) pretrain at roughly 2-3 s per 1,000 windows per epoch on 2 CPU
    cores (batch-1 inference about 3 ms with onnxruntime); bound a run with ``max_seconds``.
    """

    n_channels: int = 8
    window: int = 64
    patch_len: int = 8
    stride: int = 8
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 128
    dropout: float = 0.1
    channel_mixing: bool = True
    # Anomaly scoring masks every patch once over this many passes (1/score_passes of the
    # patches hidden per pass, close to the pretraining mask ratio).
    score_passes: int = 3
    sample_rate_hz: float = 1.0
    # What the pooled window embedding averages: "mean" every channel's every patch, "last"
    # every channel's last patch (the window's most recent seconds, what a forecast needs).
    pool: str = "mean"
    # Names of the channels in window order; empty means "ch0", "ch1", ... Heads report the
    # channel that contributes most to an anomaly by this name.
    channel_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if min(self.n_channels, self.window, self.patch_len, self.stride, self.n_layers) < 1:
            raise ConfigError("n_channels, window, patch_len, stride and n_layers must be >= 1")
        if self.score_passes < 2:
            raise ConfigError("score_passes must be >= 2 (a patch cannot be scored unmasked)")
        if self.patch_len > self.window:
            raise ConfigError(f"patch_len {self.patch_len} is longer than window {self.window}")
        if (self.window - self.patch_len) % self.stride:
            raise ConfigError(
                f"window {self.window} is not covered by patches of {self.patch_len} every "
                f"{self.stride} samples: (window - patch_len) must be a multiple of stride"
            )
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.pool not in ("mean", "last"):
            raise ConfigError(f"pool must be 'mean' or 'last', got {self.pool!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout {self.dropout} is outside [0, 1)")
        if self.channel_names and len(self.channel_names) != self.n_channels:
            raise ConfigError(
                f"{len(self.channel_names)} channel_names for {self.n_channels} channels"
            )

    @property
    def n_patches(self) -> int:
        return (self.window - self.patch_len) // self.stride + 1

    @property
    def names(self) -> tuple[str, ...]:
        """Channel names, generated where none were given."""
        return self.channel_names or tuple(f"ch{i}" for i in range(self.n_channels))

    def interface(self) -> dict[str, Any]:
        """The fields a head depends on (see BACKBONE_INTERFACE_FIELDS)."""
        full = self.to_dict()
        return {k: full[k] for k in BACKBONE_INTERFACE_FIELDS}


@dataclass(frozen=True)
class HeadConfig(_JsonConfig):
    """Fields every L2 head has; each variant below adds its own.

    The head's input is the backbone's pooled window embedding, optionally the per-channel
    window statistics that instance normalisation removes (mean and log std: absolute levels
    such as strut pressure or coolant temperature live there), optionally the per-channel masked
    reconstruction error, and ``n_features`` extra features given by the caller (route
    features, speed...). All of these are standardised inside the head with statistics fitted
    on the training set, so callers pass raw units.
    """

    kind: ClassVar[str] = "base"
    n_features: int = 0
    feature_names: tuple[str, ...] = ()
    use_stats: bool = True
    use_recon_error: bool = False
    # False: the head ignores the backbone's embedding (the features-only reference that
    # ``backbone_gain`` compares against: the same head, data and budget without the backbone).
    use_embedding: bool = True
    d_hidden: int = 64
    dropout: float = 0.1
    version: str = "1"

    def __post_init__(self) -> None:
        if self.n_features < 0 or self.d_hidden < 1:
            raise ConfigError("n_features must be >= 0 and d_hidden >= 1")
        if self.feature_names and len(self.feature_names) != self.n_features:
            raise ConfigError(f"{len(self.feature_names)} feature_names for {self.n_features}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **super().to_dict()}


@dataclass(frozen=True)
class FaultHeadConfig(HeadConfig):
    """Fault classes plus a per-channel anomaly score (calibrated on the normal windows)."""

    kind: ClassVar[str] = "fault"
    classes: tuple[str, ...] = FAULT_CLASSES
    use_recon_error: bool = True
    # Quantile of the normal windows' anomaly scores used as the alarm threshold.
    anomaly_quantile: float = 0.99
    # Reconstruction error alone misses slow drifts: instance normalisation removes the level
    # a drift moves, so the window level and spread are scored beside it (see AnomalyHeadConfig).
    anomaly_components: tuple[str, ...] = ("recon", "level", "spread")
    normal_class: str = "normal"
    # Faults overlap (a sensor sticks during a tyre leak): multi-label heads give each fault
    # class its own probability (sigmoid, trained on [N, K] "active" flags) instead of one
    # softmax over classes, so one fault never hides another. ``probs[:, normal]`` is then the
    # probability that no fault is active.
    multi_label: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_components(self.anomaly_components)
        if self.normal_class not in self.classes:
            raise ConfigError(f"normal_class {self.normal_class!r} is not in {self.classes}")
        if not 0.5 <= self.anomaly_quantile < 1.0:
            raise ConfigError("anomaly_quantile must be in [0.5, 1)")


@dataclass(frozen=True)
class EtaHeadConfig(HeadConfig):
    """Quantiles (seconds) of the time to the next stop from the embedding + route features."""

    kind: ClassVar[str] = "eta"
    n_features: int = 4
    feature_names: tuple[str, ...] = (
        "distance_left_m",
        "grade_mean_pct",
        "grade_max_pct",
        "payload_t",
    )
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)

    def __post_init__(self) -> None:
        super().__post_init__()
        qs = self.quantiles
        if len(qs) != 3 or not 0.0 < qs[0] < qs[1] < qs[2] < 1.0:
            raise ConfigError(f"quantiles must be three increasing values in (0, 1), got {qs}")


@dataclass(frozen=True)
class TrajectoryHeadConfig(HeadConfig):
    """Positions (x forward, y left, metres, truck frame) at each horizon, one MLP per horizon.

    The first two extra features must be the current speed (m/s) and yaw rate (rad/s): with
    ``physics_prior`` the heads learn a correction to the constant-turn-rate prediction.
    """

    kind: ClassVar[str] = "trajectory"
    n_features: int = 2
    feature_names: tuple[str, ...] = ("speed_mps", "yaw_rate_rps")
    horizons_s: tuple[float, ...] = (1.0, 3.0, 5.0)
    physics_prior: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_features < 2 or not self.horizons_s or min(self.horizons_s) <= 0:
            raise ConfigError("trajectory needs speed and yaw rate features and positive horizons")


@dataclass(frozen=True)
class PayloadHeadConfig(HeadConfig):
    """Payload in tonnes from strut pressures and dynamics (absolute levels: use_stats)."""

    kind: ClassVar[str] = "payload"
    capacity_t: float = 90.0


@dataclass(frozen=True)
class RegressionHeadConfig(HeadConfig):
    """Generic regression of ``n_outputs`` values (standardised targets, MSE loss)."""

    kind: ClassVar[str] = "regression"
    n_outputs: int = 1


@dataclass(frozen=True)
class ClassificationHeadConfig(HeadConfig):
    """Generic classification into ``classes`` (labels kept as strings)."""

    kind: ClassVar[str] = "classification"
    classes: tuple[str, ...] = ("0", "1")

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.classes) < 2:
            raise ConfigError("classification needs at least two classes")


@dataclass(frozen=True)
class AnomalyHeadConfig(HeadConfig):
    """Unsupervised anomaly scores calibrated on a normal-only segment.

    Per channel and per component (masked reconstruction error, window level, window spread),
    a robust z-score against the normal segment; the window's score is the largest, the alarm
    threshold its ``quantile`` over the normal segment.
    """

    kind: ClassVar[str] = "anomaly"
    quantile: float = 0.995
    components: tuple[str, ...] = ("recon", "level", "spread")
    use_recon_error: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_components(self.components)
        if not 0.5 <= self.quantile < 1.0:
            raise ConfigError("quantile must be in [0.5, 1)")


def _check_components(components: tuple[str, ...]) -> None:
    unknown = set(components) - {"recon", "level", "spread"}
    if not components or unknown:
        raise ConfigError(
            f"anomaly components must be among recon, level, spread; got {components}"
        )


HEAD_CONFIGS: dict[str, type[HeadConfig]] = {
    c.kind: c
    for c in (
        FaultHeadConfig,
        EtaHeadConfig,
        TrajectoryHeadConfig,
        PayloadHeadConfig,
        RegressionHeadConfig,
        ClassificationHeadConfig,
        AnomalyHeadConfig,
    )
}


def head_config_from_dict(data: dict[str, Any]) -> HeadConfig:
    """Rebuild any head config from its ``to_dict`` (dispatches on ``kind``)."""
    kind = data.get("kind")
    if kind not in HEAD_CONFIGS:
        raise ConfigError(f"unknown head kind {kind!r}; known: {sorted(HEAD_CONFIGS)}")
    return HEAD_CONFIGS[kind].from_dict(data)
