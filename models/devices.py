"""Device names as strings, resolved against what this machine really has.

Networks run unchanged on CPU, CUDA GPUs and Ascend NPUs: a device is always named as a string
(``"cpu"``, ``"cuda:0"``, ``"npu:0"`` or ``"auto"``) and passed to ``Tensor.to``; nothing here or
elsewhere in ``models`` calls ``.cuda()``. ``torch_npu`` (Huawei's Ascend plug-in, which
registers the ``npu`` device with PyTorch) is imported lazily and only when an NPU is asked for,
so machines without it never pay for, or fail on, the import.
"""

from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

import torch

logger = logging.getLogger(__name__)

_DEVICE_RE = re.compile(r"^(cpu|auto|(?P<kind>cuda|npu)(:(?P<index>\d+))?)$")


@dataclass(frozen=True)
class DeviceChoice:
    """The device asked for, the one that will be used, and why they differ (None if not)."""

    requested: str
    device: str
    reason: str | None = None

    @property
    def fell_back(self) -> bool:
        return self.reason is not None


@cache
def torch_npu_module() -> ModuleType | None:
    """``torch_npu`` if it imports here (it registers ``npu`` with torch), else None."""
    try:
        return importlib.import_module("torch_npu")
    except Exception:  # any failure (missing CANN libraries too) means no usable NPU
        return None


def _count(kind: str) -> int:
    if kind == "cuda":
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    if torch_npu_module() is None:
        return 0
    npu = getattr(torch, "npu", None)
    return int(npu.device_count()) if npu is not None and npu.is_available() else 0


def available_devices() -> list[str]:
    """Every device this process can use, accelerators first, ``"cpu"`` last."""
    found = [f"{kind}:{i}" for kind in ("cuda", "npu") for i in range(_count(kind))]
    return [*found, "cpu"]


def choose_device(requested: str) -> DeviceChoice:
    """Resolve a device name, falling back to the CPU with a readable reason.

    ``"auto"`` picks the first accelerator (CUDA, then NPU) or the CPU. A malformed name is a
    programming error and raises ``ValueError`` rather than silently running on the CPU.
    """
    name = requested.strip().lower()
    match = _DEVICE_RE.match(name)
    if match is None:
        raise ValueError(
            f"unknown device {requested!r}: use 'cpu', 'cuda[:N]', 'npu[:N]' or 'auto'"
        )
    if name == "cpu":
        return DeviceChoice(requested, "cpu")
    if name == "auto":
        return DeviceChoice(requested, available_devices()[0])
    kind, index = match["kind"], int(match["index"] or 0)
    count = _count(kind)
    if index < count:
        return DeviceChoice(requested, f"{kind}:{index}")
    if count == 0:
        why = {
            "cuda": f"torch {torch.__version__} sees no CUDA device",
            "npu": "torch_npu is not importable or sees no Ascend NPU",
        }[kind]
    else:
        why = f"{kind}:{index} does not exist ({count} {kind} device(s))"
    return DeviceChoice(requested, "cpu", f"{requested} requested but {why}; using cpu")


def resolve_device(requested: str) -> str:
    """The device string to use for ``requested`` (logs a warning when it falls back)."""
    choice = choose_device(requested)
    if choice.reason:
        logger.warning(choice.reason)
    return choice.device


def onnx_providers(requested: str) -> tuple[list[Any], DeviceChoice]:
    """onnxruntime execution providers for a device name, with the fallback explained.

    ``cuda:N`` maps to ``CUDAExecutionProvider``, ``npu:N`` to ``CANNExecutionProvider``
    (Ascend), each with the CPU provider behind it; a provider this onnxruntime build lacks
    falls back to ``CPUExecutionProvider`` and says so.
    """
    import onnxruntime as ort  # imported here: importing models must stay cheap

    name = requested.strip().lower()
    if _DEVICE_RE.match(name) is None:
        raise ValueError(
            f"unknown device {requested!r}: use 'cpu', 'cuda[:N]', 'npu[:N]' or 'auto'"
        )
    available = set(ort.get_available_providers())
    wanted = {"cuda": "CUDAExecutionProvider", "npu": "CANNExecutionProvider"}
    if name == "auto":
        name = next((f"{k}:0" for k, p in wanted.items() if p in available), "cpu")
    kind, _, index = name.partition(":")
    if kind == "cpu":
        return ["CPUExecutionProvider"], DeviceChoice(requested, "cpu")
    provider = wanted[kind]
    if provider not in available:
        reason = (
            f"{requested} requested but onnxruntime {ort.__version__} has no {provider} "
            f"(available: {sorted(available)}); using cpu"
        )
        return ["CPUExecutionProvider"], DeviceChoice(requested, "cpu", reason)
    device = f"{kind}:{int(index or 0)}"
    options = {"device_id": int(index or 0)}
    return [(provider, options), "CPUExecutionProvider"], DeviceChoice(requested, device)


def synchronize(device: str) -> None:
    """Wait for queued kernels on ``device`` (for honest timings); a no-op on the CPU."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    elif device.startswith("npu") and torch_npu_module() is not None:
        torch.npu.synchronize(device)  # type: ignore[attr-defined]
