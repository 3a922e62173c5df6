"""Virtual slices: how a device is cut, which limits a worker applies to itself, and the share it
really gets, measured from the kernel."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time

import pytest
import torch

from inference import slices
from inference.devices import DeviceInfo, cpu_info
from inference.slices import (
    CgroupLocation,
    ShareMeter,
    SliceProcess,
    SliceSpec,
    apply_slice,
    find_cpu_cgroup,
    is_out_of_memory,
    parse_slice_plan,
    place_in_cpu_quota,
    process_cpu_seconds,
    split_device,
)
from tests.inference.workers import busy_probe

GIB = 1 << 30
CPU4 = DeviceInfo(
    name="cpu", kind="cpu", index=None, model="test", memory_bytes=8 * GIB,
    compute_units=4, cores=(0, 1, 2, 3),
)  # fmt: skip
GPU = DeviceInfo(
    name="cuda:0", kind="cuda", index=0, model="test", memory_bytes=80 * GIB, compute_units=132
)


def test_a_gpu_is_cut_into_quarters_of_memory_and_compute():
    quarters = split_device(GPU, 4)
    assert [s.name for s in quarters] == ["cuda:0/0", "cuda:0/1", "cuda:0/2", "cuda:0/3"]
    assert all(s.memory_bytes == 20 * GIB and s.compute_share == 0.25 for s in quarters)
    assert quarters[0].compute_units == pytest.approx(33) and quarters[0].cores == ()


def test_a_reserve_is_kept_back_for_each_process_context():
    halves = split_device(GPU, 2, reserve_bytes=2 * GIB)
    assert [s.memory_bytes for s in halves] == [39 * GIB, 39 * GIB]


def test_cpu_slices_get_whole_cores_when_the_shares_allow():
    two = split_device(CPU4, 2)
    assert [s.cores for s in two] == [(0, 1), (2, 3)]
    assert [s.threads for s in two] == [2, 2]


def test_cpu_slices_finer_than_a_core_share_a_core_under_a_quota():
    eight = split_device(CPU4, 8)
    assert [s.cores for s in eight] == [(0,), (0,), (1,), (1,), (2,), (2,), (3,), (3,)]
    assert all(s.compute_units == pytest.approx(0.5) for s in eight)


def test_uneven_cpu_shares_are_laid_side_by_side():
    parts = split_device(CPU4, shares=[0.5, 0.125, 0.375])
    assert [s.cores for s in parts] == [(0, 1), (2,), (2, 3)]
    assert [s.memory_bytes for s in parts] == [4 * GIB, GIB, 3 * GIB]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shares": [0.75, 0.5]}, "add up to at most 1"),
        ({"count": 0}, "at least 1"),
        ({"count": 2, "shares": [0.5]}, "either count or shares"),
        ({"shares": [0.5, 0.5], "memory": [60 * GIB, 30 * GIB]}, "ask for"),
    ],
)
def test_an_impossible_cut_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        split_device(GPU, **kwargs)


def test_a_node_plan_names_devices_and_counts_or_shares():
    plan = parse_slice_plan("cpu=2; cuda:0=0.5,0.25,0.25", [GPU, CPU4])
    assert [(s.name, s.compute_share) for s in plan] == [
        ("cpu/0", 0.5), ("cpu/1", 0.5), ("cuda:0/0", 0.5), ("cuda:0/1", 0.25), ("cuda:0/2", 0.25)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="this node has"):
        parse_slice_plan("npu:0=2", [CPU4])
    with pytest.raises(ValueError, match="bad slice plan"):
        parse_slice_plan("cpu two", [CPU4])


def test_a_slice_travels_as_json_to_its_worker():
    spec = split_device(CPU4, 8)[3]
    assert SliceSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match="compute_share"):
        SliceSpec("cpu", 0, GIB, 1.5)


@pytest.mark.parametrize("version", [1, 2])
def test_a_cpu_quota_is_written_the_way_each_cgroup_version_reads_it(tmp_path, version):
    group = place_in_cpu_quota(CgroupLocation(version, tmp_path), "haulmind-cpu-0-1", 0.5, 4242)
    assert group == tmp_path / "haulmind-cpu-0-1"
    assert (group / "cgroup.procs").read_text() == "4242"
    if version == 2:
        assert (group / "cpu.max").read_text() == "50000 100000"
    else:
        assert (group / "cpu.cfs_quota_us").read_text() == "50000"
        assert (group / "cpu.cfs_period_us").read_text() == "100000"


def test_a_cgroup_without_the_cpu_controller_is_a_reason_not_a_failure(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory\n")
    found = find_cpu_cgroup(tmp_path)
    assert isinstance(found, str) and "cpu controller not available" in found
    assert isinstance(find_cpu_cgroup(tmp_path / "absent"), str)


def test_a_cuda_slice_sets_mps_and_the_memory_fraction_before_cuda_starts(monkeypatch, tmp_path):
    (tmp_path / "control").touch()
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    monkeypatch.delenv("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", raising=False)
    calls = []
    cuda = torch.cuda
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(("threads", n)))
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "device_count", lambda: 1)
    monkeypatch.setattr(cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(cuda, "set_device", lambda i: calls.append(("device", i)))
    monkeypatch.setattr(
        cuda, "set_per_process_memory_fraction", lambda f, i: calls.append(("fraction", f, i))
    )
    quarter = split_device(GPU, 4)[1]
    report = apply_slice(quarter, cgroup=False)
    assert os.environ["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"
    assert ("fraction", 0.25, 0) in calls and ("threads", 1) in calls
    assert report.applied("mps_thread_percentage") and report.applied("memory_fraction")


def test_without_mps_a_cuda_compute_share_is_reported_as_not_enforced(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    report = apply_slice(split_device(GPU, 4)[0], cgroup=False)
    steps = {s.mechanism: s for s in report.steps}
    assert not steps["mps_thread_percentage"].applied
    assert "not capped" in steps["mps_thread_percentage"].detail
    assert not steps["memory_fraction"].applied


def test_out_of_memory_is_recognised_on_every_platform():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("NPU out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(ValueError("window must be [B, 4, 32]"))


def test_an_accelerator_share_without_nvml_comes_from_measured_busy_time(monkeypatch):
    monkeypatch.setattr(slices, "nvml_process_busy", lambda *a, **k: None)
    meter = ShareMeter(split_device(GPU, 4)[0])
    time.sleep(0.2)
    sample = meter.sample(busy_seconds_total=0.05)
    assert sample.source == "busy_time" and sample.configured_share == 0.25
    assert 0.1 < sample.delivered_share <= 0.25


def test_process_cpu_time_is_read_from_the_kernel_for_another_process():
    ctx = mp.get_context("spawn")
    child = ctx.Process(target=time.sleep, args=(2,))
    child.start()
    try:
        assert 0 <= process_cpu_seconds(child.pid) < 5
    finally:
        child.terminate()
        child.join()
    assert process_cpu_seconds() > 0


def _one_core_slice(share_of_core: float) -> SliceSpec:
    """A slice of this machine's CPU on its first core, ``share_of_core`` of that core."""
    cpu = cpu_info()
    return SliceSpec(
        device="cpu",
        index=0,
        memory_bytes=cpu.memory_bytes // 4,
        compute_share=share_of_core / cpu.compute_units,
        cores=(cpu.cores[0],),
        device_units=cpu.compute_units,
        device_memory_bytes=cpu.memory_bytes,
    )


