"""A training run's checkpoints into the registry: the Django side of ``manage.py train_models``.

The experiment pipeline (``fleet.learning.pipeline``) trains and saves without Django; these
functions number a run's version and register it, so ``bench models`` can train into a scratch
directory without adding versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from fleet.learning import services
from fleet.learning.features import NETWORKS
from fleet.learning.models import ModelAlias, ModelVersion


class SavedRun(Protocol):
    """What registering needs of a run (``pipeline.training.TrainingRun``)."""

    manifests: Mapping[str, Path]


def next_version(root: Path) -> str:
    """One number above every version of any of the networks, on disk or registered, so
    the six of one run share a version."""
    on_disk = [
        int(p.name) for name in NETWORKS for p in (Path(root) / name).glob("*") if p.name.isdigit()
    ]
    registered = ModelVersion.objects.filter(name__in=NETWORKS).values_list("version", flat=True)
    return str(max([0, *on_disk, *registered]) + 1)


def register_run(run: SavedRun, *, by: Any = None, promote: bool | None = None) -> list[str]:
    """Register the run's checkpoints (lineage order) and move aliases: ``promote`` True makes
    them champions, False challengers, None champions only where a name has none yet.
    Returns what was done, a line each."""
    done = []
    for name in NETWORKS:
        version = services.register_version(run.manifests[name], by=by)
        has_champion = ModelAlias.objects.filter(name=name, alias="champion").exists()
        champion = promote if promote is not None else not has_champion
        alias = "champion" if champion else "challenger"
        services.promote(name, version.version, alias, by=by)
        done.append(f"{name}@{version.version} registered, {alias}")
    return done


def champions_exist() -> bool:
    """Whether every network has a champion (``make demo`` trains only when one is missing)."""
    have = set(ModelAlias.objects.filter(alias="champion").values_list("name", flat=True))
    return set(NETWORKS) <= have


def stale_champions(inputs: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The heads whose champion reads other per-window features than ``inputs`` (head ->
    feature names, as today's feature code makes them): a champion trained before a feature was
    added would be sent a row it cannot read, so ``make demo`` retrains rather than serve it."""
    champions = ModelAlias.objects.select_related("version").filter(
        alias="champion", name__in=list(inputs)
    )
    return sorted(
        row.name
        for row in champions
        if tuple(row.version.config.get("head", {}).get("feature_names", ())) != inputs[row.name]
    )
