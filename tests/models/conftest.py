"""Tiny networks and synthetic telemetry for the models tests (no database, CPU only).

The backbone is pretrained once per session (a few seconds) and shared; tests that change a
network work on their own copies or checkpoints.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import BackboneConfig, PatchBackbone, pretrain, save_backbone
from models.backbone import PretrainResult

# Two cores on the CI machine: more threads than cores only adds contention.
torch.set_num_threads(2)

TINY = BackboneConfig(
    n_channels=4,
    window=32,
    patch_len=8,
    stride=8,
    d_model=32,
    n_heads=4,
    n_layers=2,
    d_ff=64,
    dropout=0.0,
    channel_names=("coolant_c", "tyre_kpa", "brake_c", "speed_mps"),
)


def sine_windows(n: int, config: BackboneConfig = TINY, seed: int = 0) -> np.ndarray:
    """Independent windows of sines (random period, phase, amplitude, level) plus noise."""
    rng = np.random.default_rng(seed)
    shape = (n, config.n_channels, 1)
    t = np.arange(config.window)
    freq, phase = rng.uniform(0.03, 0.15, shape), rng.uniform(0, 2 * np.pi, shape)
    amp, level = rng.uniform(0.5, 2.0, shape), rng.normal(0, 3, shape)
    noise = 0.1 * rng.normal(size=(n, config.n_channels, config.window))
    return (amp * np.sin(2 * np.pi * freq * t + phase) + level + noise).astype(np.float32)


def running_series(n_samples: int, seed: int, config: BackboneConfig = TINY) -> np.ndarray:
    """One truck's continuous multichannel series [C, T]: each channel its own fixed period,
    amplitude and level (like a steady haul), plus sensor noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples)
    periods = np.array([23.0, 17.0, 29.0, 11.0])[: config.n_channels, None]
    levels = np.array([90.0, 650.0, 120.0, 8.0])[: config.n_channels, None]
    amps = np.array([1.5, 8.0, 4.0, 2.0])[: config.n_channels, None]
    noise = rng.normal(0, 1, (config.n_channels, n_samples)) * amps * 0.1
    return (levels + amps * np.sin(2 * np.pi * t / periods + rng.uniform(0, 6)) + noise).astype(
        np.float32
    )


def slide(series: np.ndarray, window: int = TINY.window, hop: int = 4) -> np.ndarray:
    """Windows [N, C, window] every ``hop`` samples of a [C, T] series."""
    starts = range(0, series.shape[1] - window + 1, hop)
    return np.stack([series[:, s : s + window] for s in starts])


@pytest.fixture(scope="session")
def pretrained() -> PretrainResult:
    torch.manual_seed(0)
    backbone = PatchBackbone(TINY)
    return pretrain(backbone, sine_windows(768), epochs=8, batch_size=32, progress=False)


@pytest.fixture(scope="session")
def backbone(pretrained: PretrainResult) -> PatchBackbone:
    return pretrained.backbone


@pytest.fixture(scope="session")
def saved_root(tmp_path_factory: pytest.TempPathFactory, backbone: PatchBackbone):
    """A checkpoint root holding the session backbone as ``l0@1``."""
    root = tmp_path_factory.mktemp("checkpoints")
    save_backbone(backbone, root, name="l0", version="1", metrics={"val_loss": 0.5})
    return root
