"""Arrays over the message bus: JSON-safe, exact, and never pickle.

Celery messages in Haulmind are JSON (``CELERY_TASK_SERIALIZER = "json"``): a pickled payload
from the broker would run code in the worker. Arrays travel as dtype, shape and base64 of their
raw little-endian bytes: exact (no float-to-text rounding, so a batched result over the bus
equals the local one bit for bit) and a third larger than the bytes, against about three times
for a JSON list of floats.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

# Numbers only: object, string or void dtypes have no place in a tensor payload.
_KINDS = frozenset("biuf")


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """``{"dtype": "<f4", "shape": [2, 8, 64], "b64": "..."}`` for a numeric array."""
    array = np.asarray(array)
    if array.dtype.kind not in _KINDS:
        raise TypeError(f"cannot send an array of dtype {array.dtype} (numbers only)")
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return {
        "dtype": little.dtype.str,
        "shape": list(array.shape),
        "b64": base64.b64encode(np.ascontiguousarray(little).tobytes()).decode("ascii"),
    }


def decode_array(data: Mapping[str, Any]) -> np.ndarray:
    """The array ``encode_array`` described; ``ValueError`` if it is malformed."""
    try:
        dtype = np.dtype(str(data["dtype"]))
        shape = tuple(int(n) for n in data["shape"])
        raw = base64.b64decode(data["b64"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed array payload: {exc}") from exc
    if dtype.kind not in _KINDS:
        raise ValueError(f"refusing an array of dtype {dtype} (numbers only)")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"array payload has {len(raw)} bytes, shape {list(shape)} needs {expected}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def encode_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Encode a dict of named arrays (a request's inputs or a response's outputs)."""
    return {name: encode_array(value) for name, value in arrays.items()}


def decode_arrays(data: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Decode what ``encode_arrays`` made."""
    if not isinstance(data, Mapping):
        raise ValueError("arrays payload must be an object of named arrays")
    return {str(name): decode_array(value) for name, value in data.items()}
