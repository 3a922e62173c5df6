"""The registry's champions as pool deployments: what the inference pool serves.

One ``inference.placement.Deployment`` per head with a champion ("fault", "eta", "trajectory",
"payload": every registered version of kind "head", so a new head is served without code here),
named after the head (the pool's queue is ``inference.<name>``), pointing at the champion's
checkpoint in the artifact store (``checkpoints/<sha256>``; each worker fetches and verifies it). ``deploy_champions`` writes them into the pool's store; the registry calls
it again after every champion promotion or roll-back (``services._move``), so the pool follows
the alias without anyone restarting a worker.

Priorities follow the product: the trajectory head feeds collision avoidance and is useless a
second late, so it is latency-critical with a 50 ms SLO and a slice of its own; fault, ETA and
payload answers are read by people and planners at a 10 s cadence, so they are best-effort at
500 ms and share what is left.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from django.conf import settings

from fleet.learning.models import ModelAlias, ModelVersion
from fleet.learning.services import read_manifest
from fleet.learning.shadow_names import is_shadow, shadow_deployment
from inference.placement import Deployment
from inference.pool import PoolStore

log = logging.getLogger(__name__)

MIB = 1 << 20
MAX_BATCH_SIZE = 32
FLOAT_BYTES = 4
# An onnxruntime session's arena and bookkeeping beside the weights, per loaded model: the
# order of what a session of these small graphs holds after its first batches.
RUNTIME_OVERHEAD_BYTES = 32 * MIB


def product_terms(name: str) -> dict[str, Any]:
    """Priority, SLO and batching of one head (see the module docstring for why)."""
    interval_ms = float(settings.INFERENCE_INTERVAL_S) * 1000.0
    if name == "trajectory":
        # 2 ms of batching fits a 50 ms SLO; positions 1 s ahead are history after a second,
        # so a request still waiting then is dropped rather than served late.
        return {
            "priority": "critical",
            "slo_ms": 50.0,
            "batching": {"max_queue_delay_ms": 2.0, "default_timeout_ms": 1000.0},
        }
    # Best-effort heads wait a little longer for fuller batches; an answer older than the
    # decision interval is superseded by the next window, so it times out there.
    return {
        "priority": "best-effort",
        "slo_ms": 500.0,
        "batching": {"max_queue_delay_ms": 5.0, "default_timeout_ms": interval_ms},
    }


def champion_deployments() -> list[Deployment]:
    """One deployment per head that has a champion, by name. Backbones are never deployed on
    their own: a head's checkpoint loads its backbone."""
    rows = ModelAlias.objects.select_related("version").filter(
        alias=ModelAlias.Alias.CHAMPION, version__kind=ModelVersion.Kind.HEAD
    )
    return [deployment_for(row.version) for row in rows.order_by("name")]


def deployment_for(version: ModelVersion) -> Deployment:
    """The deployment serving ``version`` under its name."""
    directory, manifest = read_manifest(version.path)
    per_row = bytes_per_row(manifest)
    terms = product_terms(version.name)
    batching = {"max_batch_size": MAX_BATCH_SIZE, "bytes_per_row": per_row, **terms["batching"]}
    return Deployment(
        name=version.name,
        # The store's reference, never this host's copy: the workers fetch it by hash.
        checkpoint=version.path,
        model=version.name,
        model_id=str(manifest.get("id") or version),
        memory_bytes=memory_bytes(directory, manifest, per_row),
        priority=terms["priority"],
        slo_ms=terms["slo_ms"],
        batching=batching,
    )


def weights_bytes(directory: Path, manifest: dict[str, Any]) -> int:
    """Bytes of every weight the runtime loads: the head's file and its parent backbone's
    (a head checkpoint names its backbone instead of copying it)."""
    total = _file_size(directory / str(manifest.get("weights") or "weights.safetensors"))
    parent = manifest.get("parent") or {}
    if parent.get("path"):
        parent_dir = (directory / parent["path"]).resolve()
        _, parent_manifest = read_manifest(parent_dir)
        total += _file_size(parent_dir / str(parent_manifest.get("weights") or ""))
    return total


