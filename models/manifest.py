"""Checkpoint manifests and sha256 checks: the one place they are read, written and verified.

Standard library only (no PyTorch, no numpy): the registry, the serving callback and the pool
read manifests and check weights without loading a network's runtime. ``models.checkpoint``
writes and loads checkpoints through these functions; ``fleet.learning.services`` (the
registry) reads and checks through them too.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
FORMAT_VERSION = 1
SEALED_KEY = "haulmind"
_REQUIRED = (
    "format_version",
    "id",
    "name",
    "version",
    "kind",
    "config",
    "weights",
    "sha256",
    "lineage",
)
_CHUNK = 1 << 20


class CheckpointError(Exception):
    """A checkpoint that must not be loaded: corrupt, tampered, incompatible or malformed."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = Path(path), problem


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path | str) -> str:
    """sha256 of a file, read in 1 MiB chunks (weights can be large)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sealed_metadata(kind: str, config: dict[str, Any]) -> dict[str, str]:
    """The metadata written into the safetensors header (covered by the file's sha256).

    One key holding sorted JSON: safetensors keeps metadata in a hash map whose order varies
    between calls, so several keys would make the bytes (and the sha256) differ run to run.
    """
    sealed = {"format_version": FORMAT_VERSION, "kind": kind, "config": config}
    return {SEALED_KEY: json.dumps(sealed, sort_keys=True)}


def read_sealed(metadata: dict[str, str]) -> dict[str, Any]:
    """Inverse of ``sealed_metadata`` (empty dict when the file carries none)."""
    text = metadata.get(SEALED_KEY)
    return dict(json.loads(text)) if text else {}


def manifest_path(path: Path | str) -> Path:
    """Accept a checkpoint directory or its manifest.json."""
    p = Path(path)
    return p / MANIFEST if p.is_dir() else p


def load_manifest(path: Path | str) -> dict[str, Any]:
    """The manifest's JSON, unchecked (``read_manifest`` checks its structure)."""
    mpath = manifest_path(path)
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(mpath, f"unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict):
        raise CheckpointError(mpath, "unreadable manifest (not a JSON object)")
    return manifest


def read_manifest(path: Path | str) -> dict[str, Any]:
    """Parse and structurally check a manifest (does not touch the weights)."""
    mpath = manifest_path(path)
    manifest = load_manifest(mpath)
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise CheckpointError(mpath, f"manifest lacks {missing}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            mpath, f"format_version {manifest['format_version']} is not {FORMAT_VERSION}"
        )
    if manifest["kind"] not in ("backbone", "head"):
        raise CheckpointError(mpath, f"unknown kind {manifest['kind']!r}")
    return manifest


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """A manifest as written: sorted keys, so equal manifests are equal bytes (and sha256)."""
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def write_manifest(directory: Path | str, manifest: dict[str, Any]) -> None:
    """Atomically (re)write a manifest (used when artifacts such as ONNX are added)."""
    atomic_write(Path(directory) / MANIFEST, manifest_bytes(manifest))


def atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def weights_path(path: Path | str, manifest: dict[str, Any]) -> Path:
    """The weights file a manifest names, which must sit beside it."""
    name = str(manifest.get("weights") or WEIGHTS)
    wpath = manifest_path(path).parent / name
    if Path(name).name != name:
        raise CheckpointError(wpath, "the weights file must sit beside its manifest")
    return wpath


def checkpoint_files(manifest: dict[str, Any]) -> dict[str, str]:
    """Every file a checkpoint's manifest vouches for, by name, with its sha256: the weights
    and each artifact that names a file (``artifacts.onnx``). What a copy must carry."""
    files = {str(manifest.get("weights") or WEIGHTS): str(manifest.get("sha256") or "")}
    for info in (manifest.get("artifacts") or {}).values():
        if isinstance(info, dict) and info.get("file") and info.get("sha256"):
            files[str(info["file"])] = str(info["sha256"])
    for name in files:
        if Path(name).name != name or name == MANIFEST:
            raise CheckpointError(name, "a checkpoint's files must sit beside its manifest")
    return files


def check_file(path: Path | str, expected: str) -> None:
    """Raise unless the file at ``path`` exists and hashes to ``expected``."""
    try:
        actual = file_sha256(path)
    except OSError as exc:
        raise CheckpointError(path, f"unreadable ({exc})") from exc
    if actual != expected:
        raise CheckpointError(path, f"sha256 mismatch: manifest says {expected}, file has {actual}")


def check_sha256(wpath: Path, data: bytes, expected: str) -> None:
    """Raise unless ``data`` (the bytes of ``wpath``) hash to ``expected``."""
    actual = sha256_hex(data)
    if actual != expected:
        raise CheckpointError(
            wpath, f"sha256 mismatch: manifest says {expected}, file has {actual}"
        )


def verify(path: Path | str) -> tuple[dict[str, Any], bytes]:
    """The manifest and the weights' bytes, after checking size, sha256 and sealed config.

    Deserialises nothing: safe to call on any file (a registry can run it before promoting).
    """
    manifest = read_manifest(path)
    wpath = weights_path(path, manifest)
    try:
        data = wpath.read_bytes()
    except OSError as exc:
        raise CheckpointError(wpath, f"weights unreadable ({exc})") from exc
    check_sha256(wpath, data, manifest["sha256"])
    sealed = _sealed_metadata(wpath, data)
    if sealed.get("kind") != manifest["kind"]:
        raise CheckpointError(
            wpath, f"file holds a {sealed.get('kind')!r}, manifest says {manifest['kind']!r}"
        )
    _compare_configs(wpath, sealed.get("config"), manifest["config"])
    return manifest, data


def _sealed_metadata(wpath: Path, data: bytes) -> dict[str, Any]:
    """The kind and config sealed in the safetensors header (u64 little-endian length + JSON)."""
    try:
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + length])
        return read_sealed(dict(header.get("__metadata__") or {}))
    except (struct.error, ValueError, TypeError) as exc:
        raise CheckpointError(wpath, f"not a safetensors file ({exc})") from exc


def _compare_configs(where: Path, sealed: Any, declared: Any, prefix: str = "") -> None:
    """Raise naming every field where the manifest's config differs from the sealed one."""
    diffs = _diff(sealed, declared, prefix)
    if diffs:
        raise CheckpointError(
            where, "manifest config does not match the weights: " + "; ".join(diffs)
        )


def _diff(sealed: Any, declared: Any, prefix: str) -> list[str]:
    if isinstance(sealed, dict) and isinstance(declared, dict):
        out: list[str] = []
        for key in sorted(set(sealed) | set(declared)):
            out += _diff(sealed.get(key), declared.get(key), f"{prefix}{key}.")
        return out
    if sealed != declared:
        return [f"{prefix.rstrip('.')}: weights have {sealed!r}, manifest says {declared!r}"]
    return []
