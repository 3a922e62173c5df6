"""ONNX export of a backbone + head as one graph (dynamic batch), and the parity check.

The graph's inputs are ``window`` float32 [batch, C, L] (and ``features`` float32 [batch, F]
for heads with extra features); its outputs are the head's named outputs, or ``embedding`` and
``recon_error`` for a bare backbone. The same ``ServingModule`` is what the torch runtime runs,
so both engines return the same names, shapes and dtypes.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from models.backbone import PatchBackbone
from models.checkpoint import load_checkpoint, manifest_path, read_manifest, write_manifest
from models.heads import TaskModel
from models.weights import model_id, sha256_hex

DEFAULT_OPSET = 17
ONNX_FILE = "model.onnx"


class ServingModule(nn.Module):
    """A backbone or task model with positional tensor inputs and a tuple of named outputs."""

    def __init__(self, model: PatchBackbone | TaskModel) -> None:
        super().__init__()
        self.model = model
        if isinstance(model, PatchBackbone):
            self.input_names: tuple[str, ...] = ("window",)
            self.output_names: tuple[str, ...] = ("embedding", "recon_error")
        else:
            self.input_names, self.output_names = model.input_names, model.output_names

    def forward(self, window: Tensor, features: Tensor | None = None) -> tuple[Tensor, ...]:
        if isinstance(self.model, PatchBackbone):
            return self.model(window).pooled, self.model.masked_error(window)
        out = self.model(window, features)
        return tuple(out[name] for name in self.output_names)


def example_inputs(
    model: PatchBackbone | TaskModel, batch: int = 2, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random float32 inputs of the right shapes (levels and spreads like raw telemetry)."""
    rng = np.random.default_rng(seed)
    backbone = model if isinstance(model, PatchBackbone) else model.backbone
    c = backbone.config
    t = np.arange(c.window, dtype=np.float32)
    window = (
        rng.normal(0, 1, (batch, c.n_channels, 1)) * 5
        + np.sin(t * 0.2)
        + rng.normal(0, 0.3, (batch, c.n_channels, c.window))
    )
    inputs = {"window": window.astype(np.float32)}
    if isinstance(model, TaskModel) and model.head.config.n_features:
        inputs["features"] = rng.normal(0, 1, (batch, model.head.config.n_features)).astype(
            np.float32
        )
    return inputs


def export_onnx(
    model: PatchBackbone | TaskModel, path: Path | str, *, opset: int = DEFAULT_OPSET
) -> dict[str, Any]:
    """Write ``model`` as one ONNX graph with a dynamic batch dimension; returns
    ``{"file", "sha256", "opset", "inputs", "outputs"}``.

    Exported from a CPU copy in eval mode (the caller's model is left where it is) with the
    TorchScript-based exporter, which needs no extra packages; the graph is checked with
    ``onnx.checker`` and stamped with the model's id.
    """
    if opset < DEFAULT_OPSET:
        raise ValueError(f"opset {opset} is below the supported {DEFAULT_OPSET}")
    serving = ServingModule(copy.deepcopy(model).to("cpu").eval()).eval()
    args = tuple(torch.from_numpy(a) for a in example_inputs(model).values())
    names = [*serving.input_names, *serving.output_names]
    with warnings.catch_warnings():
        # The legacy exporter warns that it is legacy and about traced shape checks; the
        # dynamic batch is declared below and verified by the parity tests.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            serving,
            args,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(serving.input_names),
            output_names=list(serving.output_names),
            dynamic_axes={name: {0: "batch"} for name in names},
        )
    graph = onnx.load(str(path))
    named = model.head if isinstance(model, TaskModel) else model
    onnx.helper.set_model_props(
        graph, {"haulmind_model_id": model_id(named), "producer": "haulmind.models"}
    )
    onnx.checker.check_model(graph)
    data = graph.SerializeToString()
    Path(path).write_bytes(data)
    return {
        "file": Path(path).name,
        "sha256": sha256_hex(data),
        "opset": opset,
        "inputs": list(serving.input_names),
        "outputs": list(serving.output_names),
    }


@torch.no_grad()
def torch_outputs(
    model: PatchBackbone | TaskModel, inputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The serving outputs of ``model`` on its own device, as numpy."""
    serving = ServingModule(model).eval()
    device = next(model.parameters()).device
    args = [
        torch.as_tensor(np.asarray(inputs[n], dtype=np.float32), device=device)
        for n in serving.input_names
    ]
    return {n: t.cpu().numpy() for n, t in zip(serving.output_names, serving(*args), strict=True)}


def onnx_outputs(
    onnx_path: Path | str, inputs: dict[str, np.ndarray], providers: list[Any] | None = None
) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=providers or ["CPUExecutionProvider"])
    feed = {i.name: np.asarray(inputs[i.name], dtype=np.float32) for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feed), strict=True))


def parity(
    model: PatchBackbone | TaskModel,
    onnx_path: Path | str,
    inputs: dict[str, np.ndarray],
    providers: list[Any] | None = None,
) -> float:
    """Largest difference between PyTorch and onnxruntime over every output, absolute where
    an output is within +-1 and relative to it above (``|a - b| / max(1, |a|)``).

    Outputs in physical units are large (an ETA of 900 s): float32 spaces such numbers 6e-5
    apart, so an absolute 1e-4 would fail on the rounding of a reordered sum alone. Integer
    and boolean outputs count too (as numbers): a flipped flag or class shows up as a
    difference of at least 1.
    """
    expected, actual = torch_outputs(model, inputs), onnx_outputs(onnx_path, inputs, providers)
    if set(expected) != set(actual):
        raise ValueError(f"outputs differ: torch {sorted(expected)}, onnx {sorted(actual)}")
    worst = 0.0
    for k in expected:
        a, b = expected[k].astype(np.float64), actual[k].astype(np.float64)
        scaled = np.abs(a - b) / np.maximum(1.0, np.abs(a))
        worst = max(worst, float(np.max(scaled, initial=0.0)))
    return worst


def export_checkpoint_onnx(
    path: Path | str, *, opset: int = DEFAULT_OPSET, check_batches: tuple[int, ...] = (1, 7)
) -> dict[str, Any]:
    """Export a saved checkpoint to ``model.onnx`` beside it and record it in the manifest
    (``artifacts.onnx``: file, sha256, opset, parity). Refuses to record a graph whose outputs
    differ from PyTorch's by more than 1e-4 at any of ``check_batches``."""
    mpath = manifest_path(path)
    model = load_checkpoint(mpath, device="cpu")
    info = export_onnx(model, mpath.parent / ONNX_FILE, opset=opset)
    worst = max(
        parity(model, mpath.parent / ONNX_FILE, example_inputs(model, b, seed=b))
        for b in check_batches
    )
    if worst > 1e-4:
        (mpath.parent / ONNX_FILE).unlink()
        raise ValueError(
            f"{mpath.parent / ONNX_FILE}: ONNX differs from PyTorch by {worst:.2e} (> 1e-4, "
            "relative above 1)"
        )
    manifest = read_manifest(mpath)
    manifest.setdefault("artifacts", {})["onnx"] = {**info, "parity_max_abs_diff": worst}
    write_manifest(mpath.parent, manifest)
    return manifest