def bytes_per_row(manifest: dict[str, Any]) -> int:
    """Working memory of one batch row: its inputs, plus the activations a forward pass of the
    backbone holds at once per token and layer (q, k, v and the attention output: 4 x d_model;
    the feed-forward hidden: d_ff), doubled for the engine's scratch buffers."""
    inputs = sum(_elements(shape) for shape in (manifest.get("inputs") or {}).values())
    config = (manifest.get("parent") or {}).get("config") or {}
    tokens = int(config.get("n_channels", 0)) * (
        int(config.get("window", 0)) // max(int(config.get("patch_len", 1)), 1)
    )
    per_token = 4 * int(config.get("d_model", 0)) + int(config.get("d_ff", 0))
    activations = tokens * per_token * int(config.get("n_layers", 0))
    return 2 * FLOAT_BYTES * (inputs + activations)


def memory_bytes(directory: Path, manifest: dict[str, Any], per_row: int) -> int:
    """What a replica needs of its slice: the weights twice (as loaded, and the engine's own
    initialisers), the session's overhead, and a full batch's working set."""
    return (
        2 * weights_bytes(directory, manifest) + RUNTIME_OVERHEAD_BYTES + MAX_BATCH_SIZE * per_row
    )


def challenger_deployments() -> list[Deployment]:
    """One shadow deployment per head whose challenger is not its champion, named
    ``<head>.shadow`` (``shadow_names``). Always best-effort with one replica at most: a
    challenger's answers are compared, never acted on, so it must not take capacity from what
    is (the trajectory champion's critical slice above all)."""
    champions = dict(
        ModelAlias.objects.filter(alias=ModelAlias.Alias.CHAMPION).values_list("name", "version")
    )
    rows = ModelAlias.objects.select_related("version").filter(
        alias=ModelAlias.Alias.CHALLENGER, version__kind=ModelVersion.Kind.HEAD
    )
    out = []
    for row in rows.order_by("name"):
        if champions.get(row.name) == row.version_id:
            continue
        served = deployment_for(row.version)
        terms = product_terms("shadow")  # best-effort terms, whatever the head
        out.append(
            dataclasses.replace(
                served,
                name=shadow_deployment(row.name),
                priority=terms["priority"],
                slo_ms=terms["slo_ms"],
                max_replicas=1,
                batching={**served.batching, **terms["batching"]},
            )
        )
    return out


def deploy_champions(store: PoolStore | None = None) -> list[Deployment]:
    """Put every champion head into the pool, and every challenger beside it in shadow; a
    deployment already there and unchanged is left alone (no new plan for nothing), one whose
    version moved is replaced, a shadow whose challenger is gone (or became champion) is
    removed."""
    store = store or PoolStore()
    deployed = champion_deployments()
    shadows = challenger_deployments()
    for deployment in [*deployed, *shadows]:
        if store.deployment(deployment.name) != deployment:
            store.put_deployment(deployment)
            log.info("deployed %s (%s)", deployment.name, deployment.model_id)
    wanted = {d.name for d in shadows}
    for deployment in store.deployments():
        if is_shadow(deployment.name) and deployment.name not in wanted:
            store.remove_deployment(deployment.name)
            log.info("removed %s (no challenger in shadow)", deployment.name)
    return [*deployed, *shadows]


def champion_moved(name: str) -> None:
    """After a champion or challenger alias of ``name`` moved (committed): serve the new
    champion, shadow the new challenger. Never raises: the alias is already moved, and the
    next ``deploy_models`` repairs a missed one."""
    if not ModelVersion.objects.filter(name=name, kind=ModelVersion.Kind.HEAD).exists():
        return
    try:
        deploy_champions()
    except Exception:
        log.exception("could not deploy the new champion of %s to the pool", name)


def _elements(shape: list[int | None]) -> int:
    size = 1
    for dim in shape[1:]:  # the first dimension is the batch
        size *= int(dim or 1)
    return size


def _file_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0
