"""Shared fixtures of the learning tests.

- ``small_data``: a small version of the models' data, built once per session (about 15 s on 2
  cores): the four sites, 8 trucks each for an hour, faults twice as often as in the default
  build so an hour holds enough of them.
- ``trained``: one tiny training run on ``small_data`` (backbone, adaptation, every head, one
  epoch each), trained once per session and shared read-only by the modules that serve, deploy
  or challenge champions (three module-scoped copies cost three trainings).
- ``write_checkpoint``, ``backbone``, ``heads``: checkpoint directories as ``models.checkpoint``
  writes them, registered in the model registry (the registry and its API tests).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fleet.learning import services
from fleet.learning.models import ModelVersion
from fleet.learning.pipeline.datasets import (
    HELD_OUT_INTENSITIES,
    DataConfig,
    Datasets,
    RunSpec,
    build_datasets,
    ranges,
)
from fleet.learning.pipeline.training import TrainConfig, TrainingRun, train_models

SMALL = DataConfig(
    pretrain=(
        RunSpec("A", 8, 1.0, seed=1, fault_rate=2.0),
        RunSpec("B", 8, 1.0, seed=2, fault_rate=2.0),
    ),
    adapt=RunSpec("C", 8, 1.0, seed=3, fault_rate=2.0),
    validation=RunSpec(
        "D", 8, 1.0, seed=4, fault_rate=2.0, intensities=ranges(HELD_OUT_INTENSITIES)
    ),
    adapt_trucks=2,
    adapt_hours=0.5,
)
# The smallest budgets that still make every checkpoint (quality is not tested with them).
TINY = TrainConfig(
    pretrain_seconds=1.0,
    pretrain_epochs=1,
    adapt_seconds=0.5,
    adapt_epochs=1,
    head_epochs=1,
    head_seconds=1.0,
    latency_runs=10,
)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Datasets:
    directory = tmp_path_factory.mktemp("learning")
    return build_datasets(SMALL, directory=directory, workers=2, progress=False)


@pytest.fixture(scope="session")
def trained(small_data: Datasets, tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    root = tmp_path_factory.mktemp("tiny-checkpoints")
    return train_models(TINY, root=root, datasets=small_data, progress=False)


def write_checkpoint(
    root: Path,
    name: str,
    version: int,
    *,
    kind: str = "head",
    lineage: tuple[str, ...] = (),
    weights: bytes | None = None,
    sha256: str | None = None,
) -> Path:
    """A checkpoint directory as models.checkpoint writes it (weights + manifest.json)."""
    directory = root / name / str(version)
    directory.mkdir(parents=True)
    data = weights if weights is not None else f"{name}@{version} weights".encode()
    (directory / "weights.safetensors").write_bytes(data)
    manifest = {
        "name": name,
        "kind": kind,
        "version": str(version),
        "config": {"d_model": 64},
        "sha256": sha256 or hashlib.sha256(data).hexdigest(),
        "metrics": {"f1": 0.9},
        "data_hash": "ab" * 32,
        "lineage": list(lineage),
        "created_at": "2026-11-22T10:00:00+00:00",
        "weights": "weights.safetensors",
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory / "manifest.json"


@pytest.fixture
def backbone(tmp_path) -> ModelVersion:
    return services.register_version(write_checkpoint(tmp_path, "backbone", 1, kind="backbone"))


@pytest.fixture
def heads(tmp_path, backbone) -> list[ModelVersion]:
    return [
        services.register_version(
            write_checkpoint(tmp_path, "fault-head", v, lineage=("backbone@1",))
        )
        for v in (1, 2, 3)
    ]