def test_a_cpu_slice_process_is_pinned_threaded_and_its_share_measured():
    spec = _one_core_slice(1.0)
    worker = SliceProcess(spec, busy_probe, 2.0, cgroup=False)
    try:
        report = worker.wait_ready()
        steps = {s["mechanism"]: s for s in report["steps"]}
        assert steps["cpu_affinity"]["applied"] and steps["torch_threads"]["applied"]
        time.sleep(1.0)  # inside the child's busy spell
        sample = worker.meter.sample()
        seen = worker.result()
    finally:
        worker.join()
    assert seen["affinity"] == list(spec.cores) and seen["threads"] == 1 and seen["omp"] == "1"
    assert sample.source == "/proc/stat" and sample.configured_share == spec.compute_share
    # One spinning thread on one core: never more than its core, and clearly running (the
    # machine is shared, so the floor is loose).
    assert 0.2 < sample.of_allocation <= 1.1


def test_a_cgroup_quota_holds_a_slice_to_half_a_core_where_the_kernel_allows():
    location = find_cpu_cgroup()
    if isinstance(location, str):
        pytest.skip(f"no writable cgroup here: {location}")
    spec = _one_core_slice(0.5)
    worker = SliceProcess(spec, busy_probe, 2.5, cgroup=True)
    try:
        report = worker.wait_ready()
        if not any(s["applied"] for s in report["steps"] if s["mechanism"] == "cgroup_cpu_quota"):
            pytest.skip(f"quota not applied: {report['steps']}")
        time.sleep(1.5)
        sample = worker.meter.sample()
        worker.result()
    finally:
        worker.join()
    assert not os.path.exists(report["cgroup"])  # removed once the worker exited
    # Configured half a core; a spinning process would take a whole one without the quota.
    assert 0.2 < sample.of_allocation <= 1.15, sample


def test_cgroups_of_workers_that_have_exited_are_swept(tmp_path):
    dead, alive = tmp_path / "haulmind-cpu-0-999999999", tmp_path / f"haulmind-cpu-1-{os.getpid()}"
    dead.mkdir(), alive.mkdir()
    assert slices.remove_stale_cgroups(tmp_path) == [dead]
    assert alive.exists() and not dead.exists()
