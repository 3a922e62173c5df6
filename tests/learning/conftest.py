"""A small version of the models' data, built once per session (about 15 s on 2 cores): the four
sites, 8 trucks each for an hour, faults twice as often as in the default build so an hour
holds enough of them."""

from __future__ import annotations

import pytest

from fleet.learning.datasets import (
    HELD_OUT_INTENSITIES,
    DataConfig,
    Datasets,
    RunSpec,
    build_datasets,
    ranges,
)

SMALL = DataConfig(
    pretrain=(
        RunSpec("A", 8, 1.0, seed=1, fault_rate=2.0),
        RunSpec("B", 8, 1.0, seed=2, fault_rate=2.0),
    ),
    adapt=RunSpec("C", 8, 1.0, seed=3, fault_rate=2.0),
    heldout=RunSpec("D", 8, 1.0, seed=4, fault_rate=2.0, intensities=ranges(HELD_OUT_INTENSITIES)),
    adapt_trucks=2,
    adapt_hours=0.5,
)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Datasets:
    directory = tmp_path_factory.mktemp("learning")
    return build_datasets(SMALL, directory=directory, workers=2, progress=False)
