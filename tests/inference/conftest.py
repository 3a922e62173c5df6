"""A tiny real network for the inference tests: a backbone and two heads (one with extra
features), fitted for a moment and saved as checkpoints, so the batcher runs a real
``models.Runtime`` (CPU, no database)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import BackboneConfig, PatchBackbone, checkpoint_dir, fit_head, save_head

TINY = BackboneConfig(
    n_channels=3,
    window=16,
    patch_len=4,
    stride=4,
    d_model=16,
    n_heads=2,
    n_layers=1,
    d_ff=32,
    dropout=0.0,
    channel_names=("coolant_c", "tyre_kpa", "speed_mps"),
)


def windows(n: int, seed: int = 0) -> np.ndarray:
    """Telemetry-like windows [n, 3, 16]: a level, a slow sine and noise per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(TINY.window)
    level = rng.normal([90.0, 650.0, 8.0], [3.0, 20.0, 2.0], (n, 3))[..., None]
    wave = rng.uniform(0.5, 2.0, (n, 3, 1)) * np.sin(t * rng.uniform(0.1, 0.5, (n, 3, 1)))
    return (level + wave + rng.normal(0, 0.1, (n, 3, TINY.window))).astype(np.float32)


def features(n: int, seed: int = 0) -> np.ndarray:
    """ETA route features [n, 4]: distance left, grade mean and max, payload."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 1, (n, 4)) * [3000, 10, 12, 90]).astype(np.float32)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """``{"root", "eta", "payload"}``: an ETA head (window + features) and a payload head
    (window only) on one untrained tiny backbone, each fitted for one epoch and saved."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("inference-checkpoints")
    backbone = PatchBackbone(TINY)
    X, F = windows(64), features(64)
    eta = fit_head(backbone, "eta", X, 30 + F[:, 0] / 8, F, epochs=1, progress=False)
    save_head(eta, root, name="eta", version="1")
    payload = fit_head(backbone, "payload", X, F[:, 3], epochs=1, progress=False)
    save_head(payload, root, name="payload", version="1")
    return {
        "root": root,
        "eta": checkpoint_dir(root, "eta", "1"),
        "payload": checkpoint_dir(root, "payload", "1"),
    }
