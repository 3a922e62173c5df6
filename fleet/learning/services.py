"""The model registry's operations: register a checkpoint, promote a version to an alias, roll
an alias back. Each runs in one transaction; a checkpoint whose weights do not hash to the
manifest's sha256 is refused before anything is written, and checked again before it is
promoted, so a file corrupted on disk never becomes what workers load.

Registering publishes the checkpoint (and its backbone) into the artifact store
(``models.artifacts``, ``settings.ARTIFACT_ROOT``) and records its reference there
(``checkpoints/<sha256>``, relative to the root): every host that reaches the store, and every
checkout on the same database, finds the same files. A promotion re-checks the store's copy.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.utils import timezone

from fleet.learning.models import AliasChange, ModelAlias, ModelVersion
from models import artifacts
from models import manifest as checkpoint_manifest

DEFAULT_WEIGHTS = checkpoint_manifest.WEIGHTS
REQUIRED = ("name", "kind", "version", "config", "sha256", "lineage")
_VERSION = re.compile(r"^v?(\d+)$")

User = AbstractBaseUser | AnonymousUser | None


class RegistryError(Exception):
    """A registry operation refused, with the reason an ML engineer can act on."""


class RegistryConflict(RegistryError):
    """Refused because of the registry's current state, not the request: there is no alias to
    roll back, or nothing earlier to roll back to (the API answers 409, not 400)."""


def artifact_store() -> artifacts.ArtifactStore:
    """The store registered versions live in (``settings.ARTIFACT_ROOT``)."""
    return artifacts.open_store(str(settings.ARTIFACT_ROOT), settings.ARTIFACT_ENDPOINT_URL)


def local_checkpoint(path: Path | str) -> Path:
    """A local directory for a registry path: a store reference is fetched by hash into this
    host's cache (``settings.ARTIFACT_CACHE``) and verified; a local path stays as it is."""
    try:
        return artifacts.resolve_checkpoint(
            path,
            root=str(settings.ARTIFACT_ROOT),
            cache=settings.ARTIFACT_CACHE,
            endpoint_url=settings.ARTIFACT_ENDPOINT_URL,
        )
    except checkpoint_manifest.CheckpointError as exc:
        raise RegistryError(str(exc)) from exc


def read_manifest(manifest_path: Path | str) -> tuple[Path, dict[str, Any]]:
    """(checkpoint directory, manifest) from a manifest file, its directory or a store
    reference (fetched into the cache): read by ``models.manifest``, checked for what the
    registry needs (test and imported checkpoints may lack the fields only loading a network
    needs)."""
    path = checkpoint_manifest.manifest_path(local_checkpoint(manifest_path))
    try:
        manifest = checkpoint_manifest.load_manifest(path)
    except checkpoint_manifest.CheckpointError as exc:
        raise RegistryError(str(exc)) from exc
    missing = [key for key in REQUIRED if key not in manifest]
    if missing:
        raise RegistryError(f"{path}: manifest lacks {', '.join(missing)}")
    if manifest["kind"] not in ModelVersion.Kind.values:
        raise RegistryError(f"{path}: unknown kind {manifest['kind']!r}")
    return path.parent.resolve(), manifest


def verify_weights(directory: Path, weights: str, sha256: str) -> None:
    """Raise unless the weights file beside the manifest hashes to ``sha256``."""
    if Path(weights).name != weights:
        raise RegistryError(f"{directory}: the weights file must sit beside its manifest")
    path = directory / weights
    if not path.is_file():
        raise RegistryError(f"{path}: weights file missing")
    try:
        checkpoint_manifest.check_file(path, sha256)
    except checkpoint_manifest.CheckpointError as exc:
        raise RegistryError(
            f"{exc}: the checkpoint is corrupt or was altered; not accepted"
        ) from exc


def publish(directory: Path | str) -> str:
    """Put the checkpoint at ``directory`` (and its backbone) into the artifact store; its
    reference there. Refused (``RegistryError``) when a file does not match its sha256."""
    try:
        return artifacts.publish(directory, artifact_store())
    except checkpoint_manifest.CheckpointError as exc:
        raise RegistryError(f"{exc}; not published") from exc


