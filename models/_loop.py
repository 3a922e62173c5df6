"""Small pieces shared by the training loops: splits, batches, early stopping, time budgets."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train / validation indices; at least one window on each side when n >= 2.

    Callers that need splits by truck or by time pass their own validation arrays instead.
    """
    if n < 2:
        raise ValueError(f"need at least 2 windows to train, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    return order[n_val:], order[:n_val]


def batches(n: int, batch_size: int, generator: np.random.Generator) -> Iterator[np.ndarray]:
    order = generator.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def as_tensor(array: np.ndarray, device: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype).to(device)


@dataclass
class EarlyStopper:
    """Keeps the best weights seen on the validation loss; stops after ``patience`` bad epochs."""

    module: torch.nn.Module
    patience: int
    best: float = float("inf")
    best_epoch: int = -1
    bad_epochs: int = 0
    best_state: dict[str, Any] = field(default_factory=dict)

    def update(self, epoch: int, val_loss: float) -> bool:
        """Record an epoch; True when training should stop."""
        if val_loss < self.best - 1e-7:
            self.best, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            self.best_state = copy.deepcopy(self.module.state_dict())
        else:
            self.bad_epochs += 1
        return self.bad_epochs > self.patience

    def restore(self) -> None:
        if self.best_state:
            self.module.load_state_dict(self.best_state)


@dataclass
class Budget:
    """Wall-clock budget for a training run (None: unlimited)."""

    max_seconds: float | None
    started: float = field(default_factory=time.perf_counter)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def spent(self) -> bool:
        return self.max_seconds is not None and self.elapsed >= self.max_seconds
