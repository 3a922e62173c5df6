"""Model artifacts every host can reach: checkpoints stored by sha256 under an artifact root,
fetched by hash into a local cache and verified there before anything loads them.

The root is a directory (a shared volume: NFS, a mounted bucket) or an S3-compatible object
store (``s3://bucket/prefix``, any endpoint boto3 reaches). Its layout::

    checkpoints/<sha256>/manifest.json         the manifest as stored; <sha256> is ITS hash
    checkpoints/<sha256>/weights.safetensors   the weights its "sha256" names
    checkpoints/<sha256>/model.onnx            each artifact its "artifacts" names (file, sha256)

A checkpoint's reference is ``checkpoints/<sha256>``, relative to the root: what the registry
stores and what a deployment sends to the slice workers. The manifest's hash pins everything:
it names its files' hashes, and a head's stored manifest names its backbone by the backbone's
reference (``parent.path`` rewritten to ``../<sha256>`` when published, a path relative to the
head's directory as ``models.checkpoint.parent_path`` reads it). Publishing is idempotent
(equal manifests are equal bytes) and writes the manifest last, so a manifest present in the
store means its files were written.

A host fetches a reference into its cache directory (the same layout, so the relative parent
path resolves there too), checking every file's sha256 on the way: a cached copy that no longer
matches is fetched again; a stored artifact that does not match is refused with
``CheckpointError`` naming the file and both hashes, and nothing of it is left in the cache.
The sha256 checks and the manifest reading are ``models.manifest``'s (the one place).

Standard library only, except boto3 for an ``s3://`` root (imported when one is opened).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from models.manifest import (
    MANIFEST,
    CheckpointError,
    atomic_write,
    check_file,
    check_sha256,
    checkpoint_files,
    load_manifest,
    manifest_bytes,
    manifest_path,
    sha256_hex,
)

logger = logging.getLogger(__name__)

PREFIX = "checkpoints"
_REF = re.compile(rf"^{PREFIX}/([0-9a-f]{{64}})$")


class ArtifactStore(Protocol):
    """Bytes by key (``checkpoints/<sha256>/<file>``) under one root."""

    url: str

    def read(self, key: str) -> bytes: ...

    def write(self, key: str, data: bytes) -> None: ...


class FileStore:
    """A directory, local or on a shared volume every host mounts."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def read(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError as exc:
            raise CheckpointError(self.root / key, "not in the artifact store") from exc
        except OSError as exc:
            raise CheckpointError(self.root / key, f"unreadable in the store ({exc})") from exc

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)


class S3Store:
    """An S3-compatible bucket under a prefix. ``endpoint_url`` names a store other than AWS
    (MinIO, Ceph's RGW...); credentials come the usual boto3 way (``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY``, a profile, an instance role)."""

    def __init__(self, url: str, *, endpoint_url: str | None = None, client: Any = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
        self.bucket, self.prefix = parts.netloc, parts.path.strip("/")
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        if client is None:
            import boto3  # only hosts with an s3:// root need it

            client = boto3.client("s3", endpoint_url=endpoint_url or None)
        self.client = client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def read(self, key: str) -> bytes:
        try:
            return bytes(
                self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            )
        except self.client.exceptions.NoSuchKey as exc:
            raise CheckpointError(f"{self.url}/{key}", "not in the artifact store") from exc

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)


@lru_cache(maxsize=8)
def open_store(root: str, endpoint_url: str | None = None) -> ArtifactStore:
    """The store at ``root``: ``s3://bucket/prefix`` or a directory (kept per process: an S3
    client is costly to make and safe to share between threads)."""
    if root.startswith("s3://"):
        return S3Store(root, endpoint_url=endpoint_url)
    return FileStore(root)