def _version_number(value: Any, where: Path) -> int:
    match = _VERSION.match(str(value))
    if match is None:
        raise RegistryError(f"{where}: version {value!r} is not a whole number")
    return int(match.group(1))


def _level(manifest: dict[str, Any]) -> str:
    level = manifest.get("level")
    if level in ModelVersion.Level.values:
        return str(level)
    if manifest["kind"] == ModelVersion.Kind.HEAD:
        return ModelVersion.Level.L2
    return ModelVersion.Level.L1 if manifest["lineage"] else ModelVersion.Level.L0


def _parent(manifest: dict[str, Any], where: Path) -> ModelVersion | None:
    """The registered version the manifest's lineage ends with; lineage is evidence, so an
    unregistered parent is refused rather than dropped."""
    if not manifest["lineage"]:
        return None
    parent_id = str(manifest["lineage"][-1])
    name, _, version = parent_id.rpartition("@")
    parent = ModelVersion.objects.filter(name=name, version=_version_number(version, where)).first()
    if parent is None:
        raise RegistryError(f"{where}: its parent {parent_id} is not registered; register it first")
    return parent


def _created_at(manifest: dict[str, Any]) -> datetime:
    text = manifest.get("created_at")
    if not text:
        return timezone.now()
    stamp = datetime.fromisoformat(str(text))
    return stamp if timezone.is_aware(stamp) else timezone.make_aware(stamp, UTC)


@transaction.atomic
def register_version(manifest_path: Path | str, *, by: User = None) -> ModelVersion:
    """Register the checkpoint whose manifest is at ``manifest_path`` (or in that directory).
    Registering the same weights again returns the existing row; other weights under a
    registered name and version are refused (versions are immutable)."""
    directory, manifest = read_manifest(manifest_path)
    verify_weights(directory, str(manifest.get("weights") or DEFAULT_WEIGHTS), manifest["sha256"])
    version = _version_number(manifest["version"], directory)
    existing = ModelVersion.objects.filter(name=manifest["name"], version=version).first()
    if existing is not None:
        if existing.sha256 != manifest["sha256"]:
            raise RegistryError(
                f"{existing} is registered with other weights (sha256 {existing.sha256[:16]}...); "
                "versions are immutable: save under a new version"
            )
        return existing
    ref = publish(directory)
    return ModelVersion.objects.create(
        name=manifest["name"],
        version=version,
        kind=manifest["kind"],
        level=_level(manifest),
        parent=_parent(manifest, directory),
        path=ref,
        sha256=manifest["sha256"],
        config=manifest["config"],
        metrics=manifest.get("metrics") or {},
        data_hash=manifest.get("data_hash") or "",
        lineage=list(manifest["lineage"]),
        created_at=_created_at(manifest),
        registered_by=_user(by),
    )


def _user(by: User) -> Any:
    return by if by is not None and by.is_authenticated else None


def _verified(version: ModelVersion) -> ModelVersion:
    """The version, once its files in the store (what workers fetch) still match what was
    registered; a version left at a local path (not yet published) is checked there."""
    if not artifacts.is_ref(version.path):
        directory = Path(version.path)
        _, manifest = read_manifest(directory)
        weights = str(manifest.get("weights") or DEFAULT_WEIGHTS)
        verify_weights(directory, weights, version.sha256)
        return version
    try:
        manifest = artifacts.verify_stored(version.path, artifact_store())
    except checkpoint_manifest.CheckpointError as exc:
        raise RegistryError(str(exc)) from exc
    if manifest.get("sha256") != version.sha256:
        raise RegistryError(
            f"{version}: the store's {version.path} holds weights {manifest.get('sha256')}, "
            f"not the registered {version.sha256}"
        )
    return version


