"""Portability: ONNX export with a dynamic batch, parity with PyTorch, one runtime interface
over both engines, and device fallback on a machine without accelerators."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from models import (
    CheckpointError,
    checkpoint_dir,
    choose_device,
    export_checkpoint_onnx,
    export_onnx,
    fit_head,
    load_head,
    load_runtime,
    parity,
    read_manifest,
    resolve_device,
    save_head,
)
from models.export import example_inputs
from tests.models.conftest import sine_windows

PARITY_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def saved_heads(backbone, saved_root):
    """A fault head (no features) and an ETA head (with features) saved next to l0@1."""
    rng = np.random.default_rng(30)
    windows = sine_windows(160, seed=30)
    labels = rng.choice(["normal", "overheating", "tyre_leak"], 160, p=[0.6, 0.2, 0.2])
    fault = fit_head(backbone, "fault", windows, labels, epochs=2, progress=False)
    save_head(fault, saved_root, name="fault", version="1")
    features = rng.uniform(0, 1, (160, 4)).astype(np.float32) * [3000, 10, 12, 90]
    eta = fit_head(
        backbone, "eta", windows, 30 + features[:, 0] / 8, features, epochs=2, progress=False
    )
    save_head(eta, saved_root, name="eta-rt", version="1")
    return {name: checkpoint_dir(saved_root, name, "1") for name in ("fault", "eta-rt", "l0")}


@pytest.mark.parametrize("name", ["fault", "eta-rt", "l0"])
def test_one_onnx_graph_matches_pytorch_at_batch_sizes_1_and_7(saved_heads, tmp_path, name):
    from models import load_checkpoint

    model = load_checkpoint(saved_heads[name])
    info = export_onnx(model, tmp_path / "model.onnx")
    assert info["opset"] >= 17
    for batch in (1, 7):
        assert (
            parity(model, tmp_path / "model.onnx", example_inputs(model, batch, seed=batch))
            < PARITY_TOLERANCE
        )


def test_the_onnx_graph_declares_a_dynamic_batch_dimension(saved_heads, tmp_path):
    import onnx

    export_onnx(load_head(saved_heads["eta-rt"]), tmp_path / "eta.onnx")
    graph = onnx.load(tmp_path / "eta.onnx").graph
    for value in [*graph.input, *graph.output]:
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"


def test_the_torch_and_onnx_engines_give_the_same_outputs(saved_heads):
    for name in ("fault", "eta-rt"):
        torch_rt = load_runtime(saved_heads[name], device="cpu", engine="torch")
        onnx_rt = load_runtime(saved_heads[name], device="cpu", engine="onnx")
        batch = example_inputs(load_head(saved_heads[name]), 7, seed=3)
        a, b = torch_rt.run(batch), onnx_rt.run(batch)
        assert a.keys() == b.keys() == set(torch_rt.output_names)
        for key in a:
            assert a[key].dtype == b[key].dtype, key
            assert (
                np.max(np.abs(a[key].astype(np.float64) - b[key].astype(np.float64)))
                < PARITY_TOLERANCE
            ), key
        assert (torch_rt.engine, onnx_rt.engine) == ("torch", "onnx")
        assert torch_rt.device == onnx_rt.device == "cpu"


def test_a_recorded_onnx_artifact_is_used_and_a_tampered_one_is_refused(saved_heads, tmp_path):
    import shutil

    directory = shutil.copytree(saved_heads["fault"], tmp_path / "fault" / "1")
    shutil.copytree(saved_heads["l0"], tmp_path / "l0" / "1")
    manifest = export_checkpoint_onnx(directory)
    assert manifest["artifacts"]["onnx"]["parity_max_abs_diff"] < PARITY_TOLERANCE
    assert read_manifest(directory)["artifacts"]["onnx"]["file"] == "model.onnx"
    assert load_runtime(directory, engine="onnx").run(example_inputs(load_head(directory), 2))

    graph = directory / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[-3] ^= 0x01
    graph.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_runtime(directory, engine="onnx")


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="this machine has CUDA: nothing to fall back from"
)
@pytest.mark.parametrize("engine", ["torch", "onnx", "auto"])
def test_cuda_requested_on_a_cpu_machine_falls_back_to_cpu_and_says_why(
    saved_heads, engine, caplog
):
    with caplog.at_level(logging.WARNING):
        runtime = load_runtime(saved_heads["eta-rt"], device="cuda:0", engine=engine)
    assert runtime.device == "cpu" and runtime.requested_device == "cuda:0"
    assert "cuda:0 requested" in runtime.fallback_reason and "using cpu" in runtime.fallback_reason
    assert runtime.describe()["fallback_reason"] == runtime.fallback_reason
    assert "cuda:0 requested" in caplog.text
    out = runtime.run(example_inputs(load_head(saved_heads["eta-rt"]), 3))
    assert out["eta_s"].shape == (3, 3)


def test_an_npu_requested_without_torch_npu_falls_back_to_cpu():
    choice = choose_device("npu:0")
    assert choice.device == "cpu" and "torch_npu" in choice.reason


def test_device_names_are_checked_and_cpu_and_auto_resolve_here():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


def test_the_runtime_names_what_is_wrong_with_a_batch(saved_heads):
    runtime = load_runtime(saved_heads["eta-rt"], engine="onnx")
    window = example_inputs(load_head(saved_heads["eta-rt"]), 2)["window"]
    with pytest.raises(ValueError, match=r"missing inputs \['features'\]"):
        runtime.run({"window": window})
    with pytest.raises(ValueError, match=r"window must be \[B, 4, 32\]"):
        runtime.run({"window": window[:, :, :16], "features": np.zeros((2, 4))})
    with pytest.raises(ValueError, match="unknown engine"):
        load_runtime(saved_heads["eta-rt"], engine="tensorrt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_onnx_parity_holds_for_the_model_running_on_cuda(saved_heads, tmp_path):
    model = load_head(saved_heads["fault"])
    export_onnx(model, tmp_path / "fault.onnx")
    on_gpu = load_head(saved_heads["fault"], device="cuda:0")
    for batch in (1, 7):
        assert (
            parity(on_gpu, tmp_path / "fault.onnx", example_inputs(model, batch)) < PARITY_TOLERANCE
        )
    runtime = load_runtime(saved_heads["fault"], device="cuda:0", engine="torch")
    assert runtime.device == "cuda:0" and runtime.fallback_reason is None
