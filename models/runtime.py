"""One runtime interface for a saved model version, on PyTorch or onnxruntime.

    runtime = load_runtime("var/models/fault/3", device="cuda:0", engine="auto")
    out = runtime.run({"window": windows})        # float32 [B, C, L] -> dict of numpy arrays
    runtime.device, runtime.engine, runtime.fallback_reason

Devices are strings (``"cpu"``, ``"cuda:0"``, ``"npu:0"``, ``"auto"``). A device this machine
lacks falls back to the CPU; ``fallback_reason`` says why (and it is logged), so a worker can
report that it is not running where it was placed. Engines: ``"torch"`` (CUDA, Ascend NPU
through torch_npu, CPU), ``"onnx"`` (onnxruntime's CUDA, CANN or CPU execution providers) or
``"auto"`` (onnxruntime on the CPU, where it has the lower batch-1 latency; PyTorch on an
accelerator PyTorch can use; onnxruntime on one only its providers reach).

The ONNX graph is the checkpoint's verified ``model.onnx`` artifact when it has one (see
``models.export.export_checkpoint_onnx``), else exported on the fly from the verified weights
into a private temporary directory. Checkpoints are only ever read: nothing is written beside
them and nothing is loaded at import time.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoint import CheckpointError, load_checkpoint, manifest_path, verify
from models.devices import DeviceChoice, choose_device, onnx_providers
from models.export import ONNX_FILE, ServingModule, export_onnx
from models.weights import sha256_hex

logger = logging.getLogger(__name__)
ENGINES = ("torch", "onnx", "auto")


class Runtime:
    """A loaded model version. Subclasses implement ``_run`` on validated float32 inputs."""

    engine: str = ""

    def __init__(
        self,
        manifest: dict[str, Any],
        choice: DeviceChoice,
        input_names: tuple[str, ...],
        output_names: tuple[str, ...],
        fallback_reason: str | None = None,
    ) -> None:
        self.manifest = manifest
        self.requested_device = choice.requested
        self.device = choice.device  # the device actually used
        self.fallback_reason = fallback_reason or choice.reason
        self.input_names, self.output_names = input_names, output_names
        self._shapes = {name: tuple(manifest["inputs"][name][1:]) for name in input_names}
        if self.fallback_reason:
            logger.warning("%s: %s", manifest["id"], self.fallback_reason)

    @property
    def model_id(self) -> str:
        return str(self.manifest["id"])

    def describe(self) -> dict[str, Any]:
        """What a worker reports: which version runs where, and any fallback."""
        return {
            "model_id": self.model_id,
            "engine": self.engine,
            "device": self.device,
            "requested_device": self.requested_device,
            "fallback_reason": self.fallback_reason,
            "inputs": list(self.input_names),
            "outputs": list(self.output_names),
        }

    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Inputs by name (``window`` [B, C, L], ``features`` [B, F]) -> outputs by name."""
        return self._run(self._validated(batch))

    def _validated(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in batch]
        if missing:
            raise ValueError(
                f"{self.model_id}: missing inputs {missing} (needs {list(self.input_names)})"
            )
        out = {n: np.ascontiguousarray(batch[n], dtype=np.float32) for n in self.input_names}
        sizes = {len(a) for a in out.values()}
        for name, array in out.items():
            if array.shape[1:] != self._shapes[name]:
                raise ValueError(
                    f"{self.model_id}: {name} must be [B, {', '.join(map(str, self._shapes[name]))}], got {list(array.shape)}"
                )
        if len(sizes) != 1:
            raise ValueError(f"{self.model_id}: inputs have different batch sizes {sorted(sizes)}")
        return out

    def _run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


class TorchRuntime(Runtime):
    engine = "torch"

    def __init__(self, path: Path, choice: DeviceChoice, manifest: dict[str, Any]) -> None:
        self.module = ServingModule(load_checkpoint(path, device=choice.device)).eval()
        super().__init__(manifest, choice, self.module.input_names, self.module.output_names)

    @torch.inference_mode()
    def _run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(batch[n]).to(self.device) for n in self.input_names]
        outputs = self.module(*args)
        return {n: t.cpu().numpy() for n, t in zip(self.output_names, outputs, strict=True)}


class OnnxRuntime(Runtime):
    engine = "onnx"

    def __init__(
        self,
        path: Path,
        requested: str,
        manifest: dict[str, Any],
        threads: int | None,
        also: str | None = None,
    ) -> None:
        import onnxruntime as ort

        providers, choice = onnx_providers(requested)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.session = ort.InferenceSession(
            str(self._graph(path, manifest)), options, providers=providers
        )
        used = self.session.get_providers()[0]
        reason = choice.reason
        if choice.device != "cpu" and used == "CPUExecutionProvider":
            reason = (
                f"{requested} requested but onnxruntime could not start its provider; using cpu"
            )
            choice = DeviceChoice(requested, "cpu", reason)
        names_in = tuple(i.name for i in self.session.get_inputs())
        names_out = tuple(o.name for o in self.session.get_outputs())
        if reason and also:
            # auto tried PyTorch first: say why neither engine reached the device.
            reason = (
                f"{also.removesuffix('; using cpu')}, and {reason.split(' requested but ', 1)[-1]}"
            )
        super().__init__(manifest, choice, names_in, names_out, reason)

    def _graph(self, path: Path, manifest: dict[str, Any]) -> Path:
        """The verified ONNX artifact, or a fresh export of the verified weights."""
        artifact = (manifest.get("artifacts") or {}).get("onnx")
        if artifact:
            graph = path.parent / Path(artifact["file"]).name
            try:
                actual = sha256_hex(graph.read_bytes())
            except OSError as exc:
                raise CheckpointError(graph, f"ONNX artifact unreadable ({exc})") from exc
            if actual != artifact["sha256"]:
                raise CheckpointError(
                    graph, f"sha256 mismatch: manifest says {artifact['sha256']}, file has {actual}"
                )
            return graph
        self._tmp = tempfile.TemporaryDirectory(prefix="haulmind-onnx-")
        graph = Path(self._tmp.name) / ONNX_FILE
        export_onnx(load_checkpoint(path, device="cpu"), graph)
        return graph

    def _run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.session.run(list(self.output_names), {n: batch[n] for n in self.input_names})
        return dict(zip(self.output_names, results, strict=True))


def load_runtime(
    checkpoint: Path | str,
    device: str = "cpu",
    engine: str = "auto",
    *,
    threads: int | None = None,
) -> Runtime:
    """Load a verified checkpoint (directory or manifest.json) for inference.

    ``device``: "cpu", "cuda[:N]", "npu[:N]" or "auto". ``engine``: "torch", "onnx" or "auto"
    (see the module docstring). ``threads``: onnxruntime intra-op threads (None: its default;
    PyTorch uses ``torch.set_num_threads``). Raises ``CheckpointError`` for a corrupt or
    incompatible checkpoint, ``ValueError`` for an unknown device or engine.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: use one of {ENGINES}")
    path = manifest_path(checkpoint)
    manifest, _ = verify(path)  # fail fast, before building anything
    choice = choose_device(device)
    auto = engine == "auto"
    if auto:
        # PyTorch where it reaches an accelerator (CUDA, or an NPU via torch_npu); otherwise
        # onnxruntime: its CUDA/CANN provider if it has one, else the CPU.
        engine = "torch" if choice.device != "cpu" else "onnx"
    if engine == "torch":
        return TorchRuntime(path, choice, manifest)
    return OnnxRuntime(path, device, manifest, threads, also=choice.reason if auto else None)