def publish_local_versions(model: Any = ModelVersion) -> tuple[int, list[str]]:
    """Publish every version still registered at a local path into the artifact store and
    point it at its reference (what migration 0006 runs, with its historical model). Returns
    (versions published, those whose directory is gone: left as they are, named)."""
    published, missing = 0, []
    for row in model.objects.order_by("pk"):
        if artifacts.is_ref(row.path):
            continue
        directory = Path(row.path)
        if not (directory / checkpoint_manifest.MANIFEST).is_file():
            missing.append(f"{row.name}@{row.version} ({row.path})")
            continue
        row.path = publish(directory)
        row.save(update_fields=["path"])
        published += 1
    return published, missing


def _lock(name: str) -> None:
    # One alias change per model name at a time: the versions' rows are the lock.
    list(ModelVersion.objects.select_for_update().filter(name=name).values_list("pk", flat=True))


@transaction.atomic
def promote(
    name: str,
    version: int,
    alias: str = ModelAlias.Alias.CHAMPION,
    *,
    by: User = None,
    figures: dict[str, Any] | None = None,
) -> ModelAlias:
    """Point ``name``'s ``alias`` at ``version`` (after re-checking its weights); audited, with
    ``figures`` (the live figures the decision was made on, ``shadow.side_by_side``) kept in
    the audit record."""
    if alias not in ModelAlias.Alias.values:
        raise RegistryError(f"unknown alias {alias!r}: use {', '.join(ModelAlias.Alias.values)}")
    _lock(name)
    target = ModelVersion.objects.filter(name=name, version=version).first()
    if target is None:
        raise RegistryError(f"{name}@{version} is not registered")
    _verified(target)
    current = ModelAlias.objects.filter(name=name, alias=alias).first()
    if current is not None and current.version_id == target.pk:
        return current
    return _move(name, alias, current, target, AliasChange.Action.PROMOTE, by, figures)


@transaction.atomic
def roll_back(name: str, alias: str = ModelAlias.Alias.CHAMPION, *, by: User = None) -> ModelAlias:
    """Point ``alias`` back at the version it had before its latest promotion still in force;
    again for the one before that. Audited like a promotion."""
    _lock(name)
    current = ModelAlias.objects.filter(name=name, alias=alias).first()
    if current is None:
        raise RegistryConflict(f"{name} has no {alias} to roll back")
    promotion = (
        AliasChange.objects.filter(
            name=name,
            alias=alias,
            action=AliasChange.Action.PROMOTE,
            to_version=current.version,
            rolled_back=False,
        )
        .order_by("-at", "-pk")
        .first()
    )
    if promotion is None or promotion.from_version is None:
        raise RegistryConflict(f"{name} has no earlier {alias} than {current.version}")
    previous = _verified(promotion.from_version)
    promotion.rolled_back = True
    promotion.save(update_fields=["rolled_back"])
    return _move(name, alias, current, previous, AliasChange.Action.ROLL_BACK, by)


def _move(
    name: str,
    alias: str,
    current: ModelAlias | None,
    target: ModelVersion,
    action: str,
    by: User,
    figures: dict[str, Any] | None = None,
) -> ModelAlias:
    who, now = _user(by), timezone.now()
    AliasChange.objects.create(
        name=name,
        alias=alias,
        action=action,
        from_version=current.version if current else None,
        to_version=target,
        by=who,
        at=now,
        figures=figures or {},
    )
    row, _ = ModelAlias.objects.update_or_create(
        name=name, alias=alias, defaults={"version": target, "updated_by": who, "updated_at": now}
    )
    # The pool serves champions and shadows challengers: once the move is committed (never a
    # rolled-back one), point its deployments at the new versions. Imported here: deployments
    # reads the pool.
    from fleet.learning.deployments import champion_moved

    transaction.on_commit(partial(champion_moved, name), robust=True)
    return row


def resolve(name: str, alias: str = ModelAlias.Alias.CHAMPION) -> ModelVersion:
    """The version ``alias`` points at, weights re-verified: what a worker may load."""
    row = ModelAlias.objects.select_related("version").filter(name=name, alias=alias).first()
    if row is None:
        raise RegistryError(f"{name} has no {alias}")
    return _verified(row.version)