def is_ref(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` is a store reference (``checkpoints/<sha256>``), not a local path."""
    return _REF.match(str(text)) is not None


def _digest(ref: str) -> str:
    match = _REF.match(ref)
    if match is None:
        raise ValueError(f"{ref!r} is not an artifact reference ({PREFIX}/<sha256>)")
    return match.group(1)


def _parent_ref(manifest: dict[str, Any]) -> str | None:
    """The stored backbone a stored head's manifest names (``../<sha256>``), if any."""
    parent = manifest.get("parent")
    path = parent.get("path") if isinstance(parent, dict) else None
    if not path:
        return None
    ref = f"{PREFIX}/{Path(str(path)).name}"
    if str(path) != f"../{Path(ref).name}" or not is_ref(ref):
        raise CheckpointError(MANIFEST, f"parent path {path!r} is not a stored checkpoint's")
    return ref


# --- publishing: a checkpoint directory (and its parent chain) into the store -----------------


def publish(directory: Path | str, store: ArtifactStore) -> str:
    """Copy the checkpoint at ``directory`` (its backbone first, for a head) into ``store``;
    returns its reference. Every file is checked against the manifest's sha256 first, so a
    corrupt checkpoint is never published; files already stored intact are not written again."""
    source = manifest_path(directory).parent
    manifest = load_manifest(source)
    contents: dict[str, bytes] = {}
    for name, expected in checkpoint_files(manifest).items():
        try:
            data = (source / name).read_bytes()
        except OSError as exc:
            raise CheckpointError(source / name, f"unreadable ({exc})") from exc
        check_sha256(source / name, data, expected)
        contents[name] = data
    parent = manifest.get("parent")
    if isinstance(parent, dict) and parent.get("path"):
        parent_dir = (source / str(parent["path"])).resolve()
        if not (parent_dir / MANIFEST).is_file():
            raise CheckpointError(source / MANIFEST, f"its backbone {parent_dir} is missing")
        parent_ref = publish(parent_dir, store)
        manifest = {**manifest, "parent": {**parent, "path": f"../{_digest(parent_ref)}"}}
    stored = manifest_bytes(manifest)
    ref = f"{PREFIX}/{sha256_hex(stored)}"
    for name, data in contents.items():
        if not _stored_intact(store, f"{ref}/{name}", sha256_hex(data)):
            store.write(f"{ref}/{name}", data)
    # Last: a manifest in the store vouches for files that are all there.
    if not _stored_intact(store, f"{ref}/{MANIFEST}", _digest(ref)):
        store.write(f"{ref}/{MANIFEST}", stored)
    return ref


def _stored_intact(store: ArtifactStore, key: str, expected: str) -> bool:
    try:
        return sha256_hex(store.read(key)) == expected
    except CheckpointError:
        return False


def verify_stored(ref: str, store: ArtifactStore) -> dict[str, Any]:
    """The stored manifest of ``ref``, after checking every file of it and of its parent chain
    in the store itself (what the registry runs before an alias may point at a version)."""
    manifest, _ = _read_stored(ref, store)
    parent_ref = _parent_ref(manifest)
    if parent_ref is not None:
        verify_stored(parent_ref, store)
    return manifest


def _read_stored(ref: str, store: ArtifactStore) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The stored manifest and every file it names, each checked against its sha256."""
    digest = _digest(ref)
    where = f"{store.url}/{ref}"
    data = store.read(f"{ref}/{MANIFEST}")
    try:
        check_sha256(Path(MANIFEST), data, digest)
        manifest = json.loads(data)
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
        files = {MANIFEST: data}
        for name, expected in checkpoint_files(manifest).items():
            files[name] = store.read(f"{ref}/{name}")
            check_sha256(Path(name), files[name], expected)
    except (CheckpointError, ValueError) as exc:
        problem = exc.problem if isinstance(exc, CheckpointError) else str(exc)
        name = exc.path.name if isinstance(exc, CheckpointError) else MANIFEST
        raise CheckpointError(
            f"{where}/{name}",
            f"the stored checkpoint is corrupt or was altered; refused ({problem})",
        ) from exc
    return manifest, files


# --- fetching: a reference into this host's cache, verified --------------------------------------


def fetch(ref: str, store: ArtifactStore, cache: Path | str) -> Path:
    """The local directory of ``ref`` (and its parent chain) in ``cache``, every file checked
    against its sha256: a cached copy that fails is fetched again; a stored one that fails
    raises ``CheckpointError`` (nothing is left in the cache)."""
    digest = _digest(ref)
    local = Path(cache) / ref
    try:
        manifest = _check_copy(local, digest)
    except CheckpointError as problem:
        if local.exists():
            logger.warning("cached artifact failed its check, fetching it again: %s", problem)
        manifest = _download(ref, store, local)
    parent_ref = _parent_ref(manifest)
    if parent_ref is not None:
        fetch(parent_ref, store, cache)
    return local


def _check_copy(local: Path, digest: str) -> dict[str, Any]:
    mpath = local / MANIFEST
    try:
        data = mpath.read_bytes()
    except OSError as exc:
        raise CheckpointError(mpath, "not cached") from exc
    check_sha256(mpath, data, digest)
    manifest = json.loads(data)
    for name, expected in checkpoint_files(manifest).items():
        check_file(local / name, expected)
    return dict(manifest)


def _download(ref: str, store: ArtifactStore, local: Path) -> dict[str, Any]:
    """Fetch into a private directory beside ``local``, then swap it in by one rename: a
    process loading from the cache never sees half a checkpoint."""
    manifest, files = _read_stored(ref, store)
    local.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=local.parent, prefix=f".{local.name[:12]}."))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        if local.exists():
            stale = Path(tempfile.mkdtemp(dir=local.parent, prefix=f".stale-{local.name[:12]}."))
            os.rename(local, stale / "copy")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(staging, local)
        except OSError:
            # Another process on this host fetched it first: theirs, if it checks out.
            return _check_copy(local, _digest(ref))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def resolve_checkpoint(
    checkpoint: str | os.PathLike[str],
    *,
    root: str,
    cache: Path | str,
    endpoint_url: str | None = None,
) -> Path:
    """A loadable local directory for a deployment's or the registry's checkpoint: a store
    reference is fetched (and verified) into ``cache``; anything else is a local path."""
    if is_ref(checkpoint):
        return fetch(str(checkpoint), open_store(root, endpoint_url), cache)
    return Path(checkpoint)
