"""Deterministic weight bytes, their sha256, model ids and data hashes.

A network's identity is the sha256 of its safetensors bytes, which seal its kind and config in
the file's metadata. The same weights and config always give the same bytes, so the sha256 of
an in-memory network equals the sha256 of the file it is (or will be) saved to: a head can name
the exact backbone it was trained on before either is saved.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_save

from models.manifest import sealed_metadata, sha256_hex

if TYPE_CHECKING:  # the networks import this module; the types only are needed here
    from models.backbone import PatchBackbone
    from models.heads import Head


def state_bytes(module: torch.nn.Module, kind: str, config: dict[str, Any]) -> bytes:
    """The module's persistent state as safetensors bytes (CPU, contiguous, sorted by name)."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    return safetensors_save(dict(sorted(state.items())), metadata=sealed_metadata(kind, config))


def weights_sha256(module: PatchBackbone | Head) -> str:
    """sha256 of the bytes ``save_checkpoint`` would write for this network."""
    return sha256_hex(state_bytes(module, module.checkpoint_kind, module.sealed_config()))


def model_id(module: PatchBackbone | Head) -> str:
    """``name@version`` once saved or loaded, else ``sha256:<first 16 hex>`` of its weights."""
    return module.checkpoint_id or f"sha256:{weights_sha256(module)[:16]}"


def data_hash(*arrays: np.ndarray | None) -> str:
    """sha256 over arrays' dtypes, shapes and bytes: names the exact data a network saw."""
    digest = hashlib.sha256()
    for array in arrays:
        if array is None:
            digest.update(b"none")
            continue
        a = np.ascontiguousarray(array)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()
